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
    let mut h2 = h2_client(h2.await.unwrap()).await;
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
    assert!(
        answered.is_ok(),
        "the HTTP/2 client's first request was not answered: {answered:?}"
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
