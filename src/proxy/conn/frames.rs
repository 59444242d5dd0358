//! HTTP/2 frames walked as they are read, for whether a header block is begun and not ended (a request not come yet), and as they are written, for the streams whose response has not ended.
//!
//! At shutdown hyper's graceful close of an HTTP/2 connection waits for the
//! client to answer the GOAWAY's PING. A client part way into a header
//! block (HEADERS without END_HEADERS, CONTINUATION to come) may send no
//! other frame, so it never does, and its request has not come: the
//! driver closes it at once. Only frame headers are looked at (nine bytes
//! a frame, payloads skipped), and the state is two words (the second the
//! stream ids: the `GOAWAY` such a close sends names the last block
//! ended), so a read costs a few steps per frame and no allocation.
//!
//! That close waits, though, while a response begun (HEADERS written
//! without END_STREAM) has not had its end written (END_STREAM, on its
//! last DATA frame or on its trailers): h2 may hold it for the client's
//! flow-control window after the body ended on our side. Our frames are
//! walked as they are written for the streams they open and end ([`Open`],
//! a few ids inline); a RST_STREAM, ours or the client's, ends one too.
//! The client's may be read before the HEADERS it ends is written (h2
//! put that frame in its write buffer, the socket full, before it read
//! the reset; it drops only the frames still queued on the stream): such
//! a HEADERS, written after, begins nothing ([`Stream::Reset`]).
//!
//! The client's `RST_STREAM(NO_ERROR)` is rewritten as it is read, to
//! `CANCEL`: hyper ends a request body cleanly at a `NO_ERROR` reset (RFC
//! 9113 §8.1's early answer, which a server sends), so a client that gave
//! up part way through its body had the upstream sent a truncated body as
//! whole, or the upstream's write failing short of its declared length
//! counted as the upstream's error. A client's reset never completes a
//! request; after its end, the code changes nothing.

use crate::proxy::listener::MAX_CONCURRENT_STREAMS;

/// The client connection preface, skipped before the first frame.
const PREFACE: u64 = 24;
const HEADERS: u64 = 0x1;
const PUSH_PROMISE: u64 = 0x5;
const CONTINUATION: u64 = 0x9;
const END_HEADERS: u64 = 0x4;

// The state's fields: bits 0..24 the frame's length while its header is
// read, then the payload bytes left; 24..32 its type; 32..40 its flags;
// bit 40 a header block is open; 41 a `RST_STREAM`'s code so far is not
// zero; 54..58 frame-header bytes read (9: in the
// payload); 58..63 preface bytes left.
const LEN: u64 = 0xff_ffff;
const OPEN: u64 = 1 << 40;
/// A byte of a `RST_STREAM`'s code read so far is not zero: not `NO_ERROR`.
const CODE_SET: u64 = 1 << 41;
/// `CANCEL`, the last byte of the code a client's `NO_ERROR` reset becomes.
const CANCEL: u8 = 0x8;
const GOT_AT: u32 = 54;
const PREFACE_AT: u32 = 58;

/// Nothing read yet: the preface to come.
pub const START: u64 = PREFACE << PREFACE_AT;

// The stream ids' word: bits 0..32 the stream id of the frame whose
// header is read (its bytes 5..9 shifted in), 32..64 the highest stream
// id of a header block ended (0: none).
const ID: u64 = 0xffff_ffff;

/// The frame header's byte `b`, its `got`th (0..9), into the length, type
/// or flags it belongs to; `false` for the stream id's bytes (5..9), which
/// each walk keeps in its own way. Both walks take it a byte at a time
/// where a header is split between reads ([`whole_header`] otherwise).
#[inline]
fn header_byte(got: u64, b: u64, len: &mut u64, kind: &mut u64, flags: &mut u64) -> bool {
    match got {
        0 => *len = b,
        1 | 2 => *len = *len << 8 | b,
        3 => *kind = b,
        4 => *flags = b,
        _ => return false,
    }
    true
}

/// A frame header whole at the start of `bytes` (where one begins): its
/// length, type, flags and stream id (with the reserved bit), as
/// [`header_byte`] takes them nine steps apart. Nearly every header comes
/// whole in one read or write.
#[inline]
fn whole_header(bytes: &[u8]) -> Option<(u64, u64, u64, u32)> {
    let h: &[u8; 9] = bytes.get(..9)?.try_into().ok()?;
    let len = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
    let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
    Some((len, u64::from(h[3]), u64::from(h[4]), id))
}

