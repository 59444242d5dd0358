//! Why a forwarded request got no response (its 502/504 and metric reason), and whether it may be sent again.
//!
//! A request is sent again only where nothing can be repeated (RFC 9110
//! §9.2.2, RFC 9113 §8.7): [`unprocessed`] for any method, or
//! [`closed_before_response`] (or [`dispatch_gone`]) for an idempotent
//! one; and only with a body that can be sent twice (none, or one read
//! whole).

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::TrySendError;

use crate::proxy::body::ClientBody;
use crate::proxy::forward::ResponseBody;
use crate::upstream::conn::{DialError, MAX_RESPONSE_FIELDS};
use crate::upstream::endpoint::LeasedBody;
use crate::upstream::io::InformationalFlood;

/// Why a forwarded request got no response.
pub enum Failure {
    /// No connection: dial, TLS, slot.
    Dial(DialError),
    /// The request on an established connection.
    Request(hyper::Error),
    /// The response's head came, then its body failed where it came with
    /// the head ([`crate::upstream::endpoint::LeasedBody::read_early`]):
    /// processed, whatever the error's code says. An HTTP/2 server that
    /// sent `HEADERS` and then `RST_STREAM(REFUSED_STREAM)` was judged
    /// by the code alone, [`never_processed`], and passive health never
    /// counted it.
    AfterHead(hyper::Error),
    /// A request its HTTP/2 connection handed back never written (hyper:
    /// "operation was canceled", the request returned): the server's
    /// `GOAWAY` read while the request was handed over, its connection
    /// taking no new stream. As a stream the upstream left
    /// [`unprocessed`], the endpoint never saw it ([`never_processed`]).
    Unsent(hyper::Error),
    /// The same over HTTP/1.1: a reused connection the server closed while
    /// idle ([`h1_spent`]), its keep-alive timeout racing the request. Said
    /// apart from [`Failure::Unsent`], whose words (a server shutting the
    /// connection down) sent operators looking for a restart.
    IdleClosed(hyper::Error),
    /// The request was dropped (hyper: "operation was canceled", "dispatch task is gone")
    /// by its HTTP/2 connection, whose I/O failed on this TLS error.
    ConnectionTls(rustls::Error),
    /// An HTTP/2 response of more than [`MAX_RESPONSE_FIELDS`] header
    /// fields (hyper's HTTP/1.1 parser refuses one itself).
    TooManyFields,
    /// A response whose length a client could read otherwise than hyper
    /// did, or with more than one `Content-Length`
    /// ([`crate::proxy::framing`]): why.
    Framing(&'static str),
}

/// Safe to send twice (RFC 9110 §9.2.2) and nothing streamed to send again.
pub fn replayable(req: &Request<ClientBody>) -> bool {
    idempotent(req.method()) && req.body().can_replay()
}

/// RFC 9110 §9.2.2 (TRACE too, but it is refused before routing).
pub fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// The HTTP/2 upstream refused the stream (RFC 9113 §8.7: not processed).
pub fn unprocessed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            // h2 gives a stream past a peer's GOAWAY last stream id that
            // GOAWAY itself as its error; the streams up to it end with
            // the connection, as an I/O error.
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = err.source();
    }
    false
}

/// The HTTP/2 upstream reset the stream with `REFUSED_STREAM` (not a
/// `GOAWAY` that shut the connection down before it).
pub fn refused_stream(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM) && !h2.is_go_away();
        }
        source = err.source();
    }
    false
}

/// The endpoint never saw the attempt: an HTTP/2 stream it left
/// [`unprocessed`] before any response head (not one that failed after
/// its head, [`Failure::AfterHead`]), or a request its connection handed
/// back unsent ([`Failure::Unsent`]). No failure of the endpoint's: passive health
/// does not count it, nor `hotproxy_upstream_errors_total` when it goes
/// on to another endpoint.
pub fn never_processed(e: &Failure) -> bool {
    match e {
        Failure::Unsent(_) | Failure::IdleClosed(_) => true,
        Failure::Request(e) => unprocessed(e),
        _ => false,
    }
}

