//! Hop-by-hop headers (RFC 9110 §7.6.1): what one connection says about itself, removed before the next hop.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::proxy::request::MAX_HEADER_FIELDS;
use crate::proxy::trailers;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

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
/// HTTP/1.1 peer would get none. A name `Connection` nominated is cut from
/// it, and returned (none: no allocation) for the trailers to lose too.
pub fn strip_hop_by_hop(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    message: Message,
) -> Vec<HeaderName> {
    // One pass over the names first: most messages carry none of these
    // or only `Connection`, and the pass is far cheaper than hashing and
    // probing for each of the ten names.
    // The same pass reads `Connection`: the usual one (`keep-alive`,
    // `close`) names no header, and its tokens are not parsed.
    let mut present = 0u16;
    let mut nominates = false;
    for (name, value) in headers.iter() {
        if let Some(i) = hop_by_hop(name) {
            present |= 1 << i;
            nominates |= i == 0 && !lone_option(value);
        }
    }
    // Read before `Connection`'s nominees go: a client sending `TE` must
    // name it there too (RFC 9110 §10.1.4).
    let te_trailers =
        message == Message::Request && present & (1 << TE_AT) != 0 && takes_trailers(headers);
    let mut trailer = if present & (1 << TRAILER_AT) != 0 {
        trailers::announced(headers, message)
    } else {
        None
    };
    let named = if nominates {
        strip_connection_nominated(headers)
    } else {
        Vec::new()
    };
    if !named.is_empty() {
        let set = named.iter().cloned().collect();
        trailer = trailer.and_then(|v| trailers::without(&v, &set));
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
    named
}

/// For an HTTP/1.1 upstream: a request that keeps `TE` (`te: trailers`,
/// [`strip_hop_by_hop`]) names it in `Connection` too, as a sender of `TE`
/// must (RFC 9110 §7.6.1, §10.1.4), so an intermediary in front of the
/// backend drops it as hotproxy dropped the client's. Added to what
/// `Connection` already says (an upgrade's `upgrade`), never twice: a
/// replay from the written head has it already. Never for HTTP/2, which
/// has no `Connection` (hyper's HTTP/2 client, given one, drops the fields
/// it names, `te` with them).
pub fn name_te(headers: &mut HeaderMap) {
    if !headers.contains_key(header::TE)
        || connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("te"))
    {
        return;
    }
    let said: Vec<&str> = connection_tokens(headers)
        .filter(|t| !t.is_empty())
        .collect();
    let value = if said.is_empty() {
        HeaderValue::from_static("te")
    } else {
        match HeaderValue::from_str(&format!("{}, te", said.join(", "))) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    headers.insert(header::CONNECTION, value);
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
/// strip what the proxy tells the upstream. The names removed are
/// returned (none: no allocation), and cut from `Trailer`: the trailer
/// fields they name go too (RFC 9110 §7.6.1: header or trailer fields).
pub fn strip_connection_nominated(headers: &mut HeaderMap) -> Vec<HeaderName> {
    let mut values = headers.get_all(header::CONNECTION).iter();
    if let (Some(v), None) = (values.next(), values.next())
        && lone_option(v)
    {
        return Vec::new();
    }
    // Each name once: `Connection: a,a,…` names one field 32,000 times,
    // and every use below (and the trailers') would pay each copy. (A
    // request naming more than a head holds was refused before this:
    // [`nominates_too_many`].) An empty set allocates nothing.
    let set: std::collections::HashSet<HeaderName> = nominated_names(headers).collect();
    if set.is_empty() {
        return Vec::new();
    }
    let named: Vec<HeaderName> = set.iter().cloned().collect();
    for n in &named {
        headers.remove(n);
    }
    if headers.contains_key(header::TRAILER) {
        let kept: Vec<HeaderValue> = headers
            .get_all(header::TRAILER)
            .iter()
            .filter_map(|v| trailers::without(v, &set))
            .collect();
        headers.remove(header::TRAILER);
        for v in kept {
            headers.append(header::TRAILER, v);
        }
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
    named
}

/// The header names `Connection` nominates, repeats included: its own
/// options (`close`, `keep-alive`, `upgrade`, what nearly every
/// `Connection` says) skipped without building a name (the common message
/// costs no allocation), and never `Host`, `Connection` or the framing
/// headers: hyper already read the body by those, and the checks on them
/// (`request::prepare`) run after this, so naming them must not remove
/// them first.
fn nominated_names(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    connection_tokens(headers)
        .filter(|t| !t.is_empty() && !is_option(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| {
            !matches!(
                *n,
                header::HOST
                    | header::CONNECTION
                    | header::TRANSFER_ENCODING
                    | header::CONTENT_LENGTH
            )
        })
}

/// Whether a request's `Connection` nominates more distinct names than a
/// head may carry fields ([`MAX_HEADER_FIELDS`]): naming more protects
/// nothing more, and [`strip_connection_nominated`] would keep each name
/// for the request's trailers, for as long as its body lasts (~14,000
/// short names fill a 64 KiB head, ~1 MB held). Stops reading at the first
/// name past the limit; repeats of one name count once.
pub fn nominates_too_many(headers: &HeaderMap) -> bool {
    let mut distinct = std::collections::HashSet::new();
    nominated_names(headers).any(|n| {
        distinct.insert(n);
        distinct.len() > MAX_HEADER_FIELDS
    })
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

/// A `Connection` value that is `keep-alive` or `close` alone, which
/// names no header: what nearly every message carries, settled without
/// splitting it into tokens. Anything else (a list, padding, another
/// option) is for [`strip_connection_nominated`] to read.
fn lone_option(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    match v.len() {
        10 => v.eq_ignore_ascii_case(b"keep-alive"),
        5 => v.eq_ignore_ascii_case(b"close"),
        _ => false,
    }
}

/// A `Connection` option of its own rather than a header's name. `TE` is
/// kept as one: hop-by-hop anyway, it is left for [`strip_hop_by_hop`] to
/// cut to `trailers`, and a client sending it must name it here.
fn is_option(token: &str) -> bool {
    ["close", "keep-alive", "upgrade", "te"]
        .iter()
        .any(|k| token.eq_ignore_ascii_case(k))
}

/// The hop-by-hop headers (RFC 9110 §7.6.1), `Upgrade`, and
/// `HTTP2-Settings`: the h2c upgrade's connection-specific field (RFC 7540
/// §3.2.1), which hotproxy does not do and the next hop cannot use. A bit
/// per position records which are present (`Connection` first, `Upgrade`
/// at 8).
static HOP_BY_HOP: [&HeaderName; 10] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &HTTP2_SETTINGS,
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
    hop_by_hop_at(name.as_str())
}

/// [`hop_by_hop`] of a lowercase name as text.
#[inline(always)]
fn hop_by_hop_at(n: &str) -> Option<u16> {
    // Told apart by length first: nearly every name is none of them, and
    // one length check settles it where ten comparisons did.
    let i = match n.len() {
        2 if n == "te" => 5,
        7 if n == "trailer" => 6,
        7 if n == "upgrade" => 8,
        10 if n == "connection" => 0,
        10 if n == "keep-alive" => 1,
        14 if n == "http2-settings" => 9,
        16 if n == "proxy-connection" => 2,
        17 if n == "transfer-encoding" => 7,
        18 if n == "proxy-authenticate" => 3,
        19 if n == "proxy-authorization" => 4,
        _ => return None,
    };
    Some(i)
}

/// Whether `name` is hop-by-hop (RFC 9110 §7.6.1, with `Upgrade` and
/// `HTTP2-Settings`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop(name).is_some()
}

/// [`is_hop_by_hop`] of a lowercase name as text (a look-alike read with
/// `_` as `-`, [`crate::proxy::headers`]).
pub fn is_hop_by_hop_name(n: &str) -> bool {
    hop_by_hop_at(n).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each hop-by-hop name is found at its place in [`HOP_BY_HOP`] (the
    /// bits of `strip_hop_by_hop` depend on it), and no other name is,
    /// however alike in length or spelling.
    #[test]
    fn each_hop_by_hop_name_and_no_other_is_found() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop(name), Some(i as u16), "{name}");
        }
        for other in [
            "tk",
            "trailers",
            "upgrades",
            "user-agent",
            "keep-alive2",
            "connectiom",
            "proxy-connectiom",
            "transfer-encodinf",
            "proxy-authenticatf",
            "proxy-authorizatiom",
            "http2-settingz",
            "http3-settings",
            "content-length",
            "host",
            "accept",
            "x-request-id",
        ] {
            let name = HeaderName::from_static(other);
            assert_eq!(hop_by_hop(&name), None, "{other}");
        }
    }

    /// `keep-alive` or `close` alone names nothing; everything else is
    /// read token by token, and what it names still goes.
    #[test]
    fn a_lone_option_is_settled_and_anything_else_read() {
        for (value, lone) in [
            ("keep-alive", true),
            ("Keep-Alive", true),
            ("CLOSE", true),
            ("close, x-a", false),
            (" close", false),
            ("upgrade", false),
            ("x-keep-ali", false),
        ] {
            assert_eq!(
                lone_option(&HeaderValue::from_static(value)),
                lone,
                "{value}"
            );
        }
        for (connection, left) in [
            ("Keep-Alive", &["host"][..]),
            ("close ,x-a", &["host"][..]),
            (" x-a ", &["host"][..]),
            ("keep-alive, X-A", &["host"][..]),
        ] {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_static("a.test"));
            h.insert("connection", HeaderValue::from_static(connection));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("x-a", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h, false, Message::Response);
            let kept: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            let want: Vec<&str> = if connection.to_ascii_lowercase().contains("x-a") {
                left.to_vec()
            } else {
                [left, &["x-a"][..]].concat()
            };
            assert_eq!(kept, want, "Connection: {connection}");
        }
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
            "http2-settings",
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

    /// A name `Connection` nominates leaves `Trailer` too, and comes back
    /// for the trailer fields to lose; none named, none come back.
    #[test]
    fn connection_nominated_names_leave_the_trailer_announcement() {
        for message in [Message::Request, Message::Response] {
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static("close, X-Hop"));
            h.insert("trailer", HeaderValue::from_static("x-hop, x-checksum"));
            h.insert("te", HeaderValue::from_static("trailers"));
            assert_eq!(strip_hop_by_hop(&mut h, false, message), ["x-hop"]);
            assert_eq!(h["trailer"], "x-checksum", "{message:?}");
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static("x-hop"));
            h.insert("trailer", HeaderValue::from_static("x-hop"));
            assert_eq!(strip_connection_nominated(&mut h), ["x-hop"]);
            assert!(!h.contains_key("trailer"), "{h:?}");
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static("keep-alive"));
            h.insert("trailer", HeaderValue::from_static("x-checksum"));
            assert!(strip_hop_by_hop(&mut h, false, message).is_empty());
            assert_eq!(h["trailer"], "x-checksum", "{message:?}");
        }
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

    /// More distinct nominated names than a head holds fields: repeats,
    /// `Connection`'s own options and the names never removed do not count.
    #[test]
    fn nominating_more_names_than_a_head_holds_is_told() {
        let says = |names: Vec<String>| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_str(&names.join(", ")).unwrap(),
            );
            nominates_too_many(&h)
        };
        let n = crate::proxy::request::MAX_HEADER_FIELDS;
        let distinct = |k: usize| (0..k).map(|i| format!("x{i}")).collect::<Vec<_>>();
        assert!(!says((0..50).flat_map(|_| distinct(n)).collect()));
        let mut others = distinct(n);
        others
            .extend(["close", "keep-alive", "upgrade", "host", "content-length"].map(String::from));
        assert!(!says(others));
        assert!(says(distinct(n + 1)));
        assert!(says(distinct(14_000)));
    }

    /// `te` joins what `Connection` says, once, and only beside `TE`.
    #[test]
    fn te_is_named_in_connection() {
        let named = |connection: Option<&'static str>, te: bool| {
            let mut h = HeaderMap::new();
            if let Some(c) = connection {
                h.insert(header::CONNECTION, HeaderValue::from_static(c));
            }
            if te {
                h.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            name_te(&mut h);
            h.get(header::CONNECTION)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(named(None, true).as_deref(), Some("te"));
        assert_eq!(named(Some("upgrade"), true).as_deref(), Some("upgrade, te"));
        assert_eq!(named(Some("te"), true).as_deref(), Some("te"));
        assert_eq!(named(None, false), None);
        assert_eq!(named(Some("upgrade"), false).as_deref(), Some("upgrade"));
    }
}
