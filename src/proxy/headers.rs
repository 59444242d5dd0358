//! The header policy between client and upstream: forwarding, identity, and hop-by-hop ([`crate::proxy::hop`]).
//!
//! hotproxy sets `X-Forwarded-For` (the client's values joined, then the
//! client address), `X-Forwarded-Proto`, `X-Forwarded-Host` (the authority
//! the request was routed on) and `Via`. The forwarding headers a client
//! could use to lie about where a request came from or how it reached the
//! proxy (`Forwarded`, `X-Real-IP`, every `X-Forwarded-*`, such as the
//! `X-Forwarded-Prefix` frameworks take as the path base, and other
//! proxies' client-address headers such as `CF-Connecting-IP`) are removed or
//! replaced, unless the client is one of the listener's `trusted_proxies`
//! (`trusts_forwarding`): then they are kept, and `X-Forwarded-For` and
//! `Forwarded` extended with the client address. Client-certificate headers are `proxy::client_cert`'s (per
//! `forward_client_cert`, spoofed copies always removed). A client's
//! header whose name reads, `_` as `-`, as one hotproxy sets or replaces
//! (`X_Request_Id`, `x_forwarded_for`, `ssl_client_verify`), or does after
//! CGI's `HTTP_` (`HTTP_CLIENT_IP`), is removed. The common request needs
//! no string building.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::proxy::forward::RequestContext;
use crate::proxy::hop::is_hop_by_hop_name;
pub use crate::proxy::hop::{Message, is_hop_by_hop, strip_connection_nominated, strip_hop_by_hop};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The [`claims_origin`] names outside the `X-Forwarded-` prefix and
/// `Forwarded`, by first byte.
static CLAIMS_ORIGIN_X: [&str; 14] = [
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-envoy-external-address",
    "x-appengine-user-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    // HAProxy's recipe: `1` when its client connection was TLS, as
    // `X-Forwarded-Ssl` says.
    "x-ssl",
];
static CLAIMS_ORIGIN_C: [&str; 4] = [
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "cf-pseudo-ipv4",
    "client-ip",
];
static CLAIMS_ORIGIN_F: [&str; 3] = ["forwarded-for", "fastly-client-ip", "fly-client-ip"];
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
// Consts, checked when compiled: a `from_static` at run time checks each
// byte of every request's value again.
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const VIA_H1: HeaderValue = HeaderValue::from_static("1.1 hotproxy");
const VIA_H2: HeaderValue = HeaderValue::from_static("2 hotproxy");

/// Whether hotproxy vouches for `name` on a request: a header it replaces
/// or removes (`replaced_by_hotproxy`), `Via` or `X-Request-Id`, or a
/// look-alike of one with `_`, `.` or other punctuation for `-`, or of a
/// framing or hop-by-hop header (`strip_client_claims`).
pub fn is_vouched_for(name: &HeaderName) -> bool {
    let n = name.as_str();
    vouched(n) || lookalike(n)
}

/// A header hotproxy sets, replaces or removes on a request: what it
/// replaces or removes ([`replaced_by_hotproxy`]), `Via`, `X-Request-Id`.
fn vouched(n: &str) -> bool {
    replaced_by_hotproxy(n)
        || n == header::VIA.as_str()
        || n == crate::proxy::request_id::X_REQUEST_ID.as_str()
}

