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
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

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
        let s = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: s.value,
            line: s.referenced.line() as usize,
            id: 0,
            placeholder: false,
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
                while let Some((k, v)) = a.next_entry::<serde_saphyr::Spanned<String>, Node>()? {
                    let key = Node {
                        value: Value::Str(k.value),
                        line: k.referenced.line() as usize,
                        id: 0,
                        placeholder: false,
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
#[derive(Debug)]
pub struct Syntax {
    pub line: usize,
    pub location: String,
    pub message: String,
}

/// Parse `text` into a tree, or say where its YAML is broken.
pub fn parse(text: &str) -> Result<Node, Syntax> {
    let mut root: Node = serde_saphyr::from_str(text).map_err(|e| {
        // saphyr's first line reads "error: line L column C: message";
        // the rest is a source excerpt we don't need in a log line.
        let first = e.to_string();
        let first = first
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_owned();
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
    })?;
    let mut next = 1;
    number(&mut root, &mut next);
    Ok(root)
}

fn number(node: &mut Node, next: &mut usize) {
    node.id = *next;
    *next += 1;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| number(n, next)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            number(k, next);
            number(v, next);
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

/// What reading the tree found: the problems, and the line of every field.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Found>,
    pub lines: HashMap<String, usize>,
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
/// placeholders); the report says why.
pub fn read<T: DeserializeOwned>(root: &mut Node) -> (Option<T>, Report) {
    // Problems that led to a fix of the tree: the fixed tree no longer
    // shows them, so they are kept across attempts.
    let mut fixed: Vec<Found> = Vec::new();
    // Bounded: each attempt fixes at least one node, and files are small.
    for _ in 0..64 {
        let rec = RefCell::new(Rec::default());
        let result = T::deserialize(De {
            node: root,
            path: String::new(),
            rec: &rec,
        });
        let rec = rec.into_inner();
        if rec.fixes.is_empty() || result.is_ok() {
            let mut problems = fixed;
            problems.extend(rec.problems);
            problems.dedup();
            return (
                result.ok(),
                Report {
                    problems,
                    lines: rec.lines,
                },
            );
        }
        for (id, fix, problem) in rec.fixes {
            apply(root, id, &fix);
            // Fixes inside placeholders have nothing to say.
            if !problem.message.is_empty() {
                fixed.push(problem);
            }
        }
    }
    (None, Report::default())
}

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
}

/// The error [`De`] hands serde: `recorded` once it is in the report, so
/// the levels it passes through do not report it again.
#[derive(Debug)]
pub struct Error {
    message: String,
    recorded: bool,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error {
            message: msg.to_string(),
            recorded: false,
        }
    }
}

/// A deserializer over one node that records problems and keeps going.
struct De<'a> {
    node: &'a Node,
    path: String,
    rec: &'a RefCell<Rec>,
}

impl De<'_> {
    fn record(&self, message: String) {
        if self.node.placeholder {
            return;
        }
        self.rec.borrow_mut().problems.push(Found {
            line: self.node.line,
            path: self.path.clone(),
            message,
        });
    }

    /// "expected X, found Y" for the node, recorded.
    fn wrong(&self, expected: &str) {
        self.record(self.mismatch(expected));
    }

    /// "expected X, found Y" for the node.
    fn mismatch(&self, expected: &str) -> String {
        let found = match &self.node.value {
            Value::Null => "nothing".to_owned(),
            Value::Bool(b) => format!("`{b}`"),
            Value::Int(n) => format!("`{n}`"),
            Value::UInt(n) => format!("`{n}`"),
            Value::Float(n) => format!("`{n}`"),
            Value::Str(s) => format!("{s:?}"),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping (keys and values)".to_owned(),
        };
        format!("expected {expected}, found {found}")
    }

    fn text(&self) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(n) => Some(n.to_string()),
            Value::UInt(n) => Some(n.to_string()),
            Value::Float(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn unsigned(&self) -> Option<u64> {
        match &self.node.value {
            Value::UInt(n) => Some(*n),
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// An error from the visitor for this node: recorded here (with the
    /// node's line and path) unless a deeper level already did.
    fn fail(&self, mut e: Error) -> Error {
        if !e.recorded {
            self.record(e.message.clone());
            e.recorded = true;
        }
        e
    }
}

macro_rules! unsigned {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let n = if self.node.placeholder { Some(0) } else { self.unsigned() };
            let n = n.unwrap_or_else(|| {
                self.wrong("a whole number");
                0
            });
            v.visit_u64(n).map_err(|e| self.fail(e))
        }
    )*};
}

