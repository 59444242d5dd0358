//! A client's own request-body fault after the upstream has answered: the client's, never the upstream's error.

use bytes::Bytes;
use http_body_util::BodyExt;

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
    let (w, _backends, mut p, addr) =
        two_backends("body_read_timeout: 500ms, max_body_bytes: 1000", &[]).await;
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

/// An HTTP/2 client that resets its stream with `NO_ERROR` part way
/// through a request body that streams upstream (`body_buffer_bytes: 0`),
/// once its head is at the upstream, 6 times with a declared length
/// (20000, one byte sent) and 6 times without, to an HTTP/1.1 and to an
/// HTTP/2 upstream (whose `/upload` reads the whole body before it
/// answers). Each is a client gone (`499`), the upstream request aborted,
/// nothing charged to the upstream. hyper ended the body cleanly at a
/// `NO_ERROR` reset: with a length, the upstream write failed short of it
/// and was counted as the upstream's `protocol` error (5 eject a healthy
/// endpoint); without, the upstream got a properly ended truncated body,
/// a cancelled upload committed as whole, and answered it.
#[tokio::test]
async fn a_client_reset_with_no_error_part_way_through_its_body_is_the_client_gone() {
    let (w, backends, mut p, addr) = two_backends("body_buffer_bytes: 0", &[]).await;
    let admin = p.admin_addr().await;
    let mut client = h2_to(&w, addr).await;
    for (path, upstream, backend) in [
        ("/h1/upload", "h1", &backends[0]),
        ("/h2/upload", "h2", &backends[1]),
    ] {
        for n in 1..=12 {
            let mut req = http::Request::post(format!("https://a.example.com{path}"));
            if n <= 6 {
                req = req.header("content-length", "20000");
            }
            client = client.ready().await.unwrap();
            let (_resp, mut tx) = client.send_request(req.body(()).unwrap(), false).unwrap();
            tx.send_data(Bytes::from_static(b"a"), false).unwrap();
            wait_until(WAIT, "the request's head at the upstream", || async {
                backend.requests_for(path) >= n
            })
            .await;
            tx.send_reset(h2::Reason::NO_ERROR);
            let gone = format!(
                "hotproxy_http_requests_total{{listener=\"public\",upstream=\"{upstream}\",code=\"499\"}} {n}"
            );
            wait_metric(admin, &gone, WAIT).await;
        }
    }
    let m = metrics_text(admin).await;
    assert!(!m.contains("hotproxy_upstream_errors_total{"), "{m}");
    assert!(!m.contains("code=\"200\""), "an upload answered: {m}");
}

