//! HPACK as the tests read it: a header block's fields, and the Huffman code of a few strings.

/// `s` Huffman-coded as h2 sends every string (RFC 7541 §5.2, Appendix B),
/// with its length prefix; only the characters of the names and ids used
/// here.
pub fn huffman(s: &str) -> Vec<u8> {
    let (mut bits, mut n, mut out) = (0u64, 0u32, Vec::new());
    for c in s.bytes() {
        let (code, len) = match c {
            b'0'..=b'2' => (u64::from(c - b'0'), 5),
            b'3'..=b'9' => (u64::from(c - b'3') + 0x19, 6),
            b'-' => (0x16, 6),
            b'.' => (0x17, 6),
            b'a' => (0x3, 5),
            b'b' => (0x23, 6),
            b'c' => (0x4, 5),
            b'd' => (0x24, 6),
            b'e' => (0x5, 5),
            b'f' => (0x25, 6),
            b'i' => (0x6, 5),
            b'q' => (0x76, 7),
            b'r' => (0x2c, 6),
            b's' => (0x8, 5),
            b't' => (0x9, 5),
            b'u' => (0x2d, 6),
            b'x' => (0x79, 7),
            _ => panic!("no code for {c:?} here"),
        };
        bits = bits << len | code;
        n += len;
        while n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    if n > 0 {
        // Padded with the EOS code's most significant bits: ones.
        out.push((bits << (8 - n)) as u8 | (0xff >> n));
    }
    assert!(out.len() < 127);
    [vec![0x80 | out.len() as u8], out].concat()
}

/// Each field of an HPACK block's representation and index, as
/// [`hpack_literals`] reads them.
pub fn hpack_fields(b: &[u8]) -> Vec<(u8, usize)> {
    hpack_literals(b).into_iter().map(|f| (f.0, f.1)).collect()
}

/// A field: representation, index, literal name, value (see [`hpack_literals`]).
pub type Field<'a> = (u8, usize, Option<&'a [u8]>, &'a [u8]);

/// The fields of an HPACK block, decoded no further than needed: each
/// one's representation (0x80 indexed, 0x40 literal with incremental
/// indexing, 0x10 never indexed, 0 not indexed), its index (of the
/// field, or of its name; 0: a literal name), and a literal's name (if
/// literal) and value, as sent (length prefix and all, Huffman-coded or not).
pub fn hpack_literals(mut b: &[u8]) -> Vec<Field<'_>> {
    fn int(b: &mut &[u8], prefix: u32) -> usize {
        let max = (1usize << prefix) - 1;
        let mut n = usize::from(b[0]) & max;
        *b = &b[1..];
        if n == max {
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                n += usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        n
    }
    // A string as sent: its length prefix and its bytes.
    fn string<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let whole = *b;
        let len = int(b, 7);
        let prefix = whole.len() - b.len();
        *b = &b[len..];
        &whole[..prefix + len]
    }
    let mut fields = Vec::new();
    while !b.is_empty() {
        let (kind, prefix) = match b[0] {
            0x80.. => (0x80, 7),
            0x40.. => (0x40, 6),
            0x20.. => {
                int(&mut b, 5); // a dynamic table size update
                continue;
            }
            0x10.. => (0x10, 4),
            _ => (0, 4),
        };
        let index = int(&mut b, prefix);
        if kind == 0x80 {
            fields.push((kind, index, None, &[][..]));
            continue;
        }
        let name = (index == 0).then(|| string(&mut b));
        fields.push((kind, index, name, string(&mut b)));
    }
    fields
}