/// What of `body` came with its head, read ([`LeasedBody::read_early`]):
/// a body the upstream broke there fails the request (a `502` with its
/// cause, nothing sent again), as none of it has gone to the client yet.
/// The head came: processed, whatever the error's code
/// ([`Failure::AfterHead`]). Lent, not taken: the body (and its head) moved
/// into this future were copied on every response; [`answer`] then.
pub async fn early(body: &mut LeasedBody) -> Result<(), (Failure, Option<Request<ClientBody>>)> {
    body.read_early()
        .await
        .map_err(|e| (Failure::AfterHead(e), None))
}

/// The response of `head` and `body`, once [`early`] has read what came
/// with the head.
pub fn answer(head: http::response::Parts, body: LeasedBody) -> Response<ResponseBody> {
    Response::from_parts(head, body.boxed())
}

/// A request whose body can be sent twice ([`ClientBody::can_replay`]):
/// its head and body, to send it again.
pub fn copy_of(req: &Request<ClientBody>) -> Request<ClientBody> {
    let body = req.body().replica().expect("a body that can be sent twice");
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    if let Some(&mark) = req.extensions().get::<crate::proxy::forward::StandInHost>() {
        copy.extensions_mut().insert(mark);
    }
    copy
}

/// An HTTP/1.1 send that failed with no send again left to its endpoint
/// (on a new connection, or its sends spent, [`crate::proxy::resends`]):
/// its failure, and the request for another endpoint if one may take it:
/// handed back unwritten, or its copy (`copy`) when the connection closed
/// before the response head, or when none of it reached the socket
/// (`unwritten`). Handed back, or unwritten, on a `reused` connection (the
/// endpoint closed it while idle, its keep-alive timeout racing the
/// request), it is [`Failure::IdleClosed`], as over HTTP/2 `Unsent`: the endpoint never
/// saw it, and passive health and `hotproxy_upstream_errors_total` counted
/// it against the endpoint even when another one then answered it. A new
/// connection closed before its first request is the endpoint's failure
/// (one failing on new connections, or refusing our client certificate
/// after a TLS 1.3 handshake, whose cause the error keeps).
pub fn h1_spent(
    mut err: TrySendError<Request<ClientBody>>,
    copy: Option<(Request<ClientBody>, bool)>,
    reused: bool,
) -> (Failure, Option<Request<ClientBody>>) {
    match (err.take_message(), copy) {
        (Some(unsent), _) if reused => (Failure::IdleClosed(err.into_error()), Some(unsent)),
        (Some(unsent), _) => (Failure::Request(err.into_error()), Some(unsent)),
        (None, Some((copy, true))) if reused => (Failure::IdleClosed(err.into_error()), Some(copy)),
        (None, copy) => {
            let again = copy.filter(|_| closed_before_response(err.error()));
            (Failure::Request(err.into_error()), again.map(|(c, _)| c))
        }
    }
}