/// `state` and `ids` after `bytes` are read; `reset` is told the stream
/// id of each RST_STREAM frame read whole (the client's: its stream ends).
/// A `RST_STREAM(NO_ERROR)` in `bytes` is rewritten as `CANCEL` (the
/// module's doc), however reads split it.
pub fn walk(state: u64, mut ids: u64, bytes: &mut [u8], mut reset: impl FnMut(u32)) -> (u64, u64) {
    let mut preface = state >> PREFACE_AT;
    let mut got = (state >> GOT_AT) & 0xf;
    let mut len = state & LEN;
    let mut kind = (state >> 24) & 0xff;
    let mut flags = (state >> 32) & 0xff;
    let mut open = state & OPEN != 0;
    let mut set = state & CODE_SET != 0;
    let skip = preface.min(bytes.len() as u64);
    preface -= skip;
    let mut i = skip as usize;
    // A frame read whole: one that ends a header block names its stream
    // (not at its header: its payload, the block's end, is still to come).
    let ended = |ids: u64, kind: u64, flags: u64| match kind {
        HEADERS | CONTINUATION if flags & END_HEADERS != 0 => {
            (ids >> 32).max(ids & 0x7fff_ffff) << 32 | ids & ID
        }
        _ => ids,
    };
    while i < bytes.len() {
        if got == 0
            && let Some((l, k, f, id)) = whole_header(&bytes[i..])
        {
            (len, kind, flags) = (l, k, f);
            ids = ids & !ID | u64::from(id);
            i += 9;
            got = 9;
            set = false;
            if matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
                open = flags & END_HEADERS == 0;
            }
            if len == 0 {
                got = 0;
                ids = ended(ids, kind, flags);
                if let Some(id) = reset_id(ids, kind) {
                    reset(id);
                }
            }
            continue;
        }
        if got == 9 {
            let n = len.min((bytes.len() - i) as u64);
            if kind == RST_STREAM {
                cancel_no_error(&mut bytes[i..i + n as usize], len, &mut set);
            }
            len -= n;
            i += n as usize;
            if len == 0 {
                got = 0;
                ids = ended(ids, kind, flags);
                if let Some(id) = reset_id(ids, kind) {
                    reset(id);
                }
            }
            continue;
        }
        let b = u64::from(bytes[i]);
        i += 1;
        if !header_byte(got, b, &mut len, &mut kind, &mut flags) {
            ids = ids & !ID | (ids << 8 | b) & ID;
        }
        got += 1;
        if got == 9 {
            set = false;
            if matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
                open = flags & END_HEADERS == 0;
            }
            if len == 0 {
                got = 0;
                ids = ended(ids, kind, flags);
                if let Some(id) = reset_id(ids, kind) {
                    reset(id);
                }
            }
        }
    }
    let state = preface << PREFACE_AT
        | got << GOT_AT
        | if open { OPEN } else { 0 }
        | if set { CODE_SET } else { 0 }
        | flags << 32
        | kind << 24
        | len;
    (state, ids)
}

/// Payload bytes `part` of a client's `RST_STREAM`, `left` of its bytes
/// still to come with them: a code all zero (`NO_ERROR`, `set` when a byte
/// of it before these was not) has its last byte made `CANCEL`.
fn cancel_no_error(part: &mut [u8], left: u64, set: &mut bool) {
    for (k, b) in part.iter_mut().enumerate() {
        if left - k as u64 > 1 {
            *set |= *b != 0;
        } else if !*set && *b == 0 {
            *b = CANCEL;
        }
    }
}

/// The highest stream id of a header block ended (a request come), from
/// the walk's `ids`: 0 when none has.
pub fn last_block(ids: u64) -> u32 {
    (ids >> 32) as u32
}

/// A `GOAWAY` frame, `NO_ERROR`, naming `last` the last stream processed.
pub fn goaway(last: u32) -> [u8; 17] {
    let mut frame = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    frame[9..13].copy_from_slice(&(last & 0x7fff_ffff).to_be_bytes());
    frame
}

