//! The front door under hostile input: exactly the agreed protocol with the listener's limits,
//! bounded Upgrade tunnels, lingering close, the send timeout and plain HTTP on a TLS port.
//!
//! Raw bytes on real sockets through real TLS to the real binary, with a
//! plain-HTTP backend that counts what reaches it.

#[path = "../support/mod.rs"]
mod support;

mod common;
mod hpack;

// The tests, by theme.
mod bodies;
mod body_heads;
mod broken_bodies;
mod close_at_once;
mod closing;
mod floods;
mod h2_abuse;
mod h2_resets;
mod heads;
mod listeners;
mod nominated;
mod refused_lines;
mod refused_upgrades;
mod routing;
mod slow_readers;
mod smuggling;
mod timeouts;
mod tunnel_bytes;
mod tunnel_hosts;
mod tunnel_reloads;
mod tunnel_slow;
mod tunnels;
mod upgrade_answers;
mod upgrade_slots;
mod upstream;
mod ws_handshake;
