//! The connection's activity: when it may close without lingering, when a half head begins.

use super::*;

/// A connection may close without lingering only between requests
/// when nothing of the client's can still be on the way.
#[test]
fn settled_only_when_nothing_may_follow() {
    let a = Activity::new(Instant::now(), true);
    assert!(!a.settled(), "no request yet: its head may be on the way");
    let req = a.begin(false);
    assert!(!a.settled(), "a request in flight");
    drop(req);
    assert!(a.settled(), "a bodyless request answered, nothing since");
    a.received(b"G");
    assert!(!a.settled(), "the next head began");
    drop(a.begin(true));
    assert!(
        !a.settled(),
        "a request with a body, maybe not read to its end"
    );
    let req = a.begin(false);
    a.received(b"GET / HTTP/1.1\r\n\r\n");
    drop(req);
    assert!(!a.settled(), "bytes arrived while a request was in flight");
    drop(a.begin(false));
    assert!(a.settled(), "each request starts the count afresh");
}

/// Half a head behind a request starts the header clock when the
/// request ends; a whole one, or a body, does not.
#[test]
fn a_pipelined_half_head_begins_when_the_request_ends() {
    let hr = Duration::from_secs(1);
    let idle = Duration::from_secs(600);
    let a = Activity::new(Instant::now(), true);
    a.received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nX-a: ");
    drop(a.begin(false));
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::HeaderRead);
    assert!(a.head_begun().is_some());
    a.received(b"b\r\n\r");
    drop(a.begin(false));
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::HeaderRead);
    a.received(b"\n");
    let req = a.begin(false);
    a.received(b"GET / HTTP/1.1\r\n\n");
    drop(req);
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
    a.received(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    let req = a.begin(true);
    a.received(&[b'x'; 100]);
    drop(req);
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
}

/// A body dropped before its end: the reads after it are its tail
/// (hyper's drain), however many, whether they come after the response
/// or while it runs, until one waits; a read after that may start a head
/// again, also when no read drained anything (hyper held the whole body).
#[test]
fn an_unread_body_tail_is_no_head() {
    let hr = Duration::from_secs(1);
    let idle = Duration::from_secs(600);
    let a = Activity::new(Instant::now(), true);
    // Drained after the response, in two reads.
    let req = a.begin(true);
    req.also().body_unread();
    drop(req);
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
    assert!(!a.settled(), "the tail is still to be drained");
    a.received(b"0\r\nx-pad: ");
    a.received(b"pad\r\n\r\n");
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
    assert!(a.head_begun().is_none());
    a.read_waits();
    a.received(b"GET / HTTP/1.1\r\nX-a: ");
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::HeaderRead);
    // Drained while the response runs: nothing is due after it.
    let req = a.begin(true);
    req.body_unread();
    a.received(b"0\r\n\r\n");
    a.read_waits();
    drop(req);
    a.received(b"GET / HTTP/1.1\r\nX-a: ");
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::HeaderRead);
    // Nothing to drain (hyper had it all): the first read waits.
    let req = a.begin(true);
    req.body_unread();
    drop(req);
    a.read_waits();
    a.received(b"GET / HTTP/1.1\r\nHo");
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::HeaderRead);
    // A read that waits with no drain due changes nothing.
    a.received(b"st: a\r\n\r\n");
    let req = a.begin(false);
    drop(req);
    a.read_waits();
    assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
}

/// The rest of the half head sent in the section before, and its
/// request: the connection is idle again.
fn finish(a: &Arc<Activity>) {
    a.received(b"b\r\n\r\n");
    drop(a.begin(false));
    let d = a.deadline(Duration::from_secs(1), Duration::from_secs(600));
    assert_eq!(d.unwrap().1, Expiry::Idle);
}

