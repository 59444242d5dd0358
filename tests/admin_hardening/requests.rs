//! Raw requests: one client's connections, non-ASCII paths, the Bearer scheme, HEAD, slow bodies.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// One client address holds at most 16 admin connections: a 17th from it
/// takes the place of the one of its own that waited on its client
/// longest (the first, silent since it came), while another address
/// (kubelet's, on the node) is still answered. One client used to be able
/// to hold all 64 and leave the probes waiting in the backlog until the
/// pod was restarted.
#[tokio::test]
async fn one_client_cannot_take_every_admin_connection() {
    let a = Api::start("").await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(tokio::net::TcpStream::connect(a.api).await.unwrap());
    }
    let probe = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.api
    );
    let mut seventeenth = tokio::net::TcpStream::connect(a.api).await.unwrap();
    seventeenth.write_all(probe.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    within_deadline("the 17th connection", seventeenth.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Its place was the first held one's: closed with nothing answered.
    evicted_unanswered(&mut held[0]).await;
    // Another client address (a pod IP stands for the node's kubelet).
    let mut other = tcp_from("127.0.0.2", a.api).await;
    other.write_all(probe.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    within_deadline("the other client's probe", other.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    drop(held);
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
    let api = a.api;
    let certs_with = |auth: String| async move {
        admin(
            api,
            "GET",
            "/api/v1/certs",
            None,
            None,
            &[("authorization", &auth)],
        )
        .await
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = certs_with(format!("{scheme} {EDITOR}")).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    // The token itself stays case-sensitive, and another scheme is refused.
    for auth in [
        format!("Bearer {}", EDITOR.to_uppercase()),
        format!("Basic {EDITOR}"),
        "Bearer".to_owned(),
    ] {
        let r = certs_with(auth.clone()).await;
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
    // Other methods are still 405, and say what is allowed.
    let r = a.editor("PATCH", "/api/v1/certs/edge", None).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.headers["allow"], "GET, HEAD, PUT, DELETE");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = admin(a.api, "POST", path, None, None, &[]).await;
        assert_eq!(r.status, 405, "POST {path}: {}", r.body);
        assert_eq!(r.headers["allow"], "GET, HEAD", "{path}");
    }
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

/// A request body that is announced and never sent is answered `408`
/// within the admin listener's 10 s body timeout, and the connection (one
/// of its 64) is given back: it used to be held for as long as the client
/// liked, so 64 such clients shut out probes and scrapes.
#[tokio::test]
async fn an_api_body_that_never_comes_is_408() {
    let a = Api::start("").await;
    let answer = raw(
        a.api,
        format!(
            "POST /api/v1/certs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            a.api
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 10 s"), "{answer}");
}

/// Two `Host` lines, the admin address then another name: only the first
/// was checked, so the request was served as if it named the admin
/// address. RFC 9112 §3.2 (and nginx) answer 400 to more than one Host
/// line, on the API and the probes alike; one Host line is served as ever.
#[tokio::test]
async fn two_host_lines_are_a_bad_request() {
    let a = Api::start("").await;
    for path in ["/api/v1/certs", "/healthz", "/metrics"] {
        for (first, second) in [
            (a.api.to_string(), "evil.example".to_owned()),
            (a.api.to_string(), a.api.to_string()),
        ] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\nAuthorization: Bearer {EDITOR}\r\nConnection: close\r\n\r\n"
            );
            let answer = raw(a.api, req.as_bytes()).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 "),
                "{path} with Host {first} and {second}: {answer}"
            );
        }
        let one = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nConnection: close\r\n\r\n",
            a.api
        );
        let answer = raw(a.api, one.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {answer}");
    }
}

/// A client that closes its sending side once its request is sent (`nc
/// -N`, a script's `shutdown(SHUT_WR)`) gets its answer, and a change made
/// so is applied and audited like any other. hyper took the early FIN for
/// the client leaving and dropped the handler wherever it was: such a
/// DELETE got no answer at all, and was applied or not by chance (the
/// handler dropped before or after it reached the reloader), without the
/// `admin API change applied` line when it was.
#[tokio::test]
async fn a_client_that_half_closes_gets_its_answer_and_the_change_is_audited() {
    let mut a = Api::start("").await;
    a.create(inline_ca("leaving", &a.ca)).await;
    let mut tcp = tokio::net::TcpStream::connect(a.api).await.unwrap();
    let request = format!(
        "DELETE /api/v1/certs/leaving HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\n\r\n",
        a.api
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut reply = Vec::new();
    within_deadline("the DELETE's answer", tcp.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert!(reply.contains(r#""deleted": true"#), "{reply}");
    a.p.wait_log("the DELETE's audit line", |v| {
        v["message"] == "admin API change applied"
            && v["method"] == "DELETE"
            && v["path"] == "/api/v1/certs/leaving"
            && v["role"] == "Editor"
    })
    .await;
    let gone = a.editor("GET", "/api/v1/certs/leaving", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}
