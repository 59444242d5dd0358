//! What a config problem's message may show: no pasted PEM, multi-line or `${ENV}` value.
//!
//! And at most [`MAX_MESSAGE_BYTES`].
//!
//! SPEC: private keys and PEM bodies are never logged. A key pasted into a
//! field of another type (`max_connections: |` and the key) met messages
//! that quote the value ("expected a whole number, found ...", "unknown
//! variant ...", "invalid duration ..."), and a value set from the
//! environment may be a secret the file only names. Such a value is
//! replaced by what it is (`<withheld: a PEM block>`) in the messages of
//! the problems that concern its field (see [`Withheld::concerns`]); the
//! problem still names the field and line.

use std::collections::HashMap;
use std::path::PathBuf;

/// A value no message may quote, and what to say in its place.
pub(super) struct Withheld {
    value: String,
    what: String,
    /// The field path the value was written at (`listeners[0].name`).
    field: String,
    /// Set from the environment (`${NAME}`): withheld bare at any length.
    env: bool,
    /// Written as a block scalar (`|`, `>`): pasted, withheld bare at any
    /// length as one from the environment is (`5000` below
    /// `worker_threads: |-`).
    block: bool,
    /// The value as the resolver reads it, when that is written otherwise:
    /// a route's `path_prefix` as compared (`/a//b`, `/%61`), an address
    /// as parsed (`127.0.0.1:08443` is `127.0.0.1:8443`), a number as read
    /// (`0003001` is `3001`): its problem shows this form too (SPEC §2).
    normalised: Option<String>,
    /// An address's IP and port as a message names them apart (`0.0.0.0
    /// takes every IPv4 address of port 8443`), withheld as tokens where
    /// the value's field is concerned.
    pieces: Vec<String>,
    /// At a path field: the path it resolved to, as a message shows it bare
    /// (`/etc/hp/ca.crl is listed twice`), withheld there whole only.
    path: Option<String>,
    /// NAME, when the value was written as `${NAME}` alone: a message may
    /// suggest naming the variable (`token_env: NAME`).
    variable: Option<String>,
}

impl Withheld {
    /// `text`, written at `field`, when it is a PEM block, holds a line
    /// break or was written as a YAML block scalar (`block`: `|` or `>`,
    /// how a key or token is pasted, on one line too).
    pub(super) fn pasted(text: &str, field: &str, block: bool) -> Option<Withheld> {
        let what = if text.contains("-----BEGIN") {
            "a PEM block".to_owned()
        } else if text.trim().contains(['\n', '\r']) {
            format!("text of {} lines", text.trim().lines().count())
        } else if block {
            "text of 1 line".to_owned()
        } else {
            return None;
        };
        Some(Withheld {
            value: text.to_owned(),
            what,
            field: field.to_owned(),
            env: false,
            block,
            // A number pasted as a block scalar is read, and shown, too.
            normalised: read_as(text),
            pieces: address_pieces(text),
            path: None,
            variable: None,
        })
    }

    /// `value`, expanded from `written` (`${NAME}`) at `field`; `block`: a block scalar.
    pub(super) fn from_env(value: &str, written: &str, field: &str, block: bool) -> Withheld {
        // The text as written is shown (escaped and cut, as every value is)
        // only when it is itself no pasted block: `${NAME}` inside a pasted
        // key, or a token pasted as a block scalar of one line, would carry it.
        let shown = super::tree::shown_written(written.trim());
        let (what, variable) = match Withheld::pasted(written, field, block) {
            Some(_) => ("a value set from the environment".to_owned(), None),
            None => (format!("the value of {shown}"), sole_variable(written)),
        };
        Withheld {
            value: value.to_owned(),
            what,
            field: field.to_owned(),
            env: true,
            block,
            normalised: read_as(value),
            pieces: address_pieces(value),
            path: None,
            variable,
        }
    }

