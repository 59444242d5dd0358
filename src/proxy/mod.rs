//! Serving: accept loops, routing, forwarding.

pub mod accept;
pub mod body;
pub mod buffer;
pub mod client_cert;
pub mod conn;
pub mod drain;
pub mod edge;
pub mod failure;
pub mod forward;
pub mod front;
pub mod headers;
pub mod lifetime;
pub mod listener;
pub mod on_read;
pub mod path;
pub mod proxy_protocol;
pub mod readmit;
pub mod refused_head;
pub mod request;
pub mod request_id;
pub mod router;
pub mod slots;
pub mod stall;
pub mod trailers;
pub mod tunnel;
pub mod upkeep;