/// The lines, at least `n` of them, that tell of a response body cut by a
/// failure, the upstream's or the client's body's.
async fn wait_cut_responses(p: &mut Proxy, n: usize, what: &str) -> Vec<serde_json::Value> {
    let cut = |v: &serde_json::Value| {
        v["message"] == "upstream response body failed"
            || v["message"] == "upstream response cut: the client's request body failed"
            || v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(BOTH_SILENT))
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

/// A client that pauses its own request body longer than the upstream's
/// `read_timeout` (here 400 ms, under `body_read_timeout`, 3 s) while its
/// response streams, over HTTP/2 and over HTTP/1.1, to an HTTP/1.1 and to
/// an HTTP/2 upstream. The upstream echoes what it gets and so has nothing
/// to send: it waits for the client, which is not the upstream's stall.
/// The call goes on when the client does; a client that never does is cut
/// at `body_read_timeout`, its own fault (SPEC: `read_timeout` runs only
/// while the client owes nothing). It was cut at `read_timeout`, logged
/// as `upstream response stalled` (warn) and counted as the upstream's
/// `read_timeout`, with its HTTP/2 connection retired.
#[tokio::test]
async fn a_client_pausing_its_body_past_read_timeout_is_not_the_upstreams_stall() {
    let (w, _backends, mut p, addr) = streaming("3s").await;
    let mut calls = 0;
    for client_h2 in [true, false] {
        for prefix in ["/h1/", "/h2/"] {
            let what = format!(
                "{prefix}echo from an HTTP/{} client",
                if client_h2 { "2" } else { "1.1" }
            );
            let mut call = Call::open(&w, addr, &format!("{prefix}echo"), client_h2, b"ping").await;
            assert_eq!(
                call.next(&what).await.as_deref(),
                Ok(&b"ping"[..]),
                "{what}"
            );
            // The client now pauses. A response that starts later on the
            // same upstream and stalls for real is cut by `read_timeout`:
            // once that is logged, the pause has lasted longer than it.
            calls += 1;
            let path = format!("{prefix}endless");
            let _probe = read_timeout_passes(&w, addr, &path, &mut p, calls).await;
            call.send(b"pong");
            assert_eq!(
                call.next(&what).await.as_deref(),
                Ok(&b"pong"[..]),
                "{what}: the call goes on after the client's pause"
            );
            // Then it sends nothing more: cut at `body_read_timeout`. The
            // upstream, silent as long, answered all it was given: the
            // client's own fault.
            let cut = call.next(&what).await;
            assert!(
                cut.is_err(),
                "{what}: a cut response ended cleanly: {cut:?}"
            );
            let seen = wait_cut_responses(&mut p, calls, &what).await;
            let last = &seen[calls - 1];
            assert_eq!(
                last["message"], "upstream response cut: the client's request body failed",
                "{what}: {last}"
            );
            assert_eq!(last["level"], "DEBUG", "{what}: {last}");
            assert_eq!(last["fault"], "Stalled", "{what}: {last}");
        }
    }
    // Only the probes' stalls, none of the calls', are the upstreams'.
    let stalled = p
        .logs()
        .iter()
        .filter(|l| l.contains("upstream response stalled"))
        .count();
    assert_eq!(stalled, calls, "{:#?}", p.logs());
    assert_read_timeouts_only(&mut p, 2).await;
}

/// How a response cut when both sides had gone silent is logged.
const BOTH_SILENT: &str = "upstream response cut: both sides silent";

/// A call in ping-pong (the client sends a piece of a body of unknown
/// length, the upstream answers it, the client waits for that answer
/// before sending more) whose upstream hangs: it echoes `ping`, takes
/// `ping2` and answers nothing more. The client, waiting, owes its body,
/// and `body_read_timeout` (here 2 s) cuts the call. The upstream has
/// been silent longer than its `read_timeout` (400 ms) and owes the
/// answer to `ping2`, handed to it after its last piece: it is not the
/// client's fault alone. Logged at warn naming both, counted as the
/// upstream's `read_timeout`, its HTTP/2 connection retired as after a
/// stall. It was the client's alone (debug, not counted): a gRPC bidi
/// backend that hung never showed in the upstream's stall alerts. (A
/// client that goes quiet once all it sent was answered stays the
/// client's alone: see the test above.)
#[tokio::test]
async fn a_call_cut_while_both_sides_are_silent_is_the_upstreams_stall_too() {
    let (w, _backends, mut p, addr) = streaming("2s").await;
    for (n, prefix) in ["/h1/", "/h2/"].into_iter().enumerate() {
        let what = format!("{prefix}echo-once");
        let mut call = Call::open(&w, addr, &what, true, b"ping").await;
        assert_eq!(call.next(&what).await.as_deref(), Ok(&b"ping"[..]));
        // Echoed: the client sends its next piece and waits for the
        // answer, which never comes.
        call.send(b"ping2");
        let cut = call.next(&what).await;
        assert!(
            cut.is_err(),
            "{what}: a cut response ended cleanly: {cut:?}"
        );
        let seen = wait_cut_responses(&mut p, n + 1, &what).await;
        let last = &seen[n];
        assert!(
            last["message"].as_str().unwrap().starts_with(BOTH_SILENT),
            "{what}: {last}"
        );
        assert_eq!(last["level"], "WARN", "{what}: {last}");
        assert_eq!(last["reason"], "read_timeout", "{what}: {last}");
    }
    assert_read_timeouts_only(&mut p, 1).await;
    // The HTTP/2 upstream connection the call went silent on is retired.
    wait_until(WAIT, "the h2 upstream connection retired", || {
        let retired = p
            .logs()
            .iter()
            .any(|l| l.contains("upstream h2 connection retired"));
        async move { retired }
    })
    .await;
}

/// GET `path` (a response whose body never comes) on a connection of its
/// own, and wait until its `read_timeout` is logged, the `n`th such line;
/// the response is returned, still held.
async fn read_timeout_passes(
    w: &World,
    addr: std::net::SocketAddr,
    path: &str,
    p: &mut Proxy,
    n: usize,
) -> http::Response<h2::RecvStream> {
    let mut probe = h2_to(w, addr).await;
    let req = http::Request::get(format!("https://a.example.com{path}"))
        .body(())
        .unwrap();
    probe = probe.ready().await.unwrap();
    let (resp, _) = probe.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("the probe's head")
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    wait_until(WAIT, &format!("{path}: read_timeout logged"), || {
        let seen = p
            .logs()
            .iter()
            .filter(|l| l.contains("upstream response stalled"))
            .count();
        async move { seen >= n }
    })
    .await;
    resp
}

/// A POST whose body streams while its response does, from an HTTP/2 or
/// an HTTP/1.1 (chunked) client.
enum Call {
    H2 {
        tx: h2::SendStream<Bytes>,
        rx: h2::RecvStream,
    },
    H1 {
        tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
        rx: hyper::body::Incoming,
    },
}

impl Call {
    /// Begin the call to `path` with a `first` piece of its body: its
    /// response head is in.
    async fn open(
        w: &World,
        addr: std::net::SocketAddr,
        path: &str,
        h2: bool,
        first: &'static [u8],
    ) -> Call {
        let uri = format!("https://a.example.com{path}");
        if h2 {
            let client = h2_to(w, addr).await;
            // No `content-length`: the body streams.
            let req = http::Request::post(uri).body(()).unwrap();
            let (resp, mut tx) = client
                .ready()
                .await
                .unwrap()
                .send_request(req, false)
                .unwrap();
            tx.send_data(Bytes::from_static(first), false).unwrap();
            let resp = tokio::time::timeout(WAIT, resp)
                .await
                .expect("a head")
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            Call::H2 {
                tx,
                rx: resp.into_body(),
            }
        } else {
            let tls = connect(addr, "a.example.com", h1_config(w)).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let (tx, pieces) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
            let body = futures_util::stream::unfold(pieces, |mut pieces| async move {
                let piece = pieces.recv().await?;
                Some((
                    Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece)),
                    pieces,
                ))
            });
            // Of no declared length: chunked.
            let req = http::Request::post(path)
                .header("host", "a.example.com")
                .body(http_body_util::StreamBody::new(Box::pin(body)))
                .unwrap();
            tx.send(Bytes::from_static(first)).unwrap();
            let resp = tokio::time::timeout(WAIT, send.send_request(req))
                .await
                .expect("a head")
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            Call::H1 {
                tx,
                rx: resp.into_body(),
            }
        }
    }

    /// Send the next piece of the body (on a call already cut, the next
    /// read says so).
    fn send(&mut self, piece: &'static [u8]) {
        let piece = Bytes::from_static(piece);
        let sent = match self {
            Call::H2 { tx, .. } => tx.send_data(piece, false).is_ok(),
            Call::H1 { tx, .. } => tx.send(piece).is_ok(),
        };
        let _ = sent;
    }

    /// The next piece of the response (within `WAIT`): `Err` once it is
    /// cut, `Ok` of nothing at its clean end.
    async fn next(&mut self, what: &str) -> Result<Bytes, String> {
        let next = async {
            match self {
                Call::H2 { rx, .. } => match rx.data().await {
                    Some(piece) => piece.map_err(|e| e.to_string()),
                    None => Ok(Bytes::new()),
                },
                Call::H1 { rx, .. } => loop {
                    match rx.frame().await {
                        Some(Ok(f)) => match f.into_data() {
                            Ok(piece) => break Ok(piece),
                            Err(_) => continue,
                        },
                        Some(Err(e)) => break Err(e.to_string()),
                        None => break Ok(Bytes::new()),
                    }
                },
            }
        };
        tokio::time::timeout(WAIT, next)
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing came"))
    }
}

