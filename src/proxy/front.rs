//! What is in front of a listener, at runtime: PROXY sources, client ranges, trusted proxies, response headers, the HTTPS redirect.
//!
//! Built from [`FrontConfig`] by the reloader and loaded once per connection,
//! like the limits: a change applies to new connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::{FrontConfig, Limits};
use crate::metrics;
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::{Activity, Driver, Outcome, TrackedBody};
use crate::proxy::edge::{Exchange, Sent};
use crate::proxy::forward::{RequestContext, ResponseBody};
use crate::proxy::headers::client_ip_value;
use crate::proxy::listener::{Listener, Slot};
use crate::proxy::plain::PlainTcp;
use crate::proxy::proxy_protocol;
use crate::proxy::{refused_head, request};

/// What is in front of one listener.
#[derive(Debug, Default)]
pub struct Front {
    /// `proxy_protocol.from`; `None` = PROXY protocol off.
    pub proxy_protocol: Option<Vec<IpNet>>,
    trusted_proxies: Vec<IpNet>,
    /// `allow_from`; `None` = any client.
    allow_from: Option<Vec<IpNet>>,
    response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `redirect_https.port`: this listener answers only 308 to https.
    pub redirect_https: Option<u16>,
}

impl Front {
    pub fn new(c: &FrontConfig) -> Arc<Front> {
        Arc::new(Front {
            proxy_protocol: c.proxy_protocol.clone(),
            trusted_proxies: c.trusted_proxies.clone(),
            allow_from: c.allow_from.clone(),
            // Checked by the config loader; anything else cannot be here.
            response_headers: c
                .response_headers
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            redirect_https: c.redirect_https,
        })
    }

    /// Whether the listener serves the client at `ip` (its `allow_from`).
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow_from
            .as_deref()
            .is_none_or(|nets| proxy_protocol::contains(nets, ip))
    }

    /// Whether forwarding headers from the client at `ip` are believed.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && proxy_protocol::contains(&self.trusted_proxies, ip)
    }

    /// `response_headers.set`: on every response, replacing any value the
    /// upstream sent (HSTS must not depend on each backend remembering it).
    pub fn set_response_headers(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.response_headers {
            headers.insert(n.clone(), v.clone());
        }
    }
}

/// Who the client of a new connection is, before TLS (before HTTP on a
/// `redirect_https` listener): the source of the PROXY header a
/// `proxy_protocol.from` peer must send, else the peer. `None`: refused
/// (PROXY protocol, or outside `allow_from`), counted and logged; the
/// caller closes it. `accepted`: when it was accepted (a refusal's line
/// runs from it); `deadline`: that plus `header_read_timeout`.
pub async fn client_before_tls(
    live: &Listener,
    front: &Front,
    stream: &mut TcpStream,
    peer: SocketAddr,
    accepted: std::time::Instant,
    deadline: tokio::time::Instant,
) -> Option<SocketAddr> {
    let from = front.proxy_protocol.as_deref();
    // A `from` peer names the client in its header: read that first.
    let vouched = from.is_some_and(|f| proxy_protocol::contains(f, peer.ip()));
    let client = if vouched {
        match proxy_protocol::read_header(stream, peer, deadline).await {
            Ok(client) => client,
            Err(refused) => return refused_before_tls(live, peer, &refused, accepted),
        }
    } else {
        peer
    };
    // `allow_from`: like a firewall in front of the listener, before any
    // TLS work is spent on the client. Anyone outside `from` has its final
    // address at accept, so this comes before waiting for its first bytes:
    // a client that sent nothing was held (with its max_connections slot)
    // until header_read_timeout, only to be refused here.
    if !front.admits(client.ip()) {
        metrics::handshake(&live.name, "source_not_allowed");
        crate::proxy::edge::handshake_refused(live, client, "source_not_allowed", None, accepted);
        debug!(listener = %live.name, peer = %client, "connection refused before TLS: not in allow_from");
        return None;
    }
    if from.is_some() && !vouched {
        match proxy_protocol::refuse_header(stream, deadline).await {
            Ok(()) => {}
            // Nothing (or only the start of a signature) by the deadline:
            // not a PROXY failure but what a listener without PROXY
            // protocol sees, a TLS handshake timed out (SPEC §5 `timeout`)
            // or, on the redirect listener, no request (neither counted
            // nor logged).
            Err(proxy_protocol::Refused::Timeout) => {
                if front.redirect_https.is_none() {
                    metrics::handshake(&live.name, "timeout");
                    crate::proxy::edge::handshake_refused(live, peer, "timeout", None, accepted);
                    debug!(listener = %live.name, peer = %peer, "TLS handshake timed out");
                } else {
                    debug!(peer = %peer, "redirect connection closed: no request within header_read_timeout");
                }
                return None;
            }
            // Only the start of a signature, then a FIN: a client gone
            // before its handshake, as one that closes before a byte
            // (SPEC §5 `client_closed`: counted, no line) or, on the
            // redirect listener, one that sent no request (neither counted
            // nor logged). It was held until header_read_timeout.
            Err(proxy_protocol::Refused::Gone) => {
                if front.redirect_https.is_none() {
                    metrics::handshake(&live.name, "client_closed");
                }
                debug!(listener = %live.name, peer = %peer, "connection closed after only the start of a PROXY signature");
                return None;
            }
            Err(refused) => return refused_before_tls(live, peer, &refused, accepted),
        }
    }
    Some(client)
}