/// A header block is begun and not ended: a HEADERS (or CONTINUATION)
/// frame is part way in, its header included once its type is (four
/// bytes: before that `kind` is the last frame's), or its END_HEADERS has
/// not come.
pub fn block_begun(state: u64) -> bool {
    let got = (state >> GOT_AT) & 0xf;
    let kind = (state >> 24) & 0xff;
    state & OPEN != 0 || (got >= 4 && matches!(kind, HEADERS | CONTINUATION))
}

/// Between frames: no frame part way in (its header or its payload), nor
/// the preface (read whole, or not begun). What the client sends next
/// begins a frame; otherwise it is the rest of one it began.
pub fn at_boundary(state: u64) -> bool {
    let preface = state >> PREFACE_AT;
    let got = (state >> GOT_AT) & 0xf;
    got == 0 && (preface == 0 || preface == PREFACE)
}

const DATA: u64 = 0x0;
const RST_STREAM: u64 = 0x3;
const END_STREAM: u64 = 0x1;

/// What a frame walked whole does to the streams our responses keep open:
/// `Opened` (HEADERS without END_STREAM written: a response begun, its
/// end to come), `Over` (a DATA or HEADERS frame with END_STREAM written,
/// the end left; or our RST_STREAM: nothing more is sent on it), `Reset`
/// (the client's RST_STREAM read: over too, and a HEADERS of that stream
/// written after it begins nothing, whichever of the two came first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Opened(u32),
    Over(u32),
    Reset(u32),
}

/// Our frames, walked as they are written (from 0, the first frame's
/// start: a server sends no preface): `state` and `id` (the stream id of
/// the frame whose header is written) after `bytes`, with `seen` told of
/// each frame written whole that opens or ends a stream ([`Stream`]).
/// The state's fields are those of [`walk`]'s.
pub fn walk_out(state: u64, mut id: u32, bytes: &[u8], mut seen: impl FnMut(Stream)) -> (u64, u32) {
    let mut got = (state >> GOT_AT) & 0xf;
    let mut len = state & LEN;
    let mut kind = (state >> 24) & 0xff;
    let mut flags = (state >> 32) & 0xff;
    let mut i = 0;
    while i < bytes.len() {
        if got == 0
            && let Some((l, k, f, stream)) = whole_header(&bytes[i..])
        {
            (len, kind, flags) = (l, k, f);
            id = stream & 0x7fff_ffff;
            i += 9;
            got = 9;
            if len > 0 {
                continue;
            }
        } else if got < 9 {
            let b = u64::from(bytes[i]);
            i += 1;
            if !header_byte(got, b, &mut len, &mut kind, &mut flags) {
                id = (id << 8 | b as u32) & 0x7fff_ffff;
            }
            got += 1;
            if got < 9 || len > 0 {
                continue;
            }
        } else {
            let n = len.min((bytes.len() - i) as u64);
            len -= n;
            i += n as usize;
            if len > 0 {
                continue;
            }
        }
        // A frame written whole.
        got = 0;
        match kind {
            DATA | HEADERS if flags & END_STREAM != 0 => seen(Stream::Over(id)),
            HEADERS => seen(Stream::Opened(id)),
            RST_STREAM => seen(Stream::Over(id)),
            _ => {}
        }
    }
    (got << GOT_AT | flags << 32 | kind << 24 | len, id)
}

/// A RST_STREAM frame read whole, from the walk of the client's frames:
/// its stream id (the `ids` after it), `None` for another frame.
fn reset_id(ids: u64, kind: u64) -> Option<u32> {
    (kind == RST_STREAM).then_some((ids & 0x7fff_ffff) as u32)
}

/// How many open streams [`Open`] keeps without allocating: more than a
/// connection usually has in flight at once.
const FEW: usize = 16;

/// The most streams [`Open`] keeps: twice what h2 lets a client have open
/// at once, as h2 counts a stream closed once our end is queued, before
/// the walk sees it written.
const MOST_OPEN: usize = 2 * MAX_CONCURRENT_STREAMS as usize;

/// The streams our frames opened and have not ended (nor either side
/// reset): a response whose end is still to be written. Never more than
/// [`MOST_OPEN`] (the oldest let go past it), usually a few: kept inline, spilling to
/// the heap only past [`FEW`]. With them, the last [`FEW`] streams the
/// client reset before their HEADERS was written: one h2 still writes
/// begins nothing (a reset stream sends no end). Older ones are let go:
/// a HEADERS h2 still holds behind more resets than that, read while its
/// socket stays full, counts as begun (the close is then graceful,
/// bounded as any) until the set is full and it is the oldest.
#[derive(Debug, Default)]
pub struct Open {
    few: [u32; FEW],
    n: usize,
    more: Vec<u32>,
    /// Streams the client reset, none of our HEADERS written on them
    /// yet (0: a free slot); `reset_at` the slot the next one takes.
    reset: [u32; FEW],
    reset_at: usize,
}