/// Half a head behind the whole body of a request starts the header
/// clock when the request ends, as behind a request without one: a body
/// of declared length, in the head's read or after it, read or left
/// unread (nothing of it left to drain), and a chunked body that came
/// whole in the head's read once it is read. The body alone does not,
/// nor does the tail of an unread body, nor a stray line end before a
/// head.
#[test]
fn a_half_head_behind_a_body_begins_when_the_request_ends() {
    let hr = Duration::from_secs(1);
    let idle = Duration::from_secs(600);
    let a = Activity::new(Instant::now(), true);
    let due = |a: &Activity| a.deadline(hr, idle).unwrap().1;
    let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    let half = b"GET / HTTP/1.1\r\nX-a: ";
    // All in one read.
    a.received(&[&post[..], b"hello", half].concat());
    drop(a.begin_with(true, Some(5)));
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // The body alone, after a stray line end.
    a.received(b"\r\n");
    a.received(&[&post[..], b"hello"].concat());
    drop(a.begin_with(true, Some(5)));
    assert_eq!(due(&a), Expiry::Idle);
    // Behind a body ending in a line end, only a stray one (hyper skips
    // it before the next head): no head, and the next head's end is found.
    a.received(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\naa\n\r");
    drop(a.begin_with(true, Some(3)));
    assert_eq!(due(&a), Expiry::Idle);
    a.received(&[&b"\n"[..], post, b"hello"].concat());
    drop(a.begin_with(true, Some(5)));
    assert_eq!(due(&a), Expiry::Idle);
    // The body's end and the half head in a read while it runs.
    a.received(&[&post[..], b"hel"].concat());
    let req = a.begin_with(true, Some(5));
    a.received(&[&b"lo"[..], half].concat());
    drop(req);
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // The body in a read of its own, the half head in the next.
    a.received(post);
    let req = a.begin_with(true, Some(5));
    a.received(b"hello");
    a.received(half);
    drop(req);
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // Left unread, all of it held: nothing to drain, the next read is a head.
    a.received(&[&post[..], b"hello"].concat());
    let req = a.begin_with(true, Some(5));
    req.body_unread();
    drop(req);
    assert_eq!(due(&a), Expiry::Idle);
    a.received(half);
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // Left unread with 3 bytes to come: they are drained, what follows is a head.
    a.received(&[&post[..], b"he"].concat());
    let req = a.begin_with(true, Some(5));
    req.body_unread();
    drop(req);
    a.received(b"llo");
    assert_eq!(due(&a), Expiry::Idle);
    a.received(half);
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // Chunked, whole in the head's read: timed once the body is read.
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    a.received(&[&chunked[..], half].concat());
    let req = a.begin_with(true, None);
    let body = req.also();
    drop(req);
    assert!(a.deadline(hr, idle).is_none());
    body.body_read();
    drop(body);
    assert_eq!(due(&a), Expiry::HeaderRead);
    finish(&a);
    // Chunked, more of it read later: that read is the body's.
    a.received(&chunked[..chunked.len() - 4]);
    let req = a.begin_with(true, None);
    a.received(b"\r\n\r\n");
    req.body_read();
    drop(req);
    assert_eq!(due(&a), Expiry::Idle);
}

/// Every byte walked, from the state the last read left (what `walk` did
/// before it walked only the CRs and LFs a read ends with).
fn walked(from: u8, bytes: &[u8]) -> u8 {
    let (mut at, bytes) = match bytes.len().checked_sub(ENDS_WINDOW) {
        Some(skip) if skip > 0 => (IN_LINE, &bytes[skip..]),
        _ => (from, bytes),
    };
    for &b in bytes {
        at = step(at, b);
    }
    at
}

/// What follows the first head end in `bytes`, walked byte by byte.
fn after_first_end(from: u8, bytes: &[u8]) -> Option<usize> {
    let mut at = from;
    for (i, &b) in bytes.iter().enumerate() {
        let next = step(at, b);
        if next == HEAD_END && at != HEAD_END {
            return Some(bytes.len() - i - 1);
        }
        at = next;
    }
    None
}

/// One request on the wire for [`nothing_behind_a_request_starts_the_header_clock`]:
/// a stray line end before it or not, and no body (`kind` 0), a body of
/// declared length (1) or a chunked one (2) of `body`.
fn request(stray: bool, kind: u8, body: &[u8]) -> (Vec<u8>, usize, Option<Option<u64>>) {
    let mut wire = Vec::new();
    if stray {
        wire.extend_from_slice(b"\r\n");
    }
    let framing = match kind {
        0 => String::new(),
        1 => format!("Content-Length: {}\r\n", body.len()),
        _ => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    wire.extend_from_slice(format!("POST / HTTP/1.1\r\nX-a: b\r\n{framing}\r\n").as_bytes());
    let head = wire.len();
    let declared = match kind {
        0 => None,
        1 if body.is_empty() => None,
        1 => Some(Some(body.len() as u64)),
        _ => Some(None),
    };
    match kind {
        0 => {}
        1 => wire.extend_from_slice(body),
        _ => {
            if !body.is_empty() {
                wire.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                wire.extend_from_slice(body);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    (wire, head, declared)
}

proptest::proptest! {
    /// Walking only a read's trailing CRs and LFs ends where walking all
    /// of it did, read after read; jumping from line end to line end finds
    /// the first head end where walking every byte does.
    #[test]
    fn scanning_the_end_of_a_read_is_walking_all_of_it(
        reads in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..80),
            1..6,
        ),
    ) {
        let mut at = HEAD_END;
        for read in &reads {
            let want = walked(at, read);
            proptest::prop_assert_eq!(after_head_end(at, read), after_first_end(at, read));
            at = walk(at, read);
            proptest::prop_assert_eq!(at, want);
        }
    }

    /// Requests with and without bodies (bytes of which look like line
    /// and head ends), cut into reads anywhere and begun as hyper begins
    /// them (each once its head is in and the last one ended; a read may
    /// come early while one runs), their bodies read or left unread (and
    /// drained after the response): when a request ends with no byte read
    /// past its body, no head is timed.
    #[test]
    fn nothing_behind_a_request_starts_the_header_clock(
        requests in proptest::collection::vec(
            (
                proptest::bool::ANY,
                0u8..3,
                proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..12),
            ),
            1..5,
        ),
        cuts in proptest::collection::vec(proptest::prop_oneof![1usize..4, 1usize..40], 1..40),
        early in proptest::collection::vec(proptest::bool::ANY, 5),
        unread in proptest::collection::vec(proptest::bool::ANY, 5),
    ) {
        let mut wire = Vec::new();
        let mut framed = Vec::new();
        for (stray, kind, body) in &requests {
            let (bytes, head, declared) = request(*stray, *kind, body);
            framed.push((wire.len() + head, wire.len() + bytes.len(), declared));
            wire.extend_from_slice(&bytes);
        }
        let mut reads = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + cut).min(wire.len());
            reads.push(&wire[at..end]);
            at = end;
        }
        let (hr, idle) = (Duration::from_secs(1), Duration::from_secs(600));
        let a = Activity::new(Instant::now(), true);
        let mut reads = reads.into_iter();
        let mut received = 0;
        let mut read = |received: &mut usize| {
            let r = reads.next().expect("a read left");
            a.received(r);
            *received += r.len();
        };
        for (i, (head_end, body_end, declared)) in framed.into_iter().enumerate() {
            while received < head_end {
                read(&mut received);
            }
            let mut req = Some(match declared {
                None => a.begin(false),
                Some(length) => a.begin_with(true, length),
            });
            if early[i] && received < wire.len() {
                read(&mut received);
            }
            if unread[i] && declared.is_some() {
                let req = req.take().expect("begun");
                req.body_unread();
                drop(req);
            }
            while received < body_end {
                read(&mut received);
            }
            if let Some(req) = req {
                if declared.is_some() {
                    req.body_read();
                }
                drop(req);
            }
            if received == body_end {
                proptest::prop_assert_eq!(a.deadline(hr, idle).unwrap().1, Expiry::Idle);
            }
        }
    }
}

