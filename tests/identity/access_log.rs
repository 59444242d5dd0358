//! Access-log lines: every field, refusals, logrotate, resumption, a client gone before its answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// Access-log lines: every JSON field with the request's values; a 403 and
/// a refused handshake with their reasons; `access_log: false` listeners
/// silent; SIGUSR1 reopens the file after logrotate moved it; no PEM or
/// key text in any line of the access log or the process log.
#[tokio::test]
async fn access_log_lines() {
    let w = world().await;
    let client = w.pki.client(
        "billing",
        Some("payments"),
        &[uri("spiffe://cluster.local/ns/prod/sa/billing")],
    );
    let stranger = w.pki.client("nobody", None, &[]);
    let auth = allow_cn("billing");
    let routes = "      - { path_prefix: /admin, upstream: app, allow: [{ cn: ops }] }\n      - { path_prefix: /dead, upstream: dead }";
    let (log, extra) = json_access_log(&w);
    let path = config(&w, &auth, "", routes, &extra);
    // A second listener with the log turned off.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "upstreams:",
        "  - name: health\n    bind: 127.0.0.1:0\n    access_log: false\n    tls:\n      certs: [{ ref: edge }]\n    routes: [{ upstream: app }]\nupstreams:",
    ) + "  - name: dead\n    servers: [https://127.0.0.1:1]\n    tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }\n";
    write(&path, &text);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let health = p.listener_addr("health").await;
    let cfg = cfg_for(&w, Some(&client));
    let status = |path| {
        let cfg = cfg.clone();
        async move {
            get(addr, "localhost", cfg, false, path, &[])
                .await
                .unwrap()
                .status
        }
    };
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // HTTP/2 needs ALPN h2 (the protocol agreed on is the one spoken).
    let cfg_h2 = client_config(&w.edge_ca.cert_pem, Some(&client.pair), &[b"h2"]);
    let r = get(
        addr,
        "localhost",
        cfg_h2,
        true,
        "/v1/items?token=secret",
        &[("traceparent", tp), ("x-request-id", "rid-42")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(status("/admin").await, 403);
    // Nothing listens there: hotproxy's own 502, no upstream head.
    assert_eq!(status("/dead").await, 502);
    // A handshake refused on the listener with the log off: a client that
    // does not trust its certificate. No line, while the refusals after it
    // on `partners` get theirs (one writer, in order: awaiting those is
    // enough).
    let distrustful = client_config(&w.pki.root_pem, None, &[b"http/1.1"]);
    assert!(connect(health, "localhost", distrustful).await.is_err());
    // A certificate from a CA the listener does not trust.
    let foreign = w.edge_ca.client_pair("foreign");
    let foreign_cfg = client_config(&w.edge_ca.cert_pem, Some(&foreign), &[b"http/1.1"]);
    assert_eq!(
        outcome(addr, foreign_cfg, "/").await,
        Outcome::Refused(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        ))
    );
    assert_eq!(
        outcome(addr, cfg_for(&w, Some(&stranger)), "/").await,
        DENIED
    );
    assert_eq!(
        get(
            health,
            "localhost",
            cfg_for(&w, None),
            false,
            "/health",
            &[]
        )
        .await
        .unwrap()
        .status,
        200
    );
    // A barrier: a request on `partners` after the health GET has ended.
    // Its line is written after any line the health GET could have had
    // (one writer, in order), so awaiting it gives that line its chance.
    assert_eq!(status("/barrier").await, 200);

    wait_until(Duration::from_secs(10), "the barrier's line", || async {
        read_access_log(&log)
            .iter()
            .any(|l| l["path"] == "/barrier")
    })
    .await;
    let all = read_access_log(&log);
    assert_eq!(all.len(), 6, "{all:?}");
    let dead = all
        .iter()
        .find(|l| l["status"] == 502)
        .expect("the 502's line");
    assert_eq!(dead["upstream"], "dead", "{dead}");
    assert!(dead["upstream_ms"].is_null(), "no upstream head: {dead}");
    let ok = all
        .iter()
        .find(|l| l["request_id"] == "rid-42")
        .expect("the 200's line");
    let fields = [
        "ts",
        "listener",
        "sni",
        "client_addr",
        "client_subject",
        "client_uri_san",
        "client_fingerprint",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "upstream_addr",
        "upstream_ms",
        "request_id",
        "tls_version",
        "resumed",
        "authz",
    ];
    for f in fields {
        assert!(!ok[f].is_null(), "field {f} missing: {ok}");
    }
    assert_eq!(ok["listener"], "partners");
    assert_eq!(ok["sni"], "localhost");
    assert_eq!(ok["client_subject"], "CN=billing, OU=payments");
    assert_eq!(
        ok["client_uri_san"],
        "spiffe://cluster.local/ns/prod/sa/billing"
    );
    assert_eq!(ok["client_fingerprint"], client.pair.fingerprint.as_str());
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["host"], "localhost");
    assert_eq!(ok["path"], "/v1/items", "no query in the log");
    assert_eq!(ok["protocol"], "HTTP/2.0");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_out"].as_u64().unwrap() as usize, r.body.len());
    assert_eq!(ok["upstream"], "app");
    assert_eq!(ok["upstream_addr"], format!("https://{}", w.backend.addr));
    assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ok["tls_version"], "TLSv1.3");
    assert_eq!(ok["resumed"], false);
    assert_eq!(ok["authz"], "allowed");
    assert!(ok["ts"].as_str().unwrap().ends_with('Z'));
    let denied = all
        .iter()
        .find(|l| l["status"] == 403)
        .expect("the 403's line");
    assert_eq!(denied["authz"], "route_not_allowed");
    assert_eq!(denied["path"], "/admin");
    let refused = all
        .iter()
        .find(|l| l["authz"] == "not_allowed")
        .expect("the refused handshake's line");
    assert!(refused["status"].is_null());
    let unknown = all
        .iter()
        .find(|l| l["authz"] == "unknown_ca")
        .expect("the unknown CA's line");
    assert_eq!(unknown["listener"], "partners");
    assert!(
        unknown["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        all.iter().all(|l| l["listener"] != "health"),
        "access_log: false listener logged"
    );

    // logrotate: move the file, SIGUSR1, new lines go to a new file.
    let rotated = w.scene.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.signal("USR1");
    p.wait_log("reopened", |v| v["message"] == "access log reopened")
        .await;
    assert_eq!(status("/after").await, 200);
    let after = |l: &serde_json::Value| l["path"] == "/after";
    wait_until(
        Duration::from_secs(10),
        "a line in the reopened file",
        || async { read_access_log(&log).iter().any(after) },
    )
    .await;
    assert!(!read_access_log(&rotated).iter().any(after));

    // No PEM or key in any line, anywhere.
    let mut secrets = pem_body_lines(&client.pair.cert_pem);
    secrets.extend(pem_body_lines(&client.pair.key_pem));
    secrets.push("BEGIN".into());
    let mut every_line: Vec<String> = p.logs();
    every_line.extend(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .lines()
            .map(str::to_owned),
    );
    every_line.extend(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_owned),
    );
    for l in &every_line {
        for s in &secrets {
            assert!(!l.contains(s.as_str()), "PEM/key text in a log line: {l}");
        }
    }
}

