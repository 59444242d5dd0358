//! Access-log line formats: JSON (every field of SPEC's access log) and nginx's `combined`.

use std::io::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use super::{HeadLine, Line, LogFormat, LoggedIdentity, RefusalLine, RequestLine};

/// Append `line` to `out` (without the newline).
pub fn write(out: &mut Vec<u8>, line: &Line, format: LogFormat) {
    match (line, format) {
        (Line::Request(r), LogFormat::Json) => json_request(out, r),
        (Line::Request(r), LogFormat::Combined) => combined_request(out, r),
        (Line::Refusal(r), LogFormat::Json) => json_refusal(out, r),
        (Line::Refusal(r), LogFormat::Combined) => combined_refusal(out, r),
        (Line::Head(r), LogFormat::Json) => json_head(out, r),
        (Line::Head(r), LogFormat::Combined) => combined_head(out, r),
    }
}

/// The JSON fields, in the documented order.
#[derive(Serialize)]
struct JsonLine<'a> {
    ts: Shown<Rfc3339Ms>,
    listener: &'a str,
    sni: Option<&'a str>,
    client_addr: Shown<std::net::SocketAddr>,
    client_subject: Option<&'a str>,
    client_uri_san: Option<&'a str>,
    client_fingerprint: Option<&'a str>,
    method: Option<&'a str>,
    /// Escaped as [`Escaped::json`]: a `Host` is bytes, not always text.
    host: Option<Shown<Escaped<'a>>>,
    path: Option<&'a str>,
    protocol: Option<&'static str>,
    status: Option<u16>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream: Option<&'a str>,
    upstream_addr: Option<&'a str>,
    upstream_ms: Option<f64>,
    request_id: Option<&'a str>,
    trace_id: Option<&'a str>,
    tls_version: Option<&'static str>,
    resumed: bool,
    authz: &'a str,
    /// Last: added after the others, so a reader of the fields by their
    /// place finds those where they were.
    upstream_attempts: Option<Attempts<'a>>,
}

/// `upstream_attempts`: the endpoints' URLs, a JSON array of strings.
struct Attempts<'a>(&'a [std::sync::Arc<str>]);

impl Serialize for Attempts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| &**a))
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `client_subject`, `client_uri_san`, `client_fingerprint`.
fn identity_fields(id: Option<&LoggedIdentity>) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        id.map(|i| &*i.subject),
        id.and_then(|i| i.uri_san.as_deref()),
        id.map(|i| &*i.fingerprint_sha256),
    )
}

fn json_request(out: &mut Vec<u8>, r: &RequestLine) {
    let (client_subject, client_uri_san, client_fingerprint) =
        identity_fields(r.identity.as_deref());
    let line = JsonLine {
        ts: Shown(Rfc3339Ms(r.ts)),
        listener: &r.listener,
        sni: r.sni.as_deref(),
        client_addr: Shown(r.client_addr),
        client_subject,
        client_uri_san,
        client_fingerprint,
        method: Some(r.method.as_str()),
        host: r.host.as_deref().map(|h| Shown(Escaped::json(h))),
        path: Some(&r.path),
        protocol: Some(protocol(r.protocol)),
        status: Some(r.status),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        duration_ms: ms(r.duration),
        upstream: r.upstream.as_deref(),
        upstream_addr: r.upstream_addr.as_deref(),
        upstream_ms: r.upstream_time.map(ms),
        request_id: r.request_id.to_str().ok(),
        trace_id: r.trace_id.as_deref(),
        tls_version: r.tls_version,
        resumed: r.resumed,
        authz: r.authz,
        upstream_attempts: r.upstream_attempts.as_deref().map(Attempts),
    };
    push_json(out, &line);
}

impl<'a> JsonLine<'a> {
    /// A line with only what every line has; the other fields absent.
    fn bare(
        ts: SystemTime,
        listener: &'a str,
        client_addr: std::net::SocketAddr,
        authz: &'a str,
    ) -> JsonLine<'a> {
        JsonLine {
            ts: Shown(Rfc3339Ms(ts)),
            listener,
            sni: None,
            client_addr: Shown(client_addr),
            client_subject: None,
            client_uri_san: None,
            client_fingerprint: None,
            method: None,
            host: None,
            path: None,
            protocol: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            upstream: None,
            upstream_addr: None,
            upstream_ms: None,
            request_id: None,
            trace_id: None,
            tls_version: None,
            resumed: false,
            authz,
            upstream_attempts: None,
        }
    }
}

