//! Issue 16, the edge and the upstream identity: SPIFFE `verify_names`, PROXY protocol v1/v2,
//! trusted proxies, `allow_from`, the HTTPS redirect listener and response headers. Real sockets: clients
//! bind 127.0.0.2 / 127.0.0.3 to stand for a load balancer and a trusted proxy.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod access_log;
mod clients;
mod proxy_protocol;
mod redirect;
mod upstream_names;
mod upstream_tls;
