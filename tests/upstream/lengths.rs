//! An HTTP/2 upstream's `content-length`: sent twice, or not matching its DATA.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::*;
use crate::support::*;

/// An HTTP/2 backend that answers by path, each with `content-length: 5`
/// (`/twice`: and `6` in a second field; `/agree`: `5` again) and then:
/// `/twice`, `/agree`, `/ok`: `hello`; `/short`: `hel`; `/long`: `hello world` in one DATA frame;
/// `/long-split`: `hello`, then ` world` in a second frame. Its address.
async fn length_liar(pair: &TestPair) -> SocketAddr {
    h2_backend(pair, |req, mut respond| {
        let path = req.uri().path().to_owned();
        let mut head = http::Response::builder().header("content-length", "5");
        match path.as_str() {
            "/twice" => head = head.header("content-length", "6"),
            "/agree" => head = head.header("content-length", "5"),
            _ => {}
        }
        let pieces: &[&[u8]] = match path.as_str() {
            "/short" => &[b"hel"],
            "/long" => &[b"hello world"],
            "/long-split" => &[b"hello", b" world"],
            _ => &[b"hello"],
        };
        let Ok(mut tx) = respond.send_response(head.body(()).unwrap(), false) else {
            return;
        };
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let _ = tx.send_data(Bytes::from_static(piece), last);
        }
    })
    .await
}

/// How an HTTP/2 response that must not end cleanly ends: `None` for a
/// `502` (the upstream broke the body within the read that brought its
/// head: nothing had been sent), else the body it brought and the error it
/// ended with.
async fn cut_h2(resp: h2::client::ResponseFuture) -> Option<(Vec<u8>, h2::Error)> {
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    if resp.status() == 502 {
        return None;
    }
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, body.data()).await.unwrap() {
            Some(Ok(data)) => got.extend_from_slice(&data),
            Some(Err(e)) => return Some((got, e)),
            None => panic!("a clean end after {got:?}"),
        }
    }
}