fn json_refusal(out: &mut Vec<u8>, r: &RefusalLine) {
    let line = JsonLine {
        sni: r.sni.as_deref(),
        status: r.answered.map(|(status, _)| status),
        bytes_out: r.answered.map_or(0, |(_, bytes)| bytes),
        duration_ms: ms(r.duration),
        ..JsonLine::bare(r.ts, &r.listener, r.client_addr, r.reason)
    };
    push_json(out, &line);
}

/// No method, host or path: the head did not parse (or never ended).
fn json_head(out: &mut Vec<u8>, r: &HeadLine) {
    let (client_subject, client_uri_san, client_fingerprint) =
        identity_fields(r.identity.as_deref());
    let line = JsonLine {
        sni: r.sni.as_deref(),
        client_subject,
        client_uri_san,
        client_fingerprint,
        // Only HTTP/1.1 connections have heads hotproxy does not parse.
        protocol: Some("HTTP/1.1"),
        status: Some(r.status),
        duration_ms: ms(r.duration),
        tls_version: r.tls_version,
        resumed: r.resumed,
        ..JsonLine::bare(r.ts, &r.listener, r.client_addr, r.reason)
    };
    push_json(out, &line);
}

/// As nginx logs a request it could not parse: `"-"` for the request.
fn combined_head(out: &mut Vec<u8>, r: &HeadLine) {
    let _ = write!(
        out,
        "{} - - [{}] \"-\" {} 0 \"-\" \"-\"",
        r.client_addr.ip(),
        clf_time(r.ts),
        r.status
    );
}

/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent"`; the request line
/// carries the path without its query, like the JSON `path` (a `CONNECT`'s
/// authority).
fn combined_request(out: &mut Vec<u8>, r: &RequestLine) {
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
        r.client_addr.ip(),
        clf_time(r.ts),
        r.method,
        Escaped::combined(r.path.as_bytes()),
        protocol(r.protocol),
        r.status,
        r.bytes_out,
        Escaped::combined(header_bytes(&r.referer)),
        Escaped::combined(header_bytes(&r.user_agent)),
    );
}

/// `000` for a connection closed without an answer, else the status sent
/// in the clear (plain HTTP's `400`) and its body's bytes.
fn combined_refusal(out: &mut Vec<u8>, r: &RefusalLine) {
    let (status, bytes) = r.answered.unwrap_or((0, 0));
    let _ = write!(
        out,
        "{} - - [{}] \"-\" {status:03} {bytes} \"-\" \"-\" \"tls: {}\"",
        r.client_addr.ip(),
        clf_time(r.ts),
        r.reason
    );
}

fn header_bytes(v: &Option<Box<[u8]>>) -> &[u8] {
    v.as_deref().unwrap_or(b"-")
}

/// Bytes a client sent, as text that says which bytes they were: a byte
/// outside printable ASCII (0x20-0x7E), and `\`, as `\xHH`, so `\x80` in
/// the log is the byte and never the four characters. `combined` escapes
/// `"` too, as nginx does; JSON escapes `"` itself.
struct Escaped<'a> {
    bytes: &'a [u8],
    quote: bool,
}