/// Count and log a PROXY protocol refusal.
fn refused_before_tls(
    live: &Listener,
    peer: SocketAddr,
    refused: &proxy_protocol::Refused,
    accepted: std::time::Instant,
) -> Option<SocketAddr> {
    metrics::handshake(&live.name, refused.reason());
    if refused.logged() {
        crate::proxy::edge::handshake_refused(live, peer, refused.reason(), None, accepted);
    }
    debug!(listener = %live.name, peer = %peer, error = %refused, "connection refused before TLS");
    None
}

/// Serve one plain-HTTP connection of a `redirect_https` listener: each
/// request gets `308` to the same host (without its port) and path on
/// `https://` at `port`. One request per connection, bounded by
/// `header_read_timeout` plus `send_timeout` from `accepted` (the PROXY
/// header included), then a lingering close (src/proxy/linger.rs) while
/// the client may still be sending. The listener closing (removed by a
/// reload, or shutting down) closes it as the TLS listeners' connections
/// (the connection driver, src/proxy/conn/driver.rs): at once before its
/// request, unless the bytes waiting unread on its socket then began one,
/// which is answered as its last; one answering finishes its 308. One
/// begun once the listener was removed (taken from the queue of the
/// socket it gave up, its request sent with its connect) is answered, and
/// only the process's shutdown closes it early (`slot`'s). Each answer,
/// and each head hyper refused or cut, is counted and logged as on the
/// TLS listeners.
#[allow(clippy::too_many_arguments)]
pub async fn redirect_connection(
    live: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    front: Arc<Front>,
    limits: Limits,
    port: u16,
    accepted: Instant,
    slot: Arc<Slot>,
    answer_first: bool,
) {
    // One begun once the listener was removed (from the queue of the
    // socket it gave up, `answer_first`, told at accept) has sent its
    // request with its connect, and is answered, bounded as always:
    // closed unread, the kernel would reset it. The listener's `closing`
    // does not close it, the process's shutdown does (at once if it has
    // not sent its head yet). One accepted before the removal is closed
    // here if the removal came first, before a byte of its head is read:
    // its PROXY header's end may come in one segment with its request,
    // which the driver's look at `closing` would read and answer under the
    // removed listener's settings (SPEC §3: its late first request
    // unanswered). Removed, not `closing`, which the accept loop sets at
    // shutdown too: then the driver decides (§1), whichever task ran first.
    // Handed over (a rename, a port swap), its address never stopped
    // serving: its first request is answered, as one from the queue is.
    let answer_first = answer_first || live.handed_over();
    if !answer_first && live.is_removed() {
        debug!(peer = %peer, "redirect connection closed: the listener was removed before its request");
        return;
    }
    // The budget counts from accept, shared with the PROXY header read
    // before this (SPEC: one request per connection, bounded by
    // header_read_timeout): the driver times the head from `accepted`.
    let head_deadline = accepted + limits.header_read_timeout;
    if head_deadline <= Instant::now() {
        debug!(peer = %peer, "redirect connection closed: no request within header_read_timeout");
        return;
    }
    let edge = live.edge.load_full();
    // What the access log takes from a connection: plain HTTP has no
    // SNI, TLS version or certificate, so those fields stay empty.
    let ctx = Arc::new(RequestContext {
        listener: live.name.clone(),
        client_addr: peer,
        client_cert: None,
        tls_sni: None,
        served_from: live.tls.load().resolver.clone(),
        served: None,
        trusted_proxy: false,
        tls_version: None,
        resumed: false,
        entry: None,
        body_read_timeout: limits.body_read_timeout,
        body_buffer_bytes: limits.body_buffer_bytes,
        max_body_bytes: limits.max_body_bytes,
        client_ip: client_ip_value(peer),
        hosts: Default::default(),
    });
    // One request per connection: keep-alive off, its head due within
    // header_read_timeout of accept (a head begun by then and not whole
    // is a `408`, one never begun nothing).
    let activity = Activity::without_keep_alive(accepted, true);
    let svc = {
        let (live, edge, ctx) = (live.clone(), edge.clone(), ctx.clone());
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let in_flight = activity.begin(!req.body().is_end_stream());
            let start = Instant::now();
            let sent = Sent::of(&edge, req.headers());
            let mut exchange = Exchange::begin(&edge, &ctx, &mut req, start, true, sent);
            let mut resp = redirect(req, port);
            if resp.status() == StatusCode::BAD_REQUEST {
                exchange = exchange.refused("bad_request");
            }
            front.set_response_headers(resp.headers_mut());
            // Keep-alive off: every answer is the connection's last, and
            // says so (SPEC §1 asks it of one the driver's look at a close
            // found unread), as on a TLS listener without keep-alive.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            // The listener's own pair (upstream ""), resolved once: not
            // five label Strings and two family look-ups per request.
            live.unrouted
                .record(resp.status().as_u16(), start.elapsed());
            let resp = exchange
                .finish(resp)
                .map(|b| TrackedBody::new(b, in_flight));
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    // Plain TCP that reads what waits on its socket itself when the
    // driver's look at a close asks (src/proxy/plain.rs).
    let io = ClientIo::new(
        Box::new(PlainTcp::new(stream)),
        activity.clone(),
        true,
        limits.send_timeout,
        Box::new(slot.clone()),
    );
    // The listener closing (a reload removed it, or shutdown) closes its
    // connections as the TLS listeners' (src/proxy/conn/driver.rs): one
    // with no request is closed at once, after a look at its socket for
    // bytes it sent before the signal, not read yet (the runtime may not
    // have found the socket readable): a head they began is answered as
    // the last (SPEC §1). One answering finishes its 308. hyper's
    // graceful shutdown alone would not do: it closes a connection only
    // before any byte of a head, and with keep-alive off not even then.
    let no_stalls: Option<Arc<crate::proxy::stall::Stalls>> = None;
    let driver = Driver {
        name: &live.name,
        peer,
        activity: &activity,
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: Duration::ZERO,
        shutdown: live.closing.subscribe(),
        also_close_grace: slot.grace(),
        process: Some(slot.shutdown()),
        answer_first,
        handed_over: Some(&|| live.handed_over()),
        answer_unbegun: false,
        // HTTP/1.1 alone: no HTTP/2 stream to watch.
        stalls: no_stalls.as_deref().map(|s| (s, limits.send_timeout)),
        send_timeout: limits.send_timeout,
    };
    // One request per connection: its head within header_read_timeout,
    // its 308 taken within send_timeout. hyper's HTTP/1.1 server has no
    // write timer, and a client reading the answer a byte at a time
    // would hold the connection and its max_connections slot for ever;
    // this bounds the whole exchange.
    let bound = tokio::time::Instant::from_std(head_deadline + limits.send_timeout);
    // The connection is built inside the block that boxes it, as on a
    // TLS listener: a local still in scope at the `await` would be kept
    // in this future.
    // A boxed `dyn Future + Send`: its sendness settled here, where the
    // driver's borrowed lifetimes are known, not left to `tokio::spawn`.
    let run: std::pin::Pin<Box<dyn Future<Output = Outcome<hyper::Error>> + Send + '_>> = {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // The driver times the head, from accept.
            .header_read_timeout(None)
            // As on the TLS listeners: hyper answers 431 when a request head
            // exceeds this; its read buffer cannot be under 8 KiB, so that
            // alone would let a head of up to 8 KiB through any lower limit.
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(false)
            .serve_connection(TokioIo::new(io), svc);
        Box::pin(driver.run(
            conn,
            |c| c.graceful_shutdown(),
            futures_util::stream::pending(),
        ))
    };
    let outcome = tokio::time::timeout_at(bound, run).await;
    let Ok(outcome) = outcome else {
        debug!(peer = %peer, reason = "send_timeout", "redirect connection closed");
        return;
    };
    // A head hyper refused and answered itself is a request too, and so
    // is one cut at header_read_timeout (408, nothing sent).
    if let Some((status, took)) = refused_head::refused(&outcome, &activity) {
        debug!(peer = %peer, status = status.as_u16(), "redirect request head refused");
        refused_head::record(&live.unrouted, &edge, &ctx, status, took);
    }
    // The close lingers as the TLS listeners' do (the client's stream,
    // `ClientIo`, at its drop): while the client may still be sending (a
    // body we never read, or anything more), so it reads the 308 that
    // tells it to send again over https, not the reset that unread input
    // would cause. Not one the driver closed at once (the listener
    // removed, or the shutdown, before its request began: silent, or
    // part way into its head): answered nothing, it is closed fully, its
    // slot and the drain free at once.
}

