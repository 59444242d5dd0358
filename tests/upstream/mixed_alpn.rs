//! One endpoint whose connections come up HTTP/2 or HTTP/1.1 (a load balancer before mixed pods): five sends of a request at most.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::common::*;
use crate::raw_h2::{H2Conn, begun, h2_frame, next_frame, refused, response, settings};
use crate::support::*;

/// What the test and its backend tell each other.
#[derive(Default)]
struct Mixed {
    /// The request's sends the backend saw, on every connection.
    sends: AtomicUsize,
    /// Connection 0 may take more streams (the test told it).
    raise: Notify,
    /// Connection 0's raised limit is acknowledged.
    raised: Notify,
    /// Connection 3 holds the request.
    holding: Notify,
    /// Connection 3 may take no new stream, and refuses the request.
    lower: Notify,
}

/// A raw HTTP/2 connection's frames, the client's SETTINGS acknowledged
/// on the way, and its acknowledgements of ours counted.
struct Raw {
    tls: H2Conn,
    acks: usize,
}

impl Raw {
    /// The stream id of the next request (HEADERS); `None` at the end.
    async fn next_request(&mut self) -> Option<u32> {
        loop {
            let (kind, flags, stream) = next_frame(&mut self.tls).await?;
            match (kind, flags & 1) {
                (1, _) => return Some(stream),
                (4, 1) => self.acks += 1,
                (4, _) => self.tls.write_all(&h2_frame(4, 1, 0, &[])).await.ok()?,
                _ => {}
            }
        }
    }

    /// Our SETTINGS `params`, once the client has acknowledged them: h2
    /// has applied them, and its watcher was woken (before its ACK went
    /// out) to read the stream limit.
    async fn settle(&mut self, params: &[(u16, u32)]) {
        self.tls.write_all(&settings(params)).await.unwrap();
        let want = self.acks + 1;
        while self.acks < want {
            let (kind, flags, _) = next_frame(&mut self.tls).await.expect("an ACK");
            match (kind, flags & 1) {
                (4, 1) => self.acks += 1,
                (4, _) => self.tls.write_all(&h2_frame(4, 1, 0, &[])).await.unwrap(),
                _ => {}
            }
        }
    }
}

/// The TLS settings of a backend connection agreeing on `alpn`.
fn acceptor(pair: &TestPair, alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// The head of the next HTTP/1.1 request (no body); `None` at the end.
async fn h1_head(tls: &mut H2Conn) -> Option<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        (tls.read(&mut byte).await.ok()? == 1).then_some(())?;
        buf.push(byte[0]);
    }
    Some(())
}

/// `200`, body `ok`, the connection kept alive.
const H1_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// One backend behind a load balancer that agrees on HTTP/2 with some
/// connections and HTTP/1.1 with others, numbered as accepted:
/// - 0 (HTTP/2, one stream): answers the first request's head and holds
///   it (a long stream); raised to 100 streams when told, it refuses
///   every later request (`REFUSED_STREAM`).
/// - 1 (HTTP/1.1): answers one request; reads the next and closes.
/// - 2 (HTTP/2): refuses every request.
/// - 3 (HTTP/2): holds the first request, answers the second; when told,
///   allows no new stream (SETTINGS_MAX_CONCURRENT_STREAMS 0) and then
///   refuses the first.
/// - 4 on (HTTP/1.1): answers every request.
///
/// Every request but the first on 0, the first on 1 and the second on 3
/// is a send of the request under test, counted.
async fn mixed(pair: &TestPair, m: Arc<Mixed>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (h2, h1) = (acceptor(pair, b"h2"), acceptor(pair, b"http/1.1"));
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            let accept = if matches!(n, 0 | 2 | 3) { &h2 } else { &h1 };
            let (accept, m) = (accept.clone(), m.clone());
            tokio::spawn(async move {
                let Ok(tls) = accept.accept(tcp).await else {
                    return;
                };
                serve(n, tls, &m).await;
            });
            n += 1;
        }
    });
    addr
}