/// An HTTP/1.1 send that failed with a send again left to its endpoint:
/// the request to send on a new connection, its error and what to log;
/// or its failure and the request for another endpoint. Sent again when
/// handed back unwritten; when hyper took it and none of it reached a
/// `reused` connection's socket (`copy`'s flag, [`crate::proxy::kept`]),
/// whatever its method; or, its `copy` (idempotent) kept, when a reused
/// connection closed before the response head. A new connection closed on
/// this very request: the endpoint may have failed on it; not this one
/// again, another may take it (the copy is kept for that).
// Its `Err` is the one `Upstream::send` returns.
#[allow(clippy::type_complexity, clippy::result_large_err)]
pub fn h1_again(
    mut err: TrySendError<Request<ClientBody>>,
    copy: Option<(Request<ClientBody>, bool)>,
    reused: bool,
) -> Result<(Request<ClientBody>, hyper::Error, &'static str), (Failure, Option<Request<ClientBody>>)>
{
    const UNSENT: &str = "request not sent; retrying on a new connection";
    if let Some(unsent) = err.take_message() {
        return Ok((unsent, err.into_error(), UNSENT));
    }
    match copy {
        Some((copy, true)) if reused => Ok((copy, err.into_error(), UNSENT)),
        Some((copy, _)) if closed_before_response(err.error()) => {
            if !reused {
                return Err((Failure::Request(err.into_error()), Some(copy)));
            }
            let what = "reused connection closed; retrying on a new connection";
            Ok((copy, err.into_error(), what))
        }
        _ => Err((Failure::Request(err.into_error()), None)),
    }
}

/// The method and fields of a request head as hyper's HTTP/1.1 client
/// writes it (`METHOD target HTTP/1.1`, then `name: value` lines, then an
/// empty line): what [`crate::upstream::conn::H1::sent_head`] kept.
pub fn parse_written_head(head: &[u8]) -> Option<(Method, http::HeaderMap)> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next()?;
    let method = Method::from_bytes(line.split(|&b| b == b' ').next()?).ok()?;
    let mut headers = http::HeaderMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':')?;
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.append(
            http::HeaderName::from_bytes(&line[..colon]).ok()?,
            http::HeaderValue::from_bytes(value).ok()?,
        );
    }
    Some((method, headers))
}

/// The connection ended before a response came: closed, reset, canceled.
pub fn closed_before_response(e: &hyper::Error) -> bool {
    // `is_timeout`: closed by `http2_keepalive`, the peer silent.
    if e.is_incomplete_message() || e.is_canceled() || e.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return cut_off(io);
        }
        source = err.source();
    }
    false
}

/// An I/O error that says the peer cut the connection: reset, aborted,
/// a write to a closed pipe, or an end before the message did.
pub fn cut_off(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
    )
}

/// hyper's HTTP/2 client dropped the request with its connection's
/// dispatch task ("dispatch task is gone"): a `GOAWAY` read while the
/// request waited for its stream to open (its HEADERS queued, perhaps
/// written) ends that task, and the request with it, instead of failing it
/// with the `GOAWAY`. Whether the upstream processed it is unknown, as for
/// [`closed_before_response`]. `closed`: the lease's `SendRequest::is_closed`
/// after the failure.
///
/// hyper has no `is_dispatch_gone`, and its kind (`User(DispatchGone)`)
/// is public only as [`hyper::Error::is_user`]. The other user errors of a
/// request (its body failing, a header hyper refuses) leave the
/// connection's task running; this one comes only with that task ended,
/// its request queue dropped first (so `closed` holds by then). Matching
/// the message instead would break silently if hyper reworded it.
pub fn dispatch_gone(e: &hyper::Error, closed: bool) -> bool {
    e.is_user() && closed
}

/// A connect the proxy could not make for want of its own descriptors or
/// memory ([`DialError::LocalResources`]): another endpoint fails alike.
pub fn local_resources(e: &Failure) -> bool {
    matches!(e, Failure::Dial(DialError::LocalResources(_)))
}

/// A dial whose TLS handshake failed on ALPN: the endpoint refused every
/// protocol offered (`no_application_protocol`), or chose one not offered.
/// For an upgrade's dial, which offers `http/1.1` alone, that is an
/// HTTP/2-only endpoint: the upgrade is impossible there, and the endpoint
/// is not failing (any client could eject it with upgrade requests).
pub fn alpn_refused(e: &Failure) -> bool {
    use rustls::{AlertDescription, Error, PeerMisbehaved};
    matches!(
        e,
        Failure::Dial(DialError::Tls(
            Error::AlertReceived(AlertDescription::NoApplicationProtocol)
                | Error::PeerMisbehaved(PeerMisbehaved::SelectedUnofferedApplicationProtocol)
        ))
    )
}

/// The cause of another request's dial, which this one waited for
/// ([`DialError::Waited`]): that dial is the endpoint's verdict, not this.
pub fn waited(e: &Failure) -> bool {
    matches!(e, Failure::Dial(DialError::Waited(_)))
}