/// A certificate with two URI SANs, only the second of which the
/// listener's `uri_san` rule matches: the line's `client_uri_san` is that
/// second one, the identity that let the client in, not the first. A
/// route whose own rule matches the first SAN logs the first for its
/// requests: the route's rule is the one that admitted them.
#[tokio::test]
async fn the_logged_uri_san_is_the_one_the_rule_matched() {
    let w = world().await;
    let (dev, prod) = (
        "spiffe://cluster.local/ns/dev/sa/billing",
        "spiffe://cluster.local/ns/prod/sa/billing",
    );
    let client = w.pki.client("billing", None, &[uri(dev), uri(prod)]);
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }\n        allow: [{ uri_san: \"spiffe://cluster.local/ns/prod/**\" }]";
    let routes = "      - { path_prefix: /dev, upstream: app, allow: [{ cn: nobody }, { uri_san: \"spiffe://cluster.local/ns/dev/*/*\" }] }";
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, auth, "", routes, &extra));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, Some(&client));
    for path in ["/api", "/dev/x"] {
        assert_eq!(outcome(addr, cfg.clone(), path).await, Outcome::Status(200));
    }
    let lines = wait_access_log(&log, 2, Duration::from_secs(10)).await;
    let logged = |path: &str| {
        let line = lines.iter().find(|l| l["path"] == path).unwrap();
        line["client_uri_san"].clone()
    };
    assert_eq!(logged("/api"), prod, "{lines:?}");
    assert_eq!(logged("/dev/x"), dev, "{lines:?}");
    drop(p);
}

