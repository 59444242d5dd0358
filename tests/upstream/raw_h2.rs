//! Raw HTTP/2 backends for the upstream tests: frames written by hand, each backend saying only what it answers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One HTTP/2 frame: length, type, flags, stream id, payload.
pub(crate) fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A SETTINGS frame (not an ACK) with `params`, each an identifier and
/// its value; none for an empty one.
pub(crate) fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    h2_frame(4, 0, 0, &payload)
}

/// `GOAWAY(NO_ERROR)` naming `last` as the last stream processed.
pub(crate) fn goaway(last: u32) -> Vec<u8> {
    let mut payload = last.to_be_bytes().to_vec();
    payload.extend_from_slice(&0u32.to_be_bytes());
    h2_frame(7, 0, 0, &payload)
}

/// `RST_STREAM` on `stream` with the error code `code`.
pub(crate) fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    h2_frame(3, 0, stream, &code.to_be_bytes())
}

/// `RST_STREAM(REFUSED_STREAM)` (0x7) on `stream`: not processed.
pub(crate) fn refused(stream: u32) -> Vec<u8> {
    rst_stream(stream, 7)
}

/// A whole response on `stream`: the header block `block` (one HEADERS
/// frame, END_HEADERS) and `body` (one DATA frame, END_STREAM).
pub(crate) fn response(stream: u32, block: &[u8], body: &[u8]) -> Vec<u8> {
    [h2_frame(1, 4, stream, block), h2_frame(0, 1, stream, body)].concat()
}

/// A response begun on `stream`: `:status: 200` (HPACK static index 8)
/// and `body`, the stream left open (no END_STREAM).
pub(crate) fn begun(stream: u32, body: &[u8]) -> Vec<u8> {
    [
        h2_frame(1, 4, stream, &[0x88]),
        h2_frame(0, 0, stream, body),
    ]
    .concat()
}

/// A [`response`] `:status: 200` (HPACK static index 8) whose body names
/// connection `n`: `connection N`.
pub(crate) fn naming(n: usize, stream: u32) -> Vec<u8> {
    response(stream, &[0x88], format!("connection {n}").as_bytes())
}

/// The next frame's type, flags and stream id (its payload read and let
/// go); `None` when the connection ends.
pub(crate) async fn next_frame<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
) -> Option<(u8, u8, u32)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream))
}

/// [`next_frame`] past the client's SETTINGS frames (not ACKs), each
/// acknowledged on the way: the next frame the backend has to answer.
pub(crate) async fn next_acking(tls: &mut H2Conn) -> Option<(u8, u8, u32)> {
    loop {
        let (kind, flags, stream) = next_frame(tls).await?;
        if kind != 4 || flags & 1 == 1 {
            return Some((kind, flags, stream));
        }
        let _ = tls.write_all(&h2_frame(4, 1, 0, &[])).await;
    }
}

/// A connection to a raw HTTP/2 backend, past its preface.
pub(crate) type H2Conn = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// A raw HTTP/2 backend serving `pair` (ALPN `h2`): each connection it
/// accepts is numbered (from 0) and, once its TLS handshake is done and
/// the client's connection preface read, sent `first` (the server's
/// first SETTINGS frame, see [`settings`]) and handed with its number to
/// `serve`, on a task of its own. Returns its address and its accepted
/// connections.
pub(crate) async fn raw_h2<F, Fut>(
    pair: &TestPair,
    first: Vec<u8>,
    serve: F,
) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(H2Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (listener, acceptor) = tls_listener(pair, b"h2").await;
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (first, serve) = (Arc::new(first), Arc::new(serve));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, first, serve) = (acceptor.clone(), first.clone(), serve.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut preface = [0u8; 24];
                if tls.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let _ = tls.write_all(&first).await;
                serve(tls, n).await;
            });
        }
    });
    (addr, accepted)
}

/// A [`raw_h2`] backend (empty SETTINGS) that acknowledges the client's
/// SETTINGS and answers each request's HEADERS with the bytes `answer`
/// makes of its connection's number and its stream id. Returns its
/// address and accepted connections.
pub(crate) async fn answering_h2<A>(pair: &TestPair, answer: A) -> (SocketAddr, Arc<AtomicUsize>)
where
    A: Fn(usize, u32) -> Vec<u8> + Copy + Send + Sync + 'static,
{
    raw_h2(pair, settings(&[]), move |mut tls, n| async move {
        while let Some((kind, _, stream)) = next_acking(&mut tls).await {
            if kind == 1 {
                let _ = tls.write_all(&answer(n, stream)).await;
            }
        }
    })
    .await
}
