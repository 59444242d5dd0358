//! Whether a text value was written as a YAML block scalar (`|`, `>`), read from the file's text.
//!
//! A key or token is pasted as a block scalar, on one line too: such a
//! value is withheld from every message ([`super::withhold`]) and refused
//! where a path goes. The parsed tree keeps no trace of the header, so it
//! is read back from the text before the value.

use std::cell::RefCell;
use std::collections::HashMap;

/// What [`is_block_scalar`] said of each byte of one text, named by its
/// address and length.
struct Remembered {
    text: (usize, usize),
    block: HashMap<usize, bool>,
}

thread_local! {
    /// While [`remembering`] runs: the answers for its text.
    static REMEMBERED: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// `f`, with [`is_block_scalar`]'s answers for `text` kept by byte: an
/// alias (`*v`) carries its anchor's place, and each one asked again, the
/// header line read again (one of 3.7 MB, 49,000 aliases). The text stays
/// borrowed while `f` runs, so its address and length name it.
pub(super) fn remembering<R>(text: &str, f: impl FnOnce() -> R) -> R {
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            REMEMBERED.with(|r| r.borrow_mut().take());
        }
    }
    let text = (text.as_ptr() as usize, text.len());
    REMEMBERED.with(|r| {
        *r.borrow_mut() = Some(Remembered {
            text,
            block: HashMap::new(),
        })
    });
    let _forget = Forget;
    f()
}

/// Whether the scalar whose text starts at byte `at` of `text` is a block
/// scalar: the text before it ends in a block header, `|` or `>` with an
/// indentation digit or chomping (`-`, `+`) and a comment maybe. The
/// node's span starts at the content, on a line after the header, after
/// its indentation (spaces).
pub(super) fn is_block_scalar(text: &str, at: usize) -> bool {
    let name = (text.as_ptr() as usize, text.len());
    let known = REMEMBERED.with(|r| match &*r.borrow() {
        Some(r) if r.text == name => r.block.get(&at).copied(),
        _ => None,
    });
    if let Some(known) = known {
        return known;
    }
    let block = follows_a_header(text, at);
    REMEMBERED.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut().filter(|r| r.text == name) {
            r.block.insert(at, block);
        }
    });
    block
}

