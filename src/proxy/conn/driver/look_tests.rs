//! The driver on real TLS connections over loopback: what the look at a close from outside decides when its own poll begins a request.

use super::Ended;
use super::tests::h1_answered_at_once;

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
