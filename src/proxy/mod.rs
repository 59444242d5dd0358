//! Serving: accept loops, routing, forwarding.

pub mod accept;
pub mod body;
pub mod conn;
pub mod forward;
pub mod front;
pub mod headers;
pub mod listener;
pub mod path;
pub mod proxy_protocol;
pub mod request;
pub mod router;
pub mod slots;
pub mod tunnel;
