//! A raw HTTP/2 client's frames: one written, the next read, those up to one on a stream, a new stream opened (refused or answered), new streams opened until one is refused.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::within_deadline;

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const GOAWAY: u8 = 7;
const REFUSED_STREAM: u32 = 7;
const END_STREAM: u8 = 0x1;

/// One HTTP/2 frame: its 9-byte header and `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The next HTTP/2 frame `s` receives: its type, flags, stream id and payload.
pub async fn next_frame<S: AsyncRead + Unpin>(s: &mut S) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    within_deadline("a frame", s.read_exact(&mut head))
        .await
        .expect("a frame, not the end");
    let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
    s.read_exact(&mut payload).await.unwrap();
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], stream, payload)
}

/// What a client sends first: the preface, empty SETTINGS, and a
/// connection window opened wide (room for every answer, never updated).
pub fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(8, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    out
}

/// The header block of `POST https://localhost{path}` (`path` shorter
/// than 127 bytes), not indexed: a request whose body may follow.
pub fn post_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x87, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    block
}

/// Read frames until one on stream `id` that `done` takes (given its
/// type, flags and payload); whether a `GOAWAY` came meanwhile. A reset
/// of any stream fails the test; other frames are read past.
pub async fn until_on<S: AsyncRead + Unpin>(
    s: &mut S,
    id: u32,
    done: impl Fn(u8, u8, &[u8]) -> bool,
) -> bool {
    let mut goaway = false;
    loop {
        let (kind, flags, stream, payload) = next_frame(s).await;
        assert_ne!(kind, RST_STREAM, "stream {stream} reset: {payload:?}");
        goaway |= kind == GOAWAY;
        if stream == id && done(kind, flags, &payload) {
            return goaway;
        }
    }
}

/// Open stream `id` on `s`, the request `block` (one HEADERS frame,
/// END_STREAM): whether it was refused (`RST_STREAM` `REFUSED_STREAM`)
/// rather than answered to its end. Another reset fails the test; frames
/// of other streams are read past.
pub async fn refused<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, id: u32, block: &[u8]) -> bool {
    s.write_all(&frame(HEADERS, 0x5, id, block)).await.unwrap();
    loop {
        let (kind, flags, stream, payload) = next_frame(s).await;
        if stream != id {
            continue;
        }
        if kind == RST_STREAM {
            let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert_eq!(code, REFUSED_STREAM, "stream {id} reset");
            return true;
        }
        if flags & END_STREAM != 0 {
            return false;
        }
    }
}

/// Open streams `first`, `first + 2`, … (at most 200), each the request
/// `block` (one HEADERS frame, END_STREAM) a tenth of a second after the
/// last was answered, until one is reset; that one's id. A reset other
/// than `REFUSED_STREAM` fails the test. Frames of other streams are read
/// past. `None`: all 200 were served (20 s and more).
pub async fn streams_until_refused<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    first: u32,
    block: &[u8],
) -> Option<u32> {
    for id in (first..first + 400).step_by(2) {
        if refused(s, id, block).await {
            return Some(id);
        }
        // Pacing, not a wait for a condition: the refusal comes when the
        // close's PING has gone unanswered for `header_read_timeout`, and
        // only a new stream shows it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
