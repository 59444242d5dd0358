//! YAML tags the parser cannot read a node with (blanked, parsed again, put back on the node) and tags on merge values, which it drops.
//!
//! saphyr reads a scalar by its core tag: `bind: !!int 127.0.0.1:8443`,
//! `!!bool yes-please`, `!!float abc`, any `!!timestamp`, `!!seq` on
//! text stop it with one error for the whole file, no field named and the
//! rest unchecked. So such a tag is blanked out of the text (replaced by a
//! local tag `!xxxx` of its length: every line, column and byte offset
//! stays), the text parsed again, and the tag put back on the node
//! written where it was: the reader then refuses it,
//! or the value of the wrong type, at its line and field like any other.
//!
//! A merge value's tag (`<<: !custom { ... }`) is dropped as saphyr merges
//! the mapping into its parent: [`merge_values`] reads the text with `<<`
//! as an ordinary key to find it.

use std::collections::{HashMap, HashSet};

use super::read::{CORE, shown_tag};
use super::{Found, Node, Syntax, Value};

/// The most tags blanked one parse at a time: past them, every other
/// core tag on a scalar is blanked at once (a parse each is quadratic).
const MAX_BLANKED: usize = 100;

/// A tag blanked out of the text for the parser.
pub(super) struct Blanked {
    /// The byte offset of its node (as the parser's error and the node's
    /// span give it).
    pub at: usize,
    /// As the tree keeps a tag: a core one in full (`tag:yaml.org,2002:int`).
    tag: String,
    /// What the parser said of it (past [`MAX_BLANKED`], of the tag it
    /// stopped at then).
    pub error: Syntax,
}

/// `text` as `parse` reads it, a tag it cannot read its node with blanked
/// and put back on the node; with the blanked tags no node took (a merge
/// value's, merged into its parent).
pub(super) fn parse(
    text: &str,
    parse: impl Fn(&str) -> Result<Node, serde_saphyr::Error>,
) -> Result<(Node, Vec<Blanked>), Syntax> {
    let directives = directives(text);
    let mut text = text.to_owned();
    let mut blanked: Vec<Blanked> = Vec::new();
    let mut bulk = false;
    loop {
        let e = match parse(&text) {
            Ok(mut root) => {
                let mut taken = vec![false; blanked.len()];
                restore(&mut root, &blanked, &mut taken);
                let lost = blanked
                    .into_iter()
                    .zip(taken)
                    .filter(|(_, t)| !t)
                    .map(|(b, _)| b)
                    .collect();
                return Ok((root, lost));
            }
            Err(e) => e,
        };
        let at = e.location().and_then(|l| l.span().byte_offset());
        let tag = at.and_then(|at| Some((at as usize, tag_before(&text, at as usize)?)));
        let blank = |text: &mut String, at, (start, end): (usize, usize), error| {
            let tag = resolved(&text[start..end], &directives);
            // A local tag of the same length, which saphyr reads any
            // node with: spaces would move a key's indentation.
            let local = format!("!{}", "x".repeat(end - start - 1));
            text.replace_range(start..end, &local);
            Blanked { at, tag, error }
        };
        match tag {
            Some((at, range)) if blanked.len() < MAX_BLANKED => {
                let error = super::syntax(&e);
                blanked.push(blank(&mut text, at, range, error));
            }
            Some((at, range)) if !bulk => {
                // Past them, every other core tag on a scalar (but
                // `!!str`, which fits any) is blanked at once, found in
                // one pass of the parser's events: one parse per tag is
                // quadratic, and the file was one syntax error. A tag
                // that would have read its node (`!!int 7`) reads it the
                // same once put back.
                bulk = true;
                let error = super::syntax(&e);
                for (other, range) in core_scalar_tags(&text, &blanked) {
                    if other != at {
                        blanked.push(blank(&mut text, other, range, error.clone()));
                    }
                }
                blanked.push(blank(&mut text, at, range, error));
            }
            _ => return Err(super::syntax(&e)),
        }
    }
}

/// Each core tag but `!!str` on a scalar of `text` whose node is not in
/// `blanked`: the node's byte offset and the tag's byte range.
fn core_scalar_tags(text: &str, blanked: &[Blanked]) -> Vec<(usize, (usize, usize))> {
    use serde_saphyr::granit_parser::{Event, Parser};
    let done: HashSet<usize> = blanked.iter().map(|b| b.at).collect();
    let events = Parser::new_from_str(text).map_while(Result::ok);
    events
        .filter_map(|(event, span)| match event {
            Event::Scalar(_, _, _, Some(tag)) if tag.handle() == CORE && tag.suffix() != "str" => {
                let at = span.start.byte_offset()?;
                (!done.contains(&at)).then_some(())?;
                Some((at, tag_before(text, at)?))
            }
            _ => None,
        })
        .collect()
}