/// The cause of a failed dial: metric reason, description, status.
pub fn diagnose_dial(d: &DialError) -> (&'static str, String, StatusCode) {
    match d {
        DialError::Limit(limit) => (
            "connection_limit",
            limit.to_string(),
            StatusCode::GATEWAY_TIMEOUT,
        ),
        DialError::Timeout => (
            "connect_timeout",
            "connect timed out".into(),
            StatusCode::GATEWAY_TIMEOUT,
        ),
        DialError::Refused => (
            "connect_refused",
            "connection refused".into(),
            StatusCode::BAD_GATEWAY,
        ),
        DialError::Tls(tls) => {
            let (reason, desc) = crate::tls::client::classify(tls);
            (reason, desc, StatusCode::BAD_GATEWAY)
        }
        // The proxy's own failure, as nginx answers a failed
        // `socket()`: a 502 would say the upstream failed.
        DialError::LocalResources(_) => (
            "local_resources",
            d.to_string(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        DialError::Io(_) | DialError::ServerName(_) => {
            ("connect_error", d.to_string(), StatusCode::BAD_GATEWAY)
        }
        DialError::Handshake(_) => ("protocol", d.to_string(), StatusCode::BAD_GATEWAY),
        // A dial this request waited for: that dial's cause.
        DialError::Waited(w) => (w.reason, d.to_string(), w.status),
    }
}

/// The cause of a failed upstream request: metric reason, description, status.
pub fn diagnose(e: &Failure) -> (&'static str, String, StatusCode) {
    match e {
        Failure::Dial(d) => diagnose_dial(d),
        Failure::ConnectionTls(tls) => {
            let (reason, desc) = crate::tls::client::classify(tls);
            (reason, desc, StatusCode::BAD_GATEWAY)
        }
        Failure::TooManyFields => (
            "protocol",
            format!("upstream response has more than {MAX_RESPONSE_FIELDS} header fields"),
            StatusCode::BAD_GATEWAY,
        ),
        Failure::Framing(why) => ("protocol", (*why).into(), StatusCode::BAD_GATEWAY),
        Failure::Request(e) | Failure::AfterHead(e) => diagnose_request(e),
        Failure::Unsent(_) => (
            "protocol",
            "the upstream connection closed before the request was sent (the server shutting it down)"
                .into(),
            StatusCode::BAD_GATEWAY,
        ),
        // Not the server shutting down: its keep-alive timeout, shorter
        // than `idle_timeout`, which SPEC tells operators to set below it.
        Failure::IdleClosed(_) => (
            "protocol",
            "the upstream closed the pooled HTTP/1.1 connection while it was idle, before the \
             request was written (most likely its keep-alive timeout is shorter than the \
             upstream's idle_timeout: set idle_timeout below it)"
                .into(),
            StatusCode::BAD_GATEWAY,
        ),
    }
}

/// The cause of a request (or of its response body) failed by the
/// upstream on an established connection: metric reason, description,
/// status.
pub fn diagnose_request(e: &hyper::Error) -> (&'static str, String, StatusCode) {
    // hyper's only client timeout: `http2_keepalive` closed the
    // connection under the request.
    if e.is_timeout() {
        return (
            "keepalive_timeout",
            "no answer to an HTTP/2 PING within http2_keepalive.timeout".into(),
            StatusCode::BAD_GATEWAY,
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            let (reason, desc) = crate::tls::client::classify(tls);
            return (reason, desc, StatusCode::BAD_GATEWAY);
        }
        // hyper says only "http2 error".
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && h2.is_remote()
            && let Some(code) = h2.reason()
        {
            let what = if h2.is_go_away() {
                "shut the connection down before processing the request: GOAWAY"
            } else {
                "reset the request: RST_STREAM"
            };
            return (
                "protocol",
                format!("the upstream {what} {code:?}"),
                StatusCode::BAD_GATEWAY,
            );
        }
        // What hotproxy's own HTTP/2 refused in what the upstream sent (a
        // frame it may not send, a header block too large, DATA past its
        // `content-length`): h2's words and the code it answered with.
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && h2.is_library()
            && let Some(code) = h2.reason()
        {
            return (
                "protocol",
                format!("the upstream broke HTTP/2 ({code:?}): {h2}"),
                StatusCode::BAD_GATEWAY,
            );
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                let (reason, desc) = crate::tls::client::classify(tls);
                return (reason, desc, StatusCode::BAD_GATEWAY);
            }
            // Over HTTP/2, h2 keeps an I/O error's cause as text
            // only: a TLS alert after a TLS 1.3 handshake (an
            // upstream refusing our client certificate) is known
            // by rustls's words for it.
            if let Some(tls) = io.get_ref().and_then(|i| alert_in_text(&i.to_string())) {
                let (reason, desc) = crate::tls::client::classify(&tls);
                return (reason, desc, StatusCode::BAD_GATEWAY);
            }
            // hotproxy's own bound on 1xx responses, in its own words: the
            // connection did not fail, the upstream flooded it.
            if let Some(flood) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<InformationalFlood>())
            {
                return ("protocol", flood.to_string(), StatusCode::BAD_GATEWAY);
            }
            return (
                "protocol",
                format!("upstream connection failed: {io}"),
                StatusCode::BAD_GATEWAY,
            );
        }
        source = err.source();
    }
    (
        "protocol",
        format!("upstream request failed: {e}"),
        StatusCode::BAD_GATEWAY,
    )
}

