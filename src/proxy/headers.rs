//! The header policy between client and upstream: hop-by-hop, forwarding, identity.
//!
//! hotproxy sets `X-Forwarded-For` (the client's values joined, then the
//! client address), `X-Forwarded-Proto`, `X-Forwarded-Host` (the authority
//! the request was routed on) and `Via`. The forwarding headers a client
//! could use to lie about where a request came from or how it reached the
//! proxy (`Forwarded`, `X-Real-IP` and every `X-Forwarded-*`, such as the
//! `X-Forwarded-Prefix` frameworks take as the path base) are removed or
//! replaced, unless the client is one of the listener's `trusted_proxies`
//! (`trusts_forwarding`): then they are kept, and `X-Forwarded-For` and
//! `Forwarded` extended with the client address. Client-certificate headers are `proxy::client_cert`'s (per
//! `forward_client_cert`, spoofed copies always removed). A client's
//! header whose name reads, `_` as `-`, as one hotproxy sets or replaces
//! (`X_Request_Id`, `x_forwarded_for`, `ssl_client_verify`) is removed. The
//! common request needs no string building.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::proxy::forward::RequestContext;
use crate::proxy::trailers;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static CLAIMS_ORIGIN: [&str; 3] = ["x-real-ip", "x-original-url", "x-rewrite-url"];
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
// Consts, checked when compiled: a `from_static` at run time checks each
// byte of every request's value again.
const HTTPS: HeaderValue = HeaderValue::from_static("https");
const VIA_H1: HeaderValue = HeaderValue::from_static("1.1 hotproxy");
const VIA_H2: HeaderValue = HeaderValue::from_static("2 hotproxy");

/// Which message a header section heads: what it keeps of `TE` and
/// `Trailer` differs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Message {
    Request,
    Response,
}

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those named in
/// `Connection`. `keep_upgrade` keeps `Connection: upgrade` + `Upgrade`.
/// `Host` is never removed, whatever `Connection` names: it is the
/// authority the request was routed on, and without it the upstream would
/// pick its default virtual host (hyper's client does not add one).
///
/// Two survive in part, as in Go's reverse proxy: a request's `TE:
/// trailers` (the client takes trailers, and so does hotproxy: gRPC
/// backends need to be told), and the `Trailer` announcement, cut to the
/// names a trailer may carry ([`trailers::announced`]). Over HTTP/1.1
/// hyper writes only the trailer fields a head announced, so without it an
/// HTTP/1.1 peer would get none.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool, message: Message) {
    // One pass over the names first: most messages carry none of these
    // or only `Connection`, and the pass is far cheaper than hashing and
    // probing for each of the nine names.
    let present = headers
        .keys()
        .filter_map(hop_by_hop)
        .fold(0u16, |seen, i| seen | 1 << i);
    // Read before `Connection`'s nominees go: a client sending `TE` must
    // name it there too (RFC 9110 §10.1.4).
    let te_trailers =
        message == Message::Request && present & (1 << TE_AT) != 0 && takes_trailers(headers);
    let trailer = if present & (1 << TRAILER_AT) != 0 {
        trailers::announced(headers, message)
    } else {
        None
    };
    if present & 1 != 0 {
        strip_connection_nominated(headers);
    }
    // An upgrade keeps `Upgrade` (and gets `Connection: upgrade` back).
    let removed = if keep_upgrade {
        present & !(1 << 8)
    } else {
        present
    };
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if removed & (1 << i) != 0 {
            headers.remove(*n);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(names) = trailer {
        headers.insert(header::TRAILER, names);
    }
}

