//! A request's checks before routing: method, one authority, normalised path.
//!
//! After [`prepare`] a request has exactly one authority, in `Host` (RFC
//! 9112 §3.2, RFC 9113 §8.3.1): the one it is routed on and the one the
//! upstream receives. Its path is normalised ([`crate::proxy::path`]), so
//! the path routed on is the path forwarded.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode, Uri, Version};

use crate::proxy::forward::{ResponseBody, error_response};
use crate::proxy::path::{PathError, normalise};

/// Why a request is answered by the proxy itself, before any routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("CONNECT is not supported")]
    Connect,
    #[error("TRACE is not supported")]
    Trace,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("missing Host header")]
    MissingHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("Host header differs from :authority")]
    HostMismatch,
    #[error("invalid request path: {0}")]
    Path(#[from] PathError),
    #[error("unsupported Transfer-Encoding")]
    TransferCoding,
    #[error("chunked applied more than once")]
    ChunkedTwice,
    /// An upgrade (a WebSocket handshake) with a chunked body: see
    /// [`prepare`].
    #[error("Upgrade request with a chunked body")]
    ChunkedUpgrade,
    #[error("more than {MAX_HEADER_FIELDS} header fields")]
    TooManyHeaders,
    /// `Connection` names more distinct headers than a head may carry
    /// ([`crate::proxy::hop::nominates_too_many`]).
    #[error("Connection nominates more than {MAX_HEADER_FIELDS} header names")]
    TooManyNominated,
    #[error("authority-form target without CONNECT")]
    AuthorityForm,
    #[error("asterisk-form target without OPTIONS")]
    AsteriskForm,
    #[error("header field value with leading or trailing whitespace")]
    PaddedValue,
    /// Read as Tomcat and Jetty read it (`;` parameters dropped), the
    /// path would take another route ([`crate::proxy::router::Router::matched`]).
    #[error("path parameters (';') would change the route")]
    RouteByParams,
}

/// Header fields a request may carry: hyper's HTTP/1.1 parser stops at
/// this many (its default, left as is: setting it moves hyper's header
/// buffer to the heap for every request) and [`crowded`] holds HTTP/2 to
/// the same, as Envoy's `max_headers_count` (100) and HAProxy's
/// `tune.http.maxhdr` (101) do.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Whether a request as received carries more header fields than
/// [`MAX_HEADER_FIELDS`] (only an HTTP/2 one can get this far). Its
/// `cookie` fields count as one: a browser may send one per cookie (RFC
/// 9113 §8.2.3, Firefox does), which are joined into one for the
/// upstream, and Envoy too joins them before counting; one field each,
/// 98 cookies and a few headers got 431 where the same in one field
/// passed.
pub fn crowded<B>(req: &Request<B>) -> bool {
    let fields = req.headers().len();
    if fields <= MAX_HEADER_FIELDS {
        return false;
    }
    let cookies = req.headers().get_all(header::COOKIE).iter().count();
    fields - cookies.saturating_sub(1) > MAX_HEADER_FIELDS
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Connect | Refused::Trace => StatusCode::METHOD_NOT_ALLOWED,
            // RFC 9112 §6.1, and what nginx answers.
            Refused::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            Refused::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The access log's `authz` for the refusal: why, in the words a
    /// refused head's line uses for the same status (`bad_request`,
    /// `header_too_large`), so one filter finds both.
    pub fn authz(self) -> &'static str {
        match self.status() {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_IMPLEMENTED => "not_implemented",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "header_too_large",
            _ => "bad_request",
        }
    }

    /// The short plain-text answer the client gets.
    pub fn response(self) -> http::Response<ResponseBody> {
        let mut resp = error_response(self.status(), &self.to_string());
        if matches!(
            self,
            Refused::TransferCoding | Refused::ChunkedTwice | Refused::ChunkedUpgrade
        ) {
            // Framing another parser may read otherwise: nothing more is
            // read from this connection (hyper closes after the answer).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Refused::Connect | Refused::Trace) {
            // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
        }
        resp
    }
}

