//! What an upstream sends back: a head over 64 KiB, a stalled body, bytes past a response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// An upstream's response head may be up to 64 KiB (Envoy's limit is
/// 60 KiB); a larger one is a 502, not up to 400 KiB held per upstream
/// connection.
#[tokio::test]
async fn upstream_response_head_over_64_kib_is_502() {
    let (w, _p, addr) = serve("").await;
    let get = |n: usize| {
        format!("GET /fat-head/{n} HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
    };
    let reply = h1_exchange(&w, addr, get(50_000).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{}", &reply[..100]);
    assert!(reply.ends_with("fat"), "{}", &reply[reply.len() - 100..]);
    let reply = h1_exchange(&w, addr, get(100_000).as_bytes()).await;
    assert!(
        reply.starts_with("HTTP/1.1 502 "),
        "{}",
        &reply[..reply.len().min(300)]
    );
}

/// A head over 64 KiB is a 502 however its bytes arrive. hyper holds its
/// read buffer to 64 KiB only between reads: from a backend that writes
/// its whole response at once, a read on a fresh connection took a head
/// of 100 KiB whole, and it reached the client (a reused connection's
/// buffer refused it: one request in two passed).
#[tokio::test]
async fn upstream_response_head_over_64_kib_in_one_write_is_502() {
    let w = world().await;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nx-fat: {}\r\ncontent-length: 3\r\n\r\nfat",
        "f".repeat(100_000)
    );
    let (_p, addr) = serve_one_write_backend(&w, resp.into_bytes()).await;
    let get = b"GET / HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n";
    for i in 0..4 {
        let reply = h1_exchange(&w, addr, get).await;
        assert!(
            reply.starts_with("HTTP/1.1 502 "),
            "request {i}: {}",
            &reply[..reply.len().min(100)]
        );
    }
}

/// An HTTP/1.0 backend's response reaches an HTTP/1.1 client as
/// HTTP/1.1, hotproxy's own version (RFC 9110 §6.2), its connection kept:
/// hyper's server wrote the upstream's `HTTP/1.0` status line, and closed
/// the client's connection after each such response (a Python
/// `http.server` backend cost every request a new TLS handshake).
#[tokio::test]
async fn an_http10_backend_is_answered_as_http11_on_a_kept_connection() {
    let w = world().await;
    // Its body ends with its connection.
    let (_p, addr) = serve_one_write_backend(&w, b"HTTP/1.0 200 OK\r\n\r\nlegacy".to_vec()).await;
    // Two requests on one connection, the second asking for the close.
    let reply = h1_exchange(
        &w,
        addr,
        b"GET /1 HTTP/1.1\r\nhost: a.example.com\r\n\r\n\
          GET /2 HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert_eq!(reply.matches("HTTP/1.1 200 ").count(), 2, "{reply:?}");
    assert_eq!(reply.matches("legacy").count(), 2, "{reply:?}");
}

/// A raw HTTP/1.1 backend that reads a request's head (byte by byte:
/// nothing past it), writes `answer` in one write and closes, and the
/// proxy routing everything to it (upstream `raw`): the proxy, its address.
async fn serve_one_write_backend(w: &World, answer: Vec<u8>) -> (Proxy, SocketAddr) {
    use tokio::io::AsyncReadExt;
    let answer: Arc<[u8]> = answer.into();
    let (backend, _) = raw_backend(move |mut tcp| {
        let answer = answer.clone();
        async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let _ = tcp.write_all(&answer).await;
        }
    })
    .await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ upstream: raw }]",
        &format!("\n  - name: raw\n    servers: [http://{backend}]"),
    ));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// An upstream that stops sending in the middle of a body (a hung backend)