/// `resumed` and `tls_version` in the access log are the connection's: a
/// listener without client auth resumes sessions (tickets), and the second
/// connection of a client that kept its session says so. `bytes_in` is the
/// request body that went upstream.
#[tokio::test]
async fn access_log_reports_resumption() {
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let path = config(&w, "        mode: none", "", "", &extra);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, None);
    for path in ["/first", "/second"] {
        assert_eq!(outcome(addr, cfg.clone(), path).await, Outcome::Status(200));
    }
    // A request with a body: bytes_in counts what went upstream.
    let mut tls = connect(addr, "localhost", cfg.clone()).await.unwrap();
    tls.write_all(b"POST /post HTTP/1.1\r\nhost: localhost\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello world")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let lines = wait_access_log(&log, 3, Duration::from_secs(10)).await;
    let resumed = |path: &str| lines.iter().find(|l| l["path"] == path).unwrap()["resumed"].clone();
    assert_eq!(resumed("/first"), false);
    assert_eq!(resumed("/second"), true);
    let post = lines.iter().find(|l| l["path"] == "/post").unwrap();
    assert_eq!(post["bytes_in"], 11);
    assert_eq!(post["method"], "POST");
    assert_eq!(
        lines.iter().find(|l| l["path"] == "/first").unwrap()["bytes_in"],
        0
    );
    assert!(
        lines
            .iter()
            .all(|l| l["tls_version"] == "TLSv1.3" && l["client_subject"].is_null())
    );
}

/// A client that goes away before its response (nginx's `499`, "client
/// closed request") still gets its access-log line and its count, on both
/// protocols: the HTTP/1.1 connection closed, one HTTP/2 stream reset
/// (`CANCEL`) on a connection that lives on. The upstream request is
/// abandoned with it: the backend's `/hang`, which never ends by itself,
/// stops being answered (with `/slow`, which ends after 2 s, that held
/// however the proxy behaved). The line names the endpoint the request
/// reached in `upstream_addr` (SPEC: the endpoint of the last attempt); it
/// was `null`, as if no endpoint had been used.
#[tokio::test]
async fn client_gone_before_the_response_is_logged_as_499() {
    use std::sync::atomic::Ordering::SeqCst;
    const WAIT: Duration = Duration::from_secs(20);
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let slow = || w.backend.slow_in_flight.load(SeqCst);
    let gone = |n: usize| async move {
        let line = format!(
            "hotproxy_http_requests_total{{listener=\"partners\",upstream=\"app\",code=\"499\"}} {n}"
        );
        wait_metric(admin, &line, WAIT).await;
    };

    // The backend is answering; the client goes away (`drop`): the request
    // is counted, the backend stops.
    let answering = || wait_until(WAIT, "the backend answering", || async { slow() == 1 });
    let abandoned = || {
        wait_until(WAIT, "the upstream request abandoned", || async {
            slow() == 0
        })
    };

    let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    answering().await;
    drop(s);
    gone(1).await;
    abandoned().await;

    let h2 = client_config(&w.edge_ca.cert_pem, None, &[b"h2"]);
    let mut client = h2_client(connect(addr, "localhost", h2).await.unwrap()).await;
    let req = http::Request::get("https://localhost/hang")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    answering().await;
    drop(resp);
    gone(2).await;
    abandoned().await;
    // The connection still serves.
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get("https://localhost/after")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);

    let all = wait_access_log(&log, 3, WAIT).await;
    let gone: Vec<_> = all.iter().filter(|l| l["status"] == 499).collect();
    assert_eq!(gone.len(), 2, "{all:?}");
    for (line, protocol) in gone.iter().zip(["HTTP/1.1", "HTTP/2.0"]) {
        assert_eq!(line["path"], "/hang", "{line}");
        assert_eq!(line["protocol"], protocol, "{line}");
        assert_eq!(line["upstream"], "app", "{line}");
        assert!(line["upstream_ms"].is_null(), "no response head: {line}");
        let sent_to = format!("https://{}", w.backend.addr);
        assert_eq!(line["upstream_addr"], sent_to.as_str(), "{line}");
        assert_eq!(line["bytes_out"], 0, "{line}");
        assert!(line["request_id"].is_string(), "{line}");
    }
    drop(p);
}

