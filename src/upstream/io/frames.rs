//! The HTTP/2 frames of an upstream connection, followed by their headers: SETTINGS applied, header-block floods, `101`s, resets and GOAWAYs that would end a response as if whole, streams hotproxy resets itself.

use std::sync::Arc;

use super::Settling;

/// Follows the frames an HTTP/2 server sends (nine bytes of header, then
/// the payload whose length it gives) to tell the connection's watcher when
/// h2 has applied a SETTINGS frame after the first: a server may lower its
/// stream limit at any time, to zero too, and the watcher otherwise looks
/// only when a request is handed over, which is too late for that request
/// (hyper holds it unsent until the server allows a stream again). h2
/// acknowledges and applies a SETTINGS frame before it decodes the next
/// frame, so its first read after the one that completed that frame comes
/// after it was applied: that read wakes the watcher. The same frame
/// headers bound a stream's header blocks ([`H2_BLOCK_BYTES`]).
#[derive(Default)]
pub(super) struct SettingsFrames {
    settling: Arc<Settling>,
    /// The frame header being read, and how much of it is in.
    head: [u8; 9],
    have: usize,
    /// The current frame's payload bytes still to come.
    left: usize,
    /// The current frame is a SETTINGS frame (not an acknowledgement).
    settings: bool,
    /// A SETTINGS frame was read whole: wake the watcher at the next read.
    pub(super) applied: bool,
    /// Per stream, the bytes of header-block frames (HEADERS and
    /// CONTINUATION, their frame headers too) since its last DATA frame:
    /// its informational responses, its head, its trailers. Only streams
    /// whose last frame was such a block are here, at most
    /// [`BLOCK_STREAMS`] of them.
    blocks: std::collections::BTreeMap<u32, usize>,
    /// A stream went past [`H2_BLOCK_BYTES`]: the next read fails.
    pub(super) flooded: bool,
    /// Streams whose response has begun (a header block came) and not
    /// ended (no `END_STREAM` yet, nor a reset): at most
    /// [`BLOCK_STREAMS`] of them, the oldest forgotten first.
    pub(super) responding: std::collections::BTreeSet<u32>,
    /// What hotproxy has written ([`Written`]).
    written: Written,
    /// The current frame is a `RST_STREAM` of a stream in `responding`,
    /// or a `GOAWAY`: its error code followed ([`Cut`]).
    cut: Option<Cut>,
    /// The fields of the header block being read ([`Fields`]).
    fields: Fields,
}

/// The fields of a header block (HEADERS and its CONTINUATIONs),
/// followed byte by byte to refuse a `:status` of `101`: RFC 9113 §8.6
/// has no `101` in HTTP/2, yet h2 (0.4.20) takes it as an informational
/// response and hyper drops it, so the request waited for a final
/// response until `request_timeout`; nghttp2 (Envoy) resets the stream.
/// A literal `:status` whose value is `101`, raw or Huffman-coded, in any
/// form HPACK has (RFC 7541 §6.2: with incremental indexing, without, or
/// never indexed), is refused as the block's first field, and with
/// incremental indexing anywhere in the block: h2 resets a stream whose
/// `:status` is not its first field, but its HPACK table keeps the entry,
/// and a later block naming it decoded a `101`. Only the first field was
/// looked at. Its name may be a static index: 8
/// (`:status 200`, how Go, nghttp2 and h2 encode it) or any other
/// `:status` entry (9 to 14). In a literal not indexed, that index is
/// turned into `:method`'s (2): h2 then finds no `:status` and resets the
/// stream (`PROTOCOL_ERROR`), a `502` (`protocol`), the connection kept.
/// With incremental indexing, or when the name came in an earlier read
/// than the value (h2 has it already), or was written out (`:status`, raw
/// or Huffman-coded), the value's last byte is spoiled instead: not a
/// status, h2 fails the connection (an HPACK error, `GOAWAY`), a `502`
/// too. An indexed entry's name turned into `:method` had h2's HPACK table
/// keep `:method: 101` where the server's keeps `:status: 101`: a later
/// response naming that entry's name with a real status was a `502`. Only
/// the index 8 was looked for, so any other form passed a `101` to h2.
/// A `:status` name from a dynamic table entry is not followed.
#[derive(Default)]
struct Fields {
    /// Payload bytes of the current frame still to come.
    rest: usize,
    /// The current frame is PADDED and its pad length is next.
    pad: bool,
    /// Padding bytes that end the current frame.
    padding: usize,
    /// Priority bytes before the current frame's fragment still to skip.
    skip: usize,
    /// No field of the block has come yet (a size update is none).
    first: bool,
    step: Step,
}

