//! The upstream pool's failure modes: connections the upstream closes while
//! pooled, requests lost on a reused connection, dial storms, shared h2,
//! h2 servers that allow no stream.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod broken_h2;
mod client_faults;
mod flow_control;
mod goaway;
mod h2_only_upgrades;
mod health;
mod idle_order;
mod informational;
mod key_usage;
mod lengths;
mod mixed_alpn;
mod padded_values;
mod pool;
mod raw_h2;
mod refused;
mod refused_slots;
mod refusing_endpoint;
mod reloads;
mod request_timeout;
mod sharing;
mod timeouts;
mod zero_streams;
