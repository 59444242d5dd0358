//! An HTTP/2 upstream that breaks the protocol: the log says what hotproxy's HTTP/2 refused.

use std::sync::atomic::Ordering;

use crate::common::*;
use crate::raw_h2::{answering_h2, h2_frame};

/// A response that hotproxy's HTTP/2 client refuses as a protocol error
/// (here a `PUSH_PROMISE`, which it disabled in its SETTINGS: a connection
/// error, RFC 9113 §8.4) is a `502` whose log line says so, with the
/// error code: it used to say only "upstream request failed: http2
/// error", the same for every such break, and nothing an operator could
/// take to the backend's owners.
#[tokio::test]
async fn an_h2_protocol_error_of_the_upstream_is_named_in_the_log() {
    let w = world();
    // A request: a PUSH_PROMISE (END_HEADERS) of stream 2, `:method GET`
    // (HPACK static index 2).
    let (backend, accepted) = answering_h2(&w.backend_pair, |_, stream| {
        let mut payload = 2u32.to_be_bytes().to_vec();
        payload.push(0x82);
        h2_frame(5, 4, stream, &payload)
    })
    .await;
    let (mut p, addr) = proxy_for(&w, backend).await;
    let (status, _) = send(addr, &w, "GET", "").await;
    assert_eq!(status, 502);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let told = p
        .wait_log("the 502 logged", |v| {
            v["message"] == "upstream request failed"
        })
        .await;
    assert_eq!(told["reason"], "protocol", "{told}");
    let error = told["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP/2") && error.contains("PROTOCOL_ERROR"),
        "{told}"
    );
}