/// Where [`Fields`] is in the header block.
#[derive(Default, Clone, Copy)]
enum Step {
    /// Not looking (no block, or one that cannot be followed).
    #[default]
    Done,
    /// At the start of a field (or of a dynamic table size update).
    Start,
    /// In the bytes after a full prefix of an integer (RFC 7541 §5.1):
    /// its value so far, the shift of the next byte's 7 bits, what it is.
    Int {
        value: usize,
        shift: u32,
        then: Then,
    },
    /// A string's first byte (its H bit and its length's prefix) is next.
    Str(Str),
    /// In a string not looked at: bytes left of it, and what follows it.
    Skip { left: usize, next: Next },
    /// In a new name that so far matches `:status` (`got` bytes of it).
    Name { huffman: bool, got: usize },
    /// In a `:status` value that so far matches `101` (`got` bytes of
    /// it). `name` is its name index byte's offset in the piece being
    /// read, if it is in it and is to be turned into `:method`'s.
    Value {
        name: Option<usize>,
        huffman: bool,
        got: usize,
    },
}

/// What a string is.
#[derive(Clone, Copy)]
enum Str {
    /// A literal's new name; `watch`: it is looked at for `:status`.
    Name { watch: bool },
    /// The value of a `:status` looked at (see [`Step::Value`]).
    Status { name: Option<usize> },
    /// A value not looked at.
    Other,
}

/// What follows a string skipped.
#[derive(Clone, Copy)]
enum Next {
    /// The next field.
    Field,
    /// The literal's value, not looked at.
    Value,
}

/// What an integer of more than its prefix is.
#[derive(Clone, Copy)]
enum Then {
    /// An index or a size update: the next field follows.
    Field,
    /// A literal's name index (past the static `:status` entries): its
    /// value follows.
    Value,
    /// A string's length: that string, skipped, then `Next`.
    Skip(Next),
}

impl Step {
    /// A string of `left` bytes skipped, then `next`.
    fn skip(left: usize, next: Next) -> Step {
        match (left, next) {
            (1.., _) => Step::Skip { left, next },
            (0, Next::Field) => Step::Start,
            (0, Next::Value) => Step::Str(Str::Other),
        }
    }

    /// A string whose first byte is `b`, skipped, then `next`.
    fn skip_string(b: u8, next: Next) -> Step {
        match b & 0x7f {
            0x7f => Step::Int {
                value: 0x7f,
                shift: 0,
                then: Then::Skip(next),
            },
            len => Step::skip(usize::from(len), next),
        }
    }
}

/// `101` Huffman-coded (RFC 7541 Appendix B: `1` 00001, `0` 00000, then
/// one padding bit).
const HUFFMAN_101: [u8; 2] = [0x08, 0x03];

/// `:status` Huffman-coded (RFC 7541 Appendix B: 38 bits, then two
/// padding bits); its one encoding, as `101`'s is.
const HUFFMAN_STATUS: [u8; 5] = [0xb8, 0x84, 0x8d, 0x36, 0xa3];

/// The static table's `:status` entries (RFC 7541 Appendix A: `200`,
/// `204`, `206`, `304`, `400`, `404`, `500`).
const STATUS_NAMES: std::ops::RangeInclusive<u8> = 8..=14;

/// The frames hotproxy writes, followed by their headers past the
/// connection preface: a stream it resets itself (its client went away,
/// its request body stalled) leaves `responding`. Only the nine bytes of
/// each frame header are copied; payloads are skipped by their length.
#[derive(Default)]
struct Written {
    /// Bytes of the connection preface written so far.
    preface: usize,
    /// The frame header being written, and how much of it is out.
    head: [u8; 9],
    have: usize,
    /// The current frame's payload bytes still to go.
    left: usize,
}

/// The client's connection preface, written before any frame.
const PREFACE: usize = 24;

/// A frame whose `NO_ERROR` code may be rewritten as
/// [`TRUNCATING_RESET_CODE`]: a `RST_STREAM` of a stream whose response
/// has begun and not ended, or a `GOAWAY` whose last stream id is below
/// such a stream. h2 ends each stream above that id with the `GOAWAY`
/// itself as its error, whose reason is the `GOAWAY`'s code, and hyper
/// ends a body cleanly at a `NO_ERROR` one as at a reset. Only the code
/// changes: a request h2 never sent on such a stream still fails as
/// refused by a remote `GOAWAY`, and is sent again
/// ([`crate::proxy::failure::unprocessed`] looks at the kind, not the
/// code).
#[derive(Default)]
struct Cut {
    /// Payload bytes read so far.
    at: usize,
    /// Where the code starts in the payload: 0 in a `RST_STREAM`, 4 in a
    /// `GOAWAY` (after its last stream id).
    code: usize,
    /// A `GOAWAY`'s last stream id, as read so far.
    last: u32,
    /// A `NO_ERROR` code is rewritten: always for a `RST_STREAM`; for a
    /// `GOAWAY`, once its last stream id is read, if a stream above it is
    /// responding.
    cuts: bool,
    /// The code's bytes read so far are all zero.
    zero: bool,
}

