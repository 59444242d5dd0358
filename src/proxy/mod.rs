//! Serving: accept loops, routing, forwarding.

pub mod forward;
pub mod listener;
pub mod router;
