//! Which idle HTTP/1.1 upstream connection a full pool lets go: the least recently used; never one for a closed one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

use crate::common::*;
use crate::support::*;

/// An HTTP/1.1 backend on 127.0.0.2 answering `/hold/N` once more than N
/// have been released, each with the proxy's port on the connection it
/// came on (`/hold/N/close` with `Connection: close` too); it notes the port of each connection the proxy closes, in
/// order, and counts the requests it holds.
struct Held {
    addr: SocketAddr,
    release: tokio::sync::watch::Sender<usize>,
    holding: tokio::sync::watch::Receiver<usize>,
    closed: Arc<Mutex<Vec<u16>>>,
}

async fn held_backend(pair: &TestPair) -> Held {
    let (listener, acceptor) = tls_listener_at("127.0.0.2:0", pair, b"http/1.1").await;
    let (release, released) = tokio::sync::watch::channel(0usize);
    let (holds, holding) = tokio::sync::watch::channel(0usize);
    let holds = Arc::new(holds);
    let closed = Arc::new(Mutex::new(Vec::new()));
    let held = Held {
        addr: listener.local_addr().unwrap(),
        release,
        holding,
        closed: closed.clone(),
    };
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (acceptor, released, holds, closed) = (
                acceptor.clone(),
                released.clone(),
                holds.clone(),
                closed.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (mut released, holds) = (released.clone(), holds.clone());
                    async move {
                        // `/hold/N/close`: answered with `Connection: close`
                        // (nginx's at its `keepalive_requests`).
                        let path = req.uri().path();
                        let (n, close) = match path.strip_suffix("/close") {
                            Some(held) => (held, true),
                            None => (path, false),
                        };
                        let n: usize = (n.strip_prefix("/hold/"))
                            .and_then(|n| n.parse().ok())
                            .expect("/hold/N");
                        holds.send_modify(|h| *h += 1);
                        let _ = released.wait_for(|r| *r > n).await;
                        let port =
                            http_body_util::Full::new(bytes::Bytes::from(peer.port().to_string()));
                        let mut resp = http::Response::new(port);
                        if close {
                            let close = http::HeaderValue::from_static("close");
                            resp.headers_mut().insert(http::header::CONNECTION, close);
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
                closed.lock().unwrap().push(peer.port());
            });
        }
    });
    held
}

/// Each client sends its path at once; once all are held at `b` they are
/// released in order, each response's body (the proxy's port on its
/// upstream connection) read and a next request on the same client
/// answered (the proxy's own 404, answered only once the last response's
/// body is let go, its connection with it) before the next is released:
/// each connection is handed back before the next. The ports, in order.
async fn handed_back_in_order(
    b: &Held,
    clients: &mut [SendRequest<Full<Bytes>>],
    paths: &[&str],
) -> Vec<String> {
    let mut answers = Vec::new();
    for (client, path) in clients.iter_mut().zip(paths) {
        answers.push(client.send_request(h1_request("GET", path, "")));
    }
    let mut holding = b.holding.clone();
    tokio::time::timeout(WAIT, holding.wait_for(|h| *h == paths.len()))
        .await
        .expect("every request at the backend")
        .unwrap();
    let mut ports = Vec::new();
    for (n, (client, answer)) in clients.iter_mut().zip(answers).enumerate() {
        b.release.send(n + 1).unwrap();
        let resp = tokio::time::timeout(WAIT, answer).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        ports.push(String::from_utf8(body.unwrap().to_bytes().to_vec()).unwrap());
        let (status, _) = exchange(client, h1_request("GET", "/elsewhere", "")).await;
        assert_eq!(status, 404);
    }
    ports
}

/// SPEC (Upstream connection pool): a pool holding
/// `max_idle_connections` idle connections keeps the one handed back
/// (the most recently used, the least likely closed by the backend) and
/// closes the one idle longest, as nginx's `keepalive` closes the least
/// recently used. Three connections, handed back one after the other to a
/// pool of two: the first is closed, and the next request takes the last.
/// It used to close the one handed back and keep the oldest, those a
/// backend's keep-alive timeout closes first, each holding a server slot
/// until `idle_timeout`. The backend is another pod's address.
#[tokio::test]
async fn a_full_pool_closes_its_least_recently_used_connection() {
    let w = world();
    let b = held_backend(&w.backend_pair).await;
    let upstream = backend_upstream("app", &[b.addr], &["max_idle_connections: 2"]);
    // Anything but `/hold/` is the proxy's own 404: no upstream connection.
    let routes = "[{ path_prefix: /hold/, upstream: app }]";
    let mut p = Proxy::start(&w.scene.public_config(routes, &upstream));
    let addr = p.listener_addr("public").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(h1_sender(&w, addr).await);
    }
    // Three requests at once: three upstream connections.
    let ports = handed_back_in_order(&b, &mut clients, &["/hold/0", "/hold/1", "/hold/2"]).await;
    let port = |s: &str| s.parse::<u16>().unwrap();
    wait_until(WAIT, "an idle connection closed", || async {
        !b.closed.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *b.closed.lock().unwrap(),
        [port(&ports[0])],
        "closed instead of the least recently used (connections, in the order \
         handed back: {ports:?})"
    );
    let (status, body) = exchange(&mut clients[0], h1_request("GET", "/hold/0", "")).await;
    assert_eq!(status, 200);
    assert_eq!(body, ports[2], "not the most recently used connection");
}

/// SPEC (Upstream connection pool): a connection the upstream closes as
/// its response ends (`Connection: close`, as nginx answers the last of
/// its `keepalive_requests`) is never pooled. Two connections to a pool of
/// one: the first handed back is kept; the second, answered with
/// `Connection: close`, used to be pooled too, in the first's place (the
/// pool full, its least recently used closed for it), and the next
/// request, finding it closed, dialled a third connection.
#[tokio::test]
async fn a_connection_closed_with_its_response_never_takes_a_live_ones_place() {
    let w = world();
    let b = held_backend(&w.backend_pair).await;
    let upstream = backend_upstream("app", &[b.addr], &["max_idle_connections: 1"]);
    let routes = "[{ path_prefix: /hold/, upstream: app }]";
    let mut p = Proxy::start(&w.scene.public_config(routes, &upstream));
    let addr = p.listener_addr("public").await;
    let mut clients = [h1_sender(&w, addr).await, h1_sender(&w, addr).await];
    // Two requests at once: two upstream connections, handed back in
    // order, the kept-alive one first.
    let ports = handed_back_in_order(&b, &mut clients, &["/hold/0", "/hold/1/close"]).await;
    let (status, body) = exchange(&mut clients[0], h1_request("GET", "/hold/0", "")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body, ports[0],
        "not the live pooled connection (connections, in the order handed back: {ports:?})"
    );
    let live = ports[0].parse::<u16>().unwrap();
    assert!(
        !b.closed.lock().unwrap().contains(&live),
        "the live connection closed"
    );
}
