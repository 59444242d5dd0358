//! Upstream connections on hyper's connection-level API: endpoints, their pools, one connection.
//!
//! - `endpoint`: one server address: its pool, its slots, leasing a
//!   connection to a request and getting it back when the response ends.
//! - `pool`: idle HTTP/1.1 connections, shared HTTP/2 ones, bounded dials.
//! - `conn`: dialling (TCP, TLS snapshot, slot) and the h1/h2 handles.
//! - `io`: one connection's bytes (plain or TLS), its slot, and the switch
//!   that closes a retired HTTP/2 connection from outside hyper's task.
//! - `members`: an upstream's endpoints as a set: picking one per request,
//!   passive health (never ejecting the last), their metrics.
//! - `balance`: round robin, least request (power of two choices).
//! - `health`: one endpoint's consecutive failures, ejection, back-off.
//! - `resolve`: server names to endpoints, re-resolved every `resolve_interval`.
//! - `lookup`: one blocking lookup of a name, shared by all who wait for it;
//!   at most 64 at once in the process.
//! - `reach`: whether this host has a route to an address (a resolved one
//!   it has none to is no endpoint).
//! - `read_timeout`: the longest wait for the next piece of a response body.
//! - `pipe`: hyper's task sending a request body to an HTTP/2 upstream (or
//!   an `Upgrade` request's own connection), cut when the upstream has
//!   answered and takes no more of the body.

pub mod balance;
pub mod conn;
pub mod endpoint;
pub mod health;
pub mod io;
pub mod lookup;
pub mod members;
pub mod pipe;
pub mod pool;
pub mod reach;
pub mod read_timeout;
pub mod resolve;
