//! Serving: accept loops, routing, forwarding.

pub mod client_cert;
pub mod edge;
pub mod forward;
pub mod listener;
pub mod request_id;
pub mod router;