/// Connection `n` of [`mixed`].
async fn serve(n: usize, mut tls: H2Conn, m: &Mixed) -> Option<()> {
    if matches!(n, 1 | 4..) {
        let mut answered = 0;
        while h1_head(&mut tls).await.is_some() {
            if n == 1 && answered == 1 {
                m.sends.fetch_add(1, Ordering::SeqCst);
                let _ = tls.shutdown().await;
                return None;
            }
            if n != 1 {
                m.sends.fetch_add(1, Ordering::SeqCst);
            }
            tls.write_all(H1_OK).await.ok()?;
            answered += 1;
        }
        return None;
    }
    let mut preface = [0u8; 24];
    tls.read_exact(&mut preface).await.ok()?;
    let limit = if n == 0 { 1 } else { 100 };
    tls.write_all(&settings(&[(3, limit)])).await.ok()?;
    let mut raw = Raw { tls, acks: 0 };
    let first = raw.next_request().await?;
    match n {
        0 => {
            raw.tls.write_all(&begun(first, b"")).await.ok()?;
            m.raise.notified().await;
            raw.settle(&[(3, 100)]).await;
            m.raised.notify_one();
        }
        2 => {
            m.sends.fetch_add(1, Ordering::SeqCst);
            raw.tls.write_all(&refused(first)).await.ok()?;
        }
        _ => {
            m.sends.fetch_add(1, Ordering::SeqCst);
            m.holding.notify_one();
            let other = raw.next_request().await?;
            raw.tls
                .write_all(&response(other, &[0x88], b"ok"))
                .await
                .ok()?;
            m.lower.notified().await;
            raw.settle(&[(3, 0)]).await;
            raw.tls.write_all(&refused(first)).await.ok()?;
        }
    }
    while let Some(stream) = raw.next_request().await {
        m.sends.fetch_add(1, Ordering::SeqCst);
        raw.tls.write_all(&refused(stream)).await.ok()?;
    }
    None
}

/// SPEC (Upstream connection pool, Retries): five sends to an endpoint at
/// most in all, also when its connections come up some HTTP/2, some
/// HTTP/1.1. A GET refused on a pooled HTTP/2 connection that serves
/// (sent again on any), refused there again (retired: on a new one),
/// refused on that new one (on another new one), and refused on that one
/// while it serves but allows no new stream (on any: the fifth send) went
/// to the pooled HTTP/1.1 connection, which closed before a response
/// head. The HTTP/1.1 path sent it a sixth time, on a new connection,
/// with no look at the budget: a third send on a new connection, and one
/// past the five.
#[tokio::test]
async fn a_request_is_sent_five_times_at_most_over_mixed_protocols() {
    let w = world();
    let m = Arc::new(Mixed::default());
    let backend = mixed(&w.backend_pair, m.clone()).await;
    let (_p, addr) = proxy_for(&w, backend).await;
    // Connection 0 (HTTP/2) holds `/long`, full at one stream: `/warm`
    // dials connection 1 (HTTP/1.1), idle once answered.
    let mut client = h2_to(&w, addr).await;
    let long = heads(send_all(&mut client, ["/long".to_owned()]).await).await;
    assert_eq!(long[0].status(), 200, "`/long`'s head");
    assert_eq!(h1_get(&w, addr, "/warm").await.status, 200);
    m.raise.notify_one();
    tokio::time::timeout(WAIT, m.raised.notified())
        .await
        .expect("connection 0's raised limit acknowledged");
    let get = spawn_get(&w, addr, "/get");
    tokio::time::timeout(WAIT, m.holding.notified())
        .await
        .expect("the GET held on connection 3");
    // Connection 3 serves: a response on it (after the GET's stream).
    assert_eq!(h1_get(&w, addr, "/other").await.status, 200);
    m.lower.notify_one();
    let reply = tokio::time::timeout(WAIT, get)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let sends = m.sends.load(Ordering::SeqCst);
    assert_eq!(
        (reply.status, sends),
        (502, 5),
        "the GET's answer and sends"
    );
    drop(long);
}
