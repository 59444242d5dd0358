//! Tests of the upstream connection I/O wrappers: frame watching, head waits, the written head kept.

use super::frames::TRUNCATING_RESET_CODE;
use super::*;

/// A frame header: payload length, type, flags, stream 0.
fn head(len: u32, kind: u8, flags: u8) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![l[1], l[2], l[3], kind, flags, 0, 0, 0, 0]
}

/// However the reads split the server's frames, a SETTINGS frame is
/// found once read whole, not before; an acknowledgement is not one,
/// nor a payload that looks like one.
#[test]
fn a_settings_frame_is_found_whole_however_reads_split_it() {
    // DATA whose payload is a SETTINGS header, a SETTINGS ACK, then a
    // SETTINGS frame with one setting (MAX_CONCURRENT_STREAMS = 0).
    let mut bytes = head(9, 0, 0);
    bytes.extend(head(6, 4, 0));
    bytes.extend(head(0, 4, 1));
    bytes.extend(head(6, 4, 0));
    bytes.extend([0, 3, 0, 0, 0, 0]);
    let whole = bytes.len();
    // And an empty SETTINGS frame, found at its header's last byte.
    bytes.extend(head(0, 4, 0));
    for size in 1..=bytes.len() {
        let mut frames = SettingsFrames::default();
        let mut found = Vec::new();
        for (i, chunk) in bytes.clone().chunks_mut(size).enumerate() {
            frames.read(chunk);
            if std::mem::take(&mut frames.applied) {
                found.push(((i + 1) * size).min(bytes.len()));
            }
        }
        let at = |end: usize| end.div_ceil(size) * size;
        let want: Vec<usize> = if at(whole) >= bytes.len() {
            vec![bytes.len()]
        } else {
            vec![at(whole), bytes.len()]
        };
        assert_eq!(found, want, "reads of {size} bytes");
    }
}

/// A frame header of `stream`.
fn on(stream: u32, len: u32, kind: u8, flags: u8) -> Vec<u8> {
    let mut h = head(len, kind, flags);
    h[5..].copy_from_slice(&stream.to_be_bytes());
    h
}

/// However the reads split them, a `RST_STREAM(NO_ERROR)` of a stream
/// whose response began and did not end is read as `PROTOCOL_ERROR`
/// (hyper would end its body cleanly); one after the response's
/// `END_STREAM` (RFC 9113 §8.1's early answer), one of a stream that had
/// no response, and any other code are left as sent.
#[test]
fn a_no_error_reset_before_the_end_of_a_response_is_read_as_an_error() {
    let mut bytes = Vec::new();
    // Stream 1: HEADERS, DATA, RST_STREAM(NO_ERROR): rewritten.
    bytes.extend(on(1, 1, 1, 4));
    bytes.push(0x88);
    bytes.extend(on(1, 2, 0, 0));
    bytes.extend(b"ok");
    bytes.extend(on(1, 4, 3, 0));
    bytes.extend([0, 0, 0, 0]);
    let first = bytes.len() - 1;
    // Stream 3: HEADERS, DATA with END_STREAM, RST_STREAM(NO_ERROR): kept.
    bytes.extend(on(3, 1, 1, 4));
    bytes.push(0x88);
    bytes.extend(on(3, 2, 0, 1));
    bytes.extend(b"ok");
    bytes.extend(on(3, 4, 3, 0));
    bytes.extend([0, 0, 0, 0]);
    // Stream 5: no response, RST_STREAM(NO_ERROR): kept.
    bytes.extend(on(5, 4, 3, 0));
    bytes.extend([0, 0, 0, 0]);
    // Stream 7: HEADERS, RST_STREAM(CANCEL): kept.
    bytes.extend(on(7, 1, 1, 4));
    bytes.push(0x88);
    bytes.extend(on(7, 4, 3, 0));
    bytes.extend([0, 0, 0, 8]);
    let mut want = bytes.clone();
    want[first] = TRUNCATING_RESET_CODE;
    for size in 1..=bytes.len() {
        let mut frames = SettingsFrames::default();
        let mut read = bytes.clone();
        for chunk in read.chunks_mut(size) {
            frames.read(chunk);
        }
        assert_eq!(read, want, "reads of {size} bytes");
        assert!(frames.responding.is_empty(), "reads of {size} bytes");
    }
}