/// The code a `RST_STREAM(NO_ERROR)` (or `GOAWAY(NO_ERROR)`, [`Cut`])
/// that ends a response before its `END_STREAM` is read as:
/// `PROTOCOL_ERROR`. hyper ends a response body
/// cleanly at a `NO_ERROR` reset (RFC 9113 §8.1's early answer, which
/// comes after a complete response), so a server resetting its stream that
/// way part way through a body of unknown length had the client get a
/// truncated body as a whole one, where any other reset cuts it.
pub(super) const TRUNCATING_RESET_CODE: u8 = 1;

/// What header blocks one HTTP/2 stream may get before its body (or
/// between DATA frames): 64 KiB of informational (`1xx`) responses always
/// pass beside a head and trailers of at most 64 KiB each (the
/// `max_header_list_size` hotproxy announces). h2 (0.4.20) keeps every
/// `1xx` it reads in the stream's queue, with no bound, and hyper drops
/// them only as the request polls for its response: an upstream sending
/// them without end held the request until `request_timeout` while the
/// connection's task decoded them. Past this the connection's next read
/// fails, as an HTTP/1.1 connection's does past [`HEAD_WAIT_BYTES`]: its
/// requests get a `502` and the connection is closed.
pub const H2_BLOCK_BYTES: usize = 192 * 1024;

/// Streams whose header blocks are followed at once: more than a
/// connection carries (`H2_MAX_STREAMS`, or a server's lower limit); the
/// oldest (lowest id) is forgotten first, one whose response the proxy
/// gave up, reset on its side, with no frame from the server since.
const BLOCK_STREAMS: usize = 1024;

impl SettingsFrames {
    /// Frames of a new connection, whose watcher waits on `settling`.
    pub(super) fn new(settling: Arc<Settling>) -> SettingsFrames {
        SettingsFrames {
            settling,
            ..SettingsFrames::default()
        }
    }

    /// A frame's header came: count a header block against its stream;
    /// DATA (the body came), `END_STREAM` and `RST_STREAM` end the count.
    fn follow(&mut self, kind: u8, flags: u8, stream: u32) {
        const DATA: u8 = 0;
        const HEADERS: u8 = 1;
        const RST_STREAM: u8 = 3;
        const GOAWAY: u8 = 7;
        const CONTINUATION: u8 = 9;
        const END_STREAM: u8 = 1;
        const PADDED: u8 = 0x8;
        const PRIORITY: u8 = 0x20;
        match kind {
            HEADERS => {
                self.fields = Fields {
                    rest: self.left,
                    pad: flags & PADDED != 0,
                    skip: if flags & PRIORITY != 0 { 5 } else { 0 },
                    first: true,
                    step: Step::Start,
                    ..Fields::default()
                };
            }
            CONTINUATION => {
                self.fields.rest = self.left;
                self.fields.padding = 0;
            }
            _ => self.fields.step = Step::Done,
        }
        if stream == 0 {
            // Its last stream id and code (8 bytes) first; shorter, h2
            // fails the connection anyway.
            if kind == GOAWAY && self.left >= 8 {
                self.cut = Some(Cut {
                    code: 4,
                    zero: true,
                    ..Cut::default()
                });
            }
            return;
        }
        let bytes = self.head.len() + self.left;
        match kind {
            HEADERS if flags & END_STREAM != 0 => {
                self.blocks.remove(&stream);
                self.responding.remove(&stream);
            }
            HEADERS => {
                self.responding.insert(stream);
                if self.responding.len() > BLOCK_STREAMS {
                    self.responding.pop_first();
                }
                let n = self.blocks.entry(stream).or_default();
                *n += bytes;
                self.flooded |= *n > H2_BLOCK_BYTES;
                if self.blocks.len() > BLOCK_STREAMS {
                    self.blocks.pop_first();
                }
            }
            CONTINUATION => {
                if let Some(n) = self.blocks.get_mut(&stream) {
                    *n += bytes;
                    self.flooded |= *n > H2_BLOCK_BYTES;
                }
            }
            DATA => {
                self.blocks.remove(&stream);
                if flags & END_STREAM != 0 {
                    self.responding.remove(&stream);
                }
            }
            RST_STREAM => {
                self.blocks.remove(&stream);
                if self.responding.remove(&stream) && self.left == 4 {
                    self.cut = Some(Cut {
                        cuts: true,
                        zero: true,
                        ..Cut::default()
                    });
                }
            }
            _ => {}
        }
    }

