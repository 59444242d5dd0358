//! Lingering close: a closing connection reads and discards what the client still sends, so it reads our last response instead of a reset.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so it reads our error response instead of a reset
/// (nginx's `lingering_close`; its `lingering_timeout` is 5 s).
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// At most this much is read and discarded while lingering.
pub const LINGER_BYTES: usize = 1 << 20;

/// Whether the client has sent something we have not read: the stream's
/// buffered input or a socket the runtime knows to be readable (no system
/// call when it knows it is not). What it reads is discarded, as lingering
/// would; end of stream and errors count as nothing waiting.
pub fn input_waiting<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(
        Pin::new(stream).poll_read(&mut cx, &mut buf),
        Poll::Ready(Ok(())) if !buf.filled().is_empty()
    )
}

/// Close our side (unless `shut` already), then read and discard what the
/// client still sends for at most [`LINGER_TIME`] / [`LINGER_BYTES`], so the
/// kernel does not answer its unread input with a reset that destroys our
/// last response.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shut: bool) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        if !shut {
            let _ = stream.shutdown().await;
        }
        // Small: this runs for every closed connection, and what it reads
        // is thrown away (a TLS stream hands over a record in pieces).
        let mut buf = vec![0u8; 4 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