/// The tag written just before byte `at` (after an anchor, if any): its
/// byte range.
fn tag_before(text: &str, at: usize) -> Option<(usize, usize)> {
    let mut end = at;
    // The tag, or an anchor (`&a !!int x` and `!!int &a x` alike) then it.
    for _ in 0..2 {
        let before = text.get(..end)?.trim_end();
        let start = if before.ends_with('>') {
            // Verbatim, `!<tag:yaml.org,2002:int>`: it may hold a `,`.
            before.rfind("!<")?
        } else {
            before
                .char_indices()
                .rfind(|(_, c)| c.is_whitespace() || matches!(c, '[' | '{' | ','))
                .map_or(0, |(i, c)| i + c.len_utf8())
        };
        let token = &before[start..];
        if token.starts_with('!') {
            return Some((start, before.len()));
        }
        if !token.starts_with('&') || start == 0 {
            return None;
        }
        end = start;
    }
    None
}

/// The `%TAG` directives before the document starts: (handle, prefix).
fn directives(text: &str) -> Vec<(&str, &str)> {
    let head = text.lines().take_while(|l| !l.starts_with("---"));
    head.filter_map(|l| {
        let mut words = l.strip_prefix("%TAG")?.split_whitespace();
        Some((words.next()?, words.next()?))
    })
    .collect()
}

/// A tag as the tree keeps it, as the parser resolves it (YAML 1.2
/// §6.8.2): `!!int` is `tag:yaml.org,2002:int`, and so is `!e!int` after
/// `%TAG !e! tag:yaml.org,2002:`; a local `!name` stays as written.
fn resolved(written: &str, directives: &[(&str, &str)]) -> String {
    if let Some(verbatim) = written.strip_prefix("!<") {
        return verbatim.trim_end_matches('>').to_owned();
    }
    // `!!`, a named `!name!`, or else the primary `!`.
    let handle = match written[1..].find('!') {
        Some(i) => &written[..i + 2],
        None => "!",
    };
    let suffix = &written[handle.len()..];
    match directives.iter().rev().find(|(h, _)| *h == handle) {
        Some((_, prefix)) => format!("{prefix}{suffix}"),
        None if handle == "!!" => format!("{CORE}{suffix}"),
        None => written.to_owned(),
    }
}

/// Each blanked tag back on the node at its offset (and on every copy an
/// alias made of it). A block mapping or list starts where its first key
/// or item does: the tag is the outer node's.
fn restore(node: &mut Node, blanked: &[Blanked], taken: &mut [bool]) {
    let mut first = HashMap::new();
    for (i, b) in blanked.iter().enumerate() {
        first.entry(b.at).or_insert(i);
    }
    put_back(node, &first, blanked, taken, None);
}

fn put_back(
    node: &mut Node,
    first: &HashMap<usize, usize>,
    blanked: &[Blanked],
    taken: &mut [bool],
    outer: Option<usize>,
) {
    let at = node.span.map(|(at, _)| at);
    if let Some(at) = at
        && outer != Some(at)
        && let Some(&i) = first.get(&at)
    {
        node.tag = Some(blanked[i].tag.clone());
        taken[i] = true;
    }
    match &mut node.value {
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|n| put_back(n, first, blanked, taken, at)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            put_back(k, first, blanked, taken, at);
            put_back(v, first, blanked, taken, at);
        }),
        _ => {}
    }
}

/// In `tree`, read with `<<` as an ordinary key: each tag on a merge value
/// other than `!!map` (on a list of mappings, `!!seq`, and `!!map` on each)
/// as a problem at `PATH.<<`; and the byte offsets of the merge values.
pub(super) fn merge_values(tree: &Node, text: &str, found: &mut Vec<Found>) -> Vec<usize> {
    let mut at = Vec::new();
    walk(tree, Some(""), text, found, &mut at);
    at
}

/// A path longer than any field's (of the schema's short keys, a header
/// name's at most): only under unknown keys, whose problem is the key.
const MAX_PATH_BYTES: usize = 1024;