fn follows_a_header(text: &str, at: usize) -> bool {
    let Some(before) = text.get(..at) else {
        return false;
    };
    // Content that does not start its own line (a flow item, a value
    // after its key) follows no header: only its indentation is read,
    // not the line before it, which a flow line of 250,000 items read
    // once for each. A lone `\r` ends a line too (the YAML parser breaks
    // lines there): a file with CR-only line ends has no `\n` at all.
    let indented = before.trim_end_matches(' ');
    #[cfg(test)]
    tests::SCANNED.with(|n| n.set(n.get() + before.len() - indented.len() + 1));
    if !(indented.is_empty() || indented.ends_with(['\n', '\r'])) {
        return false;
    }
    let header_line = indented.trim_end();
    let line = match header_line.rfind(['\n', '\r']) {
        Some(i) => &header_line[i + 1..],
        None => header_line,
    };
    #[cfg(test)]
    tests::SCANNED.with(|n| n.set(n.get() + indented.len() - header_line.len() + line.len()));
    // A comment line is no header, at column 0 too (`# old: |` between
    // `key_file:` and its path): a header's content follows it directly,
    // blank lines aside, so a value after a comment line follows none.
    if line.trim_start().starts_with('#') {
        return false;
    }
    // A comment starts at a `#` after white space.
    let line = match line.find([' ', '\t']).and_then(|_| {
        line.char_indices()
            .find(|&(i, c)| c == '#' && line[..i].ends_with([' ', '\t']))
    }) {
        Some((i, _)) => &line[..i],
        None => line,
    };
    let header = line.split_whitespace().last().unwrap_or("");
    let mut chars = header.chars();
    matches!(chars.next(), Some('|' | '>'))
        && header.len() <= 3
        && chars.all(|c| matches!(c, '-' | '+' | '1'..='9'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse_str;

    thread_local! {
        /// How many bytes of the text [`is_block_scalar`] looked at.
        pub(super) static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Whether a value is a block scalar is read from the text before it,
    /// back to the line of its header. That line was looked at for every
    /// text value: each item of a flow line of 250,000 read the items
    /// before it (some 1e11 steps), and each alias (`*v`, which carries
    /// its anchor's place) read its anchor's line again, 3.7 MB 49,000
    /// times. `check` hung and a reload held up every rotation behind it.
    /// Only a value that starts its own line can follow a header, and
    /// each place is looked at once.
    #[test]
    fn a_block_header_is_looked_for_once_per_place() {
        let long = "x".repeat(50_000);
        let aliases = vec!["*v"; 1_000].join(", ");
        let scanned: Vec<(usize, usize)> = [
            format!("a: [\"{long}\", &v x]\nb: [{aliases}]\n"),
            // Its own line, after the long one.
            format!("a: [\"{long}\", &v\n  x]\nb: [{aliases}]\n"),
            format!("a: [{}]\n", vec!["x"; 5_000].join(", ")),
        ]
        .iter()
        .map(|text| {
            SCANNED.with(|n| n.set(0));
            let e = parse_str(text).unwrap_err();
            assert!(!e.problems.is_empty(), "{}", e.render());
            (SCANNED.with(|n| n.get()), text.len())
        })
        .collect();
        assert!(scanned.iter().all(|(s, len)| s < len), "{scanned:?}");
        // A block scalar behind an alias is still told, its header read once.
        let text = "a: x\nb: &v |\n  token\nc: [*v, *v]\n";
        let at = text.find("token").unwrap();
        SCANNED.with(|n| n.set(0));
        remembering(text, || {
            assert!(is_block_scalar(text, at) && is_block_scalar(text, at));
        });
        let once = SCANNED.with(|n| n.get());
        assert!(once > 0 && once < text.len(), "{once}");
        assert!(!is_block_scalar(text, text.find("x\n").unwrap()));
    }

    /// A lone `\r` ends a line as `\n` does (the YAML parser reads it so):
    /// a block scalar in a file with CR-only line ends is told by its
    /// header, which is read back to the `\r` before it, not to the last
    /// `\n` (none, or lines above).
    #[test]
    fn a_block_header_is_told_with_cr_line_ends() {
        assert!(is_block_scalar("a: |\r  t\r", 7));
        for text in [
            "a: |\r  t\r",
            "a: x\rb: >- # c\r  t\r",
            "a: x # |\rb: |\r  t\r",
            "a: x\nb: x # |\rc: |2\r  t\r",
            "a: |\r\n  t\r\n",
        ] {
            assert!(is_block_scalar(text, text.find('t').unwrap()), "{text:?}");
        }
        for text in ["a: |\rb:\r  t\r", "a: |\rb: t\r", "a: |\rb: [ t ]\r"] {
            assert!(!is_block_scalar(text, text.find('t').unwrap()), "{text:?}");
        }
    }

    /// A comment line ending in `|` or `>` after a key (`key_file:`, then
    /// `# old: |` at column 0, then the path) was taken for the header of
    /// the value below it, and the path refused as pasted content.
    #[test]
    fn a_comment_line_is_no_header() {
        for text in [
            "a:\n# old: |\n  t\n",
            "a:\n#>-\n  t\n",
            "a:\n\t# old: >\n  t\n",
            "a:\n  # old: |\n  t\n",
            "a:\r# old: |2\r  t\r",
            "a:\n# |\n\n  t\n",
        ] {
            assert!(!is_block_scalar(text, text.find('t').unwrap()), "{text:?}");
        }
        for text in ["a: | # |\n  t\n", "a: |\n\n  t\n", "a: >- #c\n  t\n"] {
            assert!(is_block_scalar(text, text.find('t').unwrap()), "{text:?}");
        }
    }
}
