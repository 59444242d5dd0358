//! The driver on real TLS connections over loopback: what the look at a close from outside decides when its own poll begins a request.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};

use super::tests::{
    GET, GOAWAY, LONG, PREFACE, Signals, Unread, answered_last, answering_ok,
    answering_unless_refused, frames, h1_answered_at_once, ok_on, received, rules_changed,
    test_driver, unread_at_signal,
};
use super::{Driver, Ended, Outcome};
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
        answered_last(&got);
        assert_eq!(got.matches("http/1.1 ").count(), 1, "{got:?}");
        assert_eq!(outcome.by, Ended::ByUs);
    }
}

/// HTTP/1.1, its listener handed over (a rename) with no request yet,
/// then the process's signal: a whole head on the socket, unread at
/// that signal, is read by the look and answered, as the connection's
/// last (SPEC §1). The hand-over had made its first request its last
/// (`Activity::answer_last`), which the signal took for a head an
/// earlier look had found: no look, and hyper's graceful close, nothing
/// read, closed the connection, the request sent before the signal
/// unanswered.
#[tokio::test]
async fn an_h1_request_unread_at_shutdown_after_a_hand_over_is_answered() {
    const ONE: &[u8] = b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(b"", ONE, b"", b"").await;
    let activity = Activity::new(Instant::now(), true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), true, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_ok(&activity));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let driver = Driver {
        handed_over: Some(&|| true),
        ..test_driver(&activity, peer, &signals)
    };
    let run = driver.run(
        conn,
        |c| c.graceful_shutdown(),
        futures_util::stream::pending(),
    );
    let signal = async {
        signals.closing.send_replace(true);
        // Until the driver has taken the hand-over.
        let mut tries = 0;
        while !activity.answers_last() {
            tries += 1;
            assert!(tries < 10_000, "the hand-over never taken");
            tokio::task::yield_now().await;
        }
        // The request on the socket, the runtime not polling for I/O
        // before the signal.
        revoked.await;
        signals.process.send_replace(true);
    };
    let (outcome, ()) = tokio::join!(run, signal);
    let got = String::from_utf8_lossy(&received(client).await).to_ascii_lowercase();
    answered_last(&got);
    assert_eq!(outcome.by, Ended::ByUs);
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
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
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

/// HTTP/1.1: a long run of empty lines, 64 KiB of it read before the
/// signal (held in hyper's buffer), 16 KiB unread at it, with a head
/// behind it or not, is handed to hyper in a few reads in the look, not
/// a byte a read (16,385 reads). hyper parses its whole buffer again
/// after every read (httparse skipping those lines anew) and never
/// waits between reads that find bytes: a byte a read held the
/// runtime's worker, in the one poll, for the square of the run (over
/// 10⁹ bytes skipped here). The client sees what it did: the request
/// whose head follows the run answered as the last (`Connection:
/// close`), and without a head nothing, the connection closed at once.
#[tokio::test]
async fn an_h1_run_of_empty_lines_at_the_signal_is_handed_over_in_a_few_reads() {
    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // 64 KiB held; 16 KiB unread, which the socket's receive queue
    // takes whole (the look reads no more than that queue holds).
    let held: &'static [u8] = b"\r\n".repeat(32 * 1024).leak();
    let lines: &'static [u8] = b"\r\n".repeat(8 * 1024).leak();
    let with_head: &'static [u8] = [lines, HEAD].concat().leak();
    for (unread, answered) in [(with_head, true), (lines, false)] {
        let (activity, outcome, got) = h1_lines_held(held, unread).await;
        let reads = activity.look_reads.load(Ordering::Relaxed);
        assert!(reads <= 16, "{reads} reads in the look (head {answered})");
        if answered {
            answered_last(&got);
            assert_eq!(got.matches("http/1.1 ").count(), 1, "{got:?}");
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        assert_eq!(outcome.by, Ended::ByUs);
    }
}

/// An HTTP/1.1 client that sends `held` with its handshake, all of it
/// read by hyper before the signal (`also_close`), then `unread`, on the
/// socket unread as the signal fires: its activity, how the connection
/// ended, and what the client was sent.
async fn h1_lines_held(
    held: &'static [u8],
    unread: &'static [u8],
) -> (Arc<Activity>, Outcome<hyper::Error>, String) {
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(held, unread, b"", b"").await;
    let activity = Activity::new(Instant::now(), true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), true, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_ok(&activity));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    // The signal once hyper has read all of `held` (only line ends: their
    // count).
    let watched = activity.clone();
    let revoked = async move {
        let mut tries = 0;
        while watched.line_ends.load(Ordering::Relaxed) < held.len() as u64 {
            tries += 1;
            assert!(tries < 10_000, "the lines sent first never read");
            tokio::task::yield_now().await;
        }
        revoked.await;
    };
    let outcome = test_driver(&activity, peer, &signals)
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    let got = received(client).await;
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    (activity, outcome, got)
}