/// does not leave the client hanging: after `read_timeout` without a byte
/// the response is cut — the client sees it fail, never a clean end of a
/// truncated body — and the upstream request is released, logged and
/// counted (nginx's proxy_read_timeout).
#[tokio::test]
async fn upstream_that_stalls_mid_body_is_cut_by_read_timeout() {
    let w = world().await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ upstream: plain }]",
        &format!("{}\n    read_timeout: 1s", plain_upstream(&w)),
    ));
    let addr = p.listener_addr("public").await;
    // HTTP/1.1: the chunked body is never terminated; the connection closes.
    let reply = h1_exchange(
        &w,
        addr,
        b"GET /stall HTTP/1.1\r\nhost: a.example.com\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert!(reply.contains("first"), "{reply:?}");
    assert!(
        !reply.ends_with("0\r\n\r\n"),
        "a cut body ended cleanly: {reply:?}"
    );
    // HTTP/2: the stream is reset.
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let resp = h2_request(&mut client, h2_get("/stall", "GET")).await;
    let mut body = resp.into_body();
    let first = tokio::time::timeout(WAIT, body.data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    let cut = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("the stream is cut");
    assert!(matches!(cut, Some(Err(_))), "{cut:?}");
    wait_bodies_released(&w, 2).await;
    p.wait_log("read_timeout logged", |v| {
        v["message"] == "upstream response stalled" && v["reason"] == "read_timeout"
    })
    .await;
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(r#"hotproxy_upstream_errors_total{upstream="plain",reason="read_timeout"} 2"#),
        "{m}"
    );
}

/// A raw HTTP/1.1 backend that answers the n-th request on a connection
/// with `answers[n]` (the last one repeats), without reading bodies. An
/// answer is written in pieces, 100 ms apart (bytes that come late); each
/// late piece written bumps the counter returned with the accept count.
async fn scripted_backend(
    answers: Vec<Vec<&'static [u8]>>,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let late = Arc::new(AtomicUsize::new(0));
    let late_count = late.clone();
    let (addr, accepted) = raw_backend(move |mut tcp| {
        let (answers, late) = (answers.clone(), late_count.clone());
        async move {
            // Each piece leaves at once (no Nagle wait behind an ACK).
            tcp.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            for n in 0.. {
                let Some(end) = read_raw_head(&mut tcp, &mut buf).await else {
                    return;
                };
                buf.drain(..end);
                for (k, piece) in answers[n.min(answers.len() - 1)].iter().enumerate() {
                    if k > 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    if tcp.write_all(piece).await.is_err() {
                        return;
                    }
                    if k > 0 {
                        late.fetch_add(1, SeqCst);
                    }
                }
            }
        }
    })
    .await;
    (addr, accepted, late)
}

/// Bytes an upstream sends beyond a response (a body longer than its
/// `Content-Length`, a response to no request) must never become the
/// response to the next request that takes the pooled connection: that is
/// one client's answer served to another. Whether they come with the
/// response or after it, while the connection is idle, the connection is
/// closed instead of reused. (Bytes that arrive only after the next request
/// was written cannot be told from its response; no HTTP/1.1 proxy can.)
#[tokio::test]
async fn bytes_after_a_response_are_never_served_to_the_next_request() {
    let w = world().await;
    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSTRAY!";
    const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext";
    let with_the_response = [HELLO, STRAY].concat().leak();
    for (first, stray_comes_late) in [
        (vec![&*with_the_response], false),
        (vec![HELLO, STRAY], true),
    ] {
        let (backend, accepted, late) = scripted_backend(vec![first, vec![NEXT]]).await;
        let (p, addr) = proxy_to_raw(&w, backend, "").await;
        for i in 0..3 {
            let reply = h1_exchange(&w, addr, GET_THEN_CLOSE).await;
            let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
            // Every answer is a first one, on a connection of its own.
            assert_eq!(
                body, "hello",
                "request {i} (late: {stray_comes_late}): {reply}"
            );
            assert_eq!(
                accepted.load(SeqCst),
                i + 1,
                "request {i} reused a connection"
            );
            if stray_comes_late {
                wait_until(WAIT, "the stray bytes sent", || async {
                    late.load(SeqCst) > i
                })
                .await;
            }
        }
        drop(p);
    }
}

/// An HTTP/1.1 response whose length the client could read otherwise than
/// hyper did is a `502` (`reason="protocol"`), as nginx's "upstream sent
/// "Content-Length" and "Transfer-Encoding" headers at the same time" and
/// "unknown "Transfer-Encoding"": `Content-Length` beside
/// `Transfer-Encoding` (hyper decodes the chunks; the client, the
/// transfer coding stripped, would read 5 bytes of 10 and take the rest
/// as the next response), or a transfer coding other than `chunked` (its
/// coding applied to the body, with nothing saying so). The connection is
/// not used again: the next request gets a new one, and its answer.
#[tokio::test]
async fn response_with_ambiguous_length_is_502_and_its_connection_dropped() {
    let w = world().await;
    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    const BOTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n";
    const GZIP: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\nnot really gzip";
    const GZIP_CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for bad in [BOTH, GZIP, GZIP_CHUNKED] {
        // `bad` to the first and third request it gets, on any connection;
        // `HELLO` to the others.
        let served = Arc::new(AtomicUsize::new(0));
        let (backend, accepted) = answering_backend(move |_| {
            match served.fetch_add(1, SeqCst) {
                0 | 2 => bad,
                _ => HELLO,
            }
            .to_vec()
        })
        .await;
        let (mut p, addr) = proxy_to_raw(&w, backend, "").await;
        let what = String::from_utf8_lossy(bad);
        let reply = h1_exchange(&w, addr, GET_THEN_CLOSE).await;
        assert!(reply.starts_with("HTTP/1.1 502 "), "{what}: {reply}");
        let reply = h1_exchange(&w, addr, GET_THEN_CLOSE).await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{what}: {reply}");
        assert!(reply.ends_with("\r\n\r\nhello"), "{what}: {reply}");
        assert_eq!(accepted.load(SeqCst), 2, "{what}: a connection reused");
        // An `Upgrade` request answered without a switch, alike.
        const UPGRADE: &[u8] = b"GET /x HTTP/1.1\r\nhost: a.example.com\r\nconnection: upgrade\r\n\
            upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        s.write_all(UPGRADE).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 502 "), "{what}: {head}");
        let m = metrics_text(p.admin_addr().await).await;
        assert!(
            m.contains(r#"hotproxy_upstream_errors_total{upstream="raw",reason="protocol"} 2"#),
            "{what}: {m}"
        );
        drop(p);
    }
}

