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

/// Every byte walked, from the state the last read left (what `scan` did
/// before it walked only the CRs and LFs a read ends with).
fn walked(from: u8, bytes: &[u8]) -> u8 {
    let (mut at, bytes) = match bytes.len().checked_sub(ENDS_WINDOW) {
        Some(skip) if skip > 0 => (IN_LINE, &bytes[skip..]),
        _ => (from, bytes),
    };
    for &b in bytes {
        at = match (at, b) {
            (LINE_END | LINE_END_CR | HEAD_END, b'\n') => HEAD_END,
            (IN_LINE, b'\n') => LINE_END,
            (LINE_END, b'\r') => LINE_END_CR,
            (HEAD_END, b'\r') => HEAD_END,
            _ => IN_LINE,
        };
    }
    at
}

proptest::proptest! {
    /// Walking only a read's trailing CRs and LFs ends where walking all
    /// of it did, read after read.
    #[test]
    fn scanning_the_end_of_a_read_is_walking_all_of_it(
        reads in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..80),
            1..6,
        ),
    ) {
        let a = Activity::new(Instant::now(), true);
        let mut want = a.ends.load(Ordering::Relaxed);
        for read in &reads {
            a.scan(read);
            want = walked(want, read);
            proptest::prop_assert_eq!(a.ends.load(Ordering::Relaxed), want);
        }
    }
}
