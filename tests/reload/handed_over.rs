//! A listener renamed on its address hands its socket over: the clients its old accept loop took, with no request yet, are answered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;

/// A client whose TLS handshake ended before a rename handed its
/// listener's socket over, its first request not sent yet, is answered,
/// that request its last: the address never stopped serving. TLS 1.2
/// without False Start sends the request a round trip after the
/// server's Finished, so the rename may come in between. It was closed
/// unanswered (`close_notify`; on HTTP/2 a `GOAWAY` first), as a client
/// of a listener removed.
#[tokio::test]
async fn a_client_between_its_handshake_and_its_request_across_a_rename_is_answered() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let cfg = s.config(&format!("listeners:\n{}", tls_listener("one", 0)));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("one").await;
    // TLS 1.2: once the client has the server's Finished, the server's
    // handshake is over too (with TLS 1.3 the client's Finished may still
    // be on its way, a client the old loop already answers).
    let tls12 = client_config_offering(
        &ca.cert_pem,
        &[rustls::SignatureScheme::ECDSA_NISTP256_SHA256],
        &rustls::version::TLS12,
        None,
    );
    let mut waiting = connect(addr, "localhost", tls12.clone()).await.unwrap();
    assert_eq!(
        waiting.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // HTTP/2: its preface and SETTINGS sent, no stream yet.
    let mut h2 = (*tls12).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let h2 = connect(addr, "localhost", std::sync::Arc::new(h2));
    let (h2, h2_conn) = within_deadline("an HTTP/2 handshake", async {
        h2::client::handshake(h2.await.unwrap()).await.unwrap()
    })
    .await;
    let h2_conn = tokio::spawn(h2_conn);
    let mut h2 = within_deadline("HTTP/2 ready", h2.ready()).await.unwrap();
    write(
        &cfg,
        &format!("listeners:\n{}", tls_listener("edge", addr.port())),
    );
    old_loop_stopped(&mut p, "one").await;
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut waiting).await).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 "),
        "the client's first request was not answered: {answer:?}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "its first request is its last: {answer:?}"
    );
    let get = http::Request::get("https://localhost/").body(()).unwrap();
    let answered = match h2.send_request(get, true) {
        Ok((asked, _)) => within_deadline("an HTTP/2 answer", asked).await,
        Err(closed) => Err(closed),
    };
    // No route: the proxy's own 404, as the HTTP/1.1 one.
    let status = answered.map(|r| r.status());
    assert!(
        answer.starts_with("HTTP/1.1 404 ") && matches!(status, Ok(http::StatusCode::NOT_FOUND)),
        "the HTTP/2 client's first request was not answered: {status:?}"
    );
    // Then its connection closes, gracefully: a `GOAWAY` (`NO_ERROR`)
    // first, not the socket's end alone (h2 then says a broken pipe).
    let ended = within_deadline("the HTTP/2 connection's close", h2_conn).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    let after = h2.ready().await.err();
    assert!(
        after.as_ref().is_some_and(|e| e.is_go_away()
            && e.is_remote()
            && e.reason() == Some(h2::Reason::NO_ERROR)),
        "no GOAWAY before the close: {after:?}"
    );
}

/// A redirect listener's client accepted before a rename hands its
/// socket over, its PROXY header read, its request coming after the
/// rename, gets its `308`: the address never stopped serving. It was
/// closed unanswered, as a client of a listener removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_listeners_client_whose_request_comes_after_a_rename_is_redirected() {
    let (_scene, mut p, addr, cfg) = redirecting().await;
    let mut ready = TcpStream::connect(addr).await.unwrap();
    ready
        .write_all(b"PROXY TCP4 203.0.113.8 127.0.0.1 40001 80\r\n")
        .await
        .unwrap();
    rename_once_taken(&mut p, addr, &cfg).await;
    ready
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_redirected(&mut ready).await;
}

/// A redirect listener's client accepted before a rename hands its
/// socket over, part way into its PROXY header then, gets its `308` once
/// the header's end and its request come: its task reaches the redirect
/// after the removal flag, as one of a listener removed would. It was
/// dropped there, its request unread (a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_listeners_client_whose_proxy_header_ends_after_a_rename_is_redirected() {
    let (_scene, mut p, addr, cfg) = redirecting().await;
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"PROXY TCP4 203.0.113.7 ").await.unwrap();
    rename_once_taken(&mut p, addr, &cfg).await;
    // One write: the header's end and the request, one segment.
    late.write_all(b"127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_redirected(&mut late).await;
}

