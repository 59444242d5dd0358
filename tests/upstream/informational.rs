//! An HTTP/2 upstream's informational (`1xx`) responses: a few pass, a flood is a `502`.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

/// An HTTP/2 backend answering `/few/N` with N `103 Early Hints`, then
/// `200` and `hello`; and `/flood` with hints until its stream or
/// connection is gone, never a response. Its address.
async fn hinting_backend(pair: &TestPair) -> SocketAddr {
    let hint = || {
        http::Response::builder()
            .status(103)
            .header("link", "</a.css>; rel=preload")
            .body(())
            .unwrap()
    };
    h2_backend(pair, move |req, mut respond| {
        let path = req.uri().path().to_owned();
        // Sent from a task of its own: the connection's loop drives the
        // connection that writes them.
        tokio::spawn(async move {
            if let Some(n) = path.strip_prefix("/few/") {
                for _ in 0..n.parse().unwrap() {
                    respond.send_informational(hint()).unwrap();
                }
                let head = http::Response::builder().body(()).unwrap();
                let mut tx = respond.send_response(head, false).unwrap();
                let _ = tx.send_data(Bytes::from_static(b"hello"), true);
                return;
            }
            loop {
                for _ in 0..64 {
                    if respond.send_informational(hint()).is_err() {
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        });
    })
    .await
}

/// Informational responses an HTTP/2 upstream sends before its response
/// are bounded as an HTTP/1.1 upstream's are: a few thousand `103 Early
/// Hints` (64 KiB of them) pass, but one that streams them without end is
/// a `502` (`protocol`), not a request held until `request_timeout` (here
/// ten minutes) while the connection's task decodes them and h2 queues
/// each one for the request to drop. h2 (0.4.20) keeps every `1xx` it
/// reads in the stream's queue, with no bound, until the request's task
/// next polls for its response.
#[tokio::test]
async fn a_flood_of_informational_responses_over_http2_is_502() {
    let w = world();
    let backend = hinting_backend(&w.backend_pair).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        backend,
        &["request_timeout: 10m"],
    ));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    let get = |path: &str| {
        let req = http::Request::get(format!("https://a.example.com{path}"));
        req.body(()).unwrap()
    };
    // After the first, each hint is 11 bytes (a frame header, two HPACK
    // indexes): nearly 64 KiB of them.
    let (resp, _) = client.send_request(get("/few/5900"), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);

    let (resp, _) = client.send_request(get("/flood"), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("an answer before request_timeout")
        .unwrap();
    assert_eq!(resp.status(), 502);
    p.wait_log("the flood refused", |v| {
        v["message"] == "upstream request failed"
            && v["reason"] == "protocol"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("informational (1xx) responses"))
    })
    .await;
    // The upstream is still served, on a new connection.
    let (resp, _) = client.send_request(get("/few/1"), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
}