/// The `308` for one request, or `400` without a valid `Host`.
///
/// Only the `Host` is checked, as nginx's `return 308
/// https://$host$request_uri` does: a path or framing a TLS listener
/// refuses (`%2F`, `\`, `..;`, `Transfer-Encoding: gzip, chunked`) is
/// that listener's to answer, and it used to get `400` here.
fn redirect(mut req: Request<Incoming>, port: u16) -> Response<ResponseBody> {
    let location = request::one_authority(&mut req).ok().and_then(|()| {
        let authority: http::uri::Authority = request::authority(&req)?.parse().ok()?;
        let host = authority.host();
        if host.is_empty() {
            return None;
        }
        // The target as sent (nginx's `$request_uri`). It must start with
        // `/` so that `Location` names no other host (`@evil.example`
        // would): `*` has no path to redirect to; an absolute-form
        // target's empty path is `/` (RFC 9112 §3.2.1). hyper's parser
        // lets no CR, LF or space through, and `HeaderValue` checks again.
        let target = req.uri().path_and_query().map_or("", |p| p.as_str());
        let path = match target.as_bytes().first() {
            Some(b'/') => target.to_owned(),
            None | Some(b'?') if req.uri().scheme().is_some() => format!("/{target}"),
            _ => return None,
        };
        let location = if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        };
        HeaderValue::from_str(&location).ok()
    });
    let mut resp = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed());
    match location {
        Some(l) => {
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, l);
        }
        None => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp
}

/// The answer to a plain-HTTP request on a TLS listener (nginx answers the same).
const PLAIN_HTTP_BODY: &str = "The plain HTTP request was sent to HTTPS port\n";

/// Answer plain HTTP with a 400 the client can read, then close.
pub(crate) async fn refuse_plain_http(
    listener: &Listener,
    mut stream: TcpStream,
    peer: SocketAddr,
    accepted: std::time::Instant,
) {
    metrics::handshake(&listener.name, "plain_http");
    debug!(listener = %listener.name, peer = %peer, reason = "plain_http", "TLS handshake failed");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    let sent = tokio::time::timeout(
        listener.settings.load().limits.send_timeout,
        stream.write_all(response.as_bytes()),
    )
    .await;
    let sent = matches!(sent, Ok(Ok(())));
    // Logged with the 400 (nginx logs it so), and its body once sent.
    let body_bytes = if sent {
        PLAIN_HTTP_BODY.len() as u64
    } else {
        0
    };
    crate::proxy::edge::plain_http_answered(listener, peer, body_bytes, accepted);
    if sent {
        crate::proxy::linger::linger(stream, false).await;
    }
}

#[cfg(test)]
mod tests;
