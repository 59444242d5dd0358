//! Unit tests of upstream connections: an idle HTTP/1.1 connection the upstream closes, an HTTP/2 one closed at its last stream; over TLS, a close_notify waiting on a full socket (`close_notify`).

use super::*;

/// Whether the IPv4 socket bound to `local` is in CLOSE_WAIT (its peer's
/// FIN received), by the kernel's table.
fn close_wait(local: std::net::SocketAddr) -> bool {
    tcp_state_is(local, "08")
}

/// Whether the IPv4 socket bound to `local` is in the TCP `state` the
/// kernel's table prints (`01` ESTABLISHED, `08` CLOSE_WAIT): read there,
/// not by reading the socket, which is what such tests are about.
pub(crate) fn tcp_state_is(local: std::net::SocketAddr, state: &str) -> bool {
    let std::net::IpAddr::V4(ip) = local.ip() else {
        return false;
    };
    // Addresses as the kernel prints them: the IPv4 bytes in host
    // order, then the port, in hex.
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        local.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.nth(1)?.to_owned(), f.nth(1)?.to_owned()))
        })
        .any(|(at, st)| at == want && st == state)
}

/// An idle HTTP/1.1 connection the upstream closes (its keep-alive
/// timeout) after the pool found it ready but before the request is
/// handed over. A review feared hyper's dispatcher would read the FIN,
/// end, and leave the request queued with nobody to answer it (`send`
/// waiting out `request_timeout`, then a 504 counted against the
/// endpoint). On a connection never used, hyper takes that FIN as an
/// error and hands the request back unwritten, so it is sent again
/// elsewhere at once; on a used one it does so only when dropped (the
/// next test).
#[tokio::test]
async fn a_request_queued_on_a_connection_closed_meanwhile_comes_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = crate::upstream::pool::tests::h1(&listener).await;
    let (server, client) = listener.accept().await.unwrap();
    assert!(c.ready().await);
    // The upstream closes.
    close_and_await_the_fin(server, client).await;
    a_request_comes_back_unwritten(&mut c).await;
}

/// The upstream closes `server`; then the kernel shows the FIN in: the
/// client's socket (bound to `client`) in CLOSE_WAIT, read from
/// /proc/net/tcp (reading the socket itself is what the tests are about).
async fn close_and_await_the_fin(mut server: tokio::net::TcpStream, client: std::net::SocketAddr) {
    tokio::io::AsyncWriteExt::shutdown(&mut server)
        .await
        .unwrap();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !close_wait(client) {
        assert!(Instant::now() < deadline, "the FIN never arrived");
        tokio::task::yield_now().await;
    }
    // A yield lets the runtime poll its IO driver (tokio defers a
    // yielded task's wake-up until after it), so the socket's readiness
    // is in: hyper then reads the FIN before it writes. (Before that,
    // hyper would write the request first and read the FIN after: the
    // request was sent, and is retried only when idempotent, which
    // SPEC's retry rules and README's "rare 502 on a POST" cover.)
    tokio::task::yield_now().await;
}

/// A request sent on `c` now comes back, within 5 s, as an error that
/// hands it back unwritten: that error.
async fn a_request_comes_back_unwritten(c: &mut H1) -> TrySendError<Request<ClientBody>> {
    let req = http::Request::get("/")
        .body(crate::proxy::body::ClientBody::empty())
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(5), c.send(req))
        .await
        .expect("the request never came back");
    let e = sent.expect_err("nothing answered it");
    assert!(
        e.message().is_some(),
        "the request was never written: {:?}",
        e.error()
    );
    e
}

/// As above, on a connection that has carried a request: hyper's state
/// is then keep-alive idle, where the FIN reads as a clean close, not
/// an error. The dispatcher ends without ever looking at the request
/// queued meanwhile; only dropping it hands the request back. Kept
/// alive, `send` waited for an answer that never came.
#[tokio::test]
async fn a_request_queued_on_a_used_connection_closed_meanwhile_comes_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = used_then_closed(&listener).await;
    a_request_comes_back_unwritten(&mut c).await;
}

