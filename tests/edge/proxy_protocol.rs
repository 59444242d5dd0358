//! PROXY protocol v1 and v2: the source a `from` peer sends, and every refusal.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// PROXY v1 and v2 from a `from` peer: the header's source is the client
/// address the backend sees. v2 LOCAL (the balancer's health check) keeps
/// the peer's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_allowed_peer() {
    let w = world().await;
    let v2 = |src: &str, dst: &str, command: u8| {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        ppp::v2::Builder::with_addresses(0x20 | command, ppp::v2::Protocol::Stream, (src, dst))
            .write_tlv(ppp::v2::Type::NoOp, b"pad")
            .unwrap()
            .build()
            .unwrap()
    };
    // (header from 127.0.0.2, the X-Forwarded-For the backend sees)
    for (header, client) in [
        (
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.7",
        ),
        (
            v2("[2001:db8::7]:40000", "[2001:db8::1]:443", 1),
            "2001:db8::7",
        ),
        // A dual-stack balancer (HAProxy's `v4v6`) names an IPv4 client by
        // its mapped form: it is the IPv4 address, as on a dual-stack socket.
        (
            b"PROXY TCP6 ::ffff:203.0.113.8 ::ffff:10.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.8",
        ),
        // LOCAL (the balancer's own check): the peer's address.
        (v2("192.0.2.9:1", "192.0.2.1:443", 0), "127.0.0.2"),
    ] {
        let mut tcp = tcp_from("127.0.0.2", w.public).await;
        tcp.write_all(&header).await.unwrap();
        let (status, _, body) = get_over(tcp, &w, "/api", &[]).await.unwrap();
        assert_eq!(status, 200, "{client}: {body}");
        assert_eq!(seen(&body)["headers"]["x-forwarded-for"], client);
    }

    // Outside `from`, no header: served as usual, with the socket's address.
    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, _, body) = get_over(tcp, &w, "/api", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["headers"]["x-forwarded-for"], "127.0.0.1");
}

/// Refused: a header from outside `from` (v1 and v2), no header from a
/// `from` peer, a malformed header, a header that never ends (bounded by
/// header_read_timeout). Each is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_refusals() {
    let w = world().await;

    let mut tcp = tcp_from("127.0.0.1", w.public).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    refused(tcp, &w).await;

    let mut tcp = tcp_from("127.0.0.3", w.public).await;
    tcp.write_all(
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x0a\x00\x00\x01\x9c\x40\x01\xbb",
    )
    .await
    .unwrap();
    refused(tcp, &w).await;

    // The load balancer's peer without a header: its own address would be
    // taken for the client's.
    refused(tcp_from("127.0.0.2", w.public).await, &w).await;

    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 not-an-address 10.0.0.1 1 443\r\n")
        .await
        .unwrap();
    refused(tcp, &w).await;

    // A header that stops half way: closed once header_read_timeout (1s)
    // has passed, never held open.
    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a stalled header must be closed: {closed:?}"
    );

    let metrics = admin(w.admin, "GET", "/metrics", None, None, &[])
        .await
        .body;
    for reason in [
        "proxy_protocol_not_allowed",
        "proxy_protocol_missing",
        "proxy_protocol_malformed",
        "proxy_protocol_timeout",
    ] {
        assert!(
            metrics.contains(&format!(
                "hotproxy_tls_handshakes_total{{listener=\"public\",result=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
}