/// An HTTP/2 upstream is held to one `content-length`, and to DATA that
/// matches it, as an HTTP/1.1 one is: two values are a `502` (as nginx's
/// "duplicate header line"), differing ones (h2 resets such a stream) and
/// agreeing ones (h2 takes them, and the client would get both) alike. A
/// body shorter or longer than declared (h2 resets the stream at the DATA
/// frame that breaks the length) never ends cleanly: an HTTP/2 client's
/// stream is reset, an HTTP/1.1 client's connection closed, or, if that
/// DATA frame came with the head, the client gets a `502`; never a
/// complete-looking response of the wrong length.
#[tokio::test]
async fn an_h2_upstreams_length_must_be_one_and_match_its_data() {
    let w = world();
    let backend = length_liar(&w.backend_pair).await;
    let (mut p, addr) = proxy_for(&w, backend).await;

    // Over HTTP/2.
    let mut client = h2_to(&w, addr).await;
    let get = |path: &str| {
        let req = http::Request::get(format!("https://a.example.com{path}"));
        req.body(()).unwrap()
    };
    for path in ["/twice", "/agree"] {
        let (resp, _) = client.send_request(get(path), true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 502, "{path}");
    }
    for path in ["/short", "/long", "/long-split"] {
        let (resp, _) = client.send_request(get(path), true).unwrap();
        if let Some((got, e)) = cut_h2(resp).await {
            assert!(e.is_reset(), "{path}: {e}");
            assert!(got.len() <= 5, "{path}: {got:?}");
        }
    }
    let (resp, _) = client.send_request(get("/ok"), true).unwrap();
    let mut resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    while let Some(data) = resp.body_mut().data().await {
        got.extend_from_slice(&data.unwrap());
    }
    assert_eq!(got, b"hello");

    // Over HTTP/1.1: a short or long body ends its connection after its
    // head, or is a `502` if it broke within the read that brought the
    // head; never a connection closed before any head. A body whose first
    // DATA frame holds the declared length is that length if the frame
    // past it comes later: hyper's server writes no more and drops the
    // rest unread, as hotproxy takes an HTTP/1.1 upstream's
    // `Content-Length` over bytes past it; nothing stray reaches the
    // connection, whose next request gets its own answer.
    let mut long_split_502 = false;
    for path in ["/short", "/long", "/long-split"] {
        let mut sender = h1_sender(&w, addr).await;
        let sent = sender.send_request(h1_request("GET", path, ""));
        let resp = tokio::time::timeout(WAIT, sent).await.unwrap();
        let resp = resp.unwrap_or_else(|e| panic!("{path}: no head: {e}"));
        if resp.status() == 502 {
            long_split_502 |= path == "/long-split";
            continue;
        }
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await;
        let next = sender.send_request(h1_request("GET", "/ok", "")).await;
        if path == "/long-split" {
            assert_eq!(body.unwrap().to_bytes(), "hello");
            let next = next.unwrap().into_body().collect().await;
            assert_eq!(next.unwrap().to_bytes(), "hello");
        } else {
            assert!(body.is_err(), "{path}: {body:?}");
            assert!(next.is_err(), "{path}: the connection was reused: {next:?}");
        }
    }

    let m = metrics_text(p.admin_addr().await).await;
    // Each response the upstream broke is one upstream error: the two
    // `502`s, and the five bodies it cut or overran (three to the HTTP/2
    // client, two to the HTTP/1.1 one), counted where they failed, before
    // or after their head; and `/long-split` to the HTTP/1.1 client if it
    // was a `502` (its overrun came with its head).
    let broken = 7 + usize::from(long_split_502);
    let counted =
        format!(r#"hotproxy_upstream_errors_total{{upstream="app",reason="protocol"}} {broken}"#);
    assert!(m.contains(&counted), "{counted}: {m}");
}

/// A `204` or `304` has no content (RFC 9110 §6.4.1), whatever an HTTP/2
/// upstream sends after its head: an HTTP/2 client gets the head alone,
/// ended, and a `204` without the `content-length` its DATA would have
/// been given. Passed on, the DATA made a malformed response (RFC 9113
/// §8.1.1) that nghttp2's clients (curl) fail with `PROTOCOL_ERROR`; an
/// HTTP/1.1 client, whose `204` or `304` hyper sends without a body,
/// already got the head alone.
#[tokio::test]
async fn an_h2_upstreams_204_and_304_reach_the_client_without_content() {
    let w = world();
    let backend = h2_backend(&w.backend_pair, |req, mut respond| {
        let mut head = http::Response::builder();
        head = match req.uri().path() {
            "/204" => head.status(204).header("content-length", "8"),
            "/304" => head.status(304).header("etag", "\"x\""),
            _ => head.status(200),
        };
        let Ok(mut tx) = respond.send_response(head.body(()).unwrap(), false) else {
            return;
        };
        let _ = tx.send_data(Bytes::from_static(b"SMUGGLED"), true);
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;

    let mut client = h2_to(&w, addr).await;
    for (path, status) in [("/204", 204), ("/304", 304)] {
        let req = http::Request::get(format!("https://a.example.com{path}"));
        let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
        let mut resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert!(
            !resp.headers().contains_key("content-length") || status == 304,
            "{path}: {resp:?}"
        );
        let mut got = Vec::new();
        while let Some(data) = tokio::time::timeout(WAIT, resp.body_mut().data())
            .await
            .unwrap()
        {
            got.extend_from_slice(&data.unwrap_or_else(|e| panic!("{path}: {e}")));
        }
        assert!(
            got.is_empty(),
            "{path}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // The connection serves on.
    let req = http::Request::get("https://a.example.com/ok");
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
}

/// An HTTP/2 upstream that resets its stream with `NO_ERROR` part way
/// through a response of unknown length (no `content-length`) has cut it:
/// that reset ends a stream cleanly only after the response's `END_STREAM`
/// (RFC 9113 §8.1, an early answer), and hyper took it for the body's
/// end, so an HTTP/2 client got the first bytes and `END_STREAM`, an
/// HTTP/1.1 client the chunked body's last chunk: a truncated response
/// that looked whole, where any other reset cuts it.
#[tokio::test]
async fn a_no_error_reset_part_way_through_a_response_cuts_it() {
    assert_cut_part_way_by(|stream| rst_stream(stream, 0)).await;
}

/// An HTTP/2 upstream that sends `GOAWAY(NO_ERROR)` part way through a
/// response of unknown length, naming a last stream below that response's,
/// has cut it as a `NO_ERROR` reset does: h2 ends each stream above the
/// last one with that `GOAWAY` as its error, whose reason is its code,
/// and hyper took that for the body's end, so the client got a truncated
/// response that looked whole (an HTTP/2 client `END_STREAM`, an HTTP/1.1
/// client the last chunk, the access log a clean `200`).
#[tokio::test]
async fn a_no_error_goaway_part_way_through_a_response_cuts_it() {
    // No stream processed.
    assert_cut_part_way_by(|_| goaway(0)).await;
}

/// An HTTP/2 upstream answering each request `:status 200` (HPACK static
/// index 8, END_HEADERS), a piece of body (`partial`, no `content-length`)
/// and then what `cut` makes of its stream id: an HTTP/2 client sees the
/// response reset (after at most those 7 bytes), an HTTP/1.1 client a
/// `502` or a `200` whose body errs; neither a clean end.
async fn assert_cut_part_way_by(cut: fn(u32) -> Vec<u8>) {
    let w = world();
    let (backend, _) = answering_h2(&w.backend_pair, move |_, stream| {
        [begun(stream, b"partial"), cut(stream)].concat()
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;

    let mut client = h2_to(&w, addr).await;
    let req = http::Request::get("https://a.example.com/")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    if let Some((got, e)) = cut_h2(resp).await {
        assert!(e.is_reset(), "{e}");
        assert!(got.len() <= 7, "{got:?}");
    }

    let mut sender = h1_sender(&w, addr).await;
    let sent = sender.send_request(h1_request("GET", "/", ""));
    let resp = tokio::time::timeout(WAIT, sent).await.unwrap().unwrap();
    if resp.status() != 502 {
        assert_eq!(resp.status(), 200);
        let body = tokio::time::timeout(WAIT, resp.into_body().collect()).await;
        assert!(body.unwrap().is_err(), "a clean end");
    }
}

/// The streams hotproxy resets itself (each client gone after the head)
/// are no longer followed as responding: they used to stay, and once 1024
/// had, they pushed out a live response begun before them, whose
/// `RST_STREAM(NO_ERROR)` part way then ended it as if whole again.
#[tokio::test]
async fn streams_hotproxy_cancels_do_not_push_out_a_live_response() {
    const CANCELLED: usize = 1024;
    let w = world();
    let (backend, _) = raw_h2(&w.backend_pair, settings(&[]), |mut tls, _| async move {
        let mut resets = 0;
        while let Some((kind, _, stream)) = next_acking(&mut tls).await {
            let out = match kind {
                // The first request: `:status 200` and a piece of its
                // body; each other one its head alone.
                1 if stream == 1 => begun(stream, b"partial"),
                1 => h2_frame(1, 4, stream, &[0x88]),
                // hotproxy cancelled them all: the first one reset.
                3 if stream != 1 => {
                    resets += 1;
                    if resets < CANCELLED {
                        continue;
                    }
                    rst_stream(1, 0)
                }
                _ => continue,
            };
            let _ = tls.write_all(&out).await;
        }
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;

    let mut client = h2_to(&w, addr).await;
    let req = http::Request::get("https://a.example.com/")
        .body(())
        .unwrap();
    let (first, _) = client.send_request(req, true).unwrap();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    // Fewer than 500 requests a connection: never a rapid reset.
    for batch in 0..CANCELLED.div_ceil(400) {
        let mut other = h2_to(&w, addr).await;
        for _ in batch * 400..CANCELLED.min(batch * 400 + 400) {
            let req = http::Request::get("https://a.example.com/")
                .body(())
                .unwrap();
            other = other.ready().await.unwrap();
            let (resp, _) = other.send_request(req, true).unwrap();
            let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    let mut body = first.into_body();
    let mut got = Vec::new();
    let e = loop {
        match tokio::time::timeout(WAIT, body.data()).await.unwrap() {
            Some(Ok(data)) => got.extend_from_slice(&data),
            Some(Err(e)) => break e,
            None => panic!("a clean end after {got:?}"),
        }
    };
    assert!(e.is_reset(), "{e}");
}