/// `path`: `None` under a key refused for its length, or past
/// [`MAX_PATH_BYTES`], where the merge values' offsets are still taken
/// but no path is built (one per node, a key of 1 MiB over 49,000 items
/// copied 49 GiB) and no problem is said.
fn walk(node: &Node, path: Option<&str>, text: &str, found: &mut Vec<Found>, at: &mut Vec<usize>) {
    let path = path.filter(|p| p.len() <= MAX_PATH_BYTES);
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = path.map(|p| format!("{p}[{i}]"));
                walk(item, here.as_deref(), text, found, at);
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries {
                let name = match &key.value {
                    Value::Str(s) if s.len() > super::MAX_KEY_BYTES => None,
                    Value::Str(s) => Some(s.as_str()),
                    _ => Some("?"),
                };
                let here = match (path, name) {
                    (Some(path), Some(name)) => Some(super::field(path, name)),
                    _ => None,
                };
                if is_merge_key(key, text) {
                    merge_value(value, here.as_deref(), found, at);
                }
                walk(value, here.as_deref(), text, found, at);
            }
        }
        _ => {}
    }
}

/// `<<` as the parser merges it: plain (not `"<<"`), untagged or `!!merge`.
fn is_merge_key(key: &Node, text: &str) -> bool {
    matches!(&key.value, Value::Str(s) if s == "<<")
        && key
            .tag
            .as_deref()
            .is_none_or(|t| t.strip_prefix(CORE) == Some("merge"))
        && key
            .span
            .and_then(|(at, _)| text.get(at..))
            .is_some_and(|t| t.starts_with('<'))
}