/// A name with a byte other than a letter, digit or `-` (`_`, `.`, `+`,
/// `~`, `!`, ...) that reads, each such byte as `-`, as one hotproxy
/// vouches for ([`vouched`]): `X_Request_Id`, `x.forwarded.for`,
/// `ssl_client_verify`; or as a header that frames the message or speaks
/// for one connection ([`frames`]): `Transfer_Encoding`, `Content_Length`,
/// `Keep_Alive`. lighttpd names every such byte `_` for CGI, FastCGI and
/// SCGI (`X.Forwarded.For` is `HTTP_X_FORWARDED_FOR`) and PHP makes `.` in
/// `$_SERVER` keys `_`, so these are all one variable there. So does one
/// that reads, after a leading `HTTP` and such a byte (any case), as one
/// hotproxy vouches for: CGI's name of the header, which code ported from
/// PHP reads as a header's own name (the common Java `getIpAddr` helper
/// takes `HTTP_CLIENT_IP` and `HTTP_X_FORWARDED_FOR` as the client's
/// address); `HTTP_VIA` too, as hotproxy sets `Via`. Not `HTTP_` then a
/// framing or hop-by-hop name (`HTTP_Upgrade`, `HTTP_TE`): no backend
/// frames a body or keeps a connection by one (CGI makes `HTTP_TE`
/// `HTTP_HTTP_TE`), so it is the application's own and passes.
fn lookalike(n: &str) -> bool {
    // Most names have only letters, digits and `-`: one scan settles them.
    n.bytes().any(folds)
        && (dashed_is(n, |d| vouched(d) || frames(d))
            || cgi_unprefixed(n).is_some_and(|rest| dashed_is(rest, vouched)))
}

/// A byte a look-alike may have for `-`: any but a letter, digit or `-`
/// (a name is lowercase here).
fn folds(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b == b'-')
}

/// `n` after a leading `http` (any case) and a byte that [`folds`], if
/// there is more.
fn cgi_unprefixed(n: &str) -> Option<&str> {
    let prefix = n.as_bytes().get(..5)?;
    // Five ASCII bytes: the rest starts on a character boundary.
    (prefix[..4].eq_ignore_ascii_case(b"http") && folds(prefix[4]) && n.len() > 5).then(|| &n[5..])
}

/// Whether `n`, each byte that [`folds`] read as `-`, is a name
/// `protected` picks. Spelled out on the stack: an application's own `_`
/// names (`api_key`) pass here on every request, and a copy on the heap
/// each time was an allocation per such name. Every protected name but the
/// prefix families (`X-Forwarded-*`, `X-Client-Cert-*`, ...) is shorter
/// than the buffer; a longer name is rare and spelled out on the heap.
fn dashed_is(n: &str, protected: impl Fn(&str) -> bool) -> bool {
    let mut buf = [0u8; 64];
    let Some(dashed) = buf.get_mut(..n.len()) else {
        let dashed: String = n
            .bytes()
            .map(|b| if folds(b) { '-' } else { char::from(b) })
            .collect();
        return protected(&dashed);
    };
    for (d, &b) in dashed.iter_mut().zip(n.as_bytes()) {
        *d = if folds(b) { b'-' } else { b };
    }
    // A header name is ASCII, and so is every byte written: this cannot fail.
    let dashed = std::str::from_utf8(dashed).unwrap_or_default();
    protected(dashed)
}

/// `Content-Length` or a hop-by-hop header ([`is_hop_by_hop`]): how a
/// message is framed or a connection kept. Those with a `-` have `_`
/// look-alikes a backend folding `_` (or `.`) into `-` would frame a body by.
fn frames(n: &str) -> bool {
    n == header::CONTENT_LENGTH.as_str() || is_hop_by_hop_name(n)
}

/// A forwarding header ([`claims_origin`]) or a client-certificate header
/// ([`crate::proxy::client_cert::is_identity_header`]): what hotproxy
/// replaces or removes whatever the client sent.
fn replaced_by_hotproxy(n: &str) -> bool {
    claims_origin(n) || crate::proxy::client_cert::is_identity_header(n)
}