    /// h2 reads on: any SETTINGS frame read whole before is applied.
    pub(super) fn reading(&mut self) {
        if std::mem::take(&mut self.applied) {
            self.settling.applied();
        }
    }

    /// Reads `piece`, the next bytes of the payload of the frame [`Cut`]
    /// follows: an all-zero code (`NO_ERROR`) that cuts has its last byte
    /// turned into [`TRUNCATING_RESET_CODE`]. The streams above a
    /// `GOAWAY`'s last stream id end with it: no longer responding.
    fn cut(&mut self, piece: &mut [u8]) {
        let SettingsFrames {
            cut: Some(cut),
            responding,
            ..
        } = self
        else {
            return;
        };
        for b in piece {
            if cut.at < cut.code {
                cut.last = cut.last << 8 | u32::from(*b);
                if cut.at + 1 == cut.code {
                    let above = responding.split_off(&((cut.last & 0x7fff_ffff) + 1));
                    cut.cuts = !above.is_empty();
                }
            } else if cut.at < cut.code + 4 {
                cut.zero &= *b == 0;
                if cut.at == cut.code + 3 && cut.zero && cut.cuts {
                    *b = TRUNCATING_RESET_CODE;
                }
            }
            cut.at += 1;
        }
    }

    /// Reads `piece`, the next bytes of a frame's payload, for the fields
    /// of a header block ([`Fields`]): a `101` is refused.
    fn read_fields(&mut self, piece: &mut [u8]) {
        let f = &mut self.fields;
        // A name byte seen in an earlier piece is out of reach.
        match &mut f.step {
            Step::Str(Str::Status { name }) | Step::Value { name, .. } => *name = None,
            _ => {}
        }
        for i in 0..piece.len() {
            if matches!(f.step, Step::Done) || f.rest == 0 {
                return;
            }
            f.rest -= 1;
            let b = piece[i];
            if std::mem::take(&mut f.pad) {
                f.padding = usize::from(b);
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if f.rest < f.padding {
                continue;
            }
            f.step = match f.step {
                Step::Done => Step::Done,
                // An indexed field (7-bit prefix).
                Step::Start if b & 0x80 != 0 => {
                    f.first = false;
                    match b & 0x7f {
                        0x7f => Step::Int {
                            value: 0,
                            shift: 0,
                            then: Then::Field,
                        },
                        _ => Step::Start,
                    }
                }
                // A size update (5-bit prefix).
                Step::Start if b & 0xe0 == 0x20 => match b & 0x1f {
                    0x1f => Step::Int {
                        value: 0,
                        shift: 0,
                        then: Then::Field,
                    },
                    _ => Step::Start,
                },
                // A literal: with incremental indexing (`01`, a 6-bit
                // name index), else without or never indexed (`0000`,
                // `0001`, a 4-bit one); index 0 is a new name. Looked at
                // as the block's first field, or when indexed.
                Step::Start => {
                    let indexed = b & 0x40 != 0;
                    let watch = indexed || std::mem::take(&mut f.first);
                    f.first = false;
                    let prefix = if indexed { 0x3f } else { 0x0f };
                    match b & prefix {
                        0 => Step::Str(Str::Name { watch }),
                        index if index == prefix => Step::Int {
                            value: 0,
                            shift: 0,
                            then: Then::Value,
                        },
                        index if watch && STATUS_NAMES.contains(&index) => Step::Str(Str::Status {
                            name: (!indexed).then_some(i),
                        }),
                        _ => Step::Str(Str::Other),
                    }
                }
                Step::Int { value, shift, then } => {
                    let value = value + (usize::from(b & 0x7f) << shift);
                    match (b & 0x80 != 0, then) {
                        // Past any length h2 takes: it fails first.
                        (true, _) if shift >= 28 => Step::Done,
                        (true, then) => Step::Int {
                            value,
                            shift: shift + 7,
                            then,
                        },
                        (false, Then::Field) => Step::Start,
                        (false, Then::Value) => Step::Str(Str::Other),
                        (false, Then::Skip(next)) => Step::skip(value, next),
                    }
                }
                Step::Skip { left, next } => Step::skip(left - 1, next),
                // 7 bytes raw, or 5 Huffman-coded (the H bit).
                Step::Str(Str::Name { watch: true }) if b == 0x07 || b == 0x85 => Step::Name {
                    huffman: b == 0x85,
                    got: 0,
                },
                Step::Str(Str::Name { .. }) => Step::skip_string(b, Next::Value),
                Step::Str(Str::Status { name }) if b == 0x03 || b == 0x82 => Step::Value {
                    name,
                    huffman: b == 0x82,
                    got: 0,
                },
                Step::Str(_) => Step::skip_string(b, Next::Field),
                Step::Name { huffman, got } => {
                    let want: &[u8] = if huffman { &HUFFMAN_STATUS } else { b":status" };
                    if b != want[got] {
                        Step::skip(want.len() - got - 1, Next::Value)
                    } else if got + 1 < want.len() {
                        Step::Name {
                            huffman,
                            got: got + 1,
                        }
                    } else {
                        // No name index to turn: the value is spoiled.
                        Step::Str(Str::Status { name: None })
                    }
                }
                Step::Value { name, huffman, got } => {
                    let want: &[u8] = if huffman { &HUFFMAN_101 } else { b"101" };
                    if b != want[got] {
                        Step::skip(want.len() - got - 1, Next::Field)
                    } else if got + 1 < want.len() {
                        Step::Value {
                            name,
                            huffman,
                            got: got + 1,
                        }
                    } else {
                        match name {
                            // A `:status` index (8 to 14) of a literal
                            // not indexed becomes 2 (`:method`), its
                            // representation's bits kept.
                            Some(at) => piece[at] = piece[at] & 0xf0 | 2,
                            // With incremental indexing, h2's table would
                            // keep `:method: 101` where the server's keeps
                            // `:status: 101`: `10o` (Huffman) or `10x`.
                            None => piece[i] = if huffman { 0x0f } else { b'x' },
                        }
                        Step::Start
                    }
                }
            };
        }
    }

    /// `n` bytes of `bufs` were written: a `RST_STREAM` among them ends
    /// its stream's response here (the server's frames for it, if any
    /// come, are dropped by h2), else it would stay in `responding` until
    /// [`BLOCK_STREAMS`] later streams pushed out a live one.
    pub(super) fn wrote(&mut self, bufs: &[std::io::IoSlice<'_>], mut n: usize) {
        for buf in bufs {
            if n == 0 {
                return;
            }
            let take = n.min(buf.len());
            self.wrote_bytes(&buf[..take]);
            n -= take;
        }
    }

    fn wrote_bytes(&mut self, mut bytes: &[u8]) {
        const RST_STREAM: u8 = 3;
        while !bytes.is_empty() {
            let w = &mut self.written;
            let n = if w.preface < PREFACE {
                let n = (PREFACE - w.preface).min(bytes.len());
                w.preface += n;
                n
            } else if w.left > 0 {
                let n = w.left.min(bytes.len());
                w.left -= n;
                n
            } else {
                let n = (w.head.len() - w.have).min(bytes.len());
                w.head[w.have..w.have + n].copy_from_slice(&bytes[..n]);
                w.have += n;
                if w.have == w.head.len() {
                    w.have = 0;
                    let [l0, l1, l2, kind, _, s0, s1, s2, s3] = w.head;
                    w.left = u32::from_be_bytes([0, l0, l1, l2]) as usize;
                    let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                    if kind == RST_STREAM && stream != 0 {
                        self.responding.remove(&stream);
                        self.blocks.remove(&stream);
                    }
                }
                n
            };
            bytes = &bytes[n..];
        }
    }

    /// The next `bytes` the server sent (a reset or `GOAWAY` that would
    /// end a response as if whole rewritten, see [`Cut`]).
    pub(super) fn read(&mut self, mut bytes: &mut [u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                let (payload, rest) = std::mem::take(&mut bytes).split_at_mut(n);
                self.cut(payload);
                self.read_fields(payload);
                bytes = rest;
            } else {
                let n = (self.head.len() - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &mut std::mem::take(&mut bytes)[n..];
                if self.have < self.head.len() {
                    return;
                }
                self.have = 0;
                self.cut = None;
                let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.head;
                self.left = u32::from_be_bytes([0, l0, l1, l2]) as usize;
                self.settings = kind == 4 && flags & 1 == 0;
                let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                self.follow(kind, flags, stream);
            }
            if self.left == 0 && std::mem::take(&mut self.settings) {
                self.applied = true;
            }
        }
    }
}