/// A `TE` that lists `trailers` (`TE: trailers, deflate;q=0.5` does).
fn takes_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Remove the headers a `Connection` header names (RFC 9110 §7.6.1), but
/// never `Host`, and keep only `Connection`'s own options (`close`,
/// `keep-alive`, `upgrade`, and `te`, whose header [`strip_hop_by_hop`]
/// cuts to `trailers`), so that a later pass removes nothing more. On a
/// request this runs first, before hotproxy adds anything: a client naming
/// `X-Request-Id` or a client-certificate header in `Connection` must not
/// strip what the proxy tells the upstream.
pub fn strip_connection_nominated(headers: &mut HeaderMap) {
    // `close`, `keep-alive` and `upgrade` (what nearly every `Connection`
    // says) are skipped without building a name: the common message costs
    // no allocation here.
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| !t.is_empty() && !is_option(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        // The framing headers say how the body was read: hyper already read
        // it by them, and the checks on them (`request::prepare`) run after
        // this, so naming them must not remove them first.
        .filter(|n| {
            !matches!(
                *n,
                header::HOST
                    | header::CONNECTION
                    | header::TRANSFER_ENCODING
                    | header::CONTENT_LENGTH
            )
        })
        .collect();
    if named.is_empty() {
        return;
    }
    for n in named {
        headers.remove(n);
    }
    let options: Vec<&str> = connection_tokens(headers)
        .filter(|t| is_option(t))
        .collect();
    match HeaderValue::from_str(&options.join(", ")) {
        Ok(v) if !options.is_empty() => {
            headers.insert(header::CONNECTION, v);
        }
        _ => {
            headers.remove(header::CONNECTION);
        }
    }
}

/// Every token of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
}

/// A `Connection` option of its own rather than a header's name. `TE` is
/// kept as one: hop-by-hop anyway, it is left for [`strip_hop_by_hop`] to
/// cut to `trailers`, and a client sending it must name it here.
fn is_option(token: &str) -> bool {
    ["close", "keep-alive", "upgrade", "te"]
        .iter()
        .any(|k| token.eq_ignore_ascii_case(k))
}

/// The hop-by-hop headers (RFC 9110 §7.6.1) and `Upgrade`; a bit per
/// position records which are present (`Connection` first, `Upgrade` last).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// `TE`'s and `Trailer`'s positions in [`HOP_BY_HOP`].
const TE_AT: usize = 5;
const TRAILER_AT: usize = 6;

/// `name`'s position in [`HOP_BY_HOP`], if it is one. Inlined: it runs
/// for every header name of every request and response, and once
/// [`is_hop_by_hop`] also called it, the compiler stopped inlining it into
/// [`strip_hop_by_hop`] (about 250 instructions a request, counted).
#[inline(always)]
fn hop_by_hop(name: &HeaderName) -> Option<u16> {
    HOP_BY_HOP.iter().position(|n| *n == name).map(|i| i as u16)
}

/// Whether `name` is hop-by-hop (RFC 9110 §7.6.1, with `Upgrade`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop(name).is_some()
}

/// Whether hotproxy vouches for `name` on a request: a header it replaces
/// or removes (`replaced_by_hotproxy`), `Via` or `X-Request-Id`, or a
/// look-alike of one with `_` for `-` (`strip_client_claims`).
pub fn is_vouched_for(name: &HeaderName) -> bool {
    let n = name.as_str();
    vouched(n) || underscore_lookalike(n)
}

/// A header hotproxy sets, replaces or removes on a request: what it
/// replaces or removes ([`replaced_by_hotproxy`]), `Via`, `X-Request-Id`.
fn vouched(n: &str) -> bool {
    replaced_by_hotproxy(n)
        || n == header::VIA.as_str()
        || n == crate::proxy::request_id::X_REQUEST_ID.as_str()
}

/// A name with `_` that reads, `_` as `-`, as one hotproxy vouches for
/// ([`vouched`]): `X_Request_Id`, `x_forwarded_for`, `ssl_client_verify`.
fn underscore_lookalike(n: &str) -> bool {
    n.contains('_') && vouched(&n.replace('_', "-"))
}

/// A forwarding header ([`claims_origin`]) or a client-certificate header
/// ([`crate::proxy::client_cert::is_identity_header`]): what hotproxy
/// replaces or removes whatever the client sent.
fn replaced_by_hotproxy(n: &str) -> bool {
    claims_origin(n) || crate::proxy::client_cert::is_identity_header(n)
}