/// A header through which a client would claim where it came from, or how
/// the request reached the proxy before hotproxy: `Forwarded`, `X-Real-IP`
/// and every `X-Forwarded-*`, and the client-address headers of other
/// proxies and CDNs that frameworks, rate limiters and logs read as the
/// client's address: `X-Client-IP`, `X-Cluster-Client-IP`, the bare
/// `X-Forwarded` and `Forwarded-For`, `X-Original-Forwarded-For`
/// (ingress-nginx), `X-Envoy-External-Address`, `CF-Connecting-IP` (and
/// `-IPv6`), `True-Client-IP` (Akamai, Cloudflare), `Fastly-Client-IP`,
/// `Cf-Pseudo-IPv4`, `X-AppEngine-User-IP`, `Fly-Client-IP`,
/// `DO-Connecting-IP`, and the bare `Client-IP`, `X-Originating-IP`,
/// `X-Remote-IP` and `X-Remote-Addr` (express's `request-ip`, Django's
/// `ipware`, Rails' `RemoteIp`, Spring's and Rack's remote-IP lists and
/// PHP snippets read these), Google's `X-ProxyUser-Ip`, and
/// `Proxy-Client-IP` and WebLogic's `WL-Proxy-Client-IP` (read by the
/// common Java `getIpAddr` helper). Not only the four hotproxy sets or
/// replaces: ASP.NET and Spring take `X-Forwarded-Prefix` as the path
/// base, Rack reads `X-Forwarded-Scheme` and `X-Forwarded-Ssl`, others
/// `-Uri`, `-Method`, `-Server`; Traefik's `forwardedheaders` removes the
/// family from untrusted peers too. So are `X-Original-URL` and `X-Rewrite-URL`,
/// the path IIS URL Rewrite, ASP.NET and older Symfony and Zend serve in
/// place of the request's (CVE-2018-14773). Every name of every request
/// passes here (a [`HeaderName`] is lowercase): the first byte settles most.
#[inline]
fn claims_origin(n: &str) -> bool {
    match n.as_bytes().first() {
        Some(b'x') => n.starts_with("x-forwarded-") || CLAIMS_ORIGIN_X.contains(&n),
        Some(b'f') => n == FORWARDED.as_str() || CLAIMS_ORIGIN_F.contains(&n),
        Some(b'c') => CLAIMS_ORIGIN_C.contains(&n),
        Some(b't') => n == "true-client-ip",
        Some(b'd') => n == "do-connecting-ip",
        Some(b'p') => n == "proxy-client-ip",
        Some(b'w') => n == "wl-proxy-client-ip",
        _ => false,
    }
}

/// Remove every field whose name `drop` picks. The names are collected
/// first (a map cannot change while it is read); none picked, nothing is
/// allocated.
pub fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let named: Vec<HeaderName> = headers.keys().filter(|n| drop(n)).cloned().collect();
    for n in named {
        headers.remove(n);
    }
}

