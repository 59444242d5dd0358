//! The file as a YAML tree with line numbers, read into the raw structs by a deserializer that keeps going.
//!
//! `hotproxy check` must list every problem in one run, like `nginx -t`;
//! serde stops at the first. So the text is parsed to a tree first, and the
//! raw structs' own `Deserialize` impls are run over it by [`De`], which
//! records instead of failing: an unknown key (with the keys that fit
//! there), a value of the wrong type (then read as empty), a missing
//! required field (then filled with an empty placeholder and read again).
//! Every problem has its line and field path; every field's line is kept
//! so the resolver's problems (by field path) get a line too.
//!
//! The schema is the raw structs themselves (serde hands over each
//! struct's field names): a field added there is known here at once.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};

mod near;
mod prepare;
mod read;
mod tags;
use super::block_scalar::is_block_scalar;
pub use prepare::{
    MAX_KEY_BYTES, Pending, cut_escaped, expand_env, field, long_keys, pasted, shown_key,
    shown_under_tag, shown_written,
};
use read::De;
use serde_saphyr::MergeKeyPolicy;

/// A YAML value with where it was written.
#[derive(Clone, Debug)]
pub struct Node {
    value: Value,
    /// 1-based; 0 for a placeholder.
    pub line: usize,
    id: usize,
    /// Filled in for a missing field or in place of a wrong-typed section:
    /// reads as empty without a further problem.
    placeholder: bool,
    /// Where the value's text is in the source (bytes), and, for a scalar
    /// YAML typed (`on`, `1.10`, `0644`), that text as written: a text
    /// field gets what the operator wrote, not `true`, `1.1` or `644`.
    span: Option<(usize, usize)>,
    written: Option<String>,
    /// Of a `!!null` node with text: that text was written as a block
    /// scalar (`|`, `>`; a token pasted on one line below it too), so no
    /// message shows it ([`shown_written`]).
    block: bool,
    /// The YAML tag written on the value (`!custom`, or a core tag in full:
    /// `tag:yaml.org,2002:binary`), for the reader to refuse all but the
    /// core tag of what the field reads.
    tag: Option<String>,
}