/// A header through which a client would claim where it came from, or how
/// the request reached the proxy before hotproxy: `Forwarded`, `X-Real-IP`
/// and every `X-Forwarded-*`. Not only the four hotproxy sets or replaces:
/// ASP.NET and Spring take `X-Forwarded-Prefix` as the path base, Rack
/// reads `X-Forwarded-Scheme` and `X-Forwarded-Ssl`, others `-Uri`,
/// `-Method`, `-Server`; Traefik's `forwardedheaders` removes the family
/// from untrusted peers too. So are `X-Original-URL` and `X-Rewrite-URL`,
/// the path IIS URL Rewrite, ASP.NET and older Symfony and Zend serve in
/// place of the request's (CVE-2018-14773). Every name of every request
/// passes here (a [`HeaderName`] is lowercase): the first byte settles most.
#[inline]
fn claims_origin(n: &str) -> bool {
    match n.as_bytes().first() {
        Some(b'x') => n.starts_with("x-forwarded-") || CLAIMS_ORIGIN.contains(&n),
        Some(b'f') => n == FORWARDED.as_str(),
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
/// any client every [`underscore_lookalike`]. One pass over the names,
/// which allocates nothing when there is nothing to remove (the common
/// request).
///
/// A client-certificate header among them (`X-Forwarded-Client-Cert`,
/// `X-Forwarded-Tls-Client-Cert*`) is kept here: by now any such header is
/// hotproxy's own (`forward_client_cert: xfcc`), written after every
/// client's copies, trusted or not, were removed
/// ([`crate::proxy::client_cert::apply`]).
///
/// The look-alikes: a client's header whose name, `_` read as `-`, is one hotproxy
/// sets, replaces or removes ([`vouched`]): a forwarding header, a
/// client-certificate header
/// ([`crate::proxy::client_cert::is_identity_header`]) or `X-Request-Id`
/// (`Via` has no `-`). CGI, WSGI and PHP servers fold `_` and `-` into one
/// variable (`X_Client_Cert_Subject` and `X-Client-Cert-Subject` are both
/// `HTTP_X_CLIENT_CERT_SUBJECT`), and Puma before 6.4.3 did for any header
/// (CVE-2024-45614), so such a look-alike would reach the backend as, or
/// override, the header hotproxy set: `X_Request_Id` in place of the id
/// a `trust_client: false` listener generated and logged. The same names
/// are what a request's trailers lose ([`is_vouched_for`]). nginx drops
/// every name with `_` (`underscores_in_headers off`); hotproxy drops only
/// these, so an application's own `api_key` passes.
fn strip_client_claims(headers: &mut HeaderMap, trusted: bool) -> Seen {
    let drop = |n: &str| {
        (!trusted && claims_origin(n) && !crate::proxy::client_cert::is_identity_header(n))
            || underscore_lookalike(n)
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
    if h2_client && seen.cookies > 1 {
        join_cookies(headers);
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
/// reads either form, as nginx and Envoy do.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let values = headers.get_all(header::COOKIE);
    let len: usize = values.iter().map(|v| v.len() + 2).sum();
    let mut out = Vec::with_capacity(len);
    for v in values {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(v.as_bytes());
    }
    if let Ok(joined) = HeaderValue::from_maybe_shared(bytes::Bytes::from(out)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::forward::client_ip_value;

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

    /// The one-pass check must still find every hop-by-hop header, in any
    /// mix, and an upgrade must keep its `Upgrade`.
    #[test]
    fn strips_each_hop_by_hop_header() {
        let names = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ];
        for name in names {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_static("a.test"));
            h.insert("accept", HeaderValue::from_static("*/*"));
            // A `Trailer` naming only what no trailer may carry goes too.
            h.insert(name, HeaderValue::from_static("content-length"));
            strip_hop_by_hop(&mut h, false, Message::Request);
            assert!(!h.contains_key(name), "{name} kept");
            assert_eq!(h.len(), 2, "{name}: {h:?}");
        }
        let mut h = HeaderMap::new();
        for name in names {
            h.insert(name, HeaderValue::from_static("content-length"));
        }
        h.insert(
            "connection",
            HeaderValue::from_static("x-secret, Host, close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("a.test"));
        strip_hop_by_hop(&mut h, false, Message::Request);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host"]);

        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Upgrade, keep-alive"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h, true, Message::Request);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("keep-alive"));

        // Nothing to strip: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a.test"));
        h.insert("x-custom", HeaderValue::from_static("1"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, false, Message::Response);
        assert_eq!(h, before);
    }

    #[test]
    fn connection_nominated_headers_go_first_and_once() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close, x-a, Host"));
        h.append("connection", HeaderValue::from_static("Upgrade, x-b"));
        for name in ["host", "x-a", "x-b", "upgrade"] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        strip_connection_nominated(&mut h);
        assert!(!h.contains_key("x-a") && !h.contains_key("x-b"), "{h:?}");
        assert_eq!(h["host"], "1");
        assert_eq!(h["upgrade"], "1");
        // Only the options are left: what the proxy adds later survives
        // the hop-by-hop pass at forwarding.
        assert_eq!(h["connection"], "close, Upgrade");
        h.insert("x-a", HeaderValue::from_static("added by the proxy"));
        strip_hop_by_hop(&mut h, false, Message::Response);
        assert_eq!(h["x-a"], "added by the proxy");

        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("x-a"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_connection_nominated(&mut h);
        assert!(h.is_empty(), "{h:?}");

        // `TE` stays for the hop-by-hop pass, which keeps only `trailers`.
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("TE, close"));
        h.insert("te", HeaderValue::from_static("trailers"));
        strip_connection_nominated(&mut h);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["connection"], "TE, close");
    }

    /// A request's `TE: trailers` (however listed) survives, a response's
    /// `TE` never does; `Trailer` keeps only the names a trailer may carry,
    /// each once.
    #[test]
    fn te_trailers_and_the_trailer_announcement_survive_cut_down() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("TE"));
        h.insert("te", HeaderValue::from_static("deflate;q=0.5, Trailers"));
        h.append(
            "trailer",
            HeaderValue::from_static("X-Checksum, ssl-client-verify, content-length"),
        );
        h.append(
            "trailer",
            HeaderValue::from_static("x-checksum, x_forwarded_for, te, not a name, grpc-status"),
        );
        strip_hop_by_hop(&mut h, false, Message::Request);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["trailer"], "x-checksum, grpc-status");
        assert!(!h.contains_key("connection"), "{h:?}");

        // `TE` without `trailers` goes whole.
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, false, Message::Request);
        assert!(h.is_empty(), "{h:?}");

        // A response's trailers may name what a request's may not.
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert(
            "trailer",
            HeaderValue::from_static("grpc-status, x-request-id, connection"),
        );
        strip_hop_by_hop(&mut h, false, Message::Response);
        assert!(!h.contains_key("te"), "{h:?}");
        assert_eq!(h["trailer"], "grpc-status, x-request-id");
    }

    /// A `Trailer` of thousands of names is cut to a section's 100; only
    /// the first 100 listed are looked at, repeats of one name included.
    #[test]
    fn a_huge_trailer_announcement_is_cut_to_a_sections_size() {
        let names: Vec<String> = (0..20_000).map(|i| format!("x{i}")).collect();
        let mut h = HeaderMap::new();
        h.insert("trailer", HeaderValue::from_str(&names.join(",")).unwrap());
        strip_hop_by_hop(&mut h, false, Message::Request);
        let kept = h["trailer"].to_str().unwrap().split(", ").count();
        assert_eq!(kept, crate::proxy::request::MAX_HEADER_FIELDS);

        let repeats = ["x-a"; 150].join(",") + ",x-late";
        let mut h = HeaderMap::new();
        h.insert("trailer", HeaderValue::from_str(&repeats).unwrap());
        strip_hop_by_hop(&mut h, false, Message::Request);
        assert_eq!(h["trailer"], "x-a");
    }
}