/// Remove what a client may not say: from one that is not a trusted proxy
/// (`trusted` false) every forwarding header ([`claims_origin`]), and from
/// any client every [`lookalike`]. One pass over the names,
/// which allocates nothing when there is nothing to remove (the common
/// request).
///
/// A client-certificate header among them (`X-Forwarded-Client-Cert`,
/// `X-Forwarded-Tls-Client-Cert*`) is kept here: by now any such header is
/// hotproxy's own (`forward_client_cert: xfcc`), written after every
/// client's copies, trusted or not, were removed
/// ([`crate::proxy::client_cert::apply`]).
///
/// The look-alikes: a client's header whose name, `_` (or `.`, `+`, any
/// byte but a letter, digit or `-`) read as `-`, is one hotproxy
/// sets, replaces or removes ([`vouched`]): a forwarding header, a
/// client-certificate header
/// ([`crate::proxy::client_cert::is_identity_header`]) or `X-Request-Id`
/// (`Via` has no `-`), also after a leading `HTTP_` (CGI's name of the
/// header: `HTTP_CLIENT_IP`, `HTTP_X_FORWARDED_FOR`, which the common Java
/// `getIpAddr` helper reads as header names, and `HTTP_VIA`); or one that
/// frames the message ([`frames`]): `Transfer_Encoding`, `Content_Length`,
/// `Keep_Alive`, `Proxy_Connection` (not after `HTTP_`: `HTTP_Upgrade`
/// is the application's).
/// CGI, WSGI and PHP servers fold `_` and `-` into one
/// variable (`X_Client_Cert_Subject` and `X-Client-Cert-Subject` are both
/// `HTTP_X_CLIENT_CERT_SUBJECT`; lighttpd folds `.` and `+` too), and
/// Puma before 6.4.3 did for any header
/// (CVE-2024-45614), so such a look-alike would reach the backend as, or
/// override, the header hotproxy set: `X_Request_Id` in place of the id
/// a `trust_client: false` listener generated and logged, or a
/// `Transfer_Encoding: chunked` the backend frames the body by where
/// hotproxy read its `Content-Length` (a request smuggled on a pooled
/// connection). The same names
/// are what a request's trailers lose ([`is_vouched_for`]). nginx drops
/// every name with `_` (`underscores_in_headers off`); hotproxy drops only
/// these, so an application's own `api_key` passes.
fn strip_client_claims(headers: &mut HeaderMap, trusted: bool) -> Seen {
    let drop = |n: &str| {
        (!trusted && claims_origin(n) && !crate::proxy::client_cert::is_identity_header(n))
            || lookalike(n)
    };
    // The same pass notes what [`rewrite_request_headers`] asks next, so
    // that it need not hash and probe for each: a client's field dropped
    // here is not noted.
    let mut seen = Seen::default();
    let mut dropped = false;
    for (name, value) in headers.iter() {
        let n = name.as_str();
        if drop(n) {
            dropped = true;
        } else if claims_origin(n) {
            match n {
                "x-forwarded-for" => seen.xff = true,
                "x-forwarded-proto" => seen.xfp = true,
                "x-forwarded-host" => seen.xfh = true,
                "forwarded" => seen.forwarded = true,
                _ => {}
            }
        } else if name == header::HOST {
            // The first value, as `HeaderMap::get` gives (there is one).
            if seen.host.is_none() {
                seen.host = Some(value.clone());
            }
        } else if name == header::VIA {
            seen.via = true;
        } else if name == header::COOKIE {
            seen.cookies = seen.cookies.saturating_add(1);
        } else if name == header::EXPECT {
            seen.expect = true;
        } else if name == header::CONTENT_LENGTH {
            seen.lengths = seen.lengths.saturating_add(1);
        }
    }
    if dropped {
        remove_where(headers, |k| drop(k.as_str()));
    }
    seen
}

/// What a request carries after [`strip_client_claims`], noted in its pass.
#[derive(Default)]
struct Seen {
    xff: bool,
    xfp: bool,
    xfh: bool,
    forwarded: bool,
    via: bool,
    /// `Cookie` fields, counted up to 255.
    cookies: u8,
    host: Option<HeaderValue>,
    expect: bool,
    /// `Content-Length` fields, counted up to 255.
    lengths: u8,
}

/// The one `Content-Length` as hotproxy would write it: the decimal
/// number, no leading zero. hyper's HTTP/1.1 server and h2 take leading
/// zeros (`0005`, valid per RFC 9110 §8.6) and keep the field as sent:
/// forwarded so, a backend reading `0005` as octal or refusing it
/// disagrees with hotproxy on where the body ends (nginx sends its own
/// length). The common value is already canonical and is left alone.
fn canonical_length(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return;
    };
    let digits = value.as_bytes();
    if digits.len() < 2 || digits[0] != b'0' {
        return;
    }
    // The framing layer read the body by this value: it is all digits.
    let length = value.to_str().ok().and_then(|n| n.parse::<u64>().ok());
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// Whether the client's own forwarding headers are believed: only from
/// the listener's `trusted_proxies` (the address after PROXY protocol).
fn trusts_forwarding(ctx: &RequestContext) -> bool {
    ctx.trusted_proxy
}