macro_rules! signed {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let n = match &self.node.value {
                _ if self.node.placeholder => Some(0),
                Value::Int(n) => Some(*n),
                Value::UInt(n) => i64::try_from(*n).ok(),
                Value::Str(s) => s.trim().parse().ok(),
                _ => None,
            };
            let n = n.unwrap_or_else(|| {
                self.wrong("a whole number");
                0
            });
            v.visit_i64(n).map_err(|e| self.fail(e))
        }
    )*};
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.node.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(n) => v.visit_i64(*n),
            Value::UInt(n) => v.visit_u64(*n),
            Value::Float(n) => v.visit_f64(*n),
            Value::Str(s) => v.visit_str(s),
            Value::Seq(items) => v.visit_seq(SeqAcc::new(items, &self)),
            Value::Map(entries) => v.visit_map(MapAcc::new(entries, None, &self)),
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            _ if self.node.placeholder => false,
            _ => {
                self.wrong("true or false");
                false
            }
        };
        v.visit_bool(b).map_err(|e| self.fail(e))
    }

    unsigned!(
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64
    );
    signed!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let n = match &self.node.value {
            Value::Float(n) => *n,
            Value::Int(n) => *n as f64,
            Value::UInt(n) => *n as f64,
            _ if self.node.placeholder => 0.0,
            _ => {
                self.wrong("a number");
                0.0
            }
        };
        v.visit_f64(n).map_err(|e| self.fail(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let s = if self.node.placeholder {
            String::new()
        } else {
            self.text().unwrap_or_else(|| {
                self.wrong("text");
                String::new()
            })
        };
        v.visit_str(&s).map_err(|e| self.fail(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.node.placeholder || matches!(self.node.value, Value::Null) {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.node.value {
            Value::Seq(items) => v.visit_seq(SeqAcc::new(items, &self)),
            // `certs:` with nothing after it: an empty list.
            Value::Null => v.visit_seq(SeqAcc::new(&[], &self)),
            _ => {
                if !self.node.placeholder {
                    self.wrong("a list");
                }
                v.visit_seq(SeqAcc::new(&[], &self))
            }
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.node.value {
            Value::Map(entries) => v.visit_map(MapAcc::new(entries, None, &self)),
            Value::Null => v.visit_map(MapAcc::new(&[], None, &self)),
            _ => {
                if !self.node.placeholder {
                    self.wrong("a mapping (keys and values)");
                }
                v.visit_map(MapAcc::new(&[], None, &self))
            }
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let Value::Map(entries) = &self.node.value else {
            // A section that is not a mapping: said once, then read as an
            // empty one (its required fields silently filled) so the rest
            // of the file is still checked.
            let message = if self.node.placeholder {
                String::new()
            } else {
                self.mismatch("a mapping (keys and values)")
            };
            self.rec.borrow_mut().fixes.push((
                self.node.id,
                Fix::EmptyMap,
                Found {
                    line: self.node.line,
                    path: self.path.clone(),
                    message,
                },
            ));
            return Err(Error {
                message: "not a mapping".into(),
                recorded: true,
            });
        };
        let r = v.visit_map(MapAcc::new(entries, Some(fields), &self));
        match r {
            Err(e) if !e.recorded && e.message.starts_with("missing field `") => {
                let field = e.message["missing field `".len()..]
                    .trim_end_matches('`')
                    .to_owned();
                let problem = Found {
                    line: self.node.line,
                    path: self.path.clone(),
                    message: format!("missing `{field}`: it is required here"),
                };
                if self.node.placeholder {
                    // Inside a placeholder: fill silently.
                    self.rec.borrow_mut().fixes.push((
                        self.node.id,
                        Fix::AddKey(field),
                        Found {
                            message: String::new(),
                            ..problem
                        },
                    ));
                } else {
                    self.rec
                        .borrow_mut()
                        .fixes
                        .push((self.node.id, Fix::AddKey(field), problem));
                }
                Err(Error {
                    message: e.message,
                    recorded: true,
                })
            }
            r => r.map_err(|e| self.fail(e)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let s = self.text().unwrap_or_default();
        let d: de::value::StrDeserializer<'_, Error> = s.as_str().into_deserializer();
        v.visit_enum(d).map_err(|e| self.fail(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

struct SeqAcc<'a> {
    items: &'a [Node],
    i: usize,
    path: String,
    rec: &'a RefCell<Rec>,
}

impl<'a> SeqAcc<'a> {
    fn new(items: &'a [Node], parent: &De<'a>) -> SeqAcc<'a> {
        SeqAcc {
            items,
            i: 0,
            path: parent.path.clone(),
            rec: parent.rec,
        }
    }
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(node) = self.items.get(self.i) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.i);
        self.i += 1;
        if !node.placeholder {
            self.rec.borrow_mut().lines.insert(path.clone(), node.line);
        }
        seed.deserialize(De {
            node,
            path,
            rec: self.rec,
        })
        .map(Some)
    }
}

struct MapAcc<'a> {
    entries: &'a [(Node, Node)],
    i: usize,
    fields: Option<&'static [&'static str]>,
    path: String,
    rec: &'a RefCell<Rec>,
    value: Option<(&'a Node, String)>,
}

impl<'a> MapAcc<'a> {
    fn new(
        entries: &'a [(Node, Node)],
        fields: Option<&'static [&'static str]>,
        parent: &De<'a>,
    ) -> MapAcc<'a> {
        MapAcc {
            entries,
            i: 0,
            fields,
            path: parent.path.clone(),
            rec: parent.rec,
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        while let Some((k, v)) = self.entries.get(self.i) {
            self.i += 1;
            let key = match &k.value {
                Value::Str(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                Value::UInt(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => String::from("?"),
            };
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if let Some(fields) = self.fields
                && !fields.contains(&key.as_str())
            {
                self.rec.borrow_mut().problems.push(Found {
                    line: k.line,
                    path,
                    message: unknown_key(&key, fields),
                });
                continue;
            }
            if !k.placeholder {
                self.rec.borrow_mut().lines.insert(path.clone(), k.line);
            }
            self.value = Some((v, path));
            let d: de::value::StringDeserializer<Error> = key.into_deserializer();
            return seed.deserialize(d).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let (node, path) = self
            .value
            .take()
            .expect("serde asks for a value after its key");
        seed.deserialize(De {
            node,
            path,
            rec: self.rec,
        })
    }
}

/// "unknown key `pol_interval` (did you mean `poll_interval`?; allowed here: ...)".
fn unknown_key(key: &str, fields: &[&str]) -> String {
    let near = fields
        .iter()
        .map(|f| (distance(key, f), *f))
        .filter(|(d, f)| *d <= 2.max(f.len() / 4))
        .min();
    let allowed = fields.join(", ");
    match near {
        Some((_, f)) => {
            format!("unknown key `{key}` (did you mean `{f}`? allowed here: {allowed})")
        }
        None => format!("unknown key `{key}` (allowed here: {allowed})"),
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Top {
        watch: Option<Watch>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Watch {
        debounce: Option<String>,
        poll_interval: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        size: Option<usize>,
        enabled: Option<bool>,
    }

    fn run(text: &str) -> (Option<Top>, Report) {
        let mut root = parse(text).unwrap();
        read::<Top>(&mut root)
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
            got.contains(&(7, "items[1]", "missing `name`: it is required here")),
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