/// `Content-Length` reaches a client once, and never on a `204`: a
/// backend's duplicate (`5` twice, or `5, 5` on one line, which hyper's
/// client accepts as they agree) is a `502` as nginx answers it ("upstream
/// sent duplicate header line"), where an HTTP/2 client (nghttp2) would
/// reset the stream and llhttp refuse the response; a `204`'s is removed
/// (it has no body; nginx clears it too). A value that is no number is a
/// `502` too ("upstream sent invalid "Content-Length" header"), on a
/// `HEAD`'s answer or a `304` as well: hyper's client reads no length of
/// those, so a `HEAD`'s `content-length: abc` reached the client, which
/// nghttp2 resets and llhttp refuses. So is one of digits too large for a
/// length (over `i64::MAX`, as nginx's `ngx_atoof` bounds it, and curl and
/// nghttp2 theirs): `18446744073709551616` on a `HEAD`'s answer reached an
/// HTTP/2 client, whose stream h2 reset (it reads at most 19 digits), and
/// the endpoint was counted healthy. `i64::MAX` itself is a length.
#[tokio::test]
async fn duplicate_content_length_is_502_and_a_204_has_none() {
    let w = world().await;
    // Answers by the request's path: `/twice`, `/list`, `/204`, else `hello`.
    let (backend, _) = answering_backend(|head| {
        let answer: &[u8] = match head.split(' ').nth(1) {
            Some("/twice") => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello"
            }
            Some("/list") => b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
            Some("/204") => b"HTTP/1.1 204 No Content\r\ncontent-length: 12\r\n\r\n",
            Some("/head-abc") => b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n",
            Some("/304") => b"HTTP/1.1 304 Not Modified\r\ncontent-length: -1\r\n\r\n",
            Some("/head-u64") => b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\n",
            Some("/304-long") => {
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 123456789012345678901\r\n\r\n"
            }
            Some("/head-i64") => b"HTTP/1.1 200 OK\r\ncontent-length: 9223372036854775808\r\n\r\n",
            Some("/head-max") => b"HTTP/1.1 200 OK\r\ncontent-length: 9223372036854775807\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        };
        answer.to_vec()
    })
    .await;
    let (mut p, addr) = proxy_to_raw(&w, backend, "").await;
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let lengths = |resp: &http::Response<h2::RecvStream>| {
        let all = resp.headers().get_all(http::header::CONTENT_LENGTH);
        all.iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for (path, method) in [
        ("/twice", "GET"),
        ("/list", "GET"),
        ("/head-abc", "HEAD"),
        ("/304", "GET"),
        ("/head-u64", "HEAD"),
        ("/304-long", "GET"),
        ("/head-i64", "HEAD"),
    ] {
        let resp = h2_request(&mut client, h2_get(path, method)).await;
        assert_eq!(resp.status(), 502, "{path}");
    }
    let resp = h2_request(&mut client, h2_get("/head-max", "HEAD")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(lengths(&resp), ["9223372036854775807"]);
    let resp = h2_request(&mut client, h2_get("/204", "GET")).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(lengths(&resp), Vec::<String>::new());
    let mut resp = h2_request(&mut client, h2_get("/hello", "GET")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(lengths(&resp), ["5"]);
    assert_eq!(h2_body(resp.body_mut()).await, b"hello");
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(r#"hotproxy_upstream_errors_total{upstream="raw",reason="protocol"} 7"#),
        "{m}"
    );
}

/// What the log says of an upstream that floods a request with `1xx`s.
const FLOOD_ERROR: &str =
    "the upstream sent more than 64 KiB of informational (1xx) responses before its response";

/// Informational (`1xx`) responses before the answer are bounded as the
/// answer's head is: a few (`103 Early Hints`, `100 Continue`) pass, but
/// an upstream that sends them by the megabyte is a `502` once it has
/// sent 128 KiB of them (64 KiB are always let through), its connection
/// closed. hyper's client reads every one it is sent: a backend streaming
/// them without end held the request past `request_timeout` and kept a
/// worker thread parsing, stalling other clients' requests for seconds.
#[tokio::test]
async fn a_flood_of_informational_responses_is_502() {
    let w = world().await;
    const HINT: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n";
    const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    // `/flood/N` and `/few/N`: N hints (`/flood` in one write), then `HELLO`.
    let (backend, accepted) = answering_backend(|head| {
        let path = head.split(' ').nth(1).unwrap_or_default();
        let n: usize = path.rsplit('/').next().unwrap().parse().unwrap();
        [HINT.repeat(n), HELLO.to_vec()].concat()
    })
    .await;
    let (mut p, addr) = proxy_to_raw(&w, backend, "").await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
    };
    // 64 KiB of hints, then the answer.
    let few = 64 * 1024 / HINT.len();
    let reply = h1_exchange(&w, addr, get(&format!("/few/{few}")).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");
    // 256 KiB of them.
    let flood = 4 * few;
    let reply = h1_exchange(&w, addr, get(&format!("/flood/{flood}")).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply}");
    p.wait_log("the flood refused", |v| {
        v["message"] == "upstream request failed"
            && v["reason"] == "protocol"
            && v["error"] == FLOOD_ERROR
    })
    .await;
    // The flooded connection is closed: the next request has a new one.
    let reply = h1_exchange(&w, addr, get("/few/1").as_bytes()).await;
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");
    assert_eq!(accepted.load(SeqCst), 2);
}

/// The same bound holds for an `Upgrade` (WebSocket) request, whose
/// connection hyper drives in a task of its own: a backend that answers
/// it with `103 Early Hints` without end is a `502` once 128 KiB of them
/// are in, not a request held (and a worker parsing) until
/// `request_timeout`'s `504`.
#[tokio::test]
async fn a_flood_of_informational_responses_to_an_upgrade_is_502() {
    let w = world().await;
    const HINT: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n";
    let (backend, _) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        if read_raw_head(&mut tcp, &mut buf).await.is_none() {
            return;
        }
        // Until the proxy closes the connection.
        let hints = HINT.repeat(64);
        while tcp.write_all(&hints).await.is_ok() {}
    })
    .await;
    let (mut p, addr) = proxy_to_raw(&w, backend, "\n    request_timeout: 5s").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\n\
          connection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          sec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    p.wait_log("the flood refused", |v| {
        v["message"] == "upstream request failed"
            && v["reason"] == "protocol"
            && v["error"] == FLOOD_ERROR
    })
    .await;
}

/// A raw backend that answers each request head, on any connection, with
/// `answer(head)`, until the client closes or a write fails.
pub async fn answering_backend<A>(answer: A) -> (SocketAddr, Arc<AtomicUsize>)
where
    A: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    raw_backend(move |mut tcp| {
        let answer = answer.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(end) = read_raw_head(&mut tcp, &mut buf).await {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end);
                if tcp.write_all(&answer(&head)).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// hotproxy serving the public listener from the upstream `raw` (the
/// backend at `backend`, `extra` appended to its config): it, and the
/// listener's address.
pub async fn proxy_to_raw(w: &World, backend: SocketAddr, extra: &str) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ upstream: raw }]",
        &format!("\n  - name: raw\n    servers: [http://{backend}]{extra}"),
    ));
    let addr = p.listener_addr("public").await;
    (p, addr)
}