    /// How a message names this value when it was set by `${NAME}`, for
    /// the messages of what reads it later (an admin token's source).
    pub(super) fn set_by_env(&self) -> Option<super::SetByEnv> {
        self.env.then(|| super::SetByEnv {
            what: self.what.clone(),
            variable: self.variable.clone(),
        })
    }

    /// Known as a path, when its field is one of `paths` (each path field
    /// as it resolved, against the file's directory): a path written in
    /// the file (`/old/ca.crl`) is no showing of a value `ca.crl`.
    pub(super) fn resolved(&mut self, paths: &HashMap<String, PathBuf>) {
        if let Some(p) = paths.get(&self.field) {
            let shown = super::tree::shown_written(&p.display().to_string()).into_owned();
            self.path = Some(shown);
        }
    }

    /// The field path the value was written at.
    pub(super) fn field(&self) -> &str {
        &self.field
    }

    /// This value, written at `field` (found before the field's path was known).
    pub(super) fn at(self, field: &str) -> Withheld {
        Withheld {
            field: field.to_owned(),
            ..self
        }
    }

    /// Whether a problem at `field` (`""`: at no field) saying `message`
    /// may quote this value: one at the value's own field, at a field
    /// within it or at the section holding it (a listener's problem about
    /// its names), at no field, or one whose message names the value's
    /// field (`... overlaps listeners[0].bind (...)`). Matched against
    /// every problem of the file, a short value (`fast`, a piece of a
    /// PEM body) mangled the message of an unrelated field that happened
    /// to quote the same text.
    fn concerns(&self, field: &str, message: &str) -> bool {
        within(field, &self.field) || within(&self.field, field) || message.contains(&self.field)
    }
}

/// NAME, when `written` is `${NAME}` alone and NAME a variable's name no
/// message withholds (one that looks like a token is shown nowhere).
fn sole_variable(written: &str) -> Option<String> {
    let name = written.trim().strip_prefix("${")?.strip_suffix('}')?;
    (!name.is_empty() && !super::env::name_looks_like_a_token(name)).then(|| name.to_owned())
}

/// `value` as the resolver reads and a message shows it, when that is
/// written otherwise: a path prefix normalised, an address parsed (a
/// listening address is shown as its `SocketAddr`: a port's leading zeros
/// dropped, an IPv6 address lowercased and shortened), or a whole number
/// read as the tree's reader reads one from text (`0003001` is `3001`,
/// `+8888888888` is `8888888888`), as a bound check (`3001 is more than
/// 1024`) or the type's own (``integer `99999`, expected u16``) shows it.
fn read_as(value: &str) -> Option<String> {
    let number = value.trim();
    let read = match value.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.to_string(),
        Err(_) if value.starts_with('/') => crate::proxy::path::normalise(value).ok()?.into(),
        Err(_) => match (number.parse::<u64>(), number.parse::<i64>()) {
            (Ok(n), _) => n.to_string(),
            (_, Ok(n)) => n.to_string(),
            _ => return None,
        },
    };
    (read != value).then_some(read)
}

/// The IP and the port of `value` when it is an address, as a message
/// shows each (`0.0.0.0`, `::ffff:0.0.0.0`, `8443`): a wildcard is named
/// by its IP, apart from its port, where it overlaps another bind. One
/// on port 0 overlaps none.
fn address_pieces(value: &str) -> Vec<String> {
    match value.trim().parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.port() != 0 => vec![addr.ip().to_string(), addr.port().to_string()],
        _ => Vec::new(),
    }
}

