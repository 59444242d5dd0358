//! An HTTP/2 upstream's field values padded with whitespace: trimmed, as an HTTP/1.1 upstream's are.

use crate::common::*;
use crate::raw_h2::{answering_h2, h2_frame};

/// An HPACK literal field without indexing, its name new.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    [&[0x00, name.len() as u8], name, &[value.len() as u8], value].concat()
}

/// An HTTP/2 backend answering `x-trace: "abc "` in its head and
/// `grpc-message: "failed "` in its trailers: values RFC 9113 §8.2.1
/// calls malformed, which h2 (0.4.20) takes as they are. They reached
/// hotproxy's HTTP/2 clients padded, and those holding to the RFC
/// (nghttp2's: curl --http2, browsers) refused the stream while the
/// access log said 200; from an HTTP/1.1 upstream its parser trims them.
#[tokio::test]
async fn an_h2_upstreams_padded_values_reach_the_client_trimmed() {
    let w = world();
    let (backend, _) = answering_h2(&w.backend_pair, |_, stream| {
        // `:status: 200` (HPACK static index 8).
        let head = [&[0x88][..], &literal(b"x-trace", b"abc ")].concat();
        let trailers = literal(b"grpc-message", b"\tfailed ");
        [
            h2_frame(1, 4, stream, &head),
            h2_frame(0, 0, stream, b"hello"),
            // END_STREAM | END_HEADERS.
            h2_frame(1, 5, stream, &trailers),
        ]
        .concat()
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let mut client = h2_to(&w, addr).await;
    let req = http::Request::get("https://a.example.com/x")
        .header("te", "trailers")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-trace"], "abc", "{:?}", resp.headers());
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(data) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
        got.extend_from_slice(&data.unwrap());
    }
    assert_eq!(got, b"hello");
    let trailers = tokio::time::timeout(WAIT, body.trailers())
        .await
        .unwrap()
        .unwrap()
        .expect("the trailers");
    assert_eq!(trailers["grpc-message"], "failed", "{trailers:?}");
}
