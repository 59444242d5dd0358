//! HTTP/2 abuse: big header lists, HPACK bombs, floods, provoked resets, a client that never reads.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// The frames of `reply`, which must end with a `GOAWAY` whose error code
/// is `ENHANCE_YOUR_CALM` (11): the server cut the client off as abusive.
fn ended_calm(reply: &[u8]) -> Vec<(u8, &[u8])> {
    let frames = h2_frames(reply).expect("HTTP/2 frames");
    let Some(&(GOAWAY, goaway)) = frames.last() else {
        panic!("no GOAWAY last: {:?}", h2_frame_types(reply));
    };
    // Last stream id, then the error code.
    assert_eq!(goaway[4..8], [0, 0, 0, 11], "{goaway:?}");
    frames
}

/// An HTTP/2 header list over `max_header_bytes` (64 KiB here) but within
/// four times it (h2's threshold for abuse) is answered `431` on its
/// stream by the HTTP/2 layer, and the connection keeps serving: one
/// 70 KiB field, and 250 KiB decoded from 3 KB (a 3,000-byte field, then
/// 84 HPACK references to it). A block sent in more CONTINUATION frames
/// than the limit needs (one 150 KiB field), or a list over four times
/// the limit, ends the connection with `GOAWAY` `ENHANCE_YOUR_CALM`.
/// None reaches the backend.
#[tokio::test]
async fn h2_header_list_over_max_header_bytes_gets_431_or_goaway() {
    let (w, _p, addr) = serve("").await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    let with_field = |bytes: usize| {
        let mut req = h2_get("/api", "GET");
        let big = http::HeaderValue::from_str(&"x".repeat(bytes)).unwrap();
        req.headers_mut().insert("x-big", big);
        req
    };
    let resp = h2_request(&mut client, with_field(70 * 1024)).await;
    assert_eq!(resp.status(), 431);
    client = client.ready().await.unwrap();
    let resp = h2_request(&mut client, h2_get("/api", "GET")).await;
    assert_eq!(resp.status(), 200, "the connection keeps serving");
    client = client.ready().await.unwrap();
    let (resp, _) = client.send_request(with_field(150 * 1024), true).unwrap();
    let _ = tokio::time::timeout(WAIT, resp).await.unwrap();
    ended_calm_h2(conn).await;
    assert_eq!(w.backend.requests.load(SeqCst), 1);

    // GET https://a.example.com/api, then x-big (literal, incremental
    // indexing: dynamic index 62, 3,037 bytes decoded) and `refs`
    // references to it.
    let block = |refs: usize| {
        let mut block = hpack_get("/api");
        block.extend_from_slice(&[0x40, 5]);
        block.extend_from_slice(b"x-big");
        block.extend_from_slice(&[0x7f, 0xb9, 0x16]); // length 3,000
        block.extend(std::iter::repeat_n(b'v', 3000));
        block.extend(std::iter::repeat_n(0x80 | 62, refs));
        block
    };
    let mut s = h2_raw_request(&w, addr, &block(84)).await;
    let (_, flags, payload) = loop {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        assert_ne!(kind, GOAWAY, "{payload:?}");
        if kind == HEADERS && stream == 1 {
            break (kind, flags, payload);
        }
    };
    // `:status: 431` as h2 encodes it: literal with incremental indexing
    // of static name 8, then "431" Huffman-coded (3 bytes); END_STREAM.
    assert_eq!(payload, [0x48, 0x83, 0x69, 0x90, 0xff]);
    assert_eq!(flags & 0x1, 0x1, "the stream ends with the 431");
    // 100 references: 306,737 bytes decoded, over 4 x 65,536.
    s.write_all(&h2_frame(HEADERS, 0x5, 3, &block(100)))
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the connection is closed")
        .ok();
    ended_calm(&rest);
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// A PING ACK nobody asked for makes the h2 crate log a WARN ("recv PING
/// ack that we never sent"): one line per 17-byte frame, a way for any
/// client to flood the process log and page log-based alerting. The
/// default filter keeps that bookkeeping at error.
#[tokio::test]
async fn unsolicited_ping_acks_do_not_write_the_process_log() {
    const PING: u8 = 6;
    let (w, p, addr) = serve("").await;
    let mut s = tls(&w, addr, &[b"h2"]).await;
    let mut out = PREFACE.to_vec();
    out.extend_from_slice(EMPTY_SETTINGS);
    for i in 0..20u8 {
        out.extend(h2_frame(PING, 0x1, 0, &[i; 8]));
    }
    // Then a PING of our own: its ACK says every frame before it was read.
    out.extend(h2_frame(PING, 0, 0, b"barrier!"));
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    let acked = |got: &[u8]| h2_frames(got).is_some_and(|f| f.contains(&(PING, &b"barrier!"[..])));
    while !acked(&got) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the barrier PING answered in time")
            .unwrap();
        assert!(n > 0, "closed before the barrier PING was answered");
        got.extend_from_slice(&buf[..n]);
    }
    let flood: Vec<_> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("PING ack that we never sent"))
        .collect();
    assert!(
        flood.is_empty(),
        "{} lines: {:?}",
        flood.len(),
        flood.first()
    );
}

