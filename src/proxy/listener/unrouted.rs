//! The answers to a request no route takes: refused before routing (malformed, or read two ways), or matching no route (`404`).

use std::time::Instant;

use http::{Response, StatusCode};
use tracing::debug;

use super::Listener;
use crate::proxy::edge::Exchange;
use crate::proxy::forward::{RequestContext, ResponseBody, error_response};
use crate::proxy::request;

/// A request refused before it has a route (malformed, or one whose
/// readings disagree on its route): logged at debug, as any client can
/// cause it, counted without an upstream, answered.
pub(super) fn refuse(
    listener: &Listener,
    ctx: &RequestContext,
    exchange: Exchange,
    refused: request::Refused,
    start: Instant,
) -> Response<ResponseBody> {
    debug!(listener = %listener.name, peer = %ctx.client_addr, error = %refused, "request refused");
    listener
        .unrouted
        .record(refused.status().as_u16(), start.elapsed());
    exchange.refused(refused.authz()).finish(refused.response())
}

/// A request no route takes: `404`, counted without an upstream, its
/// line's `authz` `no_route` (it was refused, not allowed).
pub(super) fn no_route(
    listener: &Listener,
    exchange: Exchange,
    start: Instant,
) -> Response<ResponseBody> {
    listener.unrouted.record(404, start.elapsed());
    let not_found = error_response(StatusCode::NOT_FOUND, "no route");
    exchange.refused("no_route").finish(not_found)
}