/// Which of the names asked about before routing a request carries, found
/// in one pass over its names (a hash and a probe each otherwise): most
/// requests carry none of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Named {
    /// `Connection`: the headers it names go first.
    pub connection: bool,
    /// `Upgrade`: [`crate::proxy::tunnel::is_tunnelled`] may say yes. A
    /// `Connection` naming it keeps it (an option, not a field name).
    pub upgrade: bool,
    /// `X-Request-Id`: a client's id may be kept. (A `Connection` naming
    /// it removed it: then it is looked for and not found.)
    pub request_id: bool,
}

impl Named {
    /// The names a request carries, and the headers its `Connection`
    /// names removed: first, before hotproxy adds anything
    /// ([`crate::proxy::headers::strip_connection_nominated`]).
    /// The names its `Connection` nominated come back too (none: no
    /// allocation), for its trailers to lose; or, when it nominates more
    /// than a head may carry fields, the refusal (nothing removed).
    pub fn first_pass(
        headers: &mut http::HeaderMap,
    ) -> (Named, Result<Vec<http::HeaderName>, Refused>) {
        let mut named = Named::default();
        for name in headers.keys() {
            named.connection |= *name == header::CONNECTION;
            named.upgrade |= *name == header::UPGRADE;
            named.request_id |= *name == crate::proxy::request_id::X_REQUEST_ID;
        }
        let nominated = if !named.connection {
            Ok(Vec::new())
        } else if crate::proxy::hop::nominates_too_many(headers) {
            Err(Refused::TooManyNominated)
        } else {
            Ok(crate::proxy::headers::strip_connection_nominated(headers))
        };
        (named, nominated)
    }

    /// Whether `req` asks for an upgrade hotproxy tunnels
    /// ([`crate::proxy::tunnel::is_tunnelled`]); without `Upgrade`, no.
    pub fn tunnelled<B>(&self, req: &Request<B>) -> bool {
        self.upgrade && crate::proxy::tunnel::is_tunnelled(req.version(), req.headers())
    }
}

/// Check `req` and bring it to the one form routing and forwarding use:
/// `Host` set to the request's authority (an absolute-form target or h2
/// `:authority` wins over a client's `Host`), the path normalised.
pub fn prepare<B: hyper::body::Body>(
    req: &mut Request<B>,
    hosts: &HostMemo,
) -> Result<(), Refused> {
    // In any case: a method is case-sensitive (RFC 9110 §9.1), but some
    // backends read it without case (Jetty 9.4's default compliance makes
    // `trace` TRACE; Django and Werkzeug upper-case it), so `trace` would
    // reach them as the method refused here. nginx refuses any lowercase
    // method. A method's length settles most requests.
    let method = req.method().as_str();
    if method.eq_ignore_ascii_case(Method::CONNECT.as_str()) {
        return Err(Refused::Connect);
    }
    // TRACE echoes the request as the upstream received it: the headers
    // hotproxy adds (client certificate, forwarding, request id) would be
    // reflected to the client, and to script on a page (cross-site
    // tracing). Refused as nginx does.
    if method.eq_ignore_ascii_case(Method::TRACE.as_str()) {
        return Err(Refused::Trace);
    }
    let h2 = req.version() == Version::HTTP_2;
    if h2 && padded(req.headers()) {
        return Err(Refused::PaddedValue);
    }
    // A request hyper knows to be empty has no transfer coding (chunked
    // is never known empty): most requests skip the header lookup.
    if !req.body().is_end_stream() {
        transfer_codings(req.headers())?;
        // An upgrade hotproxy would tunnel, with a chunked body: a WebSocket
        // handshake has none (RFC 6455 §4.1: a GET), and such a request may
        // have carried a `Content-Length` too, which hyper drops unseen
        // (RFC 9112 §6.3: chunked wins). A front proxy reading that
        // `Content-Length` would take the end of the body for the start of
        // the tunnel, or the other way round: whatever follows would reach
        // the backend as tunnel bytes neither side framed alike. Refused,
        // the connection closed after the answer.
        if req.headers().contains_key(header::TRANSFER_ENCODING)
            && crate::proxy::tunnel::is_tunnelled(req.version(), req.headers())
        {
            return Err(Refused::ChunkedUpgrade);
        }
    }
    authority_with(req, hosts)?;
    let target = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    if !target.starts_with('/') && target != "*" {
        // `:path: ?x` (h2 takes it): read as `/` for routing, it reached
        // the upstream as sent, where an HTTP/2 server resets it as
        // malformed (RFC 9113 §8.3.1), a failure counted against the
        // endpoint. Refused as nginx does. HTTP/1.1's
        // `http://a.example?x` has an empty path, which is `/` (RFC
        // 9112 §3.2.1, as nginx reads it).
        let empty_path = target.is_empty() || target.starts_with('?');
        if h2 || req.uri().scheme().is_none() || !empty_path {
            return Err(Refused::Path(PathError::NoLeadingSlash));
        }
        let rooted = PathAndQuery::try_from(format!("/{target}"))
            .map_err(|_| Refused::Path(PathError::NoLeadingSlash))?;
        set_path_and_query(req, rooted)?;
    }
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        // `GET *`: the asterisk names the server itself, for OPTIONS alone
        // (RFC 9112 §3.2.4, RFC 9113 §8.3.1). Forwarded, it would reach a
        // backend as a path no route prefix covers.
        return Err(Refused::AsteriskForm);
    }
    let normalised = match normalise(req.uri().path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(p) => p,
    };
    let path_and_query = match req.uri().query() {
        Some(q) => PathAndQuery::try_from(format!("{normalised}?{q}")),
        None => PathAndQuery::try_from(normalised),
    }
    .map_err(|_| Refused::Path(PathError::BadPercent))?;
    set_path_and_query(req, path_and_query)
}

