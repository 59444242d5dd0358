//! Where the HTTP/1 bytes read end (in a head's line, at a head's end) and where a read's first head ends, walked without hyper's buffer.
//!
//! hyper keeps what it read ahead in a buffer of its own, so the
//! connection's activity follows the bytes as they are read: whether a
//! head is left half read, and how many bytes came after the end of the
//! next head (which, for a body of declared length, says whether the
//! same read already brought more than the body).

/// In a line.
pub(super) const IN_LINE: u8 = 0;
/// Just after a line's `\n`.
pub(super) const LINE_END: u8 = 1;
/// After `\n\r`.
pub(super) const LINE_END_CR: u8 = 2;
/// Just after a head's end (an empty line: `\n\n` or `\n\r\n`; a stray
/// line end there is the blank line hyper skips before a head).
pub(super) const HEAD_END: u8 = 3;
/// `left` / `after_head` in `Activity` when not known: a body of unknown
/// length (or one whose head's read could not be followed), no head end
/// seen.
pub(super) const UNKNOWN: u64 = u64::MAX;
/// A read longer than this is judged by its last bytes alone (from
/// `IN_LINE`): enough to hold a head's end and what follows it, and a
/// tunnel's data is not walked byte by byte.
pub(super) const ENDS_WINDOW: usize = 64;

/// One byte walked from `at`.
pub(super) fn step(at: u8, b: u8) -> u8 {
    match (at, b) {
        (LINE_END | LINE_END_CR | HEAD_END, b'\n') => HEAD_END,
        (IN_LINE, b'\n') => LINE_END,
        (LINE_END, b'\r') => LINE_END_CR,
        (HEAD_END, b'\r') => HEAD_END,
        _ => IN_LINE,
    }
}

/// Where `bytes`, read after bytes that ended at `from`, end.
pub(super) fn walk(from: u8, bytes: &[u8]) -> u8 {
    let (mut at, bytes) = match bytes.len().checked_sub(ENDS_WINDOW) {
        Some(skip) if skip > 0 => (IN_LINE, &bytes[skip..]),
        _ => (from, bytes),
    };
    // Any byte but CR and LF leaves the walk `IN_LINE`, whatever came
    // before it: only the run of CRs and LFs the read ends with is
    // walked (a head's last bytes, at most a few), not every byte of
    // the read (about 400 instructions per keep-alive request).
    let bytes = match bytes.iter().rposition(|&b| b != b'\r' && b != b'\n') {
        Some(i) => {
            at = IN_LINE;
            &bytes[i + 1..]
        }
        None => bytes,
    };
    for &b in bytes {
        at = step(at, b);
    }
    at
}

/// How many CRs and LFs the bytes walked end with, once `bytes` are
/// walked after some that ended with `before` of them.
pub(super) fn line_ends(before: u64, bytes: &[u8]) -> u64 {
    match bytes.iter().rposition(|&b| b != b'\r' && b != b'\n') {
        Some(i) => (bytes.len() - 1 - i) as u64,
        None => before + bytes.len() as u64,
    }
}

/// How many bytes of `bytes` (read after bytes that ended at `from`)
/// follow the first head end in them, if they hold one. Only the line
/// ends are walked: inside a line nothing but a `\n` changes the state.
/// Coming from `HEAD_END`, leading line ends are no head's end (hyper
/// skips them before a head), so from a state left behind the real one
/// a head end may be missed, never found early: the count is never more
/// than what truly follows.
pub(super) fn after_head_end(from: u8, bytes: &[u8]) -> Option<usize> {
    let mut at = from;
    let mut i = 0;
    while i < bytes.len() {
        if at == IN_LINE {
            i += bytes[i..].iter().position(|&b| b == b'\n')?;
        }
        let next = step(at, bytes[i]);
        i += 1;
        if next == HEAD_END && at != HEAD_END {
            return Some(bytes.len() - i);
        }
        at = next;
    }
    None
}

/// `Activity`'s `after_head` once `bytes` (walked from `from` to `at`)
/// are read: what follows the first head end seen since the last request
/// began. Counted on once one was seen; where none was, looked for only
/// when `look` (a walk of the read, up to that end); `UNKNOWN` while none
/// is seen.
pub(super) fn after_head(after: u64, from: u8, at: u8, bytes: &[u8], look: bool) -> u64 {
    if after != UNKNOWN {
        after + bytes.len() as u64
    } else if at == HEAD_END {
        // A head ends here (unless the read is all a blank line hyper
        // skips), and no more than that follows the first one.
        let ended = from != HEAD_END || bytes.iter().any(|&b| b != b'\r' && b != b'\n');
        if ended { 0 } else { UNKNOWN }
    } else if look {
        after_head_end(from, bytes).map_or(UNKNOWN, |n| n as u64)
    } else {
        UNKNOWN
    }
}
