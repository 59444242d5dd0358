//! The tree before it is read: keys over the limit refused, `${NAME}` expanded, pasted values found.
//!
//! What is found here is kept by node id, not by field path ([`Pending`]):
//! the reader ([`super::read`]) gives the path of each node it reads, and
//! what is at a node it never reads (under an unknown key, in a value of
//! the wrong type) is dropped, the problem there being that key or value.
//! Walking every subtree with its path, unknown keys included, kept one
//! path per list item: a key of 1 MiB over 49,000 aliased items was 49 GiB
//! and the reloader (and the proxy with it) aborted.
//!
//! And a key as every path and message shows it ([`shown_key`]): escaped,
//! cut, or withheld when pasted.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::super::Withheld;
use super::super::block_scalar::is_block_scalar;
use super::super::env;
use super::{Found, Node, Value};

/// The longest key a mapping may have, in bytes: the longest key of the
/// schema is a few dozen, a response header's name a few dozen more. A
/// longer one (up to 4 MiB, in an explicit `? "..."` key, which YAML does
/// not cap at 1024 characters) is refused with its value unread.
pub const MAX_KEY_BYTES: usize = 256;

/// The most of a key a location or message shows, in bytes.
const SHOWN_KEY_BYTES: usize = 64;

/// `key` as a field path or a message shows it: escaped as Rust writes a
/// string (`\u{1b}`: no terminal escape reaches the operator's screen),
/// its first 64 bytes so escaped and `…` ([`cut_escaped`]); a key
/// holding `-----BEGIN` or a line break (a key or certificate pasted in)
/// withheld, as such a value is.
pub fn shown_key(key: &str) -> Cow<'_, str> {
    shown(key, "key")
}

/// Text a value was written as, shown as [`shown_key`] shows a key.
pub fn shown_written(text: &str) -> Cow<'_, str> {
    shown(text, "value")
}

/// Text written after a tag it does not take, shown as [`shown_written`]
/// shows it; written as a block scalar (`block`: `|` or `>`), withheld on
/// one line too, as a string value so written is ([`pasted`]): a token
/// pasted below the header, whole, not cut at 64 bytes.
pub fn shown_under_tag(text: &str, block: bool) -> Cow<'_, str> {
    if block && !text.contains("-----BEGIN") && !text.contains(['\n', '\r']) {
        return Cow::Borrowed("<withheld value: text of 1 line>");
    }
    shown_written(text)
}

fn shown<'a>(key: &'a str, what: &str) -> Cow<'a, str> {
    if key.contains("-----BEGIN") {
        return Cow::Owned(format!("<withheld {what}: a PEM block>"));
    }
    if key.contains(['\n', '\r']) {
        return Cow::Owned(format!("<withheld {what}: text of several lines>"));
    }
    let as_is = |c: char| matches!(c, '"' | '\'') || c.escape_debug().len() == 1;
    if key.len() <= SHOWN_KEY_BYTES && key.chars().all(as_is) {
        return Cow::Borrowed(key);
    }
    Cow::Owned(cut_escaped(key, |c, shown| match as_is(c) {
        true => shown.push(c),
        false => shown.extend(c.escape_debug()),
    }))
}

/// `text` with each character escaped by `escape`, cut after 64 bytes of
/// that (between two escapes) and `…` when some is left out: cut before
/// it was escaped, 70 ESC bytes were 64 `\u{1b}`, 384 bytes, and the
/// message showing them ran into its 300-byte cut.
pub fn cut_escaped(text: &str, escape: impl Fn(char, &mut String)) -> String {
    let (mut shown, mut one) = (String::new(), String::new());
    for c in text.chars() {
        one.clear();
        escape(c, &mut one);
        if shown.len() + one.len() > SHOWN_KEY_BYTES {
            shown.push('…');
            break;
        }
        shown.push_str(&one);
    }
    shown
}

/// The path of `key` in the mapping at `path`, the key as [`shown_key`].
pub fn field(path: &str, key: &str) -> String {
    match path {
        "" => shown_key(key).into_owned(),
        _ => format!("{path}.{}", shown_key(key)),
    }
}

/// Problems and values to withhold found before the tree is read, each at
/// the id of its node, for the reader to place ([`Pending::place`]).
#[derive(Default)]
pub struct Pending {
    problems: Vec<(usize, Found)>,
    withheld: Vec<(usize, Withheld)>,
    /// The text values written as block scalars (`|`, `>`): at a path
    /// field, content pasted in place of a path (a key folded to one line).
    blocks: Vec<usize>,
    /// The bytes the values that name a variable came to, expanded (at
    /// most [`env::MAX_EXPANDED_BYTES`]).
    expanded: usize,
}

impl Pending {
    /// The nodes whose paths are wanted.
    pub fn ids(&self) -> HashSet<usize> {
        let problems = self.problems.iter().map(|(id, _)| *id);
        problems
            .chain(self.withheld.iter().map(|(id, _)| *id))
            .chain(self.blocks.iter().copied())
            .collect()
    }

    /// Each problem and withheld value at the path the reader read its node
    /// at (`paths`, by node id); those at nodes it never read are dropped.
    /// Returned: the field paths of the values written as block scalars.
    pub fn place(
        self,
        paths: &HashMap<usize, String>,
        problems: &mut Vec<Found>,
        withheld: &mut Vec<Withheld>,
    ) -> HashSet<String> {
        for (id, mut found) in self.problems {
            if let Some(path) = paths.get(&id) {
                found.path = path.clone();
                problems.push(found);
            }
        }
        for (id, w) in self.withheld {
            if let Some(path) = paths.get(&id) {
                withheld.push(w.at(path));
            }
        }
        let blocks = self.blocks.iter().filter_map(|id| paths.get(id));
        blocks.cloned().collect()
    }
}