/// Whether a field value starts or ends with SP or HTAB: an HTTP/2
/// request carrying one is malformed (RFC 9113 §8.2.1). The h2 crate takes
/// it, and an HTTP/1.1 backend trims that whitespace (RFC 9112 §5.1), so
/// it would read another value than the one hotproxy's rules and logs saw.
/// (HTTP/1.1's parser trims it on the way in.) Two bytes a value. Trailers
/// too ([`crate::proxy::trailers::clean_request`]).
pub(crate) fn padded(headers: &http::HeaderMap) -> bool {
    headers.values().any(|v| {
        let b = v.as_bytes();
        matches!(b.first(), Some(b' ' | b'\t')) || matches!(b.last(), Some(b' ' | b'\t'))
    })
}

/// The `Host` checks of [`prepare`] alone (what the `redirect_https`
/// listener needs): at most one `Host`, valid, and present on HTTP/1.1;
/// an absolute-form target's or HTTP/2 `:authority`'s authority wins, in
/// one spelling. An authority-form target is refused here too: it names
/// no path, and no authority a `Host` agrees with.
pub fn one_authority<B>(req: &mut Request<B>) -> Result<(), Refused> {
    authority_with(req, &HostMemo::default())
}

/// The `Host` value a connection's requests last took from their target's
/// authority (HTTP/2's `:authority`, which carries no `Host`): the next
/// request naming the same authority, as a connection's requests do,
/// shares its bytes instead of copying them into an allocation of its own.
#[derive(Default)]
pub struct HostMemo(std::sync::Mutex<Option<HeaderValue>>);

impl HostMemo {
    fn value(&self, authority: &str) -> Result<HeaderValue, Refused> {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(same) = last
            .as_ref()
            .filter(|v| v.as_bytes() == authority.as_bytes())
        {
            return Ok(same.clone());
        }
        let value = HeaderValue::from_str(authority).map_err(|_| Refused::InvalidHost)?;
        *last = Some(value.clone());
        Ok(value)
    }
}

