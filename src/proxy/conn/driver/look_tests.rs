//! The driver on real TLS connections over loopback: what the look at a close from outside decides when its own poll begins a request.

use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};

use super::tests::{
    GET, GOAWAY, LONG, PREFACE, Signals, Unread, answering_unless_refused, frames,
    h1_answered_at_once, ok_on, received, test_driver, unread_at_signal,
};
use super::{Driver, Ended};
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::Activity;
use crate::proxy::stall::Stalls;

/// HTTP/1.1: a whole first head unread at the signal, answered as soon
/// as the look's poll has read it, is the connection's last: its
/// response says `Connection: close`, the connection closes after it,
/// and a second request the client pipelined behind it is not served.
/// The look's poll began that request itself, so it was no longer
/// "before the first request" once the poll was over, and nothing
/// marked its answer last: hyper wrote it keep-alive within that poll,
/// went on to the pipelined one, and answered it too.
#[tokio::test]
async fn an_h1_request_the_look_reads_whole_is_answered_as_the_last() {
    const ONE: &[u8] = b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const TWO: &[u8] =
        b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for bytes in [ONE, TWO] {
        let (outcome, got) = h1_answered_at_once(b"", bytes, b"", false).await;
        assert!(
            got.starts_with("http/1.1 200")
                && got.contains("\r\nconnection: close\r\n")
                && got.ends_with("ok"),
            "{got:?}"
        );
        assert_eq!(got.matches("http/1.1 ").count(), 1, "{got:?}");
        assert_eq!(outcome.by, Ended::ByUs);
    }
}

/// HEADERS on stream 3, END_STREAM without END_HEADERS: `:method GET`
/// alone, its CONTINUATION due.
const HALF3: &[u8] = b"\x00\x00\x01\x01\x01\x00\x00\x00\x03\x82";
/// The CONTINUATION ending [`HALF3`]'s block (`:path /`): a request with
/// no `:scheme`, malformed, which h2 resets (`PROTOCOL_ERROR`) and never
/// hands to the service.
const END3: &[u8] = b"\x00\x00\x01\x09\x04\x00\x00\x00\x03\x84";

/// HTTP/2: a header block the look's poll completes that h2 refuses
/// itself (a malformed request, reset `PROTOCOL_ERROR`; a stream over
/// the concurrency limit, `REFUSED_STREAM`) begins no stream, so the
/// connection, part way into that block at the signal with no stream in
/// flight, is closed at once as before the look: a `GOAWAY` naming the
/// last block it completed (3), and no graceful close (hyper's `GOAWAY`
/// of 2^31-1 and its PING). "Begun" was judged by the highest stream id
/// of a header block ended, which that block raised.
#[tokio::test]
async fn an_h2_block_the_look_completes_and_h2_refuses_closes_at_once() {
    let first: &'static [u8] = [PREFACE, GET, HALF3].concat().leak();
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(first, END3, b"", b"").await;
    let activity = Activity::new(Instant::now(), true);
    let stalls = Stalls::new();
    let io = ClientIo::new(Box::new(tls), activity.clone(), false, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_unless_refused(&activity));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let short = Duration::from_millis(500);
    let driver = Driver {
        stalls: Some((&*stalls, LONG)),
        header_read_timeout: short,
        send_timeout: short,
        ..test_driver(&activity, peer, &signals)
    };
    // The signal once stream 1 is answered, its end on the socket, and
    // the client part way into stream 3's block: its CONTINUATION is
    // then written, and unread as the driver looks.
    let watched = activity.clone();
    let revoked = async move {
        let mut tries = 0;
        while !(watched.out_id.load(std::sync::atomic::Ordering::Relaxed) == 1
            && watched.block_begun())
        {
            tries += 1;
            assert!(tries < 10_000, "stream 1 never answered");
            tokio::task::yield_now().await;
        }
        revoked.await;
    };
    let outcome = driver.run(conn, |c| c.graceful_shutdown(), revoked).await;
    let got = received(client).await;
    let frames = frames(&got);
    let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert!(ok_on(&frames, 1), "stream 1 not answered: {kinds:?}");
    let goaways: Vec<_> = frames
        .iter()
        .filter(|f| f.0 == GOAWAY)
        .map(|f| f.2.get(..8).unwrap_or_default().to_vec())
        .collect();
    assert_eq!(goaways, [[0, 0, 0, 3, 0, 0, 0, 0]], "frames: {kinds:?}");
    const PING: u8 = 0x6;
    assert!(
        !frames.iter().any(|f| f.0 == PING),
        "closed gracefully; frames: {kinds:?}"
    );
    assert_eq!(outcome.by, Ended::ByUs);
}
