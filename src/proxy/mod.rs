//! Serving: accept loops, routing, forwarding.

pub mod accept;
pub mod conn;
pub mod forward;
pub mod listener;
pub mod router;
pub mod tunnel;