/// [`one_authority`], a `Host` made from the target's authority taken from
/// `memo` when it is the one made last.
fn authority_with<B>(req: &mut Request<B>, memo: &HostMemo) -> Result<(), Refused> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refused::DuplicateHost);
    }
    // An empty `Host` names no host (an http URI's host is never empty,
    // RFC 9110 §4.2.1): it would take a catch-all route and reach the
    // upstream empty. nginx answers 400.
    if host.is_some_and(|h| h.is_empty() || !valid_authority(h.as_bytes())) {
        return Err(Refused::InvalidHost);
    }
    let h2 = req.version() == Version::HTTP_2;
    if req.version() == Version::HTTP_11 && host.is_none() {
        // RFC 9112 §3.2: even with an absolute-form target.
        return Err(Refused::MissingHost);
    }
    if req.uri().authority().is_some() && req.uri().scheme().is_none() {
        // `GET host:port HTTP/1.1`: authority-form is CONNECT's alone
        // (RFC 9112 §3.2.3); there is no path to route on.
        return Err(Refused::AuthorityForm);
    }
    // One spelling of the host: a fully qualified name's trailing dot is
    // dropped (as nginx does), so `admin.example.` cannot miss the route
    // (and `allow`) of `admin.example`; an IPv6 literal is written as a
    // route's `host` is. Without a target authority the `Host` read above
    // is the one that stays, and is not looked up again; nor is a `Host`
    // made from the target's authority, which is respelled first and
    // inserted once.
    let respelled = if let Some(authority) = req.uri().authority() {
        let target = authority.as_str();
        if !valid_authority(target.as_bytes()) {
            return Err(Refused::InvalidHost);
        }
        let same = host.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(target.as_bytes()));
        if same {
            host.and_then(respelled)
        } else {
            // RFC 9113 §8.3.1: a Host naming another entity than :authority
            // makes the request malformed (the scheme's default port written
            // out in one alone names the same); :authority is taken.
            let scheme = req.uri().scheme_str();
            if h2 && host.is_some_and(|h| !same_entity(h.as_bytes(), target.as_bytes(), scheme)) {
                return Err(Refused::HostMismatch);
            }
            // RFC 9112 §3.2.2: a proxy replaces Host with the target's
            // authority. (h2 without Host: Host carries :authority.)
            let fixed = without_root_dot(target);
            if fixed.is_none() {
                let value = memo.value(target)?;
                req.headers_mut().insert(header::HOST, value);
            }
            fixed
        }
    } else {
        host.and_then(respelled)
    };
    if let Some(fixed) = respelled {
        let value = HeaderValue::from_str(&fixed).map_err(|_| Refused::InvalidHost)?;
        req.headers_mut().insert(header::HOST, value);
    }
    Ok(())
}

/// Whether authorities `a` and `b`, both [`valid_authority`], name one
/// host (any case) and port, a port left out (or empty) being `scheme`'s
/// default: `a.example:443` is `a.example` over https.
fn same_entity(a: &[u8], b: &[u8], scheme: Option<&str>) -> bool {
    let default: &[u8] = match scheme {
        Some("https") => b"443",
        Some("http") => b"80",
        _ => b"",
    };
    // At the last `:` with digits alone after it (an IPv6 literal ends `]`).
    fn split<'a>(x: &'a [u8], default: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        match x.iter().rposition(|&c| c == b':') {
            Some(i) if x[i + 1..].iter().all(u8::is_ascii_digit) => {
                let port = &x[i + 1..];
                (&x[..i], if port.is_empty() { default } else { port })
            }
            _ => (x, default),
        }
    }
    let ((host_a, port_a), (host_b, port_b)) = (split(a, default), split(b, default));
    host_a.eq_ignore_ascii_case(host_b) && port_a == port_b
}

/// `req`'s target with `path_and_query` in place of its own.
fn set_path_and_query<B>(
    req: &mut Request<B>,
    path_and_query: PathAndQuery,
) -> Result<(), Refused> {
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(path_and_query);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Refused::Path(PathError::BadPercent))?;
    Ok(())
}

/// An HTTP/1.1 body's transfer codings must be `chunked`, once. hyper
/// decodes only `chunked` (and refuses a request whose last coding is
/// another); any coding before it (`gzip, chunked`) would be dropped
/// unseen, and the upstream handed a body it cannot read. (HTTP/2 has no
/// transfer codings; the h2 layer refuses the header.)
fn transfer_codings(headers: &http::HeaderMap) -> Result<(), Refused> {
    let mut chunked = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let value = value.to_str().map_err(|_| Refused::TransferCoding)?;
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(Refused::TransferCoding);
            }
            chunked += 1;
        }
    }
    match chunked {
        0 | 1 => Ok(()),
        _ => Err(Refused::ChunkedTwice),
    }
}