/// However the writes split a head, it is kept whole once its empty
/// line is in, and not before; a body written after it is not kept,
/// nor what was written before the request was handed over; a head
/// past [`SENT_HEAD_KEPT`] is not kept at all.
#[test]
fn the_head_written_is_kept_whole_however_writes_split_it() {
    let head = b"GET /a?b HTTP/1.1\r\nhost: a.example.com\r\nx-two: 1\r\nx-two: 2\r\n\r\n";
    let wait = Arc::new(HeadWait::default());
    // Not counting: nothing kept.
    wait.wrote(&[std::io::IoSlice::new(b"stale")], 5, true);
    for size in 1..=head.len() {
        let _counted = wait.count();
        let chunks: Vec<&[u8]> = head.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(wait.sent().is_none(), "writes of {size}, before {i}");
            // Written with a body queued behind, of which nothing went.
            let bufs = [std::io::IoSlice::new(chunk), std::io::IoSlice::new(b"body")];
            wait.wrote(&bufs, chunk.len(), true);
        }
        assert_eq!(wait.sent().as_deref(), Some(&head[..]), "writes of {size}");
    }
    // Head and body in one write: the head alone.
    let _counted = wait.count();
    let bufs = [std::io::IoSlice::new(head), std::io::IoSlice::new(b"body")];
    wait.wrote(&bufs, head.len() + 4, true);
    assert_eq!(wait.sent().as_deref(), Some(&head[..]));
    // Half of it written: not whole.
    let _counted = wait.count();
    wait.wrote(&bufs, head.len() / 2, true);
    assert_eq!(wait.sent(), None);
    // Too long to keep.
    let _counted = wait.count();
    let long = format!(
        "GET / HTTP/1.1\r\nx: {}\r\n\r\n",
        "a".repeat(SENT_HEAD_KEPT)
    );
    wait.wrote(&[std::io::IoSlice::new(long.as_bytes())], long.len(), true);
    assert_eq!(wait.sent(), None);
}

/// A write that failed keeps the head it was given (after a part an
/// earlier write took, or all of it), so a bodyless request whose write
/// failed can be sent again; a write still pending keeps nothing. It
/// is unwritten (any request may go again) only if no byte reached the
/// socket: not after a part was taken, nor after a flush wrote records.
#[test]
fn a_head_whose_write_failed_is_kept_as_meant() {
    let head = b"GET /a HTTP/1.1\r\nhost: a.example.com\r\n\r\n";
    let wait = Arc::new(HeadWait::default());
    let failed = Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
    for taken in [0, 7] {
        let _counted = wait.count();
        if taken > 0 {
            wait.polled(
                &[std::io::IoSlice::new(head)],
                &Poll::Ready(Ok(taken)),
                true,
            );
        }
        wait.polled(
            &[std::io::IoSlice::new(&head[taken..])],
            &Poll::Pending,
            false,
        );
        assert_eq!(wait.sent(), None, "after {taken} taken, then pending");
        wait.polled(&[std::io::IoSlice::new(&head[taken..])], &failed, false);
        assert_eq!(
            wait.sent().as_deref(),
            Some(&head[..]),
            "after {taken} taken"
        );
        let (_, unwritten) = wait.written().unwrap();
        assert_eq!(unwritten, taken == 0, "after {taken} taken");
    }
    // All taken into a TLS stream's buffer, some records flushed, then
    // a write failed: reached.
    let _counted = wait.count();
    wait.polled(&[std::io::IoSlice::new(head)], &Poll::Ready(Ok(3)), false);
    wait.wrote(&[], 0, true);
    wait.polled(&[std::io::IoSlice::new(&head[3..])], &failed, false);
    assert_eq!(wait.written(), Some((head.to_vec(), false)));
}

/// However writes split them (and however much of a vectored write is
/// taken), a `RST_STREAM` hotproxy writes takes its stream out of
/// `responding`; other frames, the preface, and a payload that looks like
/// a `RST_STREAM` header do not.
#[test]
fn a_stream_hotproxy_resets_is_no_longer_responding() {
    let mut written = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // DATA on stream 3 whose payload is a RST_STREAM header of stream 5.
    written.extend(on(3, 9, 0, 0));
    written.extend(on(5, 4, 3, 0));
    // RST_STREAM(CANCEL) of stream 1, WINDOW_UPDATE of stream 7.
    written.extend(on(1, 4, 3, 0));
    written.extend([0, 0, 0, 8]);
    written.extend(on(7, 4, 8, 0));
    written.extend([0, 0, 1, 0]);
    for size in 1..=written.len() {
        let mut frames = SettingsFrames::default();
        frames.responding.extend([1, 3, 5, 7]);
        let chunks: Vec<&[u8]> = written.chunks(size).collect();
        for chunk in &chunks {
            // Only the first slice taken, and only part of it.
            let (a, b) = chunk.split_at(chunk.len() / 2);
            let bufs = [std::io::IoSlice::new(a), std::io::IoSlice::new(b"junk")];
            frames.wrote(&bufs, a.len());
            frames.wrote(
                &[std::io::IoSlice::new(b), std::io::IoSlice::new(b"x")],
                b.len(),
            );
        }
        let left: Vec<u32> = frames.responding.iter().copied().collect();
        assert_eq!(left, [3, 5, 7], "writes of {size} bytes");
    }
}