fn merge_value(value: &Node, path: Option<&str>, found: &mut Vec<Found>, at: &mut Vec<usize>) {
    let mut refuse = |node: &Node, path: Option<String>, fits: &str| {
        at.extend(node.span.map(|(o, _)| o));
        let (Some(tag), Some(path)) = (&node.tag, path) else {
            return;
        };
        if tag.strip_prefix(CORE) == Some(fits) {
            return;
        }
        found.push(Found {
            line: node.line,
            path,
            message: format!(
                "YAML tag `{}` refused: a value here takes no tag, or `!!{fits}` (a \
                 configuration is read as plain YAML)",
                shown_tag(tag)
            ),
        });
    };
    match &value.value {
        Value::Seq(items) => {
            refuse(value, path.map(str::to_owned), "seq");
            for (i, item) in items.iter().enumerate() {
                refuse(item, path.map(|p| format!("{p}[{i}]")), "map");
            }
        }
        _ => refuse(value, path.map(str::to_owned), "map"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn refused(tag: &str, fits: &str) -> String {
        format!(
            "YAML tag `{tag}` refused: a value here takes no tag, or {fits} (a configuration \
             is read as plain YAML)"
        )
    }

    /// A core tag on text not of its type stopped the parser (one syntax
    /// error, no field): now it is a problem at its field like any other
    /// tag or type, every one in the same run, the rest still read.
    #[test]
    fn a_core_tag_on_text_not_of_its_type_is_a_problem_at_its_field() {
        let (top, report) = run(concat!(
            "watch: { debounce: !!int 127.0.0.1:8443, poll_interval: !!timestamp 2001-12-14 }\n",
            "items:\n",
            "  - { name: a, size: !!int abc, enabled: !!bool yes-please }\n",
            "  - name: &n !!float abc\n",
            "    size: !!int\n",
            "      12x\n",
            "  - { name: !!int [1], size: 3 }\n",
            "  - name: c\n",
            "    !!int enabled: true\n",
            "  - { name: !<tag:yaml.org,2002:bool> d, size: 4 }\n",
        ));
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "watch.debounce", refused("!!int", "`!!str`").as_str()),
                (
                    1,
                    "watch.poll_interval",
                    refused("!!timestamp", "`!!str`").as_str()
                ),
                (3, "items[0].size", "expected a whole number, found \"abc\""),
                (
                    3,
                    "items[0].enabled",
                    "expected true or false, found \"yes-please\""
                ),
                (4, "items[1].name", refused("!!float", "`!!str`").as_str()),
                (6, "items[1].size", "expected a whole number, found \"12x\""),
                (7, "items[2].name", refused("!!int", "`!!str`").as_str()),
                (7, "items[2].name", "expected text, found a list"),
                (
                    9,
                    "items[3].enabled",
                    "YAML tag `!!int` on a key refused: a key takes no tag, or `!!str`"
                ),
                (10, "items[4].name", refused("!!bool", "`!!str`").as_str()),
            ],
            "{got:#?}"
        );
        let top = top.unwrap();
        assert_eq!(top.items[3].enabled, Some(true));
        assert_eq!(top.items[4].size, Some(4));
    }

    /// A tag written through a `%TAG` handle is the tag it names (YAML 1.2
    /// §6.8.2): a core one (`!e!int` with `!e!` for `tag:yaml.org,2002:`,
    /// or the primary `!int` with `!` for it) reads exactly as `!!int`,
    /// also on text not of its type, which the parser stops at; it was
    /// refused there as the unknown tag `!e!int`. Any other is refused at
    /// its field and line, as is `!!int` once `%TAG !!` names another
    /// prefix.
    #[test]
    fn a_tag_through_a_tag_directive_is_the_tag_it_names() {
        let problems = |directive: &str, items: &str| {
            let (_, report) = run(&format!("{directive}\n---\nitems:\n{items}"));
            let got: Vec<(usize, String, String)> = report
                .problems
                .into_iter()
                .map(|p| (p.line, p.path, p.message))
                .collect();
            got
        };
        let items = "  - { name: a, size: TAG 3 }\n  - { name: b, size: TAG 12x }\n";
        let plain = problems("", &items.replace("TAG", "!!int"));
        let whole = |line: usize| {
            (
                line,
                "items[1].size".to_owned(),
                "expected a whole number, found \"12x\"".to_owned(),
            )
        };
        assert_eq!(plain, [whole(5)]);
        for (directive, tag) in [
            ("%TAG !e! tag:yaml.org,2002:", "!e!int"),
            ("%TAG ! tag:yaml.org,2002:", "!int"),
            ("%TAG !e! tag:yaml.org,2002:i", "!e!nt"),
        ] {
            assert_eq!(
                problems(directive, &items.replace("TAG", tag)),
                [whole(5)],
                "{directive} {tag}"
            );
        }
        for (directive, tag, shown) in [
            (
                "%TAG !e! tag:example.com,2000:",
                "!e!int",
                "!<tag:example.com,2000:int>",
            ),
            (
                "%TAG !! tag:example.com,2000:",
                "!!int",
                "!<tag:example.com,2000:int>",
            ),
        ] {
            let refused = refused(shown, "`!!int`");
            let got = problems(directive, &items.replace("TAG", tag));
            assert_eq!(
                got,
                [
                    (4, "items[0].size".to_owned(), refused.clone()),
                    (5, "items[1].size".to_owned(), refused.clone()),
                    whole(5),
                ],
                "{directive} {tag}"
            );
        }
    }

    /// Past the hundred tags the parser is run again for, one at a time,
    /// the rest are blanked at once: each is still a problem at its line
    /// and field, where the file was one syntax error ("invalid u64"); a
    /// core tag of the right type after them still reads.
    #[test]
    fn past_a_hundred_tags_the_parser_stops_at_each_is_a_problem() {
        let items: String = (0..150)
            .map(|i| format!("  - {{ name: &a{i} !!str n{i}, size: !!int many{i} }}\n"))
            .collect();
        let text = format!("items:\n{items}  - {{ name: !!str last, size: !!int 7 }}\n");
        let (top, report) = run(&text);
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(got.len(), 150, "{got:#?}");
        for (i, (line, path, message)) in got.into_iter().enumerate() {
            assert_eq!(line, i + 2);
            assert_eq!(path, format!("items[{i}].size"));
            assert_eq!(
                message,
                format!("expected a whole number, found \"many{i}\"")
            );
        }
        let top = top.unwrap();
        assert_eq!(top.items[149].name, "n149");
        assert_eq!(top.items[150].size, Some(7));
    }

    /// A merge value's tag was dropped as it was merged: now any but
    /// `!!map` (`!!seq` on a list, `!!map` on its items) is refused at
    /// `PATH.<<`; the merge itself still reads.
    #[test]
    fn a_tag_on_a_merge_value_is_refused() {
        let (top, report) = run(concat!(
            "base: &b { name: b, size: 2 }\n",
            "items:\n",
            "  - { <<: !custom { name: a }, size: 1 }\n",
            "  - <<: !!map { name: c }\n",
            "  - <<: !!seq [*b, !other { enabled: true }]\n",
            "  - <<: !!int { name: d }\n",
            "  - { \"<<\": 1, name: e }\n",
        ));
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        assert!(
            got.contains(&(3, "items[0].<<", refused("!custom", "`!!map`").as_str())),
            "{got:#?}"
        );
        assert!(
            got.contains(&(5, "items[2].<<[1]", refused("!other", "`!!map`").as_str())),
            "{got:#?}"
        );
        assert!(
            got.contains(&(6, "items[3].<<", refused("!!int", "`!!map`").as_str())),
            "{got:#?}"
        );
        // `base` and the quoted `"<<"` are unknown keys; nothing else.
        assert_eq!(got.len(), 5, "{got:#?}");
        let top = top.unwrap();
        assert_eq!(top.items[0].name, "a");
        assert_eq!(top.items[1].name, "c");
        assert_eq!(top.items[2].name, "b");
        assert_eq!(top.items[2].enabled, Some(true));
        assert_eq!(top.items[3].name, "d");
    }
}