/// Rewrite a request's headers for the upstream. `Host` is already the
/// request's one authority ([`crate::proxy::request::prepare`]).
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    ctx: &RequestContext,
    h2_client: bool,
    upgrade: bool,
) {
    strip_hop_by_hop(headers, upgrade, Message::Request);
    let trusted = trusts_forwarding(ctx);
    // Not from a trusted proxy, nothing a client says about where it came
    // from survives: what hotproxy sets below replaces it.
    let seen = strip_client_claims(headers, trusted);
    if h2_client && seen.cookies > 0 {
        join_cookies(headers);
    }
    // `Expect` is answered, never forwarded (SPEC): hyper answers an
    // HTTP/1.1 client's `100-continue` once its body is first read (a
    // small body is read whole before any upstream is chosen); a backend
    // told to expect one too could answer 417, or a final status
    // expecting no body, after the client was told to send it. (No 1xx
    // over HTTP/2.)
    if seen.expect {
        headers.remove(header::EXPECT);
    }
    // One `Content-Length` (RFC 9110 §8.6: a proxy must not forward a
    // length field that is not one number). h2 takes an HTTP/2 client's
    // field repeated when every value is the same number (it resets the
    // stream otherwise) and keeps them all; hyper's HTTP/1.1 server keeps
    // one. Forwarded twice, nghttp2 and Netty reset the stream (a 502
    // counted against the endpoint, which any client could cause) and
    // Node's parser answers 400.
    if seen.lengths > 1
        && let Some(first) = headers.get(header::CONTENT_LENGTH).cloned()
    {
        headers.insert(header::CONTENT_LENGTH, first);
    }
    if seen.lengths > 0 {
        canonical_length(headers);
    }
    // The common request has no X-Forwarded-For of its own: the
    // connection's preformatted value is shared, nothing is allocated.
    if !seen.xff {
        headers.insert(X_FORWARDED_FOR.clone(), ctx.client_ip.clone());
    } else if let Some(xff) = appended(
        headers,
        &X_FORWARDED_FOR,
        ctx.client_ip.to_str().unwrap_or(""),
    ) {
        headers.insert(X_FORWARDED_FOR.clone(), xff);
    }
    // A trusted proxy's Forwarded (RFC 7239) is extended with this hop;
    // hotproxy does not start one (X-Forwarded-* is what backends read).
    if trusted && seen.forwarded {
        let mut node = StackStr::default();
        let _ = match ctx.client_addr.ip() {
            std::net::IpAddr::V4(v4) => write!(node, "for={v4};proto=https"),
            std::net::IpAddr::V6(v6) => write!(node, "for=\"[{v6}]\";proto=https"),
        };
        if let Some(f) = appended(headers, &FORWARDED, node.as_str()) {
            headers.insert(FORWARDED.clone(), f);
        }
    }
    // From a trusted proxy its view of the original request stands.
    if !(trusted && seen.xfp) {
        headers.insert(X_FORWARDED_PROTO.clone(), HTTPS);
    }
    if !(trusted && seen.xfh)
        && let Some(host) = seen.host
    {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    let via = if h2_client { VIA_H2 } else { VIA_H1 };
    let via = if seen.via {
        appended(headers, &header::VIA, via.to_str().unwrap_or(""))
    } else {
        Some(via)
    };
    if let Some(via) = via {
        headers.insert(header::VIA, via);
    }
}

/// An HTTP/2 client may split `cookie` into one field per pair (browsers
/// do, so HPACK can index each); before an HTTP/1.1 hop they must be one
/// header joined with `; ` (RFC 9113 §8.2.3), and many applications read
/// only the first `Cookie` line. Joined for an HTTP/2 upstream too, which
/// reads either form, as nginx and Envoy do. Empty fields are skipped
/// (joined in, the header ended in `; `, a trailing space an HTTP/2
/// upstream refuses as malformed); only empty ones, no `cookie` is sent.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    match (values.next(), values.next()) {
        (None, _) => return,
        (Some(one), None) if !one.is_empty() => return,
        _ => {}
    }
    let values = headers.get_all(header::COOKIE);
    let len: usize = values.iter().map(|v| v.len() + 2).sum();
    let mut out = Vec::with_capacity(len);
    for v in values.iter().filter(|v| !v.is_empty()) {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(v.as_bytes());
    }
    if out.is_empty() {
        headers.remove(header::COOKIE);
    } else if let Ok(joined) = HeaderValue::from_maybe_shared(bytes::Bytes::from(out)) {
        headers.insert(header::COOKIE, joined);
    }
}

