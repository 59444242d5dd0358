//! The admin API against hostile input: raw bytes in paths, scheme case,
//! HEAD, files that are not files, paths outside `store.file_roots`, a
//! planted temp file, a store directory that cannot be written.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EDITOR: &str = "editor-token-6a1f0c2d9e8b7a65";

/// A proxy with an editor token, a store, and a listener `public` serving
/// `edge` from files in the scene's `pki/` directory (so the default
/// `store.file_roots` is that directory). Nothing is watched: only the API
/// changes what is served.
#[allow(dead_code)] // the file and store tests use the rest
struct Api {
    s: Scene,
    ca: TestCa,
    p: Proxy,
    addr: SocketAddr,
    api: SocketAddr,
}

impl Api {
    async fn start(extra: &str) -> Api {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let edge = ca.server_pair(&["localhost"]);
        s.pair("pki/edge", &edge);
        write(&s.path("pki/ca.crt"), &ca.cert_pem);
        write(&s.path("editor.token"), EDITOR);
        let cfg = s.config(&format!(
            r#"
watch: {{ events: false, poll_interval: 1h }}
admin:
  bind: 127.0.0.1:0
  tokens: [{{ role: editor, token_file: editor.token }}]
store: {{ path: data/store.json, key_file: keys/store.key }}
{extra}
certs:
  - {{ id: edge, type: server-pair, cert_file: pki/edge.crt, key_file: pki/edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#
        ));
        let mut p = Proxy::start(&cfg);
        let addr = p.listener_addr("public").await;
        let api = p.admin_addr().await;
        Api {
            s,
            ca,
            p,
            addr,
            api,
        }
    }

    async fn editor(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        admin(self.api, method, path, Some(EDITOR), body, &[]).await
    }
}

/// Raw request bytes to `addr`; the whole answer until the server closes
/// (bounded by a deadline, so a hang fails instead of stalling the suite).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out))
        .await
        .expect("the admin listener answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// `%` before a multi-byte character once sliced a `str` inside a char and
/// panicked the handler (the connection dropped without an answer). Now
/// it is an ordinary id: 404 JSON, and the listener keeps answering.
#[tokio::test]
async fn non_ascii_path_bytes_get_an_answer() {
    let a = Api::start("").await;
    for path in [
        &b"/api/v1/certs/%a\xc3\xa9"[..],
        b"/api/v1/certs/%\xc3\xa9",
        b"/api/v1/certs/%",
        b"/api/v1/certs/x%e",
        b"/api/v1/listeners/%\xe2\x82\xac/cert",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(path);
        req.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nConnection: close\r\n\r\n",
                a.api
            )
            .as_bytes(),
        );
        let answer = raw(a.api, &req).await;
        let shown = String::from_utf8_lossy(path);
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "{shown}: answer {answer:?}"
        );
        assert!(answer.contains("\"Not Found\""), "{shown}: {answer}");
    }
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// RFC 7235 §2.1: the auth scheme is case-insensitive.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let a = Api::start("").await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {EDITOR}");
        let r = admin(
            a.api,
            "GET",
            "/api/v1/certs",
            None,
            None,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    // The token itself stays case-sensitive, and another scheme is refused.
    for auth in [
        format!("Bearer {}", EDITOR.to_uppercase()),
        format!("Basic {EDITOR}"),
        "Bearer".to_owned(),
    ] {
        let r = admin(
            a.api,
            "GET",
            "/api/v1/certs",
            None,
            None,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 401, "{auth}: {}", r.body);
    }
}

/// HEAD on a GET endpoint answers like GET (status, type, length) without
/// a body, on HTTP/1.1 and on raw bytes; it was 405 (API) or 404 (probes).
#[tokio::test]
async fn head_answers_like_get() {
    let a = Api::start("").await;
    for path in [
        "/api/v1/certs",
        "/api/v1/certs/edge",
        "/api/v1/listeners",
        "/api/v1/listeners/public/cert",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        let get = a.editor("GET", path, None).await;
        let head = a.editor("HEAD", path, None).await;
        assert_eq!(get.status, 200, "GET {path}: {}", get.body);
        assert_eq!(head.status, 200, "HEAD {path}: {}", head.body);
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        assert_eq!(
            head.headers.get("content-type"),
            get.headers.get("content-type"),
            "{path}"
        );
        let len: usize = head.headers["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 0, "HEAD {path}: Content-Length {len}");
        if !path.starts_with("/metrics") {
            // Metrics move between two reads; the rest is stable.
            assert_eq!(len, get.body.len(), "{path}");
        }
        if path == "/api/v1/certs/edge" {
            assert_eq!(head.headers.get("etag"), get.headers.get("etag"));
        }
    }
    // A missing entry is the same 404 either way; HEAD still needs a token.
    let r = a.editor("HEAD", "/api/v1/certs/nope", None).await;
    assert_eq!(r.status, 404);
    let r = admin(a.api, "HEAD", "/api/v1/certs", None, None, &[]).await;
    assert_eq!(r.status, 401);
    // On the wire: headers, then the next response, no stray body bytes.
    let answer = raw(
        a.api,
        format!(
            "HEAD /api/v1/certs HTTP/1.1\r\nHost: {0}\r\nAuthorization: Bearer {EDITOR}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            a.api
        )
        .as_bytes(),
    )
    .await;
    let second = answer.find("HTTP/1.1 200 OK\r\n").and_then(|first| {
        answer[first + 1..]
            .find("HTTP/1.1 200 OK\r\n")
            .map(|i| first + 1 + i)
    });
    let second = second.unwrap_or_else(|| panic!("two answers expected: {answer}"));
    assert!(
        answer[..second].ends_with("\r\n\r\n"),
        "HEAD sent a body: {answer}"
    );
    assert!(answer.ends_with("ok\n"), "{answer}");
}

/// Arbitrary JSON: objects lean on the API's own field names, so the
/// handlers get past "unknown field" into the checks behind it. String
/// values are never a valid id, mode or PEM (uppercase, `%`, non-ASCII),
/// so every body is invalid and must be a 4xx.
fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let key = prop_oneof![
        prop::sample::select(vec![
            "id",
            "type",
            "source",
            "cert_file",
            "key_file",
            "ca_file",
            "crl_files",
            "cert_pem",
            "key_pem",
            "ca_pem",
            "crl_pem",
            "mode",
            "ca",
            "ref",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z_]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[A-Z0-9%/.\\[\\]é\\\\-]{0,16}".prop_map(serde_json::Value::from),
        prop::sample::select(vec!["server-pair", "ca-bundle", "file", "inline"])
            .prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("/etc/passwd")),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every mutation endpoint gets arbitrary JSON (and non-JSON) bodies, every
/// id-taking endpoint arbitrary id bytes: always an answer, always a 4xx,
/// never a dropped connection or a 5xx, and the listener still serves.
#[test]
fn admin_api_bodies_and_ids_always_answer_4xx() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as Cases, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(Api::start(""));
    let request = |method: &str, path: &[u8], body: &[u8]| {
        let mut req = format!("{method} ").into_bytes();
        req.extend_from_slice(path);
        req.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                a.api,
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        rt.block_on(raw(a.api, &req))
    };
    let status = |answer: &str| -> u16 {
        answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let endpoints: [(&str, &[u8]); 5] = [
        ("POST", b"/api/v1/certs"),
        ("POST", b"/api/v1/certs/validate"),
        ("PUT", b"/api/v1/certs/edge"),
        ("PUT", b"/api/v1/certs/new-one"),
        ("PUT", b"/api/v1/listeners/public/client-auth"),
    ];
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    let mut runner = TestRunner::new(Cases {
        cases: 160,
        ..Cases::default()
    });
    runner
        .run(&(0..endpoints.len(), body), |(e, body)| {
            let (method, path) = endpoints[e];
            let answer = request(method, path, &body);
            let code = status(&answer);
            prop_assert!(
                (400..500).contains(&code),
                "{} {}: {}",
                method,
                String::from_utf8_lossy(path),
                answer
            );
            Ok(())
        })
        .unwrap();
    // Ids: any bytes but the request line's own delimiters, raw on the wire.
    let id = prop::collection::vec(
        any::<u8>().prop_filter("delimiter", |b| !b" \r\n".contains(b)),
        1..24,
    );
    let shapes: [(&str, &str, &str); 5] = [
        ("GET", "/api/v1/certs/", ""),
        ("DELETE", "/api/v1/certs/", ""),
        ("POST", "/api/v1/certs/", "/reload"),
        ("PUT", "/api/v1/certs/", ""),
        ("GET", "/api/v1/listeners/", "/cert"),
    ];
    let mut runner = TestRunner::new(Cases {
        cases: 160,
        ..Cases::default()
    });
    runner
        .run(&(0..shapes.len(), id), |(s, id)| {
            let (method, prefix, suffix) = shapes[s];
            let mut path = prefix.as_bytes().to_vec();
            path.extend_from_slice(&id);
            path.extend_from_slice(suffix.as_bytes());
            let answer = request(method, &path, b"{}");
            let code = status(&answer);
            prop_assert!(
                (400..500).contains(&code),
                "{} {:?}: {}",
                method,
                String::from_utf8_lossy(&path),
                answer
            );
            Ok(())
        })
        .unwrap();
    // Still serving the same pair, and the catalogue is unchanged.
    rt.block_on(async {
        served_leaf(a.addr, "localhost", &a.ca.cert_pem)
            .await
            .unwrap();
        let r = a.editor("GET", "/api/v1/certs", None).await;
        assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.body);
    });
}
