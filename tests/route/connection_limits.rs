//! max_connections_per_server and connect_timeout: waiting for an upstream connection is bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use crate::support::*;

/// One h2 client with many concurrent streams to a slow HTTP/1.1 backend
/// opens at most `max_connections_per_server` upstream connections; the
/// other requests wait for one and are all served.
#[tokio::test]
async fn max_connections_per_server_caps_upstream_connections() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    // connect_timeout bounds the wait for a free connection: far more than
    // 20 requests over 2 connections need. The backend holds them in
    // pairs (`/burst/2`): both connections busy at once, each time.
    let (p, addr) = serve(&capped_config(
        &w,
        &h1,
        &["max_connections_per_server: 2", "connect_timeout: 30s"],
    ))
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let requests = (0..20).map(|i| {
        let mut send = send.clone();
        async move {
            let req = http::Request::get(format!("https://a.example.com/burst/2/{i}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            // Which backend connection served it, for the message below.
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (status, json["connection"].as_u64())
        }
    });
    let statuses = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("all requests answered");
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    let accepted = h1.accepted.load(Ordering::SeqCst);
    // What the proxy said about its upstream connections (it logs at
    // debug level here): a retry or a closed connection would show.
    let said: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("upstream") || l.contains("retry"))
        .collect();
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} upstream connections; (status, connection) per request: {statuses:?}\n{}",
        said.join("\n")
    );
}

/// When no connection is free within `connect_timeout`, the request gets
/// a 504 that names the cause, counted as `connection_limit`.
#[tokio::test]
async fn waiting_for_a_connection_is_bounded_by_connect_timeout() {
    no_connection_free(&["max_connections_per_server: 1", "connect_timeout: 200ms"]).await;
}

/// The same when `request_timeout` ends the wait first: the endpoint was
/// busy, not failing, so the answer is the connection limit's, and it
/// does not count for passive health. It was answered "upstream timed
/// out" and counted as the endpoint's failure: five in a row ejected a
/// healthy endpoint that was merely at `max_connections_per_server`.
#[tokio::test]
async fn a_request_timeout_while_waiting_for_a_connection_is_the_connection_limit() {
    no_connection_free(&["max_connections_per_server: 1", "request_timeout: 300ms"]).await;
}

/// One request holds the only connection to an HTTP/1.1 backend (its
/// response head came at once, its body never ends: `request_timeout`
/// does not apply to it) while another waits for one under `settings`: the
/// second gets 504 "no upstream connection free", counted as
/// `connection_limit` and never as `timeout`.
async fn no_connection_free(settings: &[&str]) {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let (mut p, addr) = serve(&capped_config(&w, &h1, settings)).await;
    let cfg = || client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let first = tokio::spawn(get(addr, "a.example.com", cfg(), false, "/endless", &[]));
    wait_until(WAIT, "the first request reached the backend", || async {
        h1.open.load(Ordering::SeqCst) == 1
    })
    .await;
    let r = get(addr, "a.example.com", cfg(), false, "/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.contains("no upstream connection free"), "{}", r.body);
    first.abort();
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 1);
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(
            r#"hotproxy_upstream_errors_total{upstream="capped",reason="connection_limit"} 1"#
        ),
        "{m}"
    );
    assert!(!m.contains(r#"reason="timeout""#), "{m}");
}

/// A server that accepts TCP and never answers the TLS handshake is a
/// connect failure within `connect_timeout` (504, `connect_timeout`), not
/// a wait for `request_timeout`; and the stalled connect gives its slot
/// back, so the next request gets the same answer, not `connection_limit`.
#[tokio::test]
async fn stalled_upstream_tls_handshake_is_bounded_by_connect_timeout() {
    let w = world().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // Accept (and keep open, silent) the few connections the test makes.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        for _ in 0..4 {
            let Ok((s, _)) = silent.accept().await else {
                break;
            };
            open.push(s);
        }
        std::future::pending::<()>().await;
    });
    let cfg_path = w.scene.one_upstream_config(
        "silent",
        silent_addr,
        &[
            "max_connections_per_server: 1",
            "connect_timeout: 300ms",
            "request_timeout: 5s",
        ],
    );
    let (mut p, addr) = serve(&cfg_path).await;
    let cfg = || client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    for _ in 0..2 {
        let r = get(addr, "a.example.com", cfg(), false, "/x", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 504, "{}", r.body);
        assert!(r.body.contains("upstream timed out"), "{}", r.body);
    }
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(
            r#"hotproxy_upstream_errors_total{upstream="silent",reason="connect_timeout"} 2"#
        ),
        "{m}"
    );
    held.abort();
}