/// Every value of `name`, in order, joined by `, `, then `last`: repeated
/// list headers are one list (RFC 9110 §5.3).
fn appended(headers: &HeaderMap, name: &HeaderName, last: &str) -> Option<HeaderValue> {
    let values = headers.get_all(name);
    let len: usize = values.iter().map(|v| v.len() + 2).sum();
    if len == 0 {
        return HeaderValue::from_str(last).ok();
    }
    let mut out = Vec::with_capacity(len + last.len());
    for v in values {
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last.as_bytes());
    // The joined bytes become the value as they are: no second copy.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
}

/// A client address formatted without a heap allocation (IPv6 is at most
/// 45 characters; a `Forwarded` element adds 24).
struct StackStr {
    buf: [u8; 72],
    len: usize,
}

impl Default for StackStr {
    fn default() -> StackStr {
        StackStr {
            buf: [0; 72],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `addr`'s IP as a header value, for [`crate::proxy::forward::RequestContext::client_ip`].
pub fn client_ip_value(addr: std::net::SocketAddr) -> HeaderValue {
    let v = HeaderValue::from_str(&addr.ip().to_string())
        .expect("an IP address is a valid header value");
    // The first clone of bytes made from a Vec moves them to a shared,
    // reference-counted block; doing it here keeps it off the first request.
    drop(v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::client_ip_value;
    use super::*;

    fn ctx(_cert: bool) -> RequestContext {
        RequestContext {
            listener: "public".into(),
            client_addr: "10.1.2.3:5555".parse().unwrap(),
            client_cert: None,
            tls_sni: None,
            served_from: std::sync::Arc::new(crate::tls::server::SniResolver::none()),
            served: None,
            trusted_proxy: false,
            tls_version: None,
            resumed: false,
            entry: None,
            body_read_timeout: std::time::Duration::from_secs(60),
            body_buffer_bytes: 16_384,
            max_body_bytes: 0,
            client_ip: client_ip_value("10.1.2.3:5555".parse().unwrap()),
            hosts: Default::default(),
        }
    }

    /// Hop-by-hop headers go, proxy headers are set (client-certificate
    /// headers are `client_cert`'s, tested there and end to end).
    #[test]
    fn rewrites_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example.com"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop, Host"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        for spoof in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-port",
            "x-forwarded-proto",
            "x-forwarded-host",
        ] {
            h.insert(spoof, HeaderValue::from_static("spoofed"));
        }
        rewrite_request_headers(&mut h, &ctx(true), false, false);
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "forwarded",
            "x-real-ip",
            "x-forwarded-port",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        // The client takes trailers, as hotproxy does: the upstream may send them.
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["host"], "app.example.com");
        // Not a trusted proxy: its X-Forwarded-For is replaced.
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        assert_eq!(h["via"], "1.1 hotproxy");

        let mut h2 = HeaderMap::new();
        h2.insert(header::HOST, HeaderValue::from_static("a:1"));
        h2.insert(header::TE, HeaderValue::from_static("trailers"));
        h2.insert(header::VIA, HeaderValue::from_static("1.1 edge"));
        rewrite_request_headers(&mut h2, &ctx(false), true, false);
        assert_eq!(h2["host"], "a:1");
        assert_eq!(h2["te"], "trailers");
        assert_eq!(h2["via"], "1.1 edge, 2 hotproxy");
        assert_eq!(h2["x-forwarded-for"], "10.1.2.3");
    }

    /// From a trusted proxy the forwarding headers are kept and extended.
    #[test]
    fn trusted_proxy_headers_kept_and_extended() {
        let mut c = ctx(false);
        c.trusted_proxy = true;
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example.com"));
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        h.insert("forwarded", HeaderValue::from_static("for=192.0.2.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("www.example.com"),
        );
        h.insert("x-real-ip", HeaderValue::from_static("192.0.2.1"));
        rewrite_request_headers(&mut h, &c, false, false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 192.0.2.2, 10.1.2.3");
        assert_eq!(h["forwarded"], "for=192.0.2.1, for=10.1.2.3;proto=https");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "www.example.com");
        assert_eq!(h["x-real-ip"], "192.0.2.1");

        c.client_addr = "[2001:db8::1]:1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("for=192.0.2.1"));
        rewrite_request_headers(&mut h, &c, false, false);
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.1, for=\"[2001:db8::1]\";proto=https"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    /// Every `X-Forwarded-*` goes from an untrusted client, with its
    /// look-alikes, but not hotproxy's own client-certificate headers
    /// (written before); a trusted proxy's pass, its look-alikes do not.
    #[test]
    fn the_whole_x_forwarded_family_is_a_trusted_proxys_only() {
        let sent = [
            "x-forwarded-prefix",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-uri",
            "x_forwarded_prefix",
            "x-forwarded_server",
        ];
        let ours = ["x-forwarded-client-cert", "x-forwarded-tls-client-cert"];
        for trusted in [false, true] {
            let mut c = ctx(false);
            c.trusted_proxy = trusted;
            let mut h = HeaderMap::new();
            for n in sent.iter().chain(&ours) {
                h.insert(*n, HeaderValue::from_static("1"));
            }
            h.insert("x-forwardedness", HeaderValue::from_static("1"));
            rewrite_request_headers(&mut h, &c, false, false);
            for n in &sent[..4] {
                assert_eq!(h.contains_key(*n), trusted, "{n}, trusted: {trusted}");
            }
            for n in &sent[4..] {
                assert!(!h.contains_key(*n), "{n}, trusted: {trusted}");
            }
            for n in ours.iter().chain(&["x-forwardedness"]) {
                assert_eq!(h[*n], "1", "{n}, trusted: {trusted}");
            }
        }
        for n in sent {
            assert!(is_vouched_for(&HeaderName::from_static(n)), "{n}");
        }
        assert!(!is_vouched_for(&HeaderName::from_static("x-forwardedness")));
    }

    /// Look-alikes of framing and hop-by-hop names go from every client
    /// (and from trailers); another name with `_` is the application's.
    #[test]
    fn framing_lookalikes_are_vouched_for() {
        for n in [
            "transfer_encoding",
            "content_length",
            "keep_alive",
            "proxy_connection",
            "http2_settings",
            "transfer.encoding",
            "content+length",
        ] {
            assert!(is_vouched_for(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "api_key",
            "content_type",
            "x_custom",
            "api.key",
            "x-custom.thing",
        ] {
            assert!(!is_vouched_for(&HeaderName::from_static(n)), "{n}");
        }
        let mut h = HeaderMap::new();
        h.insert("transfer_encoding", HeaderValue::from_static("chunked"));
        h.insert("api_key", HeaderValue::from_static("k"));
        let mut c = ctx(false);
        c.trusted_proxy = true;
        rewrite_request_headers(&mut h, &c, true, false);
        assert!(!h.contains_key("transfer_encoding"));
        assert_eq!(h["api_key"], "k");
    }

    /// Google's `X-ProxyUser-Ip`, `Proxy-Client-IP` and WebLogic's
    /// `WL-Proxy-Client-IP` are client-address headers, a trusted proxy's
    /// only; CGI's names of any header hotproxy vouches for (`HTTP_` then
    /// the name with `_`, as the Java `getIpAddr` helper reads
    /// `HTTP_CLIENT_IP`; `HTTP_VIA`, as hotproxy sets `Via`) are
    /// look-alikes, removed from every client; an application's own names,
    /// `HTTP_` or not, pass, and so do `HTTP_` then a framing or hop-by-hop
    /// name (`HTTP_Upgrade`, `HTTP_TE`): CGI makes `HTTP_TE` `HTTP_HTTP_TE`,
    /// no backend frames a body or keeps a connection by it.
    #[test]
    fn java_and_cgi_client_address_names() {
        let claims = ["x-proxyuser-ip", "proxy-client-ip", "wl-proxy-client-ip"];
        let lookalikes = [
            "http_client_ip",
            "http_x_forwarded_for",
            "http_x_real_ip",
            "http_proxy_client_ip",
            "http_x_request_id",
            "http_via",
            "http_client-ip",
            "wl_proxy_client_ip",
            "http.client.ip",
            "x.forwarded~for",
            "ssl!client+verify",
        ];
        let own = [
            "http_user_agent",
            "http_host",
            "http_api_key",
            "http_",
            "http_upgrade",
            "http_te",
            "http_connection",
            "http_trailer",
            "http_keep_alive",
            "http_content_length",
            "http_transfer_encoding",
            "http_proxy_authorization",
            "http_content-length",
            "http.user.agent",
            "http.te",
        ];
        for trusted in [false, true] {
            let mut c = ctx(false);
            c.trusted_proxy = trusted;
            let mut h = HeaderMap::new();
            for n in claims.iter().chain(&lookalikes) {
                h.insert(*n, HeaderValue::from_static("192.0.2.66"));
            }
            for n in own {
                h.insert(n, HeaderValue::from_static("1"));
            }
            rewrite_request_headers(&mut h, &c, false, false);
            for n in claims {
                assert_eq!(h.contains_key(n), trusted, "{n}, trusted: {trusted}");
            }
            for n in lookalikes {
                assert!(!h.contains_key(n), "{n}, trusted: {trusted}");
            }
            for n in own {
                assert_eq!(
                    h.get(n).map(|v| v.as_bytes()),
                    Some(&b"1"[..]),
                    "{n}, trusted: {trusted}"
                );
            }
        }
        for n in claims.iter().chain(&lookalikes) {
            assert!(is_vouched_for(&HeaderName::from_static(n)), "{n}");
        }
        // Nor are they taken from a request's trailers or its `Trailer`.
        for n in own {
            assert!(!is_vouched_for(&HeaderName::from_static(n)), "{n}");
        }
        // Past the look-alike check's stack buffer, the same answers.
        let long = format!("http_x_forwarded_{}", "a".repeat(80));
        assert!(is_vouched_for(&HeaderName::try_from(long).unwrap()));
        let long = format!("api_{}", "a".repeat(80));
        assert!(!is_vouched_for(&HeaderName::try_from(long).unwrap()));
    }

    #[test]
    fn ipv6_client_address() {
        let mut c = ctx(false);
        c.client_addr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1"
            .parse()
            .unwrap();
        c.client_ip = client_ip_value(c.client_addr);
        let mut h = HeaderMap::new();
        rewrite_request_headers(&mut h, &c, false, false);
        assert_eq!(
            h["x-forwarded-for"],
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert!(!h.contains_key("x-forwarded-host"));
    }

    /// A length with leading zeros is forwarded as the number; any other
    /// is left as it is.
    #[test]
    fn content_length_is_forwarded_canonical() {
        for (sent, forwarded) in [("0005", "5"), ("000", "0"), ("0", "0"), ("120", "120")] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(sent));
            rewrite_request_headers(&mut h, &ctx(false), false, false);
            assert_eq!(h[header::CONTENT_LENGTH], forwarded, "{sent}");
        }
    }
}
