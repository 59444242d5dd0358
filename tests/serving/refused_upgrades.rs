//! Requests that asked for an upgrade and got none: their connection's last response is not cut when it closes.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// The last response's body. The client's socket is made small (a 4 KiB
/// receive buffer, 1 KiB segments, so the proxy's send buffer stays
/// small too): with the client not reading, the kernel takes well under
/// 256 KiB of it, and hyper's write buffer (`max_header_bytes`: 1 MiB)
/// the rest. The proxy then has the whole body from the upstream (its
/// line is written) with the tail still in hyper's buffer.
const BODY_KIB: usize = 512;

/// A TLS connection to `addr` from a socket with a small receive buffer
/// and small segments (see [`BODY_KIB`]).
async fn small_socket(w: &World, addr: SocketAddr) -> Tls {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.set_tcp_mss(1024).unwrap();
    sock.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpSocket::from_std_stream(sock.into())
        .connect(addr)
        .await
        .unwrap();
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("a.example.com").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// On a small socket, send `first` (if any) and read its whole answer,
/// then `GET` the big body with `last_headers` and `Connection: close`;
/// once the proxy has taken the whole body from the upstream (its
/// access-log line written), stop the proxy (SIGTERM: hyper closes the
/// connection gracefully), and only then read: the whole body comes.
async fn big_last_response_at_shutdown(first: Option<&[u8]>, last_headers: &str) {
    let (w, mut p, addr, log) = serve_logged("max_header_bytes: 1048576").await;
    let mut s = small_socket(&w, addr).await;
    if let Some(first) = first {
        write_for_200(&mut s, first).await;
    }
    let get = format!(
        "GET /kib/{BODY_KIB} HTTP/1.1\r\nhost: a.example.com\r\n{last_headers}connection: close\r\n\r\n"
    );
    s.write_all(get.as_bytes()).await.unwrap();
    let path = format!("/kib/{BODY_KIB}");
    let lines = wait_access_log(&log, 1 + usize::from(first.is_some()), WAIT).await;
    let line = lines.iter().find(|v| v["path"] == path.as_str()).unwrap();
    assert_eq!(line["status"], 200, "{line}");
    p.signal("TERM");
    p.wait_log("shutdown drain", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;
    let got = read_to_close(&mut s).await;
    let at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&got[..at]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(got.len() - at, BODY_KIB * 1024, "the body's bytes received");
}

/// A keep-alive connection whose first request asked to upgrade to `h2c`
/// (not tunnelled: answered as an ordinary request) and whose last, with
/// `Connection: close`, gets a body the client has not read yet when the
/// proxy shuts down: the whole body comes. hyper kept the first request's
/// pending upgrade and, closing gracefully, handed the socket over to it
/// instead of flushing, dropping what it still held of the last response.
#[tokio::test]
async fn the_last_response_after_a_refused_upgrade_is_sent_whole_at_shutdown() {
    let first: &[u8] = b"GET /api HTTP/1.1\r\nhost: a.example.com\r\nupgrade: h2c\r\n\
        connection: Upgrade, HTTP2-Settings\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n";
    big_last_response_at_shutdown(Some(first), "").await;
}

/// The same in one request: `Upgrade: h2c` with `Connection: close`.
#[tokio::test]
async fn a_refused_upgrades_own_response_is_sent_whole_at_shutdown() {
    let upgrade = "upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n";
    big_last_response_at_shutdown(None, upgrade).await;
}