/// A request handed back unwritten by a reused connection its upstream
/// closed while idle (its keep-alive timeout racing the request), with
/// no send again to its endpoint left (`resends`: five in all, over
/// HTTP/2 and HTTP/1.1 connections alike), is one the endpoint never saw
/// (SPEC: Passive health, Metrics), as over HTTP/2: it goes to another
/// endpoint when one may take it, and neither that endpoint's passive
/// health nor `hotproxy_upstream_errors_total` count it. It failed as a
/// request the endpoint processed, counted against it. A new connection
/// closed before its first request is the endpoint's failure still.
#[tokio::test]
async fn a_request_a_reused_connection_hands_back_unwritten_was_never_processed() {
    use crate::proxy::failure::{diagnose, h1_spent, never_processed};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = used_then_closed(&listener).await;
    let e = a_request_comes_back_unwritten(&mut c).await;
    let (failure, again) = h1_spent(e, None, c.reused());
    assert!(again.is_some(), "the request kept for another endpoint");
    let (reason, cause, _) = diagnose(&failure);
    assert!(never_processed(&failure), "counted: {reason}, {cause}");
    // Its words point at the keep-alive race, not at a server shutting
    // the connection down (an HTTP/2 `GOAWAY`'s); the reason is contract.
    assert_eq!(reason, "protocol");
    assert!(
        cause.contains("idle") && cause.contains("idle_timeout") && !cause.contains("shutting"),
        "{cause}"
    );
    // Never used: closed before any request, by the endpoint.
    let mut c = crate::upstream::pool::tests::h1(&listener).await;
    let (server, client) = listener.accept().await.unwrap();
    assert!(c.ready().await);
    close_and_await_the_fin(server, client).await;
    let e = a_request_comes_back_unwritten(&mut c).await;
    let (failure, again) = h1_spent(e, None, c.reused());
    assert!(again.is_some(), "the request kept for another endpoint");
    assert!(
        !never_processed(&failure),
        "a new connection's close excused"
    );
}

/// A connection to `listener` that has carried one request, answered
/// keep-alive, then gone idle (ready for the next), which the upstream
/// has closed since: its FIN is in.
async fn used_then_closed(listener: &tokio::net::TcpListener) -> Box<H1> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = crate::upstream::pool::tests::h1(listener).await;
    let (mut server, client) = listener.accept().await.unwrap();
    // One request, answered keep-alive.
    let req = http::Request::get("/")
        .body(crate::proxy::body::ClientBody::empty())
        .unwrap();
    let answer = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(server.read(&mut b).await.unwrap(), 1, "no request");
            head.push(b[0]);
        }
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
    };
    let (resp, ()) = tokio::join!(c.send(req), answer);
    let mut body = resp
        .map_err(|e| e.into_error())
        .expect("answered")
        .into_body();
    // Its (empty) body to the end, driving the connection meanwhile.
    std::future::poll_fn(|cx| {
        c.poll_conn(cx);
        hyper::body::Body::poll_frame(Pin::new(&mut body), cx).map(|f| assert!(f.is_none()))
    })
    .await;
    drop(body);
    c.idle_since = Some(Instant::now());
    assert!(c.ready().await, "the used connection is not ready");
    // The upstream closes it while idle; the FIN is in (CLOSE_WAIT).
    close_and_await_the_fin(server, client).await;
    c
}

/// An HTTP/2 connection to close when idle (a retired pool's) is shared
/// until its last stream ends, then closed at once, and takes no stream
/// after that: a stream taken as the last one ended would be cut by the
/// close.
#[tokio::test]
async fn an_h2_connection_closed_when_idle_closes_at_its_last_stream_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (ended, server_ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (server, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(server).await.unwrap();
        while let Some(Ok(_)) = conn.accept().await {}
        let _ = ended.send(());
    });
    let d = Dialled {
        io: UpstreamIo::new(MaybeTls::Plain(tcp), None),
        h2: true,
    };
    let wakes = Arc::default();
    let c = H2::handshake(d, 0, None, 65_535, wakes).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    c.settings_within(deadline).await.unwrap();
    let first = c.first_stream().unwrap();
    c.close_when_idle();
    let second = c.try_stream().expect("shared while a stream is open");
    drop(first);
    assert!(c.usable(), "closed with a stream open");
    drop(second);
    assert!(!c.usable(), "usable after its last stream");
    assert!(c.try_stream().is_none(), "a stream after its last one");
    tokio::time::timeout(Duration::from_secs(10), server_ended)
        .await
        .expect("the connection stays open")
        .unwrap();
}

mod close_notify;
