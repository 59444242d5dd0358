//! An HTTP/2 server refusing one stream (`REFUSED_STREAM`) on a shared connection that serves the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

/// Requests held open together at the backend while it refuses one more.
const HELD: usize = 8;

/// An HTTP/2 backend (the h2 crate, over TLS) that answers every request
/// `200` at once, save `/held/*` ones, whose answers it keeps until it has
/// [`HELD`] of them and has refused the first `/refuse` on their
/// connection (`RST_STREAM(REFUSED_STREAM)`, the connection left open).
/// Returns its address and the connections it accepted.
async fn refusing_one(pair: &TestPair) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let (listener, acceptor) = tls_listener(pair, b"h2").await;
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                let answer = |mut respond: h2::server::SendResponse<Bytes>| {
                    let head = http::Response::builder().body(()).unwrap();
                    if let Ok(mut tx) = respond.send_response(head, false) {
                        let _ = tx.send_data(Bytes::from_static(b"ok"), true);
                    }
                };
                let (mut held, mut refused, mut released) = (Vec::new(), false, false);
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let path = req.uri().path();
                    if path == "/refuse" && !refused {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        refused = true;
                    } else if path.starts_with("/held/") && !released {
                        held.push(respond);
                    } else {
                        answer(respond);
                    }
                    if refused && held.len() == HELD {
                        held.drain(..).for_each(answer);
                        released = true;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A `POST /refuse` whose body is still streaming (it cannot be sent
/// twice, so a refusal is its `502`), sent on `client`; its answer.
async fn post_refused(
    client: &mut h2::client::SendRequest<Bytes>,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let req = http::Request::post("https://a.example.com/refuse")
        .body(())
        .unwrap();
    *client = client.clone().ready().await.unwrap();
    client.send_request(req, false).unwrap()
}

/// SPEC (Upstream connection pool): one `REFUSED_STREAM` on a shared
/// HTTP/2 connection that has served responses, and serves the streams
/// open beside it, does not retire it; only one that never served a
/// response, or a second refusal with no response in between, does. Any
/// refusal used to retire it: a server shedding one stream under load
/// (nginx's `http2_max_concurrent_streams` lowered, a graceful restart of
/// one worker) cost a new connection, and the old one closed under the
/// requests still on it once they ended.
#[tokio::test]
async fn one_refused_stream_does_not_retire_a_connection_serving_others() {
    let w = world();
    let (backend, accepted) = refusing_one(&w.backend_pair).await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let mut client = h2_to(&w, addr).await;
    // A response served first: the connection is known to work.
    let first = send_all(&mut client, ["/first".to_owned()]).await;
    assert_eq!(statuses(first).await, [200]);
    // Streams held open at the backend, and one refused beside them.
    let held = send_all(&mut client, (0..HELD).map(|i| format!("/held/{i}"))).await;
    let (refused, _body) = post_refused(&mut client).await;
    let refused = tokio::time::timeout(WAIT, refused).await.unwrap().unwrap();
    assert_eq!(refused.status(), 502, "the refused request, not replayable");
    assert_eq!(statuses(held).await, [200; HELD]);
    // The requests after the refusal: on the same connection.
    let after = send_all(&mut client, (0..HELD).map(|i| format!("/after/{i}"))).await;
    assert_eq!(statuses(after).await, [200; HELD]);
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections dialled");
}