#[derive(Clone, Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let s = serde_saphyr::Spanned::<serde_saphyr::Tagged<Value>>::deserialize(d)?;
        // The text is read where the value was written: for an alias
        // (`*v`) that is its anchor's value, not the alias.
        let span = s.defined.span();
        let serde_saphyr::Tagged(value, tag) = s.value;
        Ok(Node {
            value,
            line: s.referenced.line() as usize,
            id: 0,
            placeholder: false,
            span: span
                .byte_offset()
                .zip(span.byte_len())
                .map(|(o, l)| (o as usize, l as usize)),
            written: None,
            block: false,
            tag,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    items.push(n);
                }
                Ok(Value::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut entries = Vec::new();
                // Keys as written: `on:` is the text "on", not YAML 1.1's `true`.
                type Key = serde_saphyr::Spanned<serde_saphyr::Tagged<String>>;
                while let Some((k, v)) = a.next_entry::<Key, Node>()? {
                    let serde_saphyr::Tagged(text, tag) = k.value;
                    let span = k.defined.span();
                    let key = Node {
                        value: Value::Str(text),
                        line: k.referenced.line() as usize,
                        id: 0,
                        placeholder: false,
                        span: span
                            .byte_offset()
                            .zip(span.byte_len())
                            .map(|(o, l)| (o as usize, l as usize)),
                        written: None,
                        block: false,
                        tag,
                    };
                    entries.push((key, v));
                }
                Ok(Value::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML syntax error: 1-based line (0 when unknown) and the parser's words.
#[derive(Clone, Debug)]
pub struct Syntax {
    pub line: usize,
    pub location: String,
    pub message: String,
}

/// The most YAML events that aliases (`*name`, `<<: *name`) may replay in
/// one file: ten times a large configuration's node count. saphyr's default,
/// a million, lets a few hundred bytes of nested anchors build a tree of
/// hundreds of thousands of nodes (and a problem line for each) in a pod
/// with a 256 MiB limit.
pub const MAX_ALIAS_EVENTS: usize = 50_000;

/// The most text one file may read as (every scalar, each time an alias
/// repeats it): four times the largest file. saphyr's default, 64 MiB,
/// let a 3 MB file (one scalar, twenty aliases) take 270 MB to read.
pub const MAX_TEXT_BYTES: usize = 4 * super::MAX_CONFIG_BYTES as usize;

/// Parse `text` into a tree, or say where its YAML is broken; with the
/// problems of tags the tree cannot show: on a merge value (`<<: !custom
/// {...}`), which the parser merges into its parent and drops ([`tags`]).
pub fn parse(text: &str) -> Result<(Node, Vec<Found>), Syntax> {
    let (mut root, lost) = tags::parse(text, |t| saphyr(t, MergeKeyPolicy::Merge))?;
    let mut found = Vec::new();
    if text.contains("<<") {
        // `<<` as an ordinary key: each merge value, with its tag, where
        // it is written.
        let as_written = tags::parse(text, |t| saphyr(t, MergeKeyPolicy::AsOrdinary));
        let on_merge_values = match &as_written {
            Ok((tree, _)) => tags::merge_values(tree, text, &mut found),
            Err(_) => Vec::new(),
        };
        // A tag blanked for the parser and on no node must have been on
        // a merge value, refused above; never dropped.
        if let Some(b) = lost.into_iter().find(|b| !on_merge_values.contains(&b.at)) {
            return Err(b.error);
        }
    } else if let Some(b) = lost.into_iter().next() {
        return Err(b.error);
    }
    let mut next = 1;
    // An alias (`*v`) carries its anchor's place: asked once per place.
    super::block_scalar::remembering(text, || number(&mut root, &mut next, text));
    Ok((root, found))
}

/// `text` as saphyr reads it, merge keys (`<<`) as `merge` says.
fn saphyr(text: &str, merge: MergeKeyPolicy) -> Result<Node, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.merge_keys = merge;
    if merge == MergeKeyPolicy::AsOrdinary {
        // `<<` twice in one mapping is two merges, not a duplicate key.
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    }
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    // `!!binary` text is kept as written (not base64-decoded into the
    // field), for the reader to refuse the tag at its field.
    options.ignore_binary_tag_for_string = true;
    // What aliases replay is bounded above, whatever the number of uses.
    // saphyr's ratio guard (more than 100 aliases and ten per anchor)
    // refused one anchor shared by many routes or upstreams, which
    // replays a few events each: what anchors are for.
    if let Some(budget) = options.budget.as_mut() {
        budget.enforce_alias_anchor_ratio = false;
        budget.max_total_scalar_bytes = MAX_TEXT_BYTES;
        budget.max_recorded_anchor_bytes = MAX_TEXT_BYTES;
        // One depth for `[[...]]` as for indented blocks, so one message.
        budget.flow_nesting_limit = budget.max_depth;
    }
    serde_saphyr::from_str_with_options(text, options)
}

/// saphyr's error as a [`Syntax`] error, in an operator's words.
fn syntax(e: &serde_saphyr::Error) -> Syntax {
    // saphyr's first line reads "error: line L column C: message";
    // the rest is a source excerpt we don't need in a log line.
    let first = e.to_string();
    let first = first
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_owned();
    let first = match first.split_once(": alias replay limit exceeded") {
        Some((loc, _)) => format!(
            "{loc}: its aliases expand to more than {MAX_ALIAS_EVENTS} YAML events; \
             refused as an alias bomb (write the repeated parts out, or repeat less)"
        ),
        None => first,
    };
    let first = match (first.split_once(": "), in_words(e)) {
        (Some((loc, msg)), words) if loc.starts_with("line ") => {
            format!("{loc}: {}", words.as_deref().unwrap_or(msg))
        }
        (_, Some(words)) => words,
        _ => first,
    };
    match first.split_once(": ") {
        Some((loc, msg)) if loc.starts_with("line ") => Syntax {
            line: loc
                .trim_start_matches("line ")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            location: loc.to_owned(),
            message: msg.to_owned(),
        },
        _ => Syntax {
            line: 0,
            location: "file".into(),
            message: first,
        },
    }
}

/// The parser's own limits in an operator's words: saphyr says them as
/// its internals (`budget breached: Depth { depth: 65 }`, a Rust function
/// to call for a second document). `None` for anything else.
fn in_words(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach as B;
    let limits = serde_saphyr::Budget::default();
    let many = |n: usize, what: &str| {
        format!("more than {n} {what}; refused (a configuration holds a few thousand at most)")
    };
    // Under the excerpt, and the alias the error was met through.
    let mut e = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    let words = match e {
        // The key as every key is shown ([`shown_key`]): the parser's
        // words quoted it whole (a pasted key's BEGIN line and body, a
        // bidi override), and ended with advice for the embedding program.
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => match key {
            Some(key) => format!("duplicate mapping key: {}", shown_key(key)),
            None => "a key set twice in one section; keep one".to_owned(),
        },
        serde_saphyr::Error::MultipleDocuments { .. } => SECOND_DOCUMENT.to_owned(),
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            B::Depth { .. } => too_deep(limits.max_depth),
            B::Documents { .. } => SECOND_DOCUMENT.to_owned(),
            B::Nodes { .. } => format!(
                "holds {}",
                many(limits.max_nodes, "YAML values (keys, values, list items)")
            ),
            B::Events { .. } => format!("holds {}", many(limits.max_events, "YAML events")),
            B::Anchors { .. } => many(limits.max_anchors, "anchors (`&name`)"),
            B::Aliases { .. } => many(limits.max_aliases, "aliases (`*name`)"),
            B::MergeKeys { .. } => many(limits.max_merge_keys, "merge keys (`<<:`)"),
            B::ScalarBytes { .. } | B::RecordedAnchorBytes { .. } => format!(
                "its text, with what its aliases repeat, is more than {MAX_TEXT_BYTES} bytes; \
                 refused as an alias bomb (write the repeated parts out, or repeat less)"
            ),
            _ => "past a limit of the YAML parser; refused".to_owned(),
        },
        // The scanner's own depth guard for `[[[...` and `{a: {a: ...`.
        _ if e.to_string().contains("recursion limit exceeded") => too_deep(limits.max_depth),
        _ => return None,
    };
    Some(words)
}

const SECOND_DOCUMENT: &str = "a second YAML document starts here (after a `---` line); a \
    configuration file is one document: remove the `---` line, and what follows it or merge it";

fn too_deep(max: usize) -> String {
    format!("nested more than {max} levels deep; refused (a configuration nests a few levels)")
}

fn number(node: &mut Node, next: &mut usize, text: &str) {
    node.id = *next;
    *next += 1;
    // And `!!null`'s text: what it may be written on is the reader's
    // business (`!!null 1048576` is not an unset limit).
    let null_tag = matches!(node.value, Value::Null) && node.tag.is_some();
    if null_tag
        || matches!(
            node.value,
            Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_)
        )
    {
        node.written = node
            .span
            .and_then(|(at, len)| text.get(at..at + len))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        // The parser's span of a block scalar starts at its text, on the
        // line below the header: the header is looked for before it.
        node.block = null_tag
            && node.written.is_some()
            && node.span.is_some_and(|(at, _)| is_block_scalar(text, at));
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| number(n, next, text)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            number(k, next, text);
            number(v, next, text);
        }),
        _ => {}
    }
}

