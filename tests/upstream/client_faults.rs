//! A client's own request-body fault after the upstream has answered: the client's, never the upstream's error.

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

/// How the client breaks its request body once the response is under way.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Sends nothing more: `body_read_timeout` (here 500 ms) passes.
    Stalls,
    /// Goes over `max_body_bytes` (here 1000) part way.
    OverSends,
    /// Ends it with more trailer fields than hotproxy takes (100).
    BadTrailers,
}

/// A call whose response streams while its request body goes on (gRPC's
/// bidirectional shape), to an HTTP/1.1 and to an HTTP/2 upstream, whose
/// client then breaks its own body: it stalls past `body_read_timeout`,
/// sends past `max_body_bytes`, or ends with trailers hotproxy refuses.
/// The upstream request is abandoned and the response cut, but the fault
/// is the client's: logged at debug, never `upstream response body
/// failed` nor counted in `hotproxy_upstream_errors_total` (SPEC: the
/// `408` and `413` rows). It was both: hyper's reset of the upstream
/// request broke the response body, which was taken for the upstream's
/// doing, so any client could raise an upstream's error rate at will.
#[tokio::test]
async fn a_client_body_fault_after_the_response_is_not_the_upstreams_error() {
    let w = world();
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let h2 = Backend::start("h2", &w.backend_pair, None).await;
    let listener = listener_yaml(
        "public",
        "127.0.0.1:0",
        "\n      - { path_prefix: /h1/, upstream: h1 }\n      - { upstream: h2 }",
    );
    let mut p = Proxy::start(&w.scene.config(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{listener}\n    \
         limits: {{ body_read_timeout: 500ms, max_body_bytes: 1000 }}\nupstreams:{}{}",
        backend_upstream("h1", &[h1.addr], &[]),
        backend_upstream("h2", &[h2.addr], &[]),
    )));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    let mut calls = 0;
    for path in ["/h1/echo", "/h2/echo"] {
        for fault in [Fault::Stalls, Fault::OverSends, Fault::BadTrailers] {
            let what = format!("{path}, the client {fault:?}");
            // No `content-length`: the body streams.
            let req = http::Request::post(format!("https://a.example.com{path}"))
                .body(())
                .unwrap();
            client = client.ready().await.unwrap();
            let (resp, mut tx) = client.send_request(req, false).unwrap();
            tx.send_data(Bytes::from_static(b"ping"), false).unwrap();
            let resp = tokio::time::timeout(WAIT, resp)
                .await
                .expect("a response head while the request body goes on")
                .unwrap();
            assert_eq!(resp.status(), 200, "{what}");
            let mut rx = resp.into_body();
            let first = tokio::time::timeout(WAIT, rx.data())
                .await
                .unwrap_or_else(|_| panic!("{what}: nothing echoed"))
                .expect("the response goes on")
                .unwrap();
            assert_eq!(&first[..], b"ping", "{what}");
            match fault {
                Fault::Stalls => {}
                Fault::OverSends => {
                    tx.send_data(Bytes::from(vec![b'x'; 1000]), false).unwrap();
                }
                Fault::BadTrailers => {
                    let trailers: http::HeaderMap = (0..101)
                        .map(|i| (format!("x-t{i}").parse().unwrap(), i.into()))
                        .collect();
                    tx.send_trailers(trailers).unwrap();
                }
            }
            // The response is cut, never ended cleanly.
            let cut = tokio::time::timeout(WAIT, async {
                while let Some(piece) = rx.data().await {
                    piece?;
                }
                Ok::<_, h2::Error>(())
            })
            .await
            .unwrap_or_else(|_| panic!("{what}: the response goes on"));
            assert!(cut.is_err(), "{what}: a cut response ended cleanly");
            // Told apart where the upstream's own break is logged.
            calls += 1;
            let seen = wait_cut_responses(&mut p, calls, &what).await;
            let last = &seen[calls - 1];
            assert_eq!(
                last["message"], "upstream response cut: the client's request body failed",
                "{what}: {last}"
            );
            assert_eq!(last["level"], "DEBUG", "{what}: {last}");
        }
    }
    let m = metrics_text(p.admin_addr().await).await;
    assert!(!m.contains("hotproxy_upstream_errors_total{"), "{m}");
}

/// The lines, at least `n` of them, that tell of a response body cut by a
/// failure, the upstream's or the client's body's.
async fn wait_cut_responses(p: &mut Proxy, n: usize, what: &str) -> Vec<serde_json::Value> {
    let cut = |v: &serde_json::Value| {
        v["message"] == "upstream response body failed"
            || v["message"] == "upstream response cut: the client's request body failed"
    };
    let mut seen = Vec::new();
    wait_until(WAIT, what, || {
        seen = p
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(cut)
            .collect();
        let enough = seen.len() >= n;
        async move { enough }
    })
    .await;
    seen
}