impl<'a> Escaped<'a> {
    fn combined(bytes: &'a [u8]) -> Escaped<'a> {
        Escaped { bytes, quote: true }
    }

    fn json(bytes: &'a [u8]) -> Escaped<'a> {
        Escaped {
            bytes,
            quote: false,
        }
    }
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let escaped =
            |b: &u8| *b == b'\\' || (self.quote && *b == b'"') || !(0x20..0x7f).contains(b);
        // What is not escaped is printable ASCII: valid UTF-8.
        let text = |b| std::str::from_utf8(b).map_err(|_| std::fmt::Error);
        let mut rest = self.bytes;
        while let Some(n) = rest.iter().position(escaped) {
            f.write_str(text(&rest[..n])?)?;
            write!(f, "\\x{:02X}", rest[n])?;
            rest = &rest[n + 1..];
        }
        f.write_str(text(rest)?)
    }
}

fn push_json(out: &mut Vec<u8>, line: &JsonLine<'_>) {
    let mut ser = serde_json::Serializer::with_formatter(out, AsciiOnly);
    let _ = line.serialize(&mut ser);
}

/// serde_json's compact form, with every character outside ASCII, and DEL,
/// written as `\uXXXX` (UTF-16 units: a surrogate pair beyond U+FFFF), as
/// serde_json writes those below U+0020: a line is ASCII, and parses back
/// to the same strings. A path holds what its client sent (the `http`
/// crate takes UTF-8 in a target), and written raw, a C1 control (U+009B,
/// the 8-bit CSI), a line or paragraph separator or a bidi override
/// (U+202E) went to the terminal or viewer the line is read in.
struct AsciiOnly;

impl serde_json::ser::Formatter for AsciiOnly {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        // The first byte over 0x7E is DEL or a character's first byte.
        while let Some(at) = rest.bytes().position(|b| b > 0x7E) {
            w.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            for unit in c.encode_utf16(&mut [0; 2]) {
                write!(w, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
}

/// A value serialized as its `Display` text, without an intermediate string.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `2026-11-30T05:00:00.123Z`.
struct Rfc3339Ms(SystemTime);

impl std::fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = time::OffsetDateTime::from(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

/// nginx's `$time_local` in UTC: `30/Nov/2026:05:00:00 +0000`.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    pub(in crate::access_log) fn line() -> RequestLine {
        RequestLine {
            ts: UNIX_EPOCH + Duration::from_millis(1_800_000_000_123),
            listener: "partners".into(),
            sni: Some("api.example".into()),
            client_addr: "10.1.2.3:5555".parse().unwrap(),
            identity: Some(LoggedIdentity::of(&crate::identity::Identity {
                subject: "CN=billing".into(),
                issuer: "CN=ca".into(),
                cn: vec!["billing".into()],
                ou: vec![],
                dns_sans: vec![],
                uri_sans: vec!["spiffe://td/sa/billing".into()],
                email_sans: vec![],
                serial: "01".into(),
                fingerprint_sha256: "ab".repeat(32),
                not_before: 0,
                not_after: 0,
                chain: vec![],
                anchors: Default::default(),
                forwarded: Default::default(),
                logged: Default::default(),
            })),
            method: http::Method::POST,
            host: Some(b"api.example"[..].into()),
            path: "/v1/%22x%22".into(),
            protocol: http::Version::HTTP_2,
            status: 201,
            bytes_in: 10,
            bytes_out: 20,
            duration: Duration::from_micros(1500),
            upstream: Some("app".into()),
            upstream_addr: Some("https://127.0.0.1:9000".into()),
            upstream_attempts: None,
            upstream_time: Some(Duration::from_millis(1)),
            request_id: http::HeaderValue::from_static("rid-1"),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            tls_version: Some("TLSv1.3"),
            resumed: false,
            authz: "allowed",
            referer: None,
            user_agent: Some(b"curl \"8\""[..].into()),
        }
    }

    /// Every documented JSON field is present, with the request's values.
    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        write(&mut out, &Line::Request(Box::new(line())), LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let want = serde_json::json!({
            "ts": "2027-01-15T08:00:00.123Z", "listener": "partners", "sni": "api.example",
            "client_addr": "10.1.2.3:5555", "client_subject": "CN=billing",
            "client_uri_san": "spiffe://td/sa/billing", "client_fingerprint": "ab".repeat(32),
            "method": "POST", "host": "api.example", "path": "/v1/%22x%22", "protocol": "HTTP/2.0",
            "status": 201, "bytes_in": 10, "bytes_out": 20, "duration_ms": 1.5,
            "upstream": "app", "upstream_addr": "https://127.0.0.1:9000", "upstream_ms": 1.0,
            "request_id": "rid-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "tls_version": "TLSv1.3", "resumed": false, "authz": "allowed",
            "upstream_attempts": null,
        });
        assert_eq!(v, want);
    }

    /// A retried request's `upstream_attempts`: each endpoint it tried, in
    /// order, the last being `upstream_addr`; the field last in the line.
    #[test]
    fn json_names_every_attempt_of_a_retried_request() {
        let mut r = line();
        let (first, last) = ("https://127.0.0.2:9000", "https://127.0.0.1:9000");
        r.upstream_attempts = Some([first.into(), last.into()].into());
        let mut out = Vec::new();
        write(&mut out, &Line::Request(Box::new(r)), LogFormat::Json);
        let text = String::from_utf8(out).unwrap();
        let want = format!(r#""authz":"allowed","upstream_attempts":["{first}","{last}"]}}"#);
        assert!(text.ends_with(&want), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["upstream_addr"], last);
    }

    /// Every character outside ASCII, and DEL, as `\\uXXXX` (a surrogate
    /// pair beyond U+FFFF): the line is ASCII and parses back to the path.
    #[test]
    fn json_is_ascii() {
        let path = "/\u{9B}\u{85}\u{2028}\u{2029}\u{202E}\u{2066}\u{7F}caf\u{E9}\u{1F600}\"\\";
        let r = RequestLine {
            path: path.into(),
            ..line()
        };
        let mut out = Vec::new();
        write(&mut out, &Line::Request(Box::new(r)), LogFormat::Json);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                r#""path":"/\u009b\u0085\u2028\u2029\u202e\u2066\u007fcaf\u00e9\ud83d\ude00\"\\""#
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["path"], path);
    }

    /// nginx `combined`, with `"` escaped as nginx does; the path without its query.
    #[test]
    fn combined() {
        let mut out = Vec::new();
        write(
            &mut out,
            &Line::Request(Box::new(line())),
            LogFormat::Combined,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"10.1.2.3 - - [15/Jan/2027:08:00:00 +0000] "POST /v1/%22x%22 HTTP/2.0" 201 20 "-" "curl \x228\x22""#
        );
        let mut out = Vec::new();
        let refusal = Line::Refusal(RefusalLine {
            ts: UNIX_EPOCH,
            listener: "p".into(),
            sni: Some("admin.example".into()),
            client_addr: "10.1.2.3:5555".parse().unwrap(),
            reason: "not_allowed",
            duration: std::time::Duration::from_micros(2_000_500),
            answered: None,
        });
        write(&mut out, &refusal, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["authz"], "not_allowed");
        assert_eq!(v["duration_ms"], 2000.5);
        assert_eq!(v["sni"], "admin.example");
        assert_eq!(v["status"], serde_json::Value::Null);
        out.clear();
        write(&mut out, &refusal, LogFormat::Combined);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\"-\" 000 0 \"-\" \"-\" \"tls: not_allowed\""),
            "{text}"
        );
        // Plain HTTP on the TLS port: the 400 it was answered.
        let plain = Line::Refusal(RefusalLine {
            sni: None,
            reason: "plain_http",
            answered: Some((400, 46)),
            ..match refusal {
                Line::Refusal(r) => r,
                _ => unreachable!(),
            }
        });
        let mut out = Vec::new();
        write(&mut out, &plain, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["status"].clone(), v["bytes_out"].clone()),
            (400.into(), 46.into())
        );
        assert_eq!(v["protocol"], serde_json::Value::Null);
        out.clear();
        write(&mut out, &plain, LogFormat::Combined);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\"-\" 400 46 \"-\" \"-\" \"tls: plain_http\""),
            "{text}"
        );
    }

    /// A refused head: its status and reason, no request, as nginx logs one.
    #[test]
    fn refused_head() {
        let head = Line::Head(Box::new(HeadLine {
            ts: UNIX_EPOCH,
            listener: "p".into(),
            sni: Some("api.example".into()),
            client_addr: "10.1.2.3:5555".parse().unwrap(),
            identity: None,
            status: 431,
            duration: Duration::from_millis(2),
            tls_version: Some("TLSv1.2"),
            resumed: true,
            reason: "header_too_large",
        }));
        let mut out = Vec::new();
        write(&mut out, &head, LogFormat::Combined);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"10.1.2.3 - - [01/Jan/1970:00:00:00 +0000] "-" 431 0 "-" "-""#
        );
        let mut out = Vec::new();
        write(&mut out, &head, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (&v["status"], &v["authz"], &v["protocol"], &v["duration_ms"]),
            (
                &431.into(),
                &"header_too_large".into(),
                &"HTTP/1.1".into(),
                &2.0.into()
            )
        );
        assert_eq!(
            (&v["tls_version"], &v["resumed"]),
            (&"TLSv1.2".into(), &true.into())
        );
        assert!(v["method"].is_null() && v["path"].is_null() && v["request_id"].is_null());
    }
}