/// One problem found in the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub line: usize,
    /// Field path, e.g. `listeners[0].limits.max_connections`.
    pub path: String,
    pub message: String,
}

/// What reading the tree found: the problems, the line of every field,
/// and the path each wanted node was read at ([`Pending`]).
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Found>,
    pub lines: HashMap<String, usize>,
    pub paths: HashMap<usize, String>,
}

impl Report {
    /// The line of `path` or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Read `root` into `T`, recording every problem instead of stopping at
/// the first. `None` when `T` could not be built at all (even with
/// placeholders); the report says why. The report has the path of each
/// node of `wanted` that was read (one under an unknown key never is).
pub fn read<T: DeserializeOwned>(
    root: &mut Node,
    mut wanted: HashSet<usize>,
) -> (Option<T>, Report) {
    // Problems that led to a fix of the tree: the fixed tree no longer
    // shows them, so they are kept across attempts.
    let mut fixed: Vec<Found> = Vec::new();
    let mut lines = HashMap::new();
    let mut paths = HashMap::new();
    // The fields each struct was found to require: known, they are filled
    // in wherever missing within one attempt ([`Rec::required`]).
    let mut required = HashMap::new();
    // What the last attempt found besides its fixes.
    let mut last = Vec::new();
    // Bounded: each attempt fixes at least one node (a list stops at its
    // first broken item; a missing field once learned is filled in every
    // item of a list in one attempt).
    for _ in 0..MAX_ATTEMPTS {
        let rec = RefCell::new(Rec {
            wanted: std::mem::take(&mut wanted),
            required: std::mem::take(&mut required),
            ..Rec::default()
        });
        rec.borrow_mut().read_at(root, "");
        let result = T::deserialize(De {
            node: root,
            path: String::new(),
            rec: &rec,
        });
        let rec = rec.into_inner();
        wanted = rec.wanted;
        required = rec.required;
        paths.extend(rec.paths);
        if rec.fixes.is_empty() || result.is_ok() {
            let mut problems = fixed;
            // Read whole with required fields filled in, their fixes
            // needed by no further attempt: their problems are the file's.
            let filled = rec.fixes.into_iter().map(|(_, _, found)| found);
            problems.extend(filled.filter(|found| !found.message.is_empty()));
            problems.extend(rec.problems);
            problems.dedup();
            return (
                result.ok(),
                Report {
                    problems,
                    lines: rec.lines,
                    paths,
                },
            );
        }
        lines = rec.lines;
        last = rec.problems;
        for (id, fix, problem) in rec.fixes {
            apply(root, id, &fix);
            // Fixes inside placeholders have nothing to say.
            if !problem.message.is_empty() {
                fixed.push(problem);
            }
        }
    }
    // Not read whole: what was found is still what the operator must fix
    // first (an empty report would say "0 problem(s)"), with the last
    // attempt's other problems, and a count that is not taken for all.
    // The note first: the problems are listed a hundred at most, and it
    // says the count is not the file's.
    let mut problems = vec![Found {
        line: 0,
        path: String::new(),
        message: format!(
            "more problems not read: the file was read {MAX_ATTEMPTS} times, each fixing what the last found; fix these and check again"
        ),
    }];
    fixed.extend(last);
    fixed.dedup();
    problems.extend(fixed);
    (
        None,
        Report {
            problems,
            lines,
            paths,
        },
    )
}

/// Attempts at reading a tree, each after fixing what the last one found.
const MAX_ATTEMPTS: usize = 256;

enum Fix {
    /// Add this key, with a placeholder value, to the mapping.
    AddKey(String),
    /// Make the node an empty placeholder mapping.
    EmptyMap,
}

fn apply(node: &mut Node, id: usize, fix: &Fix) -> bool {
    if node.id == id {
        match fix {
            Fix::AddKey(key) => {
                if let Value::Map(entries) = &mut node.value {
                    entries.push((
                        placeholder(Value::Str(key.clone())),
                        placeholder(Value::Null),
                    ));
                }
            }
            Fix::EmptyMap => {
                node.value = Value::Map(Vec::new());
                node.placeholder = true;
            }
        }
        return true;
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().any(|n| apply(n, id, fix)),
        Value::Map(entries) => entries.iter_mut().any(|(_, v)| apply(v, id, fix)),
        _ => false,
    }
}

fn placeholder(value: Value) -> Node {
    Node {
        value,
        line: 0,
        // Placeholders are never the target of a fix by id, except a
        // placeholder mapping needing keys: give each its own id.
        id: usize::MAX
            - PLACEHOLDERS.with(|c| {
                let n = c.get() + 1;
                c.set(n);
                n
            }),
        placeholder: true,
        span: None,
        written: None,
        block: false,
        tag: None,
    }
}

thread_local! {
    static PLACEHOLDERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[derive(Default)]
struct Rec {
    problems: Vec<Found>,
    lines: HashMap<String, usize>,
    fixes: Vec<(usize, Fix, Found)>,
    /// The nodes whose paths are wanted, and those read so far.
    wanted: HashSet<usize>,
    /// For each struct (its name and fields, as serde names them), the
    /// fields an earlier attempt found it requires: filled in where
    /// missing ([`read::De`]), the struct is read on, and the items after
    /// it in its list too. Each broken item took an attempt, and a list of
    /// 300 routes missing their `upstream` lost those past the 256th.
    required: HashMap<(&'static str, &'static [&'static str]), Vec<&'static str>>,
    paths: HashMap<usize, String>,
}

impl Rec {
    /// `node` is read at `path`: kept if its path is wanted.
    fn read_at(&mut self, node: &Node, path: &str) {
        if self.wanted.contains(&node.id) {
            self.paths.entry(node.id).or_insert_with(|| path.to_owned());
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::block_scalar::is_block_scalar;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Top {
        pub(super) watch: Option<Watch>,
        #[serde(default)]
        pub(super) items: Vec<Item>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Watch {
        pub(super) debounce: Option<String>,
        pub(super) poll_interval: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Item {
        pub(super) name: String,
        pub(super) size: Option<usize>,
        pub(super) enabled: Option<bool>,
    }

    pub(super) fn run(text: &str) -> (Option<Top>, Report) {
        let (mut root, found) = parse(text).unwrap();
        let (top, mut report) = read::<Top>(&mut root, HashSet::new());
        report.problems.extend(found);
        (top, report)
    }

    /// Six levels of anchors, each listing the one before nine times: a
    /// few hundred bytes that replay ~750,000 YAML events.
    pub(in crate::config) fn alias_bomb() -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            let previous = vec![format!("*a{}", i - 1); 9].join(", ");
            text += &format!("a{i}: &a{i} [{previous}]\n");
        }
        text
    }

    /// A bomb is refused while parsing, before a tree of its size is built,
    /// with one problem saying why; a few aliases still read.
    #[test]
    fn an_alias_bomb_is_refused() {
        let e = parse(&alias_bomb()).unwrap_err();
        assert!(
            e.message.contains(&format!(
                "aliases expand to more than {MAX_ALIAS_EVENTS} YAML events"
            )),
            "{e:?}"
        );
        assert!(e.message.len() < 300, "{e:?}");
        let (root, _) = parse("a: &a [x, y]\nb: [*a, *a, *a]\n").unwrap();
        let Value::Map(entries) = root.value else {
            panic!("{root:?}")
        };
        assert!(matches!(&entries[1].1.value, Value::Seq(s) if s.len() == 3));
    }

    #[test]
    fn every_problem_in_one_read() {
        let (top, report) = run(
            "watch:\n  debounce: 1s\n  pol_interval: 2s\nitems:\n  - name: a\n    size: lots\n  - size: 3\n    colour: red\n  - name: c\n    enabled: maybe\n",
        );
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        assert!(got.contains(&(3, "watch.pol_interval", "unknown key `pol_interval` (did you mean `poll_interval`? allowed here: debounce, poll_interval)")), "{got:#?}");
        assert!(
            got.contains(&(
                6,
                "items[0].size",
                "expected a whole number, found \"lots\""
            )),
            "{got:#?}"
        );
        assert!(
            got.contains(&(7, "items[1].name", "missing `name`: it is required here")),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|p| p.0 == 8 && p.1 == "items[1].colour"),
            "{got:#?}"
        );
        assert!(
            got.contains(&(
                10,
                "items[2].enabled",
                "expected true or false, found \"maybe\""
            )),
            "{got:#?}"
        );
        assert_eq!(got.len(), 5, "{got:#?}");
        // Read on, with the bad values empty: the rest is there.
        let top = top.unwrap();
        assert_eq!(top.items.len(), 3);
        assert_eq!(top.items[2].name, "c");
        assert_eq!(report.line_of("items[2].name"), Some(9));
        assert_eq!(report.line_of("items[2].nothing.deeper"), Some(9));
    }

    #[test]
    fn a_section_that_is_not_a_mapping() {
        let (top, report) = run("watch: [1, 2]\nitems:\n  - name: a\n    nope: 1\n");
        let paths: Vec<&str> = report.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["watch", "items[0].nope"], "{:#?}", report.problems);
        assert!(top.is_some());
    }

    #[test]
    fn text_fields_get_the_text_as_written() {
        let (top, report) =
            run("items:\n  - { name: on }\n  - { name: 0644 }\n  - { name: 1.10, enabled: on }\n");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let names: Vec<String> = top.unwrap().items.into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["on", "0644", "1.10"]);
    }

    /// A tag is refused at its field unless it is the core tag of the
    /// field's type; `!!binary` text stays as written, not decoded.
    #[test]
    fn tags_other_than_the_core_one_of_the_field_are_refused() {
        let (top, report) = run(concat!(
            "watch: !!map { debounce: !!str 1s }\n",
            "items:\n",
            "  - name: !custom a\n",
            "  - name: !!binary YQ==\n",
            "  - { name: !!str b, size: !!int 3, enabled: !!bool true }\n",
            "  - { name: c, size: !!str 4, enabled: !!null }\n",
            "  - { !k name: e }\n",
        ));
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        let refused = |tag: &str, fits: &str| {
            format!(
                "YAML tag `{tag}` refused: a value here takes no tag, or {fits} (a configuration \
                 is read as plain YAML)"
            )
        };
        assert_eq!(
            got,
            [
                (3, "items[0].name", refused("!custom", "`!!str`").as_str()),
                (4, "items[1].name", refused("!!binary", "`!!str`").as_str()),
                (6, "items[3].size", refused("!!str", "`!!int`").as_str()),
                (
                    7,
                    "items[4].name",
                    "YAML tag `!k` on a key refused: a key takes no tag, or `!!str`"
                ),
            ],
            "{got:#?}"
        );
        let top = top.unwrap();
        assert_eq!(top.items[1].name, "YQ==");
        assert_eq!(top.items[2].size, Some(3));
        assert_eq!(top.items[3].enabled, None);
    }

    /// The text before a value tells a block scalar (`|`, `>`, with
    /// chomping, an indentation digit, a comment, after a tag or anchor)
    /// from a plain or quoted one.
    #[test]
    fn a_block_scalar_is_told_by_its_header() {
        let text = "a: |\n  t1\nb: >- # c\n\n  t2\nc: !!str |2\n  t3\nd: &k >\n  t4\n\
                    e: plain\nf: \"q|\"\ng: '>'\nh: x # |\ni: [ a, b ]\nj:\n  - |+\n    t5\n";
        let mut blocks = Vec::new();
        let mut nodes = vec![parse(text).unwrap().0];
        while let Some(n) = nodes.pop() {
            match n.value {
                Value::Map(entries) => nodes.extend(entries.into_iter().rev().map(|(_, v)| v)),
                Value::Seq(items) => nodes.extend(items.into_iter().rev()),
                Value::Str(s) => blocks.push((s, is_block_scalar(text, n.span.unwrap().0))),
                _ => panic!("{n:?}"),
            }
        }
        let got: Vec<(&str, bool)> = blocks.iter().map(|(s, b)| (s.as_str(), *b)).collect();
        assert_eq!(
            got,
            [
                ("t1\n", true),
                ("\nt2", true),
                ("t3\n", true),
                ("t4\n", true),
                ("plain", false),
                ("q|", false),
                (">", false),
                ("x", false),
                ("a", false),
                ("b", false),
                ("t5\n", true),
            ]
        );
    }

    #[test]
    fn a_clean_file_has_no_problems() {
        let (top, report) =
            run("watch: { debounce: 1s }\nitems: [ { name: a, size: 2, enabled: true } ]\n");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let top = top.unwrap();
        assert_eq!(top.items[0].size, Some(2));
        assert_eq!(top.items[0].enabled, Some(true));
        let watch = top.watch.unwrap();
        assert_eq!(watch.debounce.as_deref(), Some("1s"));
        assert_eq!(watch.poll_interval, None);
    }
}