impl Open {
    /// Apply what the walk saw.
    pub fn apply(&mut self, step: Stream) {
        match step {
            Stream::Opened(id) => {
                if let Some(slot) = self.reset.iter_mut().find(|r| **r == id && id != 0) {
                    // Reset before this HEADERS was written: not begun.
                    *slot = 0;
                } else {
                    self.insert(id);
                }
            }
            Stream::Over(id) => {
                self.remove(id);
            }
            Stream::Reset(id) => {
                if !self.remove(id) && id != 0 && !self.reset.contains(&id) {
                    self.reset[self.reset_at] = id;
                    self.reset_at = (self.reset_at + 1) % FEW;
                }
            }
        }
    }

    fn insert(&mut self, id: u32) {
        if self.few[..self.n].contains(&id) || self.more.contains(&id) {
            return;
        }
        if self.n + self.more.len() >= MOST_OPEN {
            // More than h2 lets be open at once: some were reset by the
            // client before h2 wrote their HEADERS, behind more resets
            // than are kept. Stream ids only grow, so the lowest is the
            // oldest: let it go rather than grow for good.
            let oldest = self.few[..self.n].iter().chain(&self.more).min().copied();
            if let Some(oldest) = oldest {
                self.remove(oldest);
            }
        }
        if self.n < FEW {
            self.few[self.n] = id;
            self.n += 1;
        } else {
            self.more.push(id);
        }
    }

    /// Whether `id` was open.
    fn remove(&mut self, id: u32) -> bool {
        if let Some(at) = self.few[..self.n].iter().position(|&o| o == id) {
            self.n -= 1;
            self.few[at] = self.few[self.n];
            if let Some(spilled) = self.more.pop() {
                self.few[self.n] = spilled;
                self.n += 1;
            }
        } else if let Some(at) = self.more.iter().position(|&o| o == id) {
            self.more.swap_remove(at);
        } else {
            return false;
        }
        true
    }