/// A proxy routing `/h1/` to an HTTP/1.1 backend and the rest to an HTTP/2
/// one, both with `read_timeout: 400ms`, the listener's
/// `body_read_timeout` as given: the world (its files), the backends, the
/// proxy and the listener's address.
async fn streaming(body_read_timeout: &str) -> (World, [Backend; 2], Proxy, std::net::SocketAddr) {
    let limits = format!("body_read_timeout: {body_read_timeout}");
    two_backends(&limits, &["read_timeout: 400ms"]).await
}

/// A proxy routing `/h1/` to an HTTP/1.1 backend and the rest to an HTTP/2
/// one, the listener's `limits` and both upstreams' settings as given.
async fn two_backends(
    limits: &str,
    upstream: &[&str],
) -> (World, [Backend; 2], Proxy, std::net::SocketAddr) {
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
         limits: {{ {limits} }}\nupstreams:{}{}",
        backend_upstream("h1", &[h1.addr], upstream),
        backend_upstream("h2", &[h2.addr], upstream),
    )));
    let addr = p.listener_addr("public").await;
    (w, [h1, h2], p, addr)
}

/// The upstream errors counted are `read_timeout`s alone, `n` on each of
/// the two upstreams ([`streaming`]'s `h1` and `h2`).
async fn assert_read_timeouts_only(p: &mut Proxy, n: usize) {
    let m = metrics_text(p.admin_addr().await).await;
    let mut errors: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("hotproxy_upstream_errors_total{"))
        .collect();
    errors.sort_unstable();
    let want = ["h1", "h2"].map(|u| {
        format!("hotproxy_upstream_errors_total{{upstream=\"{u}\",reason=\"read_timeout\"}} {n}")
    });
    assert_eq!(errors, want, "{m}");
}