/// A literal `:status: 101` (raw or Huffman-coded, after a PADDED and
/// PRIORITY frame's prefix or a table size update) not indexed has its
/// name turned into `:method` when its name byte and its value's last
/// byte come in one read, else its value spoiled; one with incremental
/// indexing always has its value spoiled; a `101` in the padding, another
/// status, and the same value under another name are left as sent.
#[test]
fn a_literal_101_status_is_refused_however_reads_split_it() {
    let mut bytes = Vec::new();
    let mut hits = Vec::new();
    // Stream 1: PADDED and PRIORITY, `:status: 101` without indexing.
    bytes.extend(on(1, 1 + 5 + 5 + 5, 1, 4 | 0x8 | 0x20));
    bytes.extend([5, 0, 0, 0, 0, 16]);
    hits.push((Some(bytes.len()), bytes.len() + 4, b'x'));
    bytes.extend([0x08, 0x03, b'1', b'0', b'1']);
    bytes.extend([0x08, 0x03, b'1', b'0', b'1']);
    // Stream 3: a size update, then `:status: 101` indexed, Huffman.
    bytes.extend(on(3, 7, 1, 4));
    bytes.extend([0x3f, 0xe1, 0x1f]);
    hits.push((None, bytes.len() + 3, 0x0f));
    bytes.extend([0x48, 0x82, 0x08, 0x03]);
    // Stream 5: `:status: 100`; stream 7: `:path: 101` (not a status).
    bytes.extend(on(5, 5, 1, 4));
    bytes.extend([0x08, 0x03, b'1', b'0', b'0']);
    bytes.extend(on(7, 5, 1, 4));
    bytes.extend([0x04, 0x03, b'1', b'0', b'1']);
    for size in 1..=bytes.len() {
        let mut want = bytes.clone();
        for &(name, last, spoiled) in &hits {
            match name {
                Some(name) if name / size == last / size => want[name] ^= 8 ^ 2,
                _ => want[last] = spoiled,
            }
        }
        let mut frames = SettingsFrames::default();
        let mut read = bytes.clone();
        for chunk in read.chunks_mut(size) {
            frames.read(chunk);
        }
        assert_eq!(read, want, "reads of {size} bytes");
    }
}

/// `:status: 101` as the first field in the other HPACK forms: a name
/// index of another static `:status` entry (9 to 14) in a literal not
/// indexed becomes `:method`'s (2) when its byte and the value's last byte
/// come in one read, else the value is spoiled; a literal with incremental
/// indexing, or a name written out (raw or Huffman-coded `:status`),
/// always has its value spoiled. The same field
/// second in a block, and `:status: 100` under those names, are left.
#[test]
fn a_101_status_in_any_hpack_form_is_refused_however_reads_split_it() {
    // (the block, the name byte's offset if it is rewritten, the value's
    // last byte's offset, that byte spoiled)
    let forms: [(&[u8], Option<usize>, usize, u8); 5] = [
        (&[0x09, 0x03, b'1', b'0', b'1'], Some(0), 4, b'x'),
        (&[0x4e, 0x82, 0x08, 0x03], None, 3, 0x0f),
        (&[0x1c, 0x03, b'1', b'0', b'1'], Some(0), 4, b'x'),
        (b"\x00\x07:status\x03101", None, 12, b'x'),
        (b"\x40\x85\xb8\x84\x8d\x36\xa3\x03101", None, 10, b'x'),
    ];
    let mut bytes = Vec::new();
    let mut hits = Vec::new();
    for (stream, (block, name, last, spoiled)) in (1..).step_by(2).zip(forms) {
        bytes.extend(on(stream, block.len() as u32, 1, 4));
        let at = bytes.len();
        hits.push((name.map(|n| at + n), at + last, spoiled));
        bytes.extend(block);
    }
    // Left: second in a block (after `:status: 200`, index 8), and `100`.
    let left: [&[u8]; 3] = [
        &[0x88, 0x09, 0x03, b'1', b'0', b'1'],
        &[0x0e, 0x03, b'1', b'0', b'0'],
        b"\x00\x07:status\x03100",
    ];
    for (stream, block) in (11..).step_by(2).zip(left) {
        bytes.extend(on(stream, block.len() as u32, 1, 4));
        bytes.extend(block);
    }
    for size in 1..=bytes.len() {
        let mut want = bytes.clone();
        for &(name, last, spoiled) in &hits {
            match name {
                Some(name) if name / size == last / size => {
                    want[name] = want[name] & 0xf0 | 2;
                }
                _ => want[last] = spoiled,
            }
        }
        let mut frames = SettingsFrames::default();
        let mut read = bytes.clone();
        for chunk in read.chunks_mut(size) {
            frames.read(chunk);
        }
        assert_eq!(read, want, "reads of {size} bytes");
    }
}