/// The authority a prepared request is routed on.
pub fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// [`without_root_dot`] of a `Host` value.
fn respelled(host: &HeaderValue) -> Option<String> {
    host.to_str().ok().and_then(without_root_dot)
}

/// `authority` without the trailing dot of its host (`a.example.:443` is
/// `a.example:443`), or with its IPv6 literal in the one form a route's
/// `host` is stored in (`[2001:DB8:0:0::10]` is `[2001:db8::10]`, so it
/// cannot miss that route and its rules); `None` when it is so already.
fn without_root_dot(authority: &str) -> Option<String> {
    if let Some(literal) = authority.strip_prefix('[') {
        let (ip, port) = literal.split_once(']')?;
        let canonical = ip.parse::<std::net::Ipv6Addr>().ok()?.to_string();
        return (canonical != ip).then(|| format!("[{canonical}]{port}"));
    }
    // The port is short: found from the end, byte by byte.
    let b = authority.as_bytes();
    let (host, port) = match b.iter().rposition(|&c| c == b':') {
        Some(i) if b[i + 1..].iter().all(u8::is_ascii_digit) => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    };
    let bare = host.strip_suffix('.').filter(|b| !b.is_empty())?;
    Some(match port {
        Some(p) => format!("{bare}:{p}"),
        None => bare.to_owned(),
    })
}

/// `host [":" port]` as RFC 3986 §3.2 spells it: an IP literal in
/// brackets or a reg-name (no userinfo, path or whitespace), then at most
/// one `:` and a port of digits alone; and no empty label (`a..b`,
/// `.a.example`, `.` alone), which names no host (nginx answers 400 too);
/// one trailing dot is the root's, as in `a.example.`. An empty value is
/// allowed (RFC 9112 §3.2: a target without an authority), an empty host
/// with a port is not.
///
/// `.public.example` was let through: the per-name entry lookup
/// ([`crate::tls::per_name::PerName::position_of_host`]) read it as one
/// label under `*.public.example`, so no 421, while the router's wildcard
/// wants a non-empty label and sent it to a host-less route, under the
/// client auth of the public name's entry.
///
/// A reg-name is a host name: letters, digits, `-`, `.` and `_` (RFC
/// 3986 would allow sub-delimiters and `%` too). `admin.example,` missed
/// the route for `admin.example` and took a catch-all, while the backend
/// got it in `Host` and `X-Forwarded-Host`, where a comma makes a list:
/// Express and Spring read its first element, `admin.example`.
///
/// The port is strict because routing and the backend must read the same
/// host: `a.example:443:1` or `a.example:x` misses the route for
/// `a.example` (the router strips only a port of digits) and would take a
/// catch-all route, while a backend that cuts the host at its first `:`
/// (Express's `req.hostname`, nginx's `$host`) reads `a.example`.
fn valid_authority(b: &[u8]) -> bool {
    let (host, port) = if b.first() == Some(&b'[') {
        let Some(end) = b.iter().position(|&c| c == b']') else {
            return false;
        };
        // An IPv6 address, nothing else: `[10.0.0.1]` or `[cafe.be]` would
        // be routed as the bare host (the router strips the brackets)
        // while the backend's virtual hosts read another. (IPvFuture,
        // `[v1.x]`, names no host anyone serves.)
        let literal = &b[1..end];
        let ipv6 = std::str::from_utf8(literal)
            .ok()
            .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok());
        if ipv6.is_none() {
            return false;
        }
        match &b[end + 1..] {
            [] => (&b[..0], None),
            [b':', port @ ..] => (&b[..0], Some(port)),
            _ => return false,
        }
    } else {
        match b.iter().position(|&c| c == b':') {
            Some(0) => return false,
            Some(i) => (&b[..i], Some(&b[i + 1..])),
            None => (b, None),
        }
    };
    if !port.is_none_or(|p| p.iter().all(u8::is_ascii_digit)) {
        return false;
    }
    // One pass: the characters, and no label empty (a `.` first, or
    // after another).
    let mut after_dot = true;
    host.iter().all(|&c| {
        let ok = match c {
            b'.' => !after_dot,
            b'-' | b'_' => true,
            _ => c.is_ascii_alphanumeric(),
        };
        after_dot = c == b'.';
        ok
    })
}

#[cfg(test)]
mod tests;