/// The alert in rustls's words for it (`received fatal alert:
/// CertificateRequired`), for the alerts [`crate::tls::client::classify`]
/// reads as a refused client certificate.
fn alert_in_text(text: &str) -> Option<rustls::Error> {
    use rustls::AlertDescription as A;
    let name = text.strip_prefix("received fatal alert: ")?;
    [
        A::BadCertificate,
        A::CertificateRequired,
        A::UnknownCA,
        A::CertificateExpired,
        A::CertificateRevoked,
        A::UnsupportedCertificate,
        A::CertificateUnknown,
        A::AccessDenied,
        A::DecryptError,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
    .map(rustls::Error::AlertReceived)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head as hyper writes it reads back as the method and fields it
    /// was written from: repeated fields in order, values byte for byte.
    #[test]
    fn a_written_head_reads_back_as_its_method_and_fields() {
        let head = b"DELETE /items/1?x=%20 HTTP/1.1\r\nhost: a.example.com\r\nx-two: 1\r\nx-two:  two spaces \r\nx-raw: caf\xc3\xa9\r\nx-empty: \r\n\r\n";
        let (method, headers) = parse_written_head(head).expect("parsed");
        assert_eq!(method, Method::DELETE);
        let fields: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            fields,
            [
                ("host", &b"a.example.com"[..]),
                ("x-two", b"1"),
                ("x-two", b" two spaces "),
                ("x-raw", "café".as_bytes()),
                ("x-empty", b""),
            ]
        );
        assert!(parse_written_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_none());
    }

    #[test]
    fn a_refusal_alert_in_text_is_a_refused_client_certificate() {
        // What hyper hands back over HTTP/2: h2 kept rustls's error as text.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired).to_string(),
        );
        let inner = io.get_ref().unwrap().to_string();
        let tls = alert_in_text(&inner).expect("recognised");
        assert_eq!(crate::tls::client::classify(&tls).0, "client_cert_refused");
        for other in [
            "received fatal alert: HandshakeFailure",
            "received fatal alert: CertificateRequiredX",
            "peer closed connection without sending TLS close_notify",
        ] {
            assert!(alert_in_text(other).is_none(), "{other}");
        }
    }

    #[test]
    fn a_tls_errors_own_text_is_cut() {
        let long = rustls::Error::General("x".repeat(100_000));
        let (reason, desc) = crate::tls::client::classify(&long);
        assert_eq!(reason, "tls");
        assert!(desc.len() < 600, "{} bytes", desc.len());
        assert!(desc.ends_with("xx… (cut)"), "{desc}");
    }
}