/// `:status: 101` with incremental indexing past the first field of a
/// block (after an indexed `:status: 200`, a multi-byte index, a new name
/// with a value longer than its length's prefix) has its value spoiled
/// however reads split the block; `101` under another indexed name, and in
/// a skipped value, is left.
#[test]
fn an_indexed_101_status_past_the_first_field_is_refused_however_reads_split_it() {
    let mut block = vec![0x88, 0xff, 0x05, 0x40, 0x01, b'a', 0x7f, 0x03];
    block.extend([b'1'; 130]);
    block.extend([0x44, 0x03, b'1', b'0', b'1', 0x48, 0x82, 0x08, 0x03]);
    let mut bytes = on(1, block.len() as u32, 1, 4);
    bytes.extend(&block);
    bytes.extend(on(3, 6, 1, 4));
    bytes.extend([0x88, 0x48, 0x03, b'1', b'0', b'1']);
    let mut want = bytes.clone();
    want[9 + block.len() - 1] = 0x0f;
    *want.last_mut().unwrap() = b'x';
    for size in 1..=bytes.len() {
        let mut frames = SettingsFrames::default();
        let mut read = bytes.clone();
        for chunk in read.chunks_mut(size) {
            frames.read(chunk);
        }
        assert_eq!(read, want, "reads of {size} bytes");
    }
}

/// A head over [`SENT_HEAD_KEPT`] is not kept, yet whether any of it
/// reached the socket is still told ([`HeadWait::unreached`]): a write
/// that failed first reached nothing (sent again, whatever the method);
/// one after a part was taken, or after a TLS stream flushed records,
/// did (a `POST` sent again then could be processed twice); a write
/// still pending gave nothing to the socket yet, and is no failure.
#[test]
fn a_big_head_is_unreached_only_if_no_byte_reached_the_socket() {
    let head = format!(
        "POST /a HTTP/1.1\r\ncookie: {}\r\n\r\n",
        "c".repeat(SENT_HEAD_KEPT)
    );
    let head = head.as_bytes();
    let wait = Arc::new(HeadWait::default());
    let failed = || Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
    // The first write failed: nothing reached the socket.
    let _counted = wait.count();
    wait.polled(&[std::io::IoSlice::new(head)], &failed(), false);
    assert_eq!(wait.sent(), None, "too big to keep");
    assert!(wait.unreached(), "failed first");
    // A part taken by the socket, then a write failed: reached.
    let _counted = wait.count();
    wait.polled(&[std::io::IoSlice::new(head)], &Poll::Ready(Ok(7)), true);
    wait.polled(&[std::io::IoSlice::new(&head[7..])], &failed(), false);
    assert!(!wait.unreached(), "after a part was taken");
    // All taken into a TLS stream's buffer, records flushed, then a
    // write failed: reached.
    let _counted = wait.count();
    wait.polled(
        &[std::io::IoSlice::new(head)],
        &Poll::Ready(Ok(head.len())),
        false,
    );
    wait.wrote(&[], 0, true);
    wait.polled(&[std::io::IoSlice::new(b"body")], &failed(), false);
    assert!(!wait.unreached(), "after TLS records were flushed");
    // Pending alone: nothing given to a write yet.
    let _counted = wait.count();
    wait.polled(&[std::io::IoSlice::new(head)], &Poll::Pending, false);
    assert!(!wait.unreached(), "pending");
}