    /// No stream is open.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        frame_on(kind, flags, 1, payload)
    }

    fn frame_on(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// [`super::walk`] of bytes the caller keeps as they were.
    fn walk(state: u64, ids: u64, bytes: &[u8], reset: impl FnMut(u32)) -> (u64, u64) {
        super::walk(state, ids, &mut bytes.to_vec(), reset)
    }

    fn read(parts: &[&[u8]]) -> u64 {
        parts.iter().fold(START, |s, p| walk(s, 0, p, |_| {}).0)
    }

    #[test]
    fn a_block_left_for_its_continuation_is_begun() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = frame(4, 0, &[]);
        let whole = frame(1, 0x5, b"\x82\x87\x84");
        let begun = frame(1, 0x1, b"\x82");
        assert!(!block_begun(read(&[preface, &settings, &whole])));
        assert!(block_begun(read(&[preface, &settings, &whole, &begun])));
        let ended = frame(9, 0x4, b"\x84");
        assert!(!block_begun(read(&[preface, &begun, &ended])));
        // Split anywhere, byte by byte, the same.
        let all = [&preface[..], &settings, &whole, &begun].concat();
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert!(block_begun(read(&bytes)));
        // A HEADERS frame part way in is begun; a DATA frame's is not.
        assert!(block_begun(read(&[preface, &whole[..10]])));
        let data = frame(0, 0x1, b"body");
        assert!(!block_begun(read(&[preface, &data[..11]])));
        assert!(!block_begun(read(&[
            preface,
            &data,
            &frame(8, 0, &[0, 0, 1, 0])
        ])));
    }

    /// A HEADERS or CONTINUATION frame whose header is read in part is a
    /// block begun once its type is in (its fourth byte), as one whose
    /// payload is (SPEC §1): the client is part way into a header block.
    /// Before that byte, or for another type, it is not.
    #[test]
    fn a_headers_frame_header_read_in_part_is_a_block_begun() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = frame(4, 0, &[]);
        let answered = frame(1, 0x5, b"\x82\x87\x84");
        let next = frame(1, 0x5, b"\x82\x87\x84");
        for got in 1..9 {
            let state = read(&[preface, &settings, &answered, &next[..got]]);
            assert_eq!(
                block_begun(state),
                got >= 4,
                "{got} bytes of the frame header"
            );
        }
        let open = frame(1, 0x1, b"\x82");
        let continued = frame(9, 0x4, b"\x84");
        for got in 4..9 {
            let state = read(&[preface, &open, &continued[..got]]);
            assert!(block_begun(state), "{got} bytes of a CONTINUATION header");
        }
        let ping = frame(6, 0, &[0; 8]);
        for got in 1..9 {
            let state = read(&[preface, &answered, &ping[..got]]);
            assert!(!block_begun(state), "{got} bytes of a PING header");
        }
    }

    /// Only between frames is the walk at a boundary: not part way into
    /// the preface, a frame's header (whatever its type: before its 4th
    /// byte the walk cannot tell) or its payload.
    #[test]
    fn a_frame_or_the_preface_part_way_in_is_no_boundary() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = frame(4, 0, &[]);
        let ping = frame(6, 0, &[0; 8]);
        let headers = frame(1, 0x5, b"\x82\x87\x84");
        assert!(at_boundary(START));
        for got in 1..preface.len() {
            assert!(
                !at_boundary(read(&[&preface[..got]])),
                "{got} of the preface"
            );
        }
        assert!(at_boundary(read(&[preface, &settings, &ping])));
        for got in 1..headers.len() {
            let state = read(&[preface, &settings, &ping, &headers[..got]]);
            assert!(!at_boundary(state), "{got} bytes of a HEADERS frame");
        }
        assert!(at_boundary(read(&[preface, &settings, &headers])));
        // Byte by byte, the same.
        let all = [&preface[..], &settings, &ping].concat();
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert!(at_boundary(read(&bytes)));
    }

    /// The last stream named as processed is that of the last header
    /// block ended, whatever frames come between, read in any pieces: a
    /// block begun and not ended is not one, a trailers block on an
    /// earlier stream does not lower it.
    #[test]
    fn the_last_block_ended_names_its_stream() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let all = [
            &preface[..],
            &frame_on(4, 0, 0, &[]),
            &frame_on(1, 0x4, 1, b"\x82\x87\x84"),
            &frame_on(0, 0, 1, b"body"),
            &frame_on(1, 0x1, 3, b"\x82"),
            &frame_on(9, 0x4, 3, b"\x84"),
            &frame_on(1, 0x5, 1, b"\x40"),
            &frame_on(8, 0, 0, &[0, 0, 1, 0]),
            &frame_on(1, 0x1, 5, b"\x82"),
        ]
        .concat();
        for size in [1, 2, 5, 9, 64] {
            let ids = all
                .chunks(size)
                .fold((START, 0), |(s, ids), p| walk(s, ids, p, |_| {}))
                .1;
            assert_eq!(last_block(ids), 3, "read {size} bytes at a time");
        }
        let first = [&preface[..], &frame_on(4, 0, 0, &[])].concat();
        assert_eq!(last_block(walk(START, 0, &first, |_| {}).1), 0);
        // A block's last frame read in part (its END_HEADERS in, not all
        // its payload) has not ended it.
        let whole = frame_on(1, 0x5, 1, b"\x82\x87\x84");
        for got in 1..whole.len() {
            let ids = walk(START, 0, &[&first[..], &whole[..got]].concat(), |_| {}).1;
            assert_eq!(last_block(ids), 0, "{got} bytes of the HEADERS frame");
        }
        let ids = walk(START, 0, &[&first[..], &whole].concat(), |_| {}).1;
        assert_eq!(last_block(ids), 1);
        assert_eq!(
            goaway(3),
            [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0]
        );
    }

    /// Our streams open at a HEADERS frame without END_STREAM and end at
    /// a DATA or HEADERS (trailers) frame with it, or a RST_STREAM, each
    /// once written whole, in whatever pieces; a frame of another stream
    /// or another type leaves them as they are.
    #[test]
    fn written_frames_open_and_end_their_streams_once_written_whole() {
        let all = [
            &frame_on(4, 0, 0, &[0, 3, 0, 0, 0, 100])[..],
            &frame_on(1, 0x4, 1, b"\x88"),
            &frame_on(1, 0x4, 3, b"\x88"),
            &frame_on(1, 0x4, 0x105, b"\x88"),
            &frame_on(0, 0, 1, &[b'x'; 300]),
            &frame_on(0, 0x1, 1, b"end"),
            &frame_on(1, 0x5, 0x105, b"trailers"),
            &frame_on(1, 0x5, 7, b"\x88"),
            &frame_on(0, 0x1, 9, &[]),
        ]
        .concat();
        let steps = [
            Stream::Opened(1),
            Stream::Opened(3),
            Stream::Opened(0x105),
            Stream::Over(1),
            Stream::Over(0x105),
            Stream::Over(7),
            Stream::Over(9),
        ];
        for size in [1, 2, 5, 9, 64, 1000] {
            let mut seen = Vec::new();
            let mut open = Open::default();
            all.chunks(size).fold((0, 0), |(s, id), p| {
                walk_out(s, id, p, |step| {
                    seen.push(step);
                    open.apply(step);
                })
            });
            assert_eq!(seen, steps, "written {size} bytes at a time");
            assert!(!open.is_empty(), "stream 3 is open");
            open.apply(Stream::Over(3));
            assert!(open.is_empty());
        }
        let last = frame_on(0, 0x1, 1, b"end");
        for got in 0..last.len() {
            let mut seen = 0;
            walk_out(0, 0, &last[..got], |_| seen += 1);
            assert_eq!(seen, 0, "{got} bytes of it");
        }
    }

    /// A client's RST_STREAM read whole names its stream, whatever came
    /// before it.
    #[test]
    fn a_client_reset_read_whole_names_its_stream() {
        let all = [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            &frame_on(1, 0x5, 1, b"\x82"),
            &frame_on(3, 0, 1, &[0, 0, 0, 8]),
            &frame_on(3, 0, 0x10003, &[0, 0, 0, 8]),
        ]
        .concat();
        for size in [1, 4, 9, 1000] {
            let mut resets = Vec::new();
            all.chunks(size).fold((START, 0), |(s, ids), p| {
                walk(s, ids, p, |id| resets.push(id))
            });
            assert_eq!(resets, [1, 0x10003], "read {size} bytes at a time");
        }
    }

    /// The client's `RST_STREAM(NO_ERROR)` is read as `CANCEL`, however
    /// reads split it; other codes, and the frames around, are kept.
    #[test]
    fn a_client_no_error_reset_is_read_as_cancel() {
        let wire = |code: u32, other: &[u8]| {
            [
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
                &frame_on(1, 0x4, 1, b"\x83"),
                &frame_on(0, 0, 1, &[0, 0, 0, 0]),
                &frame_on(3, 0, 1, &code.to_be_bytes()),
                other,
            ]
            .concat()
        };
        let cases = [
            (0, 8),
            (8, 8),
            (2, 2),
            (0x100, 0x100),
            (0x0100_0000, 0x0100_0000),
        ];
        for (code, read_as) in cases {
            let after = frame_on(3, 0, 3, &[0, 0, 0, 0]);
            let want = wire(read_as, &frame_on(3, 0, 3, &[0, 0, 0, 8]));
            for size in [1, 2, 3, 9, 14, 1000] {
                let mut got = wire(code, &after);
                let mut state = (START, 0);
                for p in got.chunks_mut(size) {
                    state = super::walk(state.0, state.1, p, |_| {});
                }
                assert_eq!(got, want, "code {code}, read {size} bytes at a time");
            }
        }
    }

    /// The client's reset may be read before the HEADERS of its stream is
    /// written (h2 held that frame in its write buffer): that HEADERS,
    /// walked as written, begins nothing, as one written before the reset
    /// is ended by it. The last few resets are kept, older ones let go.
    #[test]
    fn a_headers_written_after_the_clients_reset_begins_nothing() {
        let head = frame_on(1, 0x4, 3, b"\x88");
        let write = |open: &mut Open| {
            walk_out(0, 0, &head, |step| open.apply(step));
        };
        let mut open = Open::default();
        open.apply(Stream::Reset(3));
        write(&mut open);
        assert!(open.is_empty(), "begun after its reset");
        let mut open = Open::default();
        write(&mut open);
        assert!(!open.is_empty());
        open.apply(Stream::Reset(3));
        assert!(open.is_empty(), "reset after it began");
        // A reset stream's slot is freed by its HEADERS; another stream's
        // HEADERS still begins it.
        let mut open = Open::default();
        open.apply(Stream::Reset(3));
        open.apply(Stream::Opened(3));
        open.apply(Stream::Opened(5));
        assert!(!open.is_empty(), "stream 5 begun");
        open.apply(Stream::Over(5));
        assert!(open.is_empty());
        // Past the few kept, the oldest reset is let go.
        let mut open = Open::default();
        for id in (1..=2 * FEW as u32 + 1).step_by(2) {
            open.apply(Stream::Reset(id));
        }
        for id in (3..=2 * FEW as u32 + 1).step_by(2) {
            open.apply(Stream::Opened(id));
        }
        assert!(open.is_empty(), "the last {FEW} resets kept");
        open.apply(Stream::Opened(1));
        assert!(!open.is_empty(), "the oldest let go");
    }

    /// Streams past the inline few spill and come back.
    #[test]
    fn open_streams_past_the_inline_few_are_kept() {
        let mut open = Open::default();
        for id in (1..=2 * FEW as u32 + 1).step_by(2) {
            open.apply(Stream::Opened(id));
            open.apply(Stream::Opened(id));
        }
        for id in (1..=2 * FEW as u32 + 1).step_by(2) {
            assert!(!open.is_empty(), "{id} left");
            open.apply(Stream::Over(id));
            open.apply(Stream::Over(id));
        }
        assert!(open.is_empty());
    }

    /// Never more kept open than h2 lets a client have streams (twice): a stream
    /// whose HEADERS h2 wrote after more resets than are kept counts as
    /// begun, and rounds of that must not grow the set (nor its walk per
    /// response) for as long as the connection lives: the oldest goes.
    #[test]
    fn the_open_set_never_holds_more_than_the_streams_allowed() {
        let mut open = Open::default();
        let most = MOST_OPEN;
        for id in (1..=20 * most as u32).step_by(2) {
            open.apply(Stream::Opened(id));
            assert!(
                open.n + open.more.len() <= most,
                "{} kept",
                open.n + open.more.len()
            );
        }
        // The newest are the ones kept.
        let last = 20 * most as u32 - 1;
        open.apply(Stream::Over(last));
        assert!(!open.more.contains(&last) && !open.few[..open.n].contains(&last));
        assert_eq!(open.n + open.more.len(), most - 1);
    }

    proptest::proptest! {
        /// Frames of any type, flags, stream (the reserved bit too) and
        /// length, cut into reads or writes anywhere: both walks end where
        /// walking a byte at a time does (each header then split), and see
        /// the same streams reset, opened and ended.
        #[test]
        fn a_header_taken_whole_is_a_header_taken_a_byte_at_a_time(
            frames in proptest::collection::vec(
                (0u8..10, proptest::num::u8::ANY, proptest::num::u32::ANY, 0usize..20),
                1..12,
            ),
            cuts in proptest::collection::vec(1usize..30, 1..20),
        ) {
            let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            for &(kind, flags, stream, len) in &frames {
                wire.extend(frame_on(kind, flags, stream, &vec![b'x'; len]));
            }
            let mut pieces = Vec::new();
            let mut rest = &wire[..];
            for &cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, after) = rest.split_at(cut.min(rest.len()));
                pieces.push(piece);
                rest = after;
            }
            let read = |parts: &mut dyn Iterator<Item = &[u8]>| {
                let mut resets = Vec::new();
                let end = parts.fold((START, 0), |(s, ids), p| walk(s, ids, p, |id| resets.push(id)));
                (end, resets)
            };
            let bytes = || wire.chunks(1);
            proptest::prop_assert_eq!(read(&mut pieces.iter().copied()), read(&mut bytes()));
            let written = |parts: &mut dyn Iterator<Item = &[u8]>| {
                let mut seen = Vec::new();
                let end = parts.fold((0, 0), |(s, id), p| walk_out(s, id, p, |step| seen.push(step)));
                (end, seen)
            };
            // Our writes carry no preface.
            let out = &wire[24..];
            for cut in cuts {
                proptest::prop_assert_eq!(written(&mut out.chunks(cut)), written(&mut out.chunks(1)));
            }
        }
    }
}