/// A request its client ends its sending with at once (`shutdown`: TLS
/// `close_notify` and FIN right after the request) is logged and counted
/// once, as `499` (SPEC §2: one line per request; nginx logs such a client
/// `499`): hyper, seeing the end before it first polled the request's
/// future, dropped that future unpolled, and neither line nor count came
/// (5 of 5 lost). So for the second of two pipelined requests (the first
/// answered) and for a POST whose whole body came before the end. Tried
/// ten times each: which of hyper's reads sees the end first varies.
#[tokio::test]
async fn request_followed_at_once_by_fin_is_logged_as_499() {
    const WAIT: Duration = Duration::from_secs(20);
    const TRIES: usize = 10;
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    // `499`s counted on the listener, whatever their upstream label.
    let counted = || async move {
        let m = metrics_text(admin).await;
        m.lines()
            .filter(|l| {
                l.starts_with("hotproxy_http_requests_total{listener=\"partners\"")
                    && l.contains("code=\"499\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
            .sum::<usize>()
    };
    let host = "host: localhost\r\n";
    let cases: [(String, usize); 3] = [
        (format!("GET /hang HTTP/1.1\r\n{host}\r\n"), 0),
        (
            format!("GET /first HTTP/1.1\r\n{host}\r\nGET /hang HTTP/1.1\r\n{host}\r\n"),
            1,
        ),
        (
            format!("POST /hang HTTP/1.1\r\n{host}content-length: 3\r\n\r\nabc"),
            0,
        ),
    ];
    let (mut lines, mut gone) = (0, 0);
    for (request, answered) in &cases {
        for _ in 0..TRIES {
            let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            lines += 1 + answered;
            gone += 1;
            let all = wait_access_log(&log, lines, WAIT).await;
            let logged: Vec<_> = all.iter().filter(|l| l["status"] == 499).collect();
            assert_eq!(logged.len(), gone, "{request:?}: {all:?}");
            let last = logged[gone - 1];
            assert_eq!(last["path"], "/hang", "{last}");
            assert!(last["request_id"].is_string(), "{last}");
            wait_until(WAIT, "the 499 counted", || async {
                counted().await == gone
            })
            .await;
            drop(s);
        }
    }
    // Exactly one line and one count each: none came twice meanwhile.
    let all = read_access_log(&log);
    assert_eq!(all.len(), lines, "{all:?}");
    let answered: Vec<_> = all.iter().filter(|l| l["status"] != 499).collect();
    assert!(
        answered
            .iter()
            .all(|l| l["status"] == 200 && l["path"] == "/first"),
        "{answered:?}"
    );
    assert_eq!(answered.len(), TRIES, "{all:?}");
    assert_eq!(counted().await, gone);
    drop(p);
}

/// A client that goes away part way through its request body, while the
/// body streams to the upstream (the HTTP/1.1 connection closed, the
/// HTTP/2 stream reset with `CANCEL`), is a client gone before its
/// response: `499` in the line and the count (SPEC §2, the access log),
/// never the `400` of a malformed body, which it never sent and which no
/// client received.
#[tokio::test]
async fn client_gone_part_way_through_its_body_is_499_not_400() {
    use std::sync::atomic::Ordering::SeqCst;
    const WAIT: Duration = Duration::from_secs(20);
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let answering = || {
        wait_until(WAIT, "the backend answering", || async {
            w.backend.slow_in_flight.load(SeqCst) == 1
        })
    };
    let abandoned = || {
        wait_until(WAIT, "the upstream request abandoned", || async {
            w.backend.slow_in_flight.load(SeqCst) == 0
        })
    };
    let gone = |n: usize| async move {
        let line = format!(
            "hotproxy_http_requests_total{{listener=\"partners\",upstream=\"app\",code=\"499\"}} {n}"
        );
        wait_metric(admin, &line, WAIT).await;
    };

    // HTTP/1.1: 3 of 100,000 declared bytes (over `body_buffer_bytes`: the
    // body streams), then the connection closes.
    let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
    s.write_all(b"POST /hang HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\nabc")
        .await
        .unwrap();
    answering().await;
    drop(s);
    gone(1).await;
    abandoned().await;

    // HTTP/2: a body without `content-length`, then `RST_STREAM(CANCEL)`.
    let h2 = client_config(&w.edge_ca.cert_pem, None, &[b"h2"]);
    let client = h2_client(connect(addr, "localhost", h2).await.unwrap()).await;
    let req = http::Request::post("https://localhost/hang")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (_resp, mut tx) = client.send_request(req, false).unwrap();
    tx.send_data(bytes::Bytes::from_static(b"abc"), false)
        .unwrap();
    answering().await;
    tx.send_reset(h2::Reason::CANCEL);
    gone(2).await;
    abandoned().await;

    let all = wait_access_log(&log, 2, WAIT).await;
    assert_eq!(all.len(), 2, "one line per request: {all:?}");
    for (line, protocol) in all.iter().zip(["HTTP/1.1", "HTTP/2.0"]) {
        assert_eq!(line["status"], 499, "{line}");
        assert_eq!(line["protocol"], protocol, "{line}");
        assert_eq!(line["bytes_in"], 3, "{line}");
        assert_eq!(line["bytes_out"], 0, "{line}");
        assert_eq!(line["upstream"], "app", "{line}");
        let sent_to = format!("https://{}", w.backend.addr);
        assert_eq!(line["upstream_addr"], sent_to.as_str(), "{line}");
    }
    let m = metrics_text(admin).await;
    assert!(!m.contains("code=\"400\""), "{m}");
    drop(p);
}

/// A request a route refuses before anything goes upstream — its `allow`
/// (`403`), a declared length over its `max_body_bytes` (`413`) — names
/// the route's upstream in its line, as its count does
/// (`hotproxy_http_requests_total{upstream="app"}`) and as the line of a
/// streamed body cut at the same limit does; they used no endpoint, so
/// their `upstream_addr` stays `null` (the streamed one's names the
/// endpoint its body went to). They were `null`, so a search of the log
/// by upstream missed what the metrics counted.
#[tokio::test]
async fn a_request_a_route_refuses_names_the_routes_upstream() {
    const WAIT: Duration = Duration::from_secs(20);
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = "      - { path_prefix: /admin, upstream: app, allow: [{ cn: ops }] }\n      - { path_prefix: /small, upstream: app, max_body_bytes: 10 }";
    let mut p = Proxy::start(&config(&w, auth, "", routes, &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let r = get(addr, "localhost", cfg_for(&w, None), false, "/admin", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    for (what, head) in [
        ("declared", "content-length: 100\r\n"),
        ("streamed", "transfer-encoding: chunked\r\n"),
    ] {
        let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
        let body: &[u8] = if what == "declared" {
            &[b'x'; 100]
        } else {
            b"64\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n"
        };
        let head = format!("POST /small HTTP/1.1\r\nhost: localhost\r\n{head}\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(body).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
        assert!(
            got.starts_with(b"HTTP/1.1 413"),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let m = metrics_text(admin).await;
    for code in ["403", "413"] {
        assert!(
            m.contains(&format!("upstream=\"app\",code=\"{code}\"")),
            "{m}"
        );
    }
    let all = wait_access_log(&log, 3, WAIT).await;
    assert_eq!(all.len(), 3, "{all:?}");
    for line in &all {
        assert_eq!(line["upstream"], "app", "{line}");
        assert!(line["upstream_ms"].is_null(), "{line}");
    }
    // The 403 and the declared 413 used no endpoint; the streamed body
    // went to one before it passed the limit.
    assert!(all[0]["upstream_addr"].is_null(), "{}", all[0]);
    assert!(all[1]["upstream_addr"].is_null(), "{}", all[1]);
    assert_eq!(
        all[2]["upstream_addr"],
        format!("https://{}", w.backend.addr),
        "{}",
        all[2]
    );
    drop(p);
}

/// A request whose body the client broke or stalled after it went to an
/// endpoint (`400`, `408`) names that endpoint in `upstream_addr`, "the
/// endpoint of the last attempt" (SPEC §2): which backend a failed upload
/// was on its way to. `upstream_ms` stays `null` (no head came). It was
/// `null`: the line of every request hotproxy answered for the client's
/// body lost its endpoint.
#[tokio::test]
async fn a_client_body_fault_names_the_endpoint_it_was_sent_to() {
    const WAIT: Duration = Duration::from_secs(20);
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let limits = "    limits: { body_read_timeout: 500ms }";
    let mut p = Proxy::start(&config(&w, "        mode: none", limits, "", &extra));
    let addr = p.listener_addr("partners").await;
    for (status, body) in [("400", &b"zz\r\n"[..]), ("408", &b"3\r\nabc\r\n"[..])] {
        let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
        s.write_all(
            b"POST /hang HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        s.write_all(body).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
        let want = format!("HTTP/1.1 {status}");
        assert!(
            got.starts_with(want.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let all = wait_access_log(&log, 2, WAIT).await;
    assert_eq!(all.len(), 2, "{all:?}");
    for (line, status) in all.iter().zip([400, 408]) {
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["upstream"], "app", "{line}");
        assert_eq!(
            line["upstream_addr"],
            format!("https://{}", w.backend.addr),
            "{line}"
        );
        assert!(line["upstream_ms"].is_null(), "{line}");
    }
    drop(p);
}