/// A client handed over with no request yet (its driver running when the
/// rename came: its TLS handshake counted, or its redirect connection
/// open) is closed at once at SIGTERM, after a look at its socket, as any
/// connection with no request (SPEC §1), and the process exits. The
/// hand-over made its first request its last, which the signal took for
/// a head an earlier look had found: no look, only hyper's graceful
/// close, which drops a request unread on the socket at the signal (the
/// driver's look_tests show it; this one had sent none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_client_with_no_request_yet_is_closed_at_once_at_shutdown() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let both = |tls: &str, http: &str, ports: (u16, u16)| {
        format!(
            "admin: {{ bind: \"127.0.0.1:0\" }}\nruntime: {{ shutdown_grace: 60s }}\nlisteners:\n{}  - name: {http}\n    bind: 127.0.0.1:{}\n    redirect_https: {{ port: 8443 }}\n    limits: {{ header_read_timeout: 1h }}\n",
            tls_listener(tls, ports.0),
            ports.1
        )
    };
    let cfg = s.config(&both("one", "http", (0, 0)));
    let mut p = Proxy::start(&cfg);
    let (tls_addr, http_addr) = (p.listener_addr("one").await, p.listener_addr("http").await);
    let admin = p.admin_addr().await;
    let h1 = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let mut tls = connect(tls_addr, "localhost", h1).await.unwrap();
    let mut plain = TcpStream::connect(http_addr).await.unwrap();
    let shaken = "hotproxy_tls_handshakes_total{listener=\"one\",result=\"success\"} 1";
    wait_metric(admin, shaken, WAIT).await;
    wait_metric(
        admin,
        "hotproxy_connections_active{listener=\"http\"} 1",
        WAIT,
    )
    .await;
    write(
        &cfg,
        &both("edge", "web", (tls_addr.port(), http_addr.port())),
    );
    old_loop_stopped(&mut p, "one").await;
    old_loop_stopped(&mut p, "http").await;
    for name in ["one", "http"] {
        p.wait_log("the driver's hand-over", |v| {
            v["message"] == "listener handed over: its first request is answered, its last"
                && v["listener"] == name
        })
        .await;
    }
    p.signal("TERM");
    for name in ["one", "http"] {
        p.wait_log("the close at once at SIGTERM", |v| {
            v["message"] == "closing connection: shutting down before its first request"
                && v["listener"] == name
        })
        .await;
    }
    // Bounded by read_to_close's 20 s, under the hour and the minute.
    let tls_read = String::from_utf8_lossy(&read_to_close(&mut tls).await).into_owned();
    assert_eq!(tls_read, "", "the TLS client was answered");
    let plain_read = String::from_utf8_lossy(&read_to_close(&mut plain).await).into_owned();
    assert_eq!(
        plain_read, "",
        "the redirect listener's client was answered"
    );
    assert!(p.wait_exit(CLIENT_DEADLINE).await.success());
}

/// The proxy with a redirect listener `http`, in its scene: its address
/// and the configuration file.
async fn redirecting() -> (Scene, Proxy, SocketAddr, PathBuf) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let cfg = s.config(&redirect_config("http", 0));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("http").await;
    (s, p, addr, cfg)
}

/// Once the old loop of `http` has taken the client connected (not left
/// it queued for the new one), renames it `web` and waits until that loop
/// has stopped.
async fn rename_once_taken(p: &mut Proxy, addr: SocketAddr, cfg: &Path) {
    let admin = p.admin_addr().await;
    let gauge = "hotproxy_connections_active{listener=\"http\"} 1";
    wait_metric(admin, gauge, WAIT).await;
    write(cfg, &redirect_config("web", addr.port()));
    old_loop_stopped(p, "http").await;
}

/// The client is answered its `308`.
async fn assert_redirected(tcp: &mut TcpStream) {
    let answer = String::from_utf8_lossy(&read_to_close(tcp).await).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 308"),
        "not redirected: {answer:?}"
    );
}

/// Listener `name` on `127.0.0.1:port` serving `a.crt`, its first request
/// due within an hour: only the rename may close a connection.
fn tls_listener(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    bind: 127.0.0.1:{port}\n    limits: {{ header_read_timeout: 1h }}\n    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}\n"
    )
}

/// The admin API, listener `public`, and the redirect listener `name` on
/// `127.0.0.1:port`, taking PROXY headers from loopback, each request
/// due within an hour.
fn redirect_config(name: &str, port: u16) -> String {
    format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{}  - name: {name}\n    bind: 127.0.0.1:{port}\n    redirect_https: {{ port: 8443 }}\n    proxy_protocol: {{ from: [127.0.0.1/32] }}\n    limits: {{ header_read_timeout: 1h }}\n",
        tls_listener("public", 0)
    )
}

/// Until the rename has stopped the old accept loop of `name`: its
/// connections have been told (the removal is set before its `closing`).
async fn old_loop_stopped(p: &mut Proxy, name: &str) {
    p.wait_log("the old accept loop stopped", |v| {
        v["message"] == "accept loop stopped" && v["listener"] == name
    })
    .await;
}
