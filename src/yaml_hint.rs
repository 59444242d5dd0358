//! YAML syntax errors in an operator's words: the likely indentation slip, its line, and the fix.
//!
//! The YAML parser reports what its grammar saw ("comment intercepting the
//! multiline text", "mapping values are not allowed in this context", "did
//! not find expected key"). Nearly always the cause in a hand-edited
//! config is one line indented a few spaces off. This looks at the lines
//! around the error and says which line, relative to which, and what
//! column would fit; the parser's own words follow in parentheses so they
//! can still be searched for.

/// One line of the source: 1-based number, indentation, and its key (the
/// text before `:` if it looks like `key:` or `- key:`).
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

impl<'a> Line<'a> {
    fn key(&self) -> Option<&'a str> {
        let t = self.text.trim_start().trim_start_matches("- ").trim_start();
        let (key, _) = t.split_once(':')?;
        let key = key.trim();
        (!key.is_empty() && !key.contains(' ') && !key.starts_with('#')).then_some(key)
    }

    /// The key as a hint shows it: as the config's messages show a key
    /// (`config::shown_key`: a bidi override or other invisible character
    /// escaped, a long one cut).
    fn shown(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.key().map(crate::config::shown_key)
    }

    /// Column (1-based) where the key starts, past a `- ` list marker.
    fn key_column(&self) -> usize {
        let t = &self.text[self.indent..];
        let after_dash = t
            .strip_prefix('-')
            .map_or(0, |r| 1 + (r.len() - r.trim_start().len()));
        self.indent + after_dash + 1
    }

    /// How a hint names the line: `key`, or, for a line without a key,
    /// not by its text: that may be a key or token pasted into the file.
    fn named(&self) -> String {
        match self.shown() {
            Some(k) => format!("`{k}`"),
            None => "a line without `key:`".to_owned(),
        }
    }

    fn describe(&self) -> String {
        match self.shown() {
            Some(k) => format!("`{k}:` on line {}", self.number),
            None => format!("line {}", self.number),
        }
    }
}

/// The meaningful lines (not blank, not only a comment) of `source`.
fn lines(source: &str) -> Vec<Line<'_>> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(|(i, l)| Line {
            number: i + 1,
            indent: l.len() - l.trim_start_matches(' ').len(),
            text: l,
        })
        .collect()
}

/// An operator's explanation of the YAML error `message` the parser gave
/// at 1-based `line`, or `None` when it is not an indentation slip this
/// recognises (the caller then shows the parser's message as is).
pub fn explain(message: &str, line: usize, source: &str) -> Option<String> {
    let lines = lines(source);
    let at = lines.iter().position(|l| l.number >= line)?;
    let here = &lines[at];
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        return Some(duplicate_key(rest, &lines[..at], here));
    }
    let before = at.checked_sub(1).map(|i| &lines[i]);
    let after = lines.get(at + 1);
    let hint = if message.contains("comment intercepting the multiline text") {
        // `key: value  # note` followed by a line indented deeper than
        // `key`: YAML reads that line as more of the value, and a comment
        // cannot sit inside a value.
        let next = after?;
        let key_col = here.key_column();
        format!(
            "line {}: indented deeper than {} (column {} instead of {key_col}), so YAML reads it as more of that value; \
             indent it like `{}` if it is a setting of its own",
            next.number,
            here.describe(),
            next.indent + 1,
            here.shown().unwrap_or("the line above".into()),
        )
    } else if message.contains("mapping values are not allowed") {
        // `a: 1` then `   b: 2` deeper: `b: 2` would continue a's value.
        let (prev, this) = match before {
            Some(p) if p.indent < here.indent && p.key().is_some() => (p, here),
            _ => (here, after?),
        };
        format!(
            "line {}: {} is indented deeper than {}, whose value is already given on its line; \
             indent it like `{}` (column {}) if it is a setting of its own",
            this.number,
            this.named(),
            prev.describe(),
            prev.shown().unwrap_or("the line above".into()),
            prev.key_column(),
        )
    } else if message.contains("did not find expected key")
        || message.contains("did not find expected '-' indicator")
    {
        // A line whose indentation matches none of the enclosing levels:
        // find the siblings it was probably meant to line up with.
        let here = if here.number == line { here } else { before? };
        // The closest indentation above (the latest on a tie): what the
        // line was most likely meant to line up with.
        let sibling = lines[..lines.iter().position(|l| l.number == here.number)?]
            .iter()
            .rev()
            .filter(|l| l.indent != here.indent && l.key().is_some())
            .min_by_key(|l| l.indent.abs_diff(here.indent))?;
        let list = message.contains("'-'");
        format!(
            "line {}: {} at column {} lines up with nothing above; {} starts at column {}{}",
            here.number,
            here.named(),
            here.indent + 1,
            sibling.describe(),
            sibling.indent + 1,
            if list {
                " (inside a list, every item starts with `-` in the same column)"
            } else {
                " (YAML nests by indentation: settings of one section start in the same column)"
            },
        )
    } else {
        return None;
    };
    Some(format!(
        "indentation problem: {hint} (YAML parser: {message})"
    ))
}