/// A body of unknown length that came whole in its head's read and was
/// never reported read (the admin API's bodies are such: it reads them
/// itself) leaves `held` behind it; a later request without a body must
/// not inherit it, or a half head behind that request is never timed.
#[test]
fn a_request_without_a_body_does_not_inherit_an_earlier_body_held() {
    let hr = Duration::from_secs(1);
    let idle = Duration::from_secs(600);
    let a = Activity::new(Instant::now(), true);
    let due = |a: &Activity| a.deadline(hr, idle).unwrap().1;
    a.received(b"PUT /x HTTP/1.1\r\nContent-Length: 4\r\n\r\n{\"}");
    drop(a.begin(true));
    a.received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHo");
    drop(a.begin(false));
    assert_eq!(due(&a), Expiry::HeaderRead);
}

/// An HTTP/2 frame: its header (length, `kind`, `flags`, `stream`), then `payload`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HTTP/2: h2 may write a response's HEADERS after the client's
/// RST_STREAM on that stream was read (it put the frame in its write
/// buffer, the socket full, before it read the reset, and drops only
/// the frames still queued on the stream). That response is over all
/// the same: with nothing in flight and the next header block begun,
/// nothing is left unsent, and the close is at once, whichever of the
/// reset and the HEADERS came first. (Written after, the HEADERS kept
/// the stream counted begun for good: the close was graceful.)
#[test]
fn a_response_head_written_after_the_clients_reset_is_not_begun() {
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    for reset_first in [true, false] {
        let a = Activity::new(Instant::now(), true);
        let mut read = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        read.extend(h2_frame(4, 0, 0, &[]));
        read.extend(h2_frame(HEADERS, 0x5, 1, b"\x82\x87\x84"));
        a.received_frames(&mut read);
        drop(a.begin(false));
        let head = h2_frame(HEADERS, 0x4, 1, b"\x88");
        let reset = h2_frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());
        if reset_first {
            a.received_frames(&mut reset.clone());
            a.sent_frames(&head);
        } else {
            a.sent_frames(&head);
            a.received_frames(&mut reset.clone());
        }
        a.flushed(true);
        a.received_frames(&mut h2_frame(HEADERS, 0x1, 3, b"\x82"));
        assert!(a.block_begun(), "reset first: {reset_first}");
    }
}
