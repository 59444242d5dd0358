//! An HTTP/2 upstream's informational (`1xx`) responses: a few pass, a flood is a `502`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::common::*;
use crate::raw_h2::*;
use crate::support::*;

/// A proxy whose one upstream, `app`, is `backend`, with a
/// `request_timeout` of ten minutes (an informational answer taken for
/// the wait it used to be shows as no answer within the test's wait);
/// and its address.
async fn waiting_proxy(w: &World, backend: SocketAddr) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        backend,
        &["request_timeout: 10m"],
    ));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

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
    let (mut p, addr) = waiting_proxy(&w, backend).await;
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

/// A `101 Switching Protocols` from an HTTP/2 upstream (RFC 9113 §8.6: the
/// status does not exist in HTTP/2) is a `502` (`protocol`) at once, as
/// Envoy answers it (nghttp2 resets the stream), not an informational
/// response hyper drops while the request waits for a final one until
/// `request_timeout` (here ten minutes). It comes Huffman-coded and
/// indexed (as Go's and nghttp2's servers encode it), which fails its
/// connection (h2's HPACK table keeps no other entry than the server's):
/// the second request comes on a new connection. A later stream on the
/// first would get a reference to that table entry.
#[tokio::test]
async fn a_101_from_an_http2_upstream_is_502_at_once() {
    let w = world();
    // HEADERS (END_HEADERS) and no more: on stream 1, `:status` (static
    // name 8) with incremental indexing, "101" Huffman-coded; later, the
    // dynamic table's first entry (index 62).
    let (backend, accepted) = answering_h2(&w.backend_pair, |_, stream| {
        let block: &[u8] = if stream == 1 {
            &[0x48, 0x82, 0x08, 0x03]
        } else {
            &[0xbe]
        };
        h2_frame(1, 4, stream, block)
    })
    .await;
    let (mut p, addr) = waiting_proxy(&w, backend).await;
    for _ in 0..2 {
        let mut sender = h1_sender(&w, addr).await;
        let (status, _) = exchange(&mut sender, h1_request("GET", "/x", "")).await;
        assert_eq!(status, 502);
    }
    let told = p
        .wait_log("the 101 refused", |v| {
            v["message"] == "upstream request failed"
        })
        .await;
    assert_eq!(told["reason"], "protocol", "{told}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// HEADERS blocks whose first field is `:status: 101` in the other forms
/// HPACK has for it, each with what later streams on the connection get:
/// the same, or the dynamic table's first entry where the first was
/// indexed. What each is, the first block, the later one, and the
/// connections two requests take: one for a static name index not
/// indexed (the name turned into `:method`, its stream reset, the
/// connection serves the second request the later block), two for the
/// others (the value spoiled, the connection fails: with incremental
/// indexing, so that h2's HPACK table keeps no entry the server's does
/// not). Their later block is then never sent; it stands for what a
/// connection that survived would get.
const STATUS_101_FORMS: [(&str, &[u8], &[u8], usize); 5] = [
    (
        "name 9 (`:status 204`), without indexing",
        &[0x09, 0x03, b'1', b'0', b'1'],
        &[0x09, 0x03, b'1', b'0', b'1'],
        1,
    ),
    (
        "name 14 (`:status 500`), incremental indexing, Huffman value",
        &[0x4e, 0x82, 0x08, 0x03],
        &[0xbe],
        2,
    ),
    (
        "name 12 (`:status 400`), never indexed",
        &[0x1c, 0x03, b'1', b'0', b'1'],
        &[0x1c, 0x03, b'1', b'0', b'1'],
        1,
    ),
    (
        "the literal name `:status`, without indexing",
        &[
            0x00, 0x07, b':', b's', b't', b'a', b't', b'u', b's', 0x03, b'1', b'0', b'1',
        ],
        &[
            0x00, 0x07, b':', b's', b't', b'a', b't', b'u', b's', 0x03, b'1', b'0', b'1',
        ],
        2,
    ),
    (
        "the Huffman-coded name `:status`, incremental indexing",
        &[
            0x40, 0x85, 0xb8, 0x84, 0x8d, 0x36, 0xa3, 0x03, b'1', b'0', b'1',
        ],
        &[0xbe],
        2,
    ),
];

/// A `101` from an HTTP/2 upstream is a `502` at once whichever HPACK form
/// carries its `:status`: a name index of the other static `:status`
/// entries (9 to 14) or the name written out (raw or Huffman-coded), not
/// only index 8 (`:status 200`), as Go, nghttp2 and h2 encode it. Any
/// other form slipped past the guard: h2 took the `101` as an
/// informational response, and the request waited until `request_timeout`
/// (here ten minutes) for a final one.
#[tokio::test]
async fn a_101_in_any_hpack_form_from_an_http2_upstream_is_502_at_once() {
    for (what, first, later, connections) in STATUS_101_FORMS {
        let w = world();
        let (backend, accepted) = answering_h2(&w.backend_pair, move |_, stream| {
            h2_frame(1, 4, stream, if stream == 1 { first } else { later })
        })
        .await;
        let (_p, addr) = waiting_proxy(&w, backend).await;
        for i in 0..2 {
            let mut sender = h1_sender(&w, addr).await;
            let req = h1_request("GET", "/x", "");
            let Ok(resp) = tokio::time::timeout(WAIT, sender.send_request(req)).await else {
                panic!("{what}: request {i} unanswered, its 101 taken as informational");
            };
            assert_eq!(resp.unwrap().status(), 502, "{what}: request {i}");
        }
        let dialled = accepted.load(Ordering::SeqCst);
        assert_eq!(dialled, connections, "{what}: connections");
    }
}

/// A `:status: 101` with incremental indexing (`0x48`, static name 8)
/// fails its connection: the entry the server's HPACK table keeps is
/// `:status: 101`, and h2's must be no other. Its name index used to be
/// turned into `:method`'s, so h2's table kept `:method: 101`: a later
/// response naming that entry as its name with a real value (`0x7e`, a
/// `:status: 200` to the server) was read as a `:method` and got a `502`.
/// Here the first connection sends that later response; the others
/// answer `200` (static index 8) and a body.
#[tokio::test]
async fn a_101_indexed_by_the_server_leaves_no_other_entry_in_h2s_table() {
    let w = world();
    let (backend, accepted) = answering_h2(&w.backend_pair, |n, stream| match (n, stream) {
        (0, 1) => h2_frame(1, 4, stream, &[0x48, 0x03, b'1', b'0', b'1']),
        (0, _) => response(stream, &[0x7e, 0x03, b'2', b'0', b'0'], b"ok"),
        _ => response(stream, &[0x88], b"ok"),
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let mut sender = h1_sender(&w, addr).await;
    let (status, _) = exchange(&mut sender, h1_request("GET", "/x", "")).await;
    assert_eq!(status, 502, "the 101");
    let (status, got) = exchange(&mut sender, h1_request("GET", "/x", "")).await;
    assert_eq!((status, &*got), (200, &b"ok"[..]), "the response after it");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A `:status: 101` with incremental indexing that is not the first
/// field of its block (after `:status: 200`, static index 8) is refused
/// too: h2 resets that stream for its second `:status`, but its table
/// keeps the entry, and a later block naming it (`0xbe`) decoded a `101`,
/// its request held until `request_timeout` (here ten minutes). Only the
/// first field of a block was looked at.
#[tokio::test]
async fn a_101_indexed_past_the_first_field_of_a_block_is_refused() {
    let w = world();
    let (backend, _) = answering_h2(&w.backend_pair, |_, stream| {
        let block: &[u8] = if stream == 1 {
            &[0x88, 0x48, 0x03, b'1', b'0', b'1']
        } else {
            &[0xbe]
        };
        h2_frame(1, 4, stream, block)
    })
    .await;
    let (_p, addr) = waiting_proxy(&w, backend).await;
    let mut sender = h1_sender(&w, addr).await;
    for i in 0..2 {
        let req = h1_request("GET", "/x", "");
        let Ok(resp) = tokio::time::timeout(WAIT, sender.send_request(req)).await else {
            panic!("request {i} unanswered, its 101 taken as informational");
        };
        assert_eq!(resp.unwrap().status(), 502, "request {i}");
    }
}
