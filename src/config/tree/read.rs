//! The deserializer over a [`Node`] that records every problem and keeps going.

use std::cell::RefCell;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, IntoDeserializer, Visitor};

use super::super::withhold::{MAX_MESSAGE_BYTES, found_text, quoted};
use super::near::unknown_key;
use super::{Fix, Found, Node, Rec, Value};

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

    /// serde's words, the value shown as other values are: as written
    /// when plain, else escaped as Rust writes a string (a terminal
    /// escape never reaches the operator's screen; a pasted block or a
    /// `${NAME}` value is then withheld, cut or whole). A long value is cut
    /// so that the message fits [`MAX_MESSAGE_BYTES`] with the values
    /// allowed, which the operator needs: cut whole, as it was, their list
    /// went.
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        let expected = match expected {
            [] => "there are no variants".to_owned(),
            _ => format!("expected {}", one_of(expected)),
        };
        let words = "unknown variant , ".len() + expected.len();
        let shown = quoted(variant, MAX_MESSAGE_BYTES.saturating_sub(words));
        de::Error::custom(format!("unknown variant {shown}, {expected}"))
    }
}

/// "one of `a`, `b`": the values an enum field takes.
fn one_of(variants: &[&str]) -> String {
    let each: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
    format!("one of {}", each.join(", "))
}