/// Each key longer than [`MAX_KEY_BYTES`], with its value, taken out of
/// its mapping: a problem at the mapping, at the key's line.
pub fn long_keys(node: &mut Node, pending: &mut Pending) {
    let id = node.id;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| long_keys(n, pending)),
        Value::Map(entries) => {
            entries.retain(|(key, _)| {
                let Value::Str(k) = &key.value else {
                    return true;
                };
                if k.len() <= MAX_KEY_BYTES {
                    return true;
                }
                let message = format!(
                    "a key of {} bytes, more than the {MAX_KEY_BYTES} a key may have: \
                     refused, its value not read",
                    k.len()
                );
                let found = Found {
                    line: key.line,
                    path: String::new(),
                    message,
                };
                pending.problems.push((id, found));
                false
            });
            entries.iter_mut().for_each(|(_, v)| long_keys(v, pending));
        }
        _ => {}
    }
}

/// `${NAME}` in every string value of the tree, from the environment,
/// before it is read: names, rules, paths and addresses alike (SPEC: "in
/// a string value"), where the resolver used to expand the fields it read
/// as paths and addresses only (`cn: "${OPS_CN}"` stayed that text, and
/// matched no client). An unset variable is a problem at its field, whose
/// value then reads as empty.
///
/// Each value set from the environment is withheld: no message repeats it
/// (it may be a secret the file only names), nor its text as written when
/// that is a pasted block (a block scalar, of one line too, read from
/// `text`, which the tree was parsed from).
pub fn expand_env(node: &mut Node, text: &str, pending: &mut Pending) {
    let (id, line) = (node.id, node.line);
    match &mut node.value {
        Value::Str(s) if s.contains("${") => match env::expand_env(s, &mut pending.expanded) {
            Ok(v) => {
                let block = node.span.is_some_and(|(at, _)| is_block_scalar(text, at));
                let w = Withheld::from_env(&v, s, "", block);
                pending.withheld.push((id, w));
                *s = v;
            }
            Err(message) => {
                let path = String::new();
                let found = Found {
                    line,
                    path,
                    message,
                };
                pending.problems.push((id, found));
                s.clear();
            }
        },
        Value::Seq(items) => items.iter_mut().for_each(|n| expand_env(n, text, pending)),
        Value::Map(entries) => {
            for (_, value) in entries.iter_mut() {
                expand_env(value, text, pending);
            }
        }
        _ => {}
    }
}

/// Every text value of the tree (parsed from `text`) that no message may
/// repeat: a PEM block, text of several lines or a block scalar (`|`,
/// `>`) of one line (a key, certificate or token pasted in). Each block
/// scalar is noted too: a path field refuses one ([`Pending::place`]).
pub fn pasted(node: &Node, text: &str, pending: &mut Pending) {
    match &node.value {
        Value::Str(s) => {
            let block = node.span.is_some_and(|(at, _)| is_block_scalar(text, at));
            if block {
                pending.blocks.push(node.id);
            }
            if let Some(w) = Withheld::pasted(s, "", block) {
                pending.withheld.push((node.id, w));
            }
        }
        Value::Seq(items) => items.iter().for_each(|n| pasted(n, text, pending)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| pasted(v, text, pending)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_KEY_BYTES;
    use crate::config::tests::parse_str;

    /// A key over the limit is a problem at its mapping, at its line; a
    /// key at the limit is read (here: unknown, and shown cut). Nothing under either, nor
    /// under another unknown key, is expanded or withheld: its key is the
    /// problem.
    #[test]
    fn a_long_key_is_refused_at_its_mapping_and_nothing_under_it_is_read() {
        let (long, fits) = ("k".repeat(MAX_KEY_BYTES + 1), "k".repeat(MAX_KEY_BYTES));
        let unset = "${HOTPROXY_PREPARE_UNSET}";
        let text = format!(
            "listeners:\n  - name: public\n    \"{long}\": {{ x: \"{unset}\" }}\n    \
             \"{fits}\": {{ x: \"{unset}\" }}\nother: {{ y: \"{unset}\" }}\n"
        );
        let e = parse_str(&text).unwrap_err();
        let r = e.render();
        assert!(
            r.contains(
                "line 3: listeners[0]: a key of 257 bytes, more than the 256 a key may have: \
                 refused, its value not read"
            ),
            "{r}"
        );
        // Shown cut (`…`), as any key past 64 bytes.
        assert!(
            r.contains(&format!(
                "line 4: listeners[0].{}…: unknown key",
                &fits[..64]
            )),
            "{r}"
        );
        assert!(r.contains("line 5: other: unknown key `other`"), "{r}");
        assert!(!r.contains("HOTPROXY_PREPARE_UNSET"), "{r}");
    }

    /// A key shown escaped (quotes as they are), cut past 64 bytes at a
    /// character, or withheld when it holds a line break or a PEM marker.
    #[test]
    fn a_key_is_shown_escaped_cut_or_withheld() {
        use super::shown_key;
        let long = format!("k{}", "é".repeat(40));
        for (key, shown) in [
            ("poll_interval", "poll_interval".to_owned()),
            ("it's \"x\"", "it's \"x\"".to_owned()),
            (
                "a\u{1b}[2J\u{7}\u{202e}\\",
                "a\\u{1b}[2J\\u{7}\\u{202e}\\\\".to_owned(),
            ),
            ("a\nb", "<withheld key: text of several lines>".to_owned()),
            ("x -----BEGIN y", "<withheld key: a PEM block>".to_owned()),
            (&long, format!("{}…", &long[..63])),
        ] {
            assert_eq!(shown_key(key), shown, "{key:?}");
        }
    }
}