/// An HTTP/2 client that opens 200 streams on responses that never end
/// (`/big`), with the largest windows, and then never reads a byte: the
/// listener advertises at most 100 concurrent streams and refuses the rest
/// (only 100 reach the backend), and each stream queues at most 32 KiB
/// for the client, so what hotproxy holds for that one connection stays
/// far under 40 MB. hyper's defaults (200 streams, 400 KiB each) held over
/// 100 MB.
#[tokio::test]
async fn h2_client_that_never_reads_holds_bounded_memory() {
    let (w, p, addr) = serve("").await;
    let before = rss_kib(p.pid());
    let mut s = tls(&w, addr, &[b"h2"]).await;
    s.write_all(PREFACE).await.unwrap();
    // The server's SETTINGS come first; MAX_CONCURRENT_STREAMS is id 3.
    let (kind, _, _, settings) = next_frame(&mut s).await;
    assert_eq!(kind, SETTINGS);
    let streams = settings
        .chunks(6)
        .find(|p| p[..2] == [0, 3])
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(streams, Some(100), "{settings:?}");

    // SETTINGS_INITIAL_WINDOW_SIZE (4) and the connection window at 2^31-1.
    let mut out = h2_frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]);
    out.extend(h2_frame(
        WINDOW_UPDATE,
        0,
        0,
        &(0x7fff_ffff_u32 - 65_535).to_be_bytes(),
    ));
    let block = hpack_get("/big");
    for i in 0..200 {
        // END_STREAM | END_HEADERS
        out.extend(h2_frame(1, 0x5, 1 + 2 * i, &block));
    }
    s.write_all(&out).await.unwrap();
    wait_until(WAIT, "100 streams at the backend", || async {
        w.backend.requests.load(SeqCst) >= 100
    })
    .await;
    // Watch it while the upstream bodies pour in and nobody reads.
    let grown = peak_rss_kib(p.pid()).await.saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "one non-reading client grew hotproxy by {grown} KiB"
    );
    assert_eq!(
        w.backend.requests.load(SeqCst),
        100,
        "streams past the limit reached the backend"
    );
    drop(s);
}