/// Whether field path `inner` is `outer` or a field within it
/// (`outer.x`, `outer[0]`); every path is within `""` (the whole file).
fn within(inner: &str, outer: &str) -> bool {
    outer.is_empty()
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The field path of a problem's location (`line 12: listeners[0].name`,
/// or a resolver's bare path); `""` (the whole file, which every value
/// concerns) for one at a line only. A location that is no field path
/// (`certs[5].bad key`, a key with a space) is cut back to the last whole
/// path segment before its first other character (`certs[5]`): the values
/// within it, those under such keys among them, are all it may concern
/// (and those a message names). One whose first segment is no path (`k 1`
/// or `k 1.x`, a top-level key) is that segment: the values within that
/// key. Cut back to `""`, as it was, each such problem looked at every
/// value, and 2,000 such keys beside 2,000 values made 4 million looks.
fn field_of(location: &str) -> &str {
    let field = match location.strip_prefix("line ") {
        Some(rest) => rest
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .strip_prefix(": ")
            .unwrap_or(""),
        None => location,
    };
    let Some(end) = field.find(|c: char| !is_path(c)) else {
        return field;
    };
    match field[..end].rfind(['.', '[']) {
        Some(cut) => &field[..cut],
        None => match field[end..].find(['.', '[']) {
            Some(segment) => &field[..end + segment],
            None => field,
        },
    }
}

/// A pasted value shorter than this is only withheld where a message
/// quotes it whole (`"..."`, `` `...` ``): as bare text it could be any
/// word. One from the environment is withheld bare too, as a token, in
/// problems of its own field not quoting it (`[::]:80 is also ...`).
pub(super) const BARE_MIN: usize = 8;

/// The withheld values by field, so that a problem is matched against
/// those that may concern it ([`Withheld::concerns`]), not every one: a
/// file of 6,000 pasted values and twice as many problems made 72 million
/// matches.
pub(super) struct Index<'a> {
    withheld: &'a [Withheld],
    by_field: HashMap<&'a str, Vec<usize>>,
    /// (field, index), by field: those within a field are a range.
    sorted: Vec<(&'a str, usize)>,
    /// The longest field of only path characters.
    longest: usize,
    /// Values at a field that is no path (`certs[5].bad key`), by its
    /// path part (`certs[5].bad`): a message naming the field has it as a
    /// word. Found for a problem within them by `sorted`.
    by_head: HashMap<&'a str, Vec<usize>>,
    /// Values at no field, or at one that starts with no path character:
    /// looked at for every problem.
    always: Vec<usize>,
}

/// `path` and each path enclosing it: `a.b[0]`, `a`, `a.b`.
fn enclosing(path: &str) -> impl Iterator<Item = &str> {
    let cuts = path.match_indices(['.', '[']).map(|(i, _)| &path[..i]);
    cuts.chain([path])
}

fn is_path(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']')
}

