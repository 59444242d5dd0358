//! One request as the upstream sees it: one authority, a normalised path,
//! hotproxy's own forwarding headers, client faults answered as client
//! faults, and a bounded number of upstream connections.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod bodies;
mod connection_limits;
mod headers;
mod requests;
mod trailers;