/// A key set twice in one mapping: `rest` is the key as the config's
/// reader shows it (`config::tree::shown_key`: escaped, cut, or withheld
/// when pasted), printed as given. The parser's own words end with advice
/// for a program that embeds it ("set DuplicateKeyPolicy in Options"),
/// which an operator cannot act on; it is left out.
fn duplicate_key(rest: &str, above: &[Line<'_>], here: &Line<'_>) -> String {
    let key = rest
        .strip_suffix(", set DuplicateKeyPolicy in Options if acceptable")
        .unwrap_or(rest)
        .trim();
    let column = here.key_column();
    // The first setting: a line of the same mapping (same column) above,
    // before a line of an enclosing one (a smaller column). Not looked for
    // when the key is cut or withheld: another key of the same first 64
    // bytes would be named as the first.
    let whole = !key.ends_with('…') && !key.starts_with("<withheld");
    let first = above
        .iter()
        .rev()
        .take_while(|l| l.key_column() >= column)
        .filter(|_| whole)
        .find(|l| l.key_column() == column && l.shown().as_deref() == Some(key));
    match first {
        Some(f) => format!(
            "`{key}:` is set twice in one section, on line {} and again on line {}; \
             keep one (YAML parser: duplicate mapping key: {key})",
            f.number, here.number
        ),
        None => format!(
            "`{key}:` on line {} is set twice in one section; keep one \
             (YAML parser: duplicate mapping key: {key})",
            here.number
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys of the same first 64 bytes above a repeat of the first:
    /// the second was named as the first setting (its shown key, cut,
    /// matched); a cut key names the repeat's line alone.
    #[test]
    fn a_cut_key_set_twice_names_no_wrong_line() {
        let long = "k".repeat(70);
        let src = format!("watch:\n  {long}x: 1\n  {long}y: 1\n  {long}x: 2\n");
        // As config::tree::shown_key shows it: the first 64 bytes and `…`.
        let shown = format!("{}…", &long[..64]);
        let said = explain(&format!("duplicate mapping key: {shown}"), 4, &src).unwrap();
        assert!(!said.contains("on line 3 and again"), "{said}");
        assert!(said.contains("on line 4 is set twice"), "{said}");
    }

    #[test]
    fn a_key_set_twice() {
        let src = "watch:\n  debounce: 100ms\n  events: true\n  debounce: 200ms\n";
        let got = explain(
            "duplicate mapping key: debounce, set DuplicateKeyPolicy in Options if acceptable",
            4,
            src,
        )
        .unwrap();
        assert_eq!(
            got,
            "`debounce:` is set twice in one section, on line 2 and again on line 4; keep one \
             (YAML parser: duplicate mapping key: debounce)"
        );
    }

    #[test]
    fn a_deeper_line_after_a_commented_value() {
        let src = "watch:\n  debounce: 100ms # quiet\n    poll_interval: 2s\n";
        let got = explain("comment intercepting the multiline text", 2, src).unwrap();
        assert_eq!(
            got,
            "indentation problem: line 3: indented deeper than `debounce:` on line 2 (column 5 instead of 3), \
             so YAML reads it as more of that value; indent it like `debounce` if it is a setting of its own \
             (YAML parser: comment intercepting the multiline text)"
        );
    }

    #[test]
    fn a_list_item_key_is_measured_past_the_dash() {
        let src = "certs:\n  - id: edge   # server\n      type: server-pair\n";
        let got = explain("comment intercepting the multiline text", 2, src).unwrap();
        assert!(
            got.contains("line 3: indented deeper than `id:` on line 2 (column 7 instead of 5)"),
            "{got}"
        );
    }

    #[test]
    fn a_deeper_key_without_a_comment() {
        let src = "watch:\n  debounce: 100ms\n    poll_interval: 2s\n";
        let got = explain("mapping values are not allowed in this context", 3, src).unwrap();
        assert!(
            got.starts_with("indentation problem: line 3: `poll_interval` is indented deeper than `debounce:` on line 2"),
            "{got}"
        );
        assert!(got.contains("(column 3)"), "{got}");
    }

    #[test]
    fn a_shallower_key() {
        let src = "admin:\n  bind: 127.0.0.1:9901\n tokens: []\n";
        let got = explain(
            "while parsing a block mapping, did not find expected key",
            3,
            src,
        )
        .unwrap();
        assert!(
            got.contains("line 3: `tokens` at column 2 lines up with nothing above; `bind:` on line 2 starts at column 3"),
            "{got}"
        );
    }

    /// A line without a key is named by its number, not its text: it may
    /// be a private key or token pasted on the line of a path field.
    #[test]
    fn a_line_without_a_key_is_not_quoted() {
        let pasted = "c2VjcmV0LWJvZHktbGluZS1vZi1hLXBhc3RlZC1rZXk";
        let src = format!("certs:\n  - id: web\n    key_file: x\n   {pasted}\n");
        let got = explain(
            "while parsing a block mapping, did not find expected key",
            4,
            &src,
        )
        .unwrap();
        assert!(
            got.contains("line 4: a line without `key:` at column 4 lines up with nothing above"),
            "{got}"
        );
        assert!(!got.contains(pasted), "{got}");
        let src = format!("watch:\n  debounce: 100ms\n    {pasted} x: y\n");
        let got = explain("mapping values are not allowed in this context", 3, &src).unwrap();
        assert!(
            got.contains("line 3: a line without `key:` is indented deeper than `debounce:`"),
            "{got}"
        );
        assert!(!got.contains(pasted), "{got}");
    }

    /// A key from the source is shown as the config's messages show keys:
    /// a bidi override (which YAML allows in a plain key) escaped.
    #[test]
    fn a_key_from_the_source_is_shown_escaped() {
        let src = "watch:\n  debounce: 100ms\n    poll\u{202e}x: 2s\n";
        let got = explain("mapping values are not allowed in this context", 3, src).unwrap();
        assert!(
            got.contains("line 3: `poll\\u{202e}x` is indented deeper"),
            "{got}"
        );
        assert!(!got.contains('\u{202e}'), "{got:?}");
    }

    #[test]
    fn other_errors_are_left_alone() {
        assert_eq!(explain("found unexpected end of stream", 1, "a: [\n"), None);
        assert_eq!(
            explain("comment intercepting the multiline text", 9, "a: 1\n"),
            None
        );
    }
}