/// An HPACK bomb: one 4,000-byte header put in the dynamic table, then
/// referenced 2,000 times in a 6 KB header block (8 MB decoded). It is
/// refused by the HTTP/2 layer against `max_header_bytes` (`GOAWAY`,
/// `ENHANCE_YOUR_CALM`) and the connection closed; nothing reaches the
/// backend.
#[tokio::test]
async fn h2_hpack_bomb_is_refused() {
    let (w, _p, addr) = serve("").await;
    // :method GET, :scheme https, :path /, :authority a.example.com, then
    // x-big (literal, incremental indexing: dynamic index 62) and 2,000
    // references to it.
    let mut block = vec![0x82, 0x87, 0x84, 0x01, 13];
    block.extend_from_slice(b"a.example.com");
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // length 4,000
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.extend(std::iter::repeat_n(0x80 | 62, 2000));
    let mut s = h2_raw_request(&w, addr, &block).await;
    ended_calm(&read_to_close(&mut s).await);
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// Empty DATA frames cost the sender nine bytes each and the receiver a
/// frame's work (CVE-2019-9518): a client streaming them on an upload is cut
/// off with GOAWAY ENHANCE_YOUR_CALM (h2's `too_many_data_frames`, as
/// Envoy's `max_consecutive_inbound_frames_with_empty_payload`), long
/// before the 200,000 it tries.
#[tokio::test]
async fn h2_empty_data_frame_flood_is_cut_off() {
    let (w, _p, addr) = serve("").await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    let (_, mut stream) = client
        .send_request(h2_get("/upload", "POST"), false)
        .unwrap();
    let mut sent = 0;
    while sent < 200_000 && stream.send_data(Bytes::new(), false).is_ok() {
        sent += 1;
        if sent % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    ended_calm_h2(conn).await;
    assert!(sent < 200_000, "all {sent} empty frames were taken");
}

/// A header block that never ends: HEADERS without END_HEADERS, then
/// empty CONTINUATION frames for as long as the server takes them
/// (the "CONTINUATION flood", CERT/CC VU#421644, which Apache httpd, Envoy
/// and the h2 crate each had to bound). The HTTP/2 layer gives up after a
/// handful (h2 counts them against `max_header_bytes`): `GOAWAY`
/// `ENHANCE_YOUR_CALM`, nothing reaches the backend, and the connection's
/// memory does not grow with what the client keeps writing.
#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let (w, p, addr) = serve("").await;
    let before = rss_kib(p.pid());
    let (mut from, mut to) = tokio::io::split(tls(&w, addr, &[b"h2"]).await);
    let flood = tokio::spawn(async move {
        // :method GET, :scheme https, :path /, and no END_HEADERS (0x1 is
        // END_STREAM alone).
        let mut out = [PREFACE, EMPTY_SETTINGS].concat();
        out.extend(h2_frame(1, 0x1, 1, &[0x82, 0x87, 0x84]));
        let burst: Vec<u8> = (0..1000)
            .flat_map(|_| h2_frame(CONTINUATION, 0, 1, &[]))
            .collect();
        let mut sent = 0;
        while sent < 1_000_000 {
            // A server that stops reading fills the socket buffers and the
            // write waits; one that closed fails it.
            match tokio::time::timeout(Duration::from_secs(2), to.write_all(&out)).await {
                Ok(Ok(())) => sent += out.len() / 9,
                _ => break,
            }
            out.clone_from(&burst);
        }
        sent
    });
    ended_calm(&read_to_close(&mut from).await);
    let sent = flood.await.unwrap();
    assert!(sent < 1_000_000, "all {sent} frames were taken");
    assert_eq!(w.backend.requests.load(SeqCst), 0);
    let grown = rss_kib(p.pid()).saturating_sub(before);
    assert!(grown < 8 * 1024, "the flood grew hotproxy by {grown} KiB");
}

/// "MadeYouReset" (CVE-2025-8671): the client does not reset its streams
/// itself (that is rapid reset, above) but makes the server reset them, here
/// with a WINDOW_UPDATE that overflows each new stream's send window
/// (`FLOW_CONTROL_ERROR`, a stream error), so every request it opens is
/// started and dropped at once. After 1024 such resets hotproxy ends the
/// connection with `GOAWAY` `ENHANCE_YOUR_CALM` instead of resetting all
/// 20,000.
#[tokio::test]
async fn h2_server_provoked_resets_are_cut_off() {
    let (w, _p, addr) = serve("").await;
    let (mut from, mut to) = tokio::io::split(tls(&w, addr, &[b"h2"]).await);
    let flood = tokio::spawn(async move {
        // GET https://a.example.com/slow/1 (END_STREAM | END_HEADERS).
        let block = hpack_get("/slow/1");
        let mut out = [PREFACE, EMPTY_SETTINGS].concat();
        for stream in (1..40_000u32).step_by(2) {
            out.extend(h2_frame(1, 0x5, stream, &block));
            out.extend(h2_frame(
                WINDOW_UPDATE,
                0,
                stream,
                &0x7fff_ffff_u32.to_be_bytes(),
            ));
            if stream % 200 == 199 {
                let write = to.write_all(&out);
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(2), write).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
                out.clear();
            }
        }
    });
    let reply = read_to_close(&mut from).await;
    flood.await.unwrap();
    let resets = ended_calm(&reply)
        .iter()
        .filter(|(kind, _)| *kind == RST_STREAM)
        .count();
    assert!(
        (1..=1024).contains(&resets),
        "{resets} streams reset before the GOAWAY"
    );
}
