//! Request heads refused before they became requests (hyper's own `400`/`414`/`431`, a head cut at `header_read_timeout`, one the client abandoned): counted and logged as requests.
//!
//! hyper's HTTP/1 server answers a head it cannot parse itself and then
//! ends the connection with the parse error; hotproxy's service never sees
//! the request. An operator still expects what nginx gives: a `400` in the
//! request metrics and a line in the access log (request `"-"`), so a
//! client sending garbage, or a slowloris cut at `header_read_timeout`
//! (`408`, which nginx logs without sending), is visible.

use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::access_log::{self, HeadLine, Line};
use crate::metrics::RouteMetrics;
use crate::proxy::conn::{Activity, Expiry, Outcome};
use crate::proxy::edge::EdgePolicy;
use crate::proxy::forward::RequestContext;

/// How a connection's last head was refused: its status and why (the
/// access log's `authz`). Two differ at one status: a head hyper could
/// not parse (`bad_request`) and one the client abandoned (`400` too,
/// `header_incomplete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadStatus {
    status: StatusCode,
    why: &'static str,
}

impl HeadStatus {
    fn of(status: StatusCode) -> HeadStatus {
        HeadStatus {
            status,
            why: reason(status),
        }
    }

    pub fn as_u16(self) -> u16 {
        self.status.as_u16()
    }
}

/// How a connection's last head was refused, and how long that head had
/// been arriving; `None` when the connection ended between requests (or
/// on HTTP/2, whose protocol errors are not requests, and where no head
/// is ever begun as HTTP/1's is).
pub fn refused(
    outcome: &Outcome<hyper::Error>,
    activity: &Activity,
) -> Option<(HeadStatus, Duration)> {
    let status = match (&outcome.error, outcome.expired) {
        // A head begun, then the client's end (FIN, `close_notify`) or a
        // broken stream (RST) before it was whole: nginx logs a `400` for
        // it ("client prematurely closed connection while reading client
        // request headers"). It had no line and no count at all: on a
        // keep-alive connection's second request, nothing was recorded.
        (Some(e), _) if cut_short(e) => {
            let took = activity.head_begun()?;
            let status = HeadStatus {
                status: StatusCode::BAD_REQUEST,
                why: "header_incomplete",
            };
            return Some((status, took));
        }
        (Some(e), _) => HeadStatus::of(answered(e)?),
        (None, Some(Expiry::HeaderRead)) => HeadStatus::of(StatusCode::REQUEST_TIMEOUT),
        _ => return None,
    };
    // A client that connects and never sends a byte is not a request
    // (nginx does not log it either): only a head that was begun counts.
    let took = activity.head_begun();
    match status.status {
        StatusCode::REQUEST_TIMEOUT => took.map(|t| (status, t)),
        _ => Some((status, took.unwrap_or_default())),
    }
}

/// Whether hyper's HTTP/1 connection ended because its stream did, not
/// over what was sent: an end of stream before the message was whole
/// (hyper reports one between messages as a plain close, no error), or
/// a read that failed. hyper answers neither.
fn cut_short(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The status hyper's HTTP/1 server answered a failed parse with; `None`
/// when it answered nothing (the HTTP/2 preface on an HTTP/1.1
/// connection, an internal error) or the error is not a parse error.
pub fn answered(e: &hyper::Error) -> Option<StatusCode> {
    if !e.is_parse() {
        return None;
    }
    // hyper 1 keeps its parse kinds private; its message is the only
    // public difference between these (tests/serving/heads.rs's
    // `refused_heads_are_counted_and_logged` pins each one).
    let said = e.to_string();
    if e.is_parse_too_large() {
        return Some(match said.as_str() {
            "URI too long" => StatusCode::URI_TOO_LONG,
            _ => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        });
    }
    if said.contains("HTTP2 preface") || said.starts_with("internal error") {
        return None;
    }
    Some(StatusCode::BAD_REQUEST)
}

/// Count the refused head in `hotproxy_http_requests_total{upstream=""}`
/// and, with the access log on for the listener, write its line.
pub fn record(
    unrouted: &RouteMetrics,
    edge: &EdgePolicy,
    ctx: &RequestContext,
    status: HeadStatus,
    took: Duration,
) {
    unrouted.record(status.as_u16(), took);
    if !(edge.access_log && access_log::enabled()) {
        return;
    }
    access_log::submit(Line::Head(Box::new(HeadLine {
        ts: SystemTime::now(),
        listener: ctx.listener.clone(),
        sni: ctx.tls_sni.clone(),
        client_addr: ctx.client_addr,
        identity: ctx
            .client_cert
            .as_deref()
            .map(access_log::LoggedIdentity::of),
        status: status.as_u16(),
        duration: took,
        tls_version: ctx.tls_version,
        resumed: ctx.resumed,
        reason: status.why,
    })));
}

/// The access log's `authz` for a refused head.
fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::REQUEST_TIMEOUT => "header_read_timeout",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "header_too_large",
        _ => "bad_request",
    }
}

/// Whether hyper ended the connection over what the client sent, rather
/// than the client closing it: the HTTP/2 preface on an HTTP/1.1
/// connection (a head hyper cannot parse; the heads it answers are counted
/// as requests above), or an HTTP/2 connection error we sent `GOAWAY` for
/// (HTTP/1.1 bytes after agreeing on h2). Those closes are ours.
pub fn protocol_error(e: &hyper::Error) -> bool {
    if e.is_parse() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && !h2.is_remote();
        }
        source = s.source();
    }
    false
}