impl<'a> Index<'a> {
    pub(super) fn new(withheld: &'a [Withheld]) -> Index<'a> {
        let mut index = Index {
            withheld,
            by_field: HashMap::new(),
            sorted: Vec::new(),
            longest: 0,
            by_head: HashMap::new(),
            always: Vec::new(),
        };
        for (i, w) in withheld.iter().enumerate() {
            let field = w.field.as_str();
            index.by_field.entry(field).or_default().push(i);
            index.sorted.push((field, i));
            match field.find(|c: char| !is_path(c)) {
                _ if field.is_empty() => index.always.push(i),
                None => index.longest = index.longest.max(field.len()),
                Some(0) => index.always.push(i),
                Some(end) => index.by_head.entry(&field[..end]).or_default().push(i),
            }
        }
        index.sorted.sort_unstable();
        index
    }

    /// The values a problem at `field` saying `message` may concern, in
    /// file order: at `field` or a field enclosing it, within it, or at a
    /// field `message` names (a path in it, or one such path starts with).
    fn candidates(&self, field: &str, message: &str) -> Vec<usize> {
        if field.is_empty() {
            return (0..self.withheld.len()).collect();
        }
        let mut found = self.always.clone();
        let mut heads: Vec<usize> = Vec::new();
        let mut at = |f: &str| found.extend(self.by_field.get(f).into_iter().flatten());
        enclosing(field).for_each(&mut at);
        for token in message.split(|c| !is_path(c)) {
            enclosing(&token[..token.len().min(self.longest)]).for_each(&mut at);
            heads.extend(self.by_head.get(token).into_iter().flatten());
        }
        found.extend(heads);
        let from = self.sorted.partition_point(|(f, _)| *f < field);
        let within_field = self.sorted[from..].iter();
        let within_field = within_field.take_while(|(f, _)| f.starts_with(field));
        found.extend(within_field.map(|(_, i)| *i));
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// `message`, of a problem at `location`, with every withheld value that
/// concerns it replaced by what it is; a message still quoting a piece of
/// one (a duration's unit, say) is replaced whole. What the message
/// allows (`("1.2" | "1.3")`) is its own: never replaced, a value holding
/// it or not.
pub(super) fn withhold(message: &mut String, location: &str, index: &Index) {
    let field = field_of(location);
    let aside = super::bare::set_aside_allowed(message);
    withhold_values(message, field, index);
    super::bare::put_back_allowed(message, aside);
}

/// [`withhold`], once what the message allows is set aside.
fn withhold_values(message: &mut String, field: &str, index: &Index) {
    for i in index.candidates(field, message) {
        let w = &index.withheld[i];
        #[cfg(test)]
        tests::EXAMINED.with(|n| n.set(n.get() + 1));
        if w.value.trim().is_empty() || !w.concerns(field, message) {
            continue;
        }
        let label = format!("<withheld: {}>", w.what);
        if let Some(path) = &w.path {
            super::bare::replace(message, path, &label, true);
        }
        let forms = [Some(w.value.as_str()), Some(w.value.trim())];
        let forms = forms.into_iter().chain([w.normalised.as_deref()]).flatten();
        let mut quoted = false;
        for v in forms.clone() {
            for form in [format!("{v:?}"), format!("`{v}`")] {
                quoted |= message.contains(&form);
                *message = message.replace(&form, &label);
                quoted |= super::bare::replace_cut(message, &form, &label);
            }
        }
        // A short value could be any word: one from the environment or
        // a block scalar is looked for bare only in its own field's
        // problem not quoting it (else the word is the message's own:
        // `64 hex digits`).
        let own = !quoted && (within(field, &w.field) || message.contains(&w.field));
        let own_bare = own && (w.env || w.block);
        for v in forms {
            let short = v.len() < BARE_MIN;
            // A path is shown bare as it resolved, whole (above).
            if (short && !own_bare) || w.path.is_some() {
                continue;
            }
            super::bare::replace(message, v, &label, short);
            // Escaped or cut bare, as a path is shown (`/run/hp_…`).
            let bare = super::tree::shown_written(v);
            if *bare != *v && !bare.starts_with("<withheld ") {
                super::bare::replace(message, &bare, &label, short);
            }
        }
        // A wildcard named apart from its port, each a token: the port
        // only with the IP (`8443` in `0.0.0.0 takes ... of port 8443`
        // is the other bind's too, shown in its address).
        if let (true, [ip, port]) = (own_bare, w.pieces.as_slice()) {
            let before = message.clone();
            super::bare::replace(message, ip, &label, true);
            if *message != before {
                super::bare::replace(message, port, &label, true);
            }
        }
        // A quoted piece of only the value's pieces (`"http://…@host"`)
        // is the value shown cut: named, and the reason kept.
        super::bare::replace_quoted_pieces(message, &w.value, &label);
        let outside = super::bare::outside_labels(message, &label);
        if super::bare::quotes_a_piece(&outside, &w.value) {
            *message =
                format!("not valid here; the reason is withheld, as it quotes the value ({label})");
        }
    }
}

/// A problem's message is a log line: one quoting a huge value (a file of
/// one 4 MB scalar) is cut after this many bytes.
pub(super) const MAX_MESSAGE_BYTES: usize = 300;

/// What ends a value [`quoted`] cut, before its closing quote.
pub(super) const CUT: &str = "…";

/// `value` as a message quotes it: as written, in backticks, when plain,
/// else escaped as Rust writes a string; in at most `room` bytes, past
/// which it is cut after a whole character (escape) and ends in `…`
/// before its closing quote. [`withhold`] knows such a piece of a value
/// it withholds.
pub(super) fn quoted(value: &str, room: usize) -> String {
    let plain = |c: char| matches!(c, '"' | '\'') || c.escape_debug().len() == 1;
    let escaped = !value.chars().all(plain);
    let whole = match escaped {
        false => format!("`{value}`"),
        true => format!("{value:?}"),
    };
    if whole.len() <= room {
        return whole;
    }
    let quote = if escaped { '"' } else { '`' };
    let room = room.saturating_sub(2 * quote.len_utf8() + CUT.len());
    let mut shown = String::from(quote);
    let mut buf = [0; 4];
    for c in value.chars() {
        let c: &str = c.encode_utf8(&mut buf);
        let piece = match escaped {
            false => c.to_owned(),
            // As `{value:?}` escapes it: one character's escape.
            true => {
                let d = format!("{c:?}");
                d[1..d.len() - 1].to_owned()
            }
        };
        if shown.len() - 1 + piece.len() > room {
            break;
        }
        shown.push_str(&piece);
    }
    shown.push_str(CUT);
    shown.push(quote);
    shown
}

/// Text the operator wrote, as a problem's message quotes it (found
/// where another type goes, an address, a host, a duration the resolver
/// refuses): escaped as Rust writes a string, quotes and all (`"fast"`),
/// its first 64 bytes so escaped (whole escapes) and `…` before the
/// closing quote, as a key is shown. Quoted whole, a 500-byte value
/// filled the message up to its 300-byte cut. [`withhold`] knows such a
/// piece of a value it withholds, as of one [`quoted`] cut.
pub(crate) fn found_text(value: &str) -> String {
    // As `{value:?}` escapes it: one character's escape.
    let escape = |c: char, shown: &mut String| {
        let mut buf = [0; 4];
        let d = format!("{:?}", &*c.encode_utf8(&mut buf));
        shown.push_str(&d[1..d.len() - 1]);
    };
    format!("\"{}\"", super::tree::cut_escaped(value, escape))
}

pub(super) fn shorten(message: &mut String) {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse_str;

    thread_local! {
        /// How many withheld values were looked at for a problem.
        pub(super) static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Each problem is matched against the withheld values that concern
    /// it, not every one: a file of 6,000 entries each with an id of two
    /// lines (a 40 KB file with aliases, or 250 KB without) made 72
    /// million matches, 23 s, and a few times that made minutes.
    #[test]
    fn a_problem_looks_only_at_the_values_that_concern_it() {
        let entries: String = (0..2_000)
            .map(|i| format!("  - {{ id: \"e\\n{i}\", type: ca-bundle, ca_file: ca.crt }}\n"))
            .collect();
        let text = format!("certs:\n{entries}");
        EXAMINED.with(|n| n.set(0));
        let e = parse_str(&text).unwrap_err();
        let examined = EXAMINED.with(|n| n.get());
        assert_eq!(e.problems.len(), 2_000, "{}", e.render());
        assert!(examined < 10 * 2_000, "{examined}");
        assert!(
            e.problems[1999]
                .message
                .contains("<withheld: text of 2 lines>"),
            "{:?}",
            e.problems[1999]
        );
    }

    /// A problem at a key that is no path (`certs[5].bad key`) looked at
    /// every withheld value, as one at no field does: an entry with such
    /// a key and an id of two lines, repeated through an alias 6,000
    /// times, made `check` and a refused reload take minutes. It is
    /// matched as one at the entry (`certs[5]`).
    #[test]
    fn a_problem_at_a_key_that_is_no_path_looks_only_at_its_entry() {
        let aliases = vec!["*c"; 2_000].join(", ");
        let text = format!(
            "x: &c {{ id: \"a\\nb\", type: ca-bundle, ca_file: ca.crt, \"bad key\": 1 }}\n\
             certs: [{aliases}]\n"
        );
        EXAMINED.with(|n| n.set(0));
        let e = parse_str(&text).unwrap_err();
        let examined = EXAMINED.with(|n| n.get());
        let at_bad_key = e
            .problems
            .iter()
            .filter(|p| p.location.ends_with("].bad key"))
            .count();
        assert_eq!(at_bad_key, 2_000, "{}", &e.render()[..2_000]);
        assert!(examined < 10 * 2_000, "{examined}");

        // A value under such a key, withheld: looked at by the problems
        // within its entry and by those naming its field, not by all.
        let text = format!(
            "x: &c {{ id: \"a\\nb\", type: ca-bundle, ca_file: ca.crt, \"bad key\": \"c\\nd\" }}\n\
             certs: [{aliases}]\n"
        );
        EXAMINED.with(|n| n.set(0));
        let e = parse_str(&text).unwrap_err();
        let examined = EXAMINED.with(|n| n.get());
        assert!(e.problems.len() >= 2_000, "{}", &e.render()[..2_000]);
        assert!(examined < 10 * 2_000, "{examined}");
        let w = [Withheld::from_env(
            "fast",
            "${S}",
            "certs[5].bad key",
            false,
        )];
        for (location, message) in [
            ("line 3: certs[5].bad key", "found \"fast\""),
            ("line 3: certs[5].bad key.x", "found \"fast\""),
            ("line 3: certs[6].id", "\"fast\" is also certs[5].bad key"),
        ] {
            let mut m = message.to_owned();
            withhold(&mut m, location, &Index::new(&w));
            assert!(!m.contains("fast"), "{location}: {m}");
        }
        let mut m = "found \"fast\"".to_owned();
        withhold(&mut m, "line 3: certs[6].id", &Index::new(&w));
        assert_eq!(m, "found \"fast\"");
    }

    /// The same at the top of the file: a key that is no path (`"k 1"`)
    /// has no entry to be cut back to, and its problem looked at every
    /// withheld value, as one at a line only does. 2,000 such keys beside
    /// 2,000 aliases of a value of two lines made 4 million looks. It
    /// looks at the values within its key and those its message names.
    #[test]
    fn a_problem_at_a_top_level_key_that_is_no_path_looks_only_within_it() {
        let keys: String = (0..2_000).map(|i| format!("\"k {i}\": 0\n")).collect();
        let aliases = vec!["*p"; 2_000].join(", ");
        let text = format!("p: &p \"a\\nb\"\n{keys}y: [{aliases}]\n");
        EXAMINED.with(|n| n.set(0));
        let e = parse_str(&text).unwrap_err();
        let examined = EXAMINED.with(|n| n.get());
        let at_keys = e.problems.iter();
        let at_keys = at_keys.filter(|p| p.location.contains(": k ")).count();
        assert_eq!(at_keys, 2_000, "{}", &e.render()[..2_000]);
        assert!(examined < 10 * 2_000, "{examined}");

        let w = [Withheld::from_env("fast", "${S}", "k 1.x", false)];
        for (location, message) in [
            ("line 3: k 1", "found \"fast\""),
            ("line 4: k 1.x", "found \"fast\""),
            ("line 4: k 1.x.y z", "found \"fast\""),
            ("line 9: k 2", "\"fast\" is also k 1.x"),
            ("line 9", "found \"fast\""),
        ] {
            let mut m = message.to_owned();
            withhold(&mut m, location, &Index::new(&w));
            assert!(!m.contains("fast"), "{location}: {m}");
        }
        for location in ["line 9: k 2", "line 9: k 10", "k 2.x", "listener public"] {
            let mut m = "found \"fast\"".to_owned();
            withhold(&mut m, location, &Index::new(&w));
            assert_eq!(m, "found \"fast\"", "{location}");
        }
    }

    fn pem() -> String {
        // Its label spelt apart: no key-shaped text in the source.
        let k = "PRIVATE KEY";
        format!("-----BEGIN {k}-----\nMIGHAgEAMBMGByqGSM49\n-----END {k}-----\n")
    }

    /// A pasted block quoted whole (Debug, backticks, trimmed) is named, not shown.
    #[test]
    fn a_pasted_block_is_named_not_shown() {
        let w = [Withheld::pasted(&pem(), "a.b", false).unwrap()];
        for quoted in [
            format!("expected a whole number, found {:?}", pem()),
            format!("unknown variant `{}`, expected one of `none`", pem()),
            format!("invalid duration {:?} (use e.g. 5s)", pem().trim()),
        ] {
            let mut m = quoted.clone();
            withhold(&mut m, "line 2: a.b", &Index::new(&w));
            assert!(m.contains("<withheld: a PEM block>"), "{m}");
            assert!(!m.contains("BEGIN") && !m.contains("MIGH"), "{m}");
        }
        // A piece of it (the "unit" of a duration): the message goes whole.
        let mut m = format!("invalid duration unit {:?} in x", &pem()[..40]);
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert!(!m.contains("BEGIN") && m.contains("withheld"), "{m}");
    }

    /// A value from `${NAME}` is named by its variable; one piece of it
    /// quoted sends the message whole; a short typed value elsewhere stays.
    #[test]
    fn an_env_value_is_named_by_its_variable() {
        let w = [Withheld::from_env("hp_secret_42", "${TOKEN}", "a.b", false)];
        let mut m = "invalid duration \"hp_secret_42\" (use e.g. 5s)".to_owned();
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert_eq!(
            m,
            "invalid duration <withheld: the value of ${TOKEN}> (use e.g. 5s)"
        );
        let mut m = "invalid duration unit \"hp_secret_\" in <x>".to_owned();
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert!(!m.contains("hp_secret"), "{m}");
        let mut m = "expected a whole number, found \"fast\"".to_owned();
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert_eq!(m, "expected a whole number, found \"fast\"");
        assert!(Withheld::pasted("one line", "a.b", false).is_none());
    }

    /// A number is withheld as read too (`0003001` is shown `3001`), set
    /// from the environment or pasted as a block scalar; a number as
    /// written is left alone elsewhere.
    #[test]
    fn a_number_is_withheld_as_read() {
        let w = [
            Withheld::from_env("0003001", "${W}", "a.w", false),
            Withheld::pasted("+8888888888\n", "a.m", true).unwrap(),
        ];
        let index = Index::new(&w);
        let mut m = "3001 is more than 1024".to_owned();
        withhold(&mut m, "line 2: a.w", &index);
        assert_eq!(m, "<withheld: the value of ${W}> is more than 1024");
        let mut m = "8888888888 is more than 1073741824".to_owned();
        withhold(&mut m, "line 3: a.m", &index);
        assert_eq!(m, "<withheld: text of 1 line> is more than 1073741824");
        let mut m = "3001 is more than 1024".to_owned();
        withhold(&mut m, "line 4: a.x", &index);
        assert_eq!(m, "3001 is more than 1024");
        assert_eq!(read_as("-007"), Some("-7".to_owned()));
        assert_eq!(read_as("3001"), None);
    }

    /// A pasted block that names a variable too: the label shows neither.
    #[test]
    fn a_pasted_block_with_a_variable_is_not_the_label() {
        let written = format!("${{PORT}}{}", pem());
        let w = [Withheld::from_env("8443", &written, "a.b", false)];
        let mut m = format!("invalid duration {:?} (use e.g. 5s)", "8443");
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert!(!m.contains("BEGIN") && !m.contains("MIGH"), "{m}");
        assert!(m.contains("a value set from the environment"), "{m}");
    }

    /// A value is withheld in the problems of its field, of a field within
    /// it or of its section, of none, and of one naming its field; the
    /// message of an unrelated field quoting the same text stays.
    #[test]
    fn a_value_is_withheld_where_its_field_is_concerned() {
        let w = [Withheld::from_env(
            "fast",
            "${SPEED}",
            "listeners[1].bind",
            false,
        )];
        let label = "<withheld: the value of ${SPEED}>";
        for (location, message) in [
            ("line 4: listeners[1].bind", "invalid address \"fast\""),
            ("listeners[1].bind.port", "invalid address \"fast\""),
            ("line 2: listeners[1]", "no bind \"fast\""),
            ("line 3: listeners[1].bad key", "found \"fast\""),
            ("line 2", "found \"fast\""),
            ("listener public", "\"fast\" is also listeners[1].bind"),
            (
                "line 9: listeners[2].bind",
                "\"fast\" is also listeners[1].bind",
            ),
        ] {
            let mut m = message.to_owned();
            withhold(&mut m, location, &Index::new(&w));
            assert!(m.contains(label) && !m.contains("fast"), "{location}: {m}");
        }
        for location in [
            "line 7: listeners[10].bind",
            "listeners[1].binds",
            "runtime",
            "line 3: listeners[2].bad key",
            "listener public",
        ] {
            let mut m = "found \"fast\"".to_owned();
            withhold(&mut m, location, &Index::new(&w));
            assert_eq!(m, "found \"fast\"", "{location}");
        }
    }

    /// A long value is cut after a whole character or escape, `…` before
    /// its closing quote; a value withheld is named in place of such a
    /// piece of it as of the whole, where its field is concerned.
    #[test]
    fn a_cut_value_is_named_as_the_whole_is() {
        assert_eq!(quoted("faster", 8), "`faster`");
        assert_eq!(quoted("faster", 7), "`fa…`");
        assert_eq!(quoted("\u{1b}\"xy", 12), "\"\\u{1b}\\\"xy\"");
        assert_eq!(quoted("\u{1b}\"xy", 11), "\"\\u{1b}…\"");
        assert_eq!(quoted("\u{1b}\"xy", 10), "\"…\"");
        let secret = "hp_secret_42".repeat(30);
        let w = [Withheld::from_env(&secret, "${TOKEN}", "a.b", false)];
        let said = format!(
            "unknown variant {}, expected one of `a`",
            quoted(&secret, 100)
        );
        let mut m = said.clone();
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        let label = "<withheld: the value of ${TOKEN}>";
        assert_eq!(m, format!("unknown variant {label}, expected one of `a`"));
        let mut m = said.clone();
        withhold(&mut m, "line 2: c", &Index::new(&w));
        assert_eq!(m, said);
    }

    /// Text of the wrong type is quoted as before, cut after 64 bytes at a
    /// character or escape, `…` before its closing quote; a value withheld
    /// is named in place of such a piece of it.
    #[test]
    fn found_text_is_cut_as_a_key_is() {
        assert_eq!(found_text("it's \"x\""), "\"it's \\\"x\\\"\"");
        let long = format!("{}é", "a".repeat(63));
        assert_eq!(found_text(&long), format!("\"{}…\"", "a".repeat(63)));
        let esc = "\u{1b}".repeat(70);
        // 64 bytes as shown, not as written: 10 escapes of 6 bytes.
        assert_eq!(found_text(&esc), format!("\"{}…\"", "\\u{1b}".repeat(10)));
        let secret = "hp_secret_42".repeat(30);
        let w = [Withheld::from_env(&secret, "${TOKEN}", "a.b", false)];
        let mut m = format!("expected text, found {}", found_text(&secret));
        withhold(&mut m, "line 2: a.b", &Index::new(&w));
        assert_eq!(m, "expected text, found <withheld: the value of ${TOKEN}>");
    }
}