/// A deserializer over one node that records problems and keeps going.
pub(super) struct De<'a> {
    pub(super) node: &'a Node,
    pub(super) path: String,
    pub(super) rec: &'a RefCell<Rec>,
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

    /// Required `field` missing from the node, a mapping: the fix adding
    /// it (a placeholder) for the next attempt, and its problem, at the
    /// field's own path, not its section's (the problems the resolver
    /// finds elsewhere in the section, a bad timeout, a route to nowhere,
    /// are still reported in the same run). Inside a placeholder, silent.
    fn missing(&self, field: &str) {
        let path = match self.path.as_str() {
            "" => field.to_owned(),
            at => format!("{at}.{field}"),
        };
        let message = match self.node.placeholder {
            true => String::new(),
            false => format!("missing `{field}`: it is required here"),
        };
        let line = self.node.line;
        let found = Found {
            line,
            path,
            message,
        };
        let fix = Fix::AddKey(field.to_owned());
        self.rec.borrow_mut().fixes.push((self.node.id, fix, found));
    }

    /// "expected X, found Y" for the node, recorded.
    fn wrong(&self, expected: &str) {
        self.record(self.mismatch(expected));
    }

    /// "expected X, found Y" for the node: a scalar YAML typed as the file
    /// has it (`1e3`, not `1000`), and for a whole number why it is not one;
    /// text or a scalar as written cut after 64 bytes, as a key is shown.
    fn mismatch(&self, expected: &str) -> String {
        let written = |parsed: String| self.node.written.clone().unwrap_or(parsed);
        // As written, escaped and cut as a key is (`1111…` of 500 digits).
        let shown = |w: &str| format!("`{}`", super::shown_written(w));
        let found = match &self.node.value {
            Value::Null => "nothing".to_owned(),
            Value::Bool(b) => shown(&written(b.to_string())),
            Value::Int(n) => shown(&written(n.to_string())),
            Value::UInt(n) => shown(&written(n.to_string())),
            Value::Float(n) => {
                let w = written(n.to_string());
                let digits = w.trim_start_matches(['-', '+']);
                let why = if expected != "a whole number" {
                    ""
                } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    // YAML reads a whole number past 64 bits as a float.
                    " (out of range)"
                } else {
                    " (written as a float)"
                };
                format!("{}{why}", shown(&w))
            }
            Value::Str(s) => found_text(s),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping (keys and values)".to_owned(),
        };
        format!("expected {expected}, found {found}")
    }

    /// The node's text: a scalar as written. A `!!null` node has none:
    /// the text written after the tag (refused by [`De::tag_fits`]) is
    /// not the field's value, nor quoted as one (a key pasted under
    /// `!!null |` is not a string, so nothing withholds it).
    fn text(&self) -> Option<String> {
        if matches!(self.node.value, Value::Null) {
            return None;
        }
        if let Some(written) = &self.node.written {
            return Some(written.clone());
        }
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(n) => Some(n.to_string()),
            Value::UInt(n) => Some(n.to_string()),
            Value::Float(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A YAML tag on the node other than the core one of what the field
    /// reads (`kinds`: `str`, `int`, ...), recorded: `!custom` was ignored
    /// and `!!binary` base64-decoded into the field. `!!null` on an empty
    /// value passes (what it reads as is the field's business); on text
    /// (`!!null 1048576`, which the parser reads as nothing) it is refused.
    fn tag_fits(&self, kinds: &[&str]) {
        let Some(tag) = &self.node.tag else {
            return;
        };
        let core = tag.strip_prefix(CORE);
        if core == Some("null") && matches!(self.node.value, Value::Null) {
            match self.node.written.as_deref() {
                None | Some("~" | "null" | "Null" | "NULL") => {}
                Some(text) => self.record(format!(
                    "YAML tag `!!null` on `{}` refused: `!!null` marks an empty value \
                     (nothing, `~` or `null`); remove the tag or the text",
                    super::shown_under_tag(text, self.node.block)
                )),
            }
            return;
        }
        if core.is_some_and(|c| kinds.contains(&c)) {
            return;
        }
        let fits: Vec<String> = kinds.iter().map(|k| format!("`!!{k}`")).collect();
        self.record(format!(
            "YAML tag `{}` refused: a value here takes no tag, or {} (a configuration \
             is read as plain YAML)",
            shown_tag(tag),
            fits.join(" or ")
        ));
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

/// The namespace of YAML's core tags: `!!str` is `tag:yaml.org,2002:str`.
pub(super) const CORE: &str = "tag:yaml.org,2002:";

/// Every core tag: what a value of any type may carry.
const ANY: &[&str] = &["str", "int", "float", "bool", "null", "seq", "map"];

/// A tag as an operator writes it: `!!binary`, `!custom`, `!<tag:x,2026:y>`;
/// escaped and cut as a key is (the parser decodes `%1B` in a tag to ESC).
pub(super) fn shown_tag(tag: &str) -> String {
    let shown = super::shown_key(tag);
    match shown.strip_prefix(CORE) {
        Some(core) => format!("!!{core}"),
        None if shown.starts_with('!') => shown.into_owned(),
        None => format!("!<{shown}>"),
    }
}

macro_rules! unsigned {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            self.tag_fits(&["int"]);
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
            self.tag_fits(&["int"]);
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
        self.tag_fits(ANY);
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
        self.tag_fits(&["bool"]);
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
        self.tag_fits(&["float", "int"]);
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
        self.tag_fits(&["str"]);
        let text = match self.node.placeholder {
            true => Some(String::new()),
            false => self.text(),
        };
        let Some(s) = text else {
            self.wrong("text");
            // Read as empty: what its visitor says of that (an enum's tag,
            // "unknown variant ``") is no news, the type was said.
            return v.visit_str("").map_err(|e| Error {
                recorded: true,
                ..e
            });
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
            self.tag_fits(&["null"]);
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
        self.tag_fits(&["seq"]);
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
        self.tag_fits(&["map"]);
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
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.tag_fits(&["map"]);
        let Value::Map(entries) = &self.node.value else {
            // A section that is not a mapping: said once, then read as an
            // empty one (its required fields silently filled) so the rest
            // of the file is still checked. Read so in this same attempt:
            // a list of such items (`- api`, `-`) is read on to its end,
            // not one item per re-read of the whole file (the reader gave
            // up after 256). The fix stands for the next attempt, if any.
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
            let empty = De {
                node: &EMPTY_MAP,
                path: self.path.clone(),
                rec: self.rec,
            };
            return empty.deserialize_struct(name, fields, v);
        };
        let r = v.visit_map(MapAcc::new(entries, Some((name, fields)), &self));
        match r {
            Err(e) if !e.recorded && e.message.starts_with("missing field `") => {
                let field = e.message["missing field `".len()..].trim_end_matches('`');
                if let Some(field) = fields.iter().find(|f| **f == field) {
                    // Known from now on: filled in wherever missing.
                    let mut rec = self.rec.borrow_mut();
                    rec.required.entry((name, fields)).or_default().push(field);
                }
                self.missing(field);
                Err(Error {
                    message: e.message,
                    recorded: true,
                })
            }
            r => r.map_err(|e| self.fail(e)),
        }
    }

    /// An enum of unit variants, named as written. A value no variant has
    /// is recorded and the field read as its first variant, as a value of
    /// the wrong type is read as empty: the error serde's derived reader
    /// passed up stopped the read, and the problems after the field (an
    /// unknown key, a bad address the resolver finds) went unreported.
    /// Whether it has one is asked of `variants` before the visitor is
    /// handed the text (it takes the visitor whole, and fails): an enum
    /// read here has no `alias` nor `other`, which `variants` does not list.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let before = self.rec.borrow().problems.len();
        self.tag_fits(&["str"]);
        let text = self.text().unwrap_or_default();
        let first = variants.first().copied();
        let s = match first {
            Some(first) if self.node.placeholder => first,
            // Text under a `!!null` tag, refused by tag_fits: the field has
            // no value to name, and "unknown variant ``" would add nothing.
            Some(first)
                if matches!(self.node.value, Value::Null)
                    && self.rec.borrow().problems.len() > before =>
            {
                first
            }
            // A list, a mapping or nothing has no name to quote: said as
            // a value of the wrong type is ("unknown variant ``", as it was,
            // named an empty text).
            Some(first)
                if matches!(self.node.value, Value::Seq(_) | Value::Map(_) | Value::Null) =>
            {
                self.wrong(&one_of(variants));
                first
            }
            Some(first) if !variants.contains(&text.as_str()) => {
                let e: Error = de::Error::unknown_variant(&text, variants);
                self.record(e.message);
                first
            }
            _ => text.as_str(),
        };
        let d: de::value::StrDeserializer<'_, Error> = s.into_deserializer();
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
            let mut rec = self.rec.borrow_mut();
            rec.lines.insert(path.clone(), node.line);
            rec.read_at(node, &path);
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
    /// A struct's name and fields; `None` for a map.
    shape: Option<(&'static str, &'static [&'static str])>,
    fields: Option<&'static [&'static str]>,
    parent: &'a Node,
    path: String,
    rec: &'a RefCell<Rec>,
    value: Option<(&'a Node, String)>,
    /// Once the entries are read: the fields the struct requires
    /// ([`Rec::required`]) that it misses, yet to be filled in.
    missing: Option<Vec<&'static str>>,
}

impl<'a> MapAcc<'a> {
    fn new(
        entries: &'a [(Node, Node)],
        shape: Option<(&'static str, &'static [&'static str])>,
        parent: &De<'a>,
    ) -> MapAcc<'a> {
        MapAcc {
            entries,
            i: 0,
            shape,
            fields: shape.map(|(_, fields)| fields),
            parent: parent.node,
            path: parent.path.clone(),
            rec: parent.rec,
            value: None,
            missing: None,
        }
    }

    /// The next field the struct requires and misses: filled in with a
    /// placeholder (its problem and fix recorded, as serde's "missing
    /// field" is), so the struct is read whole, and the list it is in
    /// read on to its other broken items in the same attempt.
    fn next_missing(&mut self) -> Option<&'static str> {
        let shape = self.shape?;
        let entries = self.entries;
        let rec = self.rec;
        let missing = self.missing.get_or_insert_with(|| {
            let has = |f: &str| {
                entries
                    .iter()
                    .any(|(k, _)| matches!(&k.value, Value::Str(s) if s == f))
            };
            let required = rec
                .borrow()
                .required
                .get(&shape)
                .cloned()
                .unwrap_or_default();
            required.into_iter().rev().filter(|f| !has(f)).collect()
        });
        let field = missing.pop()?;
        De {
            node: self.parent,
            path: self.path.clone(),
            rec: self.rec,
        }
        .missing(field);
        self.value = Some((&FILLED, super::field(&self.path, field)));
        Some(field)
    }
}

/// The value of a required field filled in ([`MapAcc::next_missing`]):
/// read as empty without a further problem.
static FILLED: Node = stand_in(Value::Null);

/// A section that is not a mapping, read in its place within the same
/// attempt ([`De::deserialize_struct`]): empty, silent, as the fix
/// `EmptyMap` makes it for the next.
static EMPTY_MAP: Node = stand_in(Value::Map(Vec::new()));

/// A placeholder holding `value`, at no line. Its id is none a node of
/// the tree has ([`super::placeholder`] counts down from one below).
const fn stand_in(value: Value) -> Node {
    Node {
        value,
        line: 0,
        id: usize::MAX,
        placeholder: true,
        span: None,
        written: None,
        block: false,
        tag: None,
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
            let path = super::field(&self.path, &key);
            // A key is text: `!!str` at most.
            if let Some(tag) = &k.tag
                && tag.strip_prefix(CORE) != Some("str")
                && !k.placeholder
            {
                self.rec.borrow_mut().problems.push(Found {
                    line: k.line,
                    path: path.clone(),
                    message: format!(
                        "YAML tag `{}` on a key refused: a key takes no tag, or `!!str`",
                        shown_tag(tag)
                    ),
                });
            }
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
        match self.next_missing() {
            Some(field) => {
                let d: de::value::StrDeserializer<Error> = field.into_deserializer();
                seed.deserialize(d).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let (node, path) = self
            .value
            .take()
            .expect("serde asks for a value after its key");
        self.rec.borrow_mut().read_at(node, &path);
        seed.deserialize(De {
            node,
            path,
            rec: self.rec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    /// `!!null` marks an empty value: on text (`size: !!null 3`) it is
    /// refused at its field, not read as unset; on nothing, `~` or `null`
    /// it reads as unset.
    #[test]
    fn a_null_tag_on_text_is_refused() {
        let (top, report) = run(concat!(
            "items:\n",
            "  - { name: a, size: !!null 1048576 }\n",
            "  - { name: b, size: !!null \"\" }\n",
            "  - { name: c, size: !!null, enabled: !!null ~ }\n",
            "  - { name: d, size: !!null null, enabled: !!null NULL }\n",
            "watch: { debounce: !!null Null }\n",
        ));
        let got: Vec<(usize, &str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
            .collect();
        let refused = |text: &str| {
            format!(
                "YAML tag `!!null` on `{text}` refused: `!!null` marks an empty value \
                 (nothing, `~` or `null`); remove the tag or the text"
            )
        };
        assert_eq!(
            got,
            [
                (2, "items[0].size", refused("1048576").as_str()),
                (3, "items[1].size", refused("\"\"").as_str()),
            ],
            "{got:#?}"
        );
        let top = top.unwrap();
        assert_eq!(top.items[2].size, None);
        assert_eq!(top.items[3].enabled, None);
        assert_eq!(top.watch.unwrap().debounce, None);
    }
}
