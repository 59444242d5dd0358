//! A withheld value where a message shows it bare, cut or in a quoted piece: replaced outside the labels already there.

use super::withhold::{BARE_MIN, CUT};

/// `message` with each bare occurrence of `shown` (a withheld value, as
/// written or as a message escapes it) replaced by `label`, none inside a
/// label (`<withheld: the value of ${NAME}>`: a value `value` or `e` is
/// no part of it). `word`: only where it stands as a token of its own
/// (a short value, `/c.pem`, `ca`, `1`): after the message's start, white
/// space, a quote, a backtick or an opening bracket, before its end, white
/// space, a quote, a backtick, a closing bracket, `,`, `;`, `:` or a `.`
/// ending a sentence; never within a longer word or value (`absent`,
/// `ca-bundle`, `"1.2"`, `/old/ca.crl`), which would read as garbled.
pub(super) fn replace(message: &mut String, shown: &str, label: &str, word: bool) {
    if shown.is_empty() {
        return;
    }
    let labels = labels(message, label);
    let quote = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`');
    let opens = |c: Option<char>| c.is_none_or(|c| quote(c) || matches!(c, '(' | '['));
    let closes = |rest: &str| {
        let mut after = rest.chars();
        match after.next() {
            Some('.') => after.next().is_none_or(char::is_whitespace),
            c => c.is_none_or(|c| quote(c) || matches!(c, ')' | ']' | ',' | ';' | ':')),
        }
    };
    let mut out = String::with_capacity(message.len());
    let (mut kept, mut from) = (0, 0);
    while let Some(at) = message[from..].find(shown) {
        let (start, end) = (from + at, from + at + shown.len());
        let in_label = labels.iter().any(|&(s, e)| start < e && s < end);
        let before = message[..start].chars().next_back();
        let joined = word && !(opens(before) && closes(&message[end..]));
        if in_label || joined {
            // Past this match's first character.
            from = start + message[start..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&message[kept..start]);
        out.push_str(label);
        (kept, from) = (end, end);
    }
    if kept > 0 {
        out.push_str(&message[kept..]);
        *message = out;
    }
}

/// The values `tls.min_version` allows, as its problem lists them.
pub(super) const TLS_VERSIONS: &str = "(\"1.2\" | \"1.3\")";

/// The wildcard a route's `host` or a `server_names` entry allows, as its
/// problem shows it.
pub(super) const WILDCARD: &str = "(\"*.example.com\", one label)";

/// The modes `client_auth.mode` takes, as its problem lists them.
pub(super) const CLIENT_AUTH_MODES: &str =
    "(none | request | require_any | verify_if_given | require_and_verify)";

/// The roles an admin token takes, as its problem lists them.
pub(super) const ROLES: &str = "(viewer | editor)";

/// The types a `certs` entry takes, as its problem lists them.
pub(super) const ENTRY_TYPES: &str = "(server-pair | client-pair | ca-bundle)";

/// The balances an upstream takes, as its problem lists them.
pub(super) const BALANCES: &str = "(least_request | round_robin)";

/// What messages allow, quoted in their own words: a value may hold one
/// (`TLSv1.2` holds `1.2`, `*.*.example.com` holds `*.example.com`), be
/// a piece of one (`require_and_verif`) or be one once trimmed (` 1.3`),
/// yet it is the message's, never a piece of the value. Replaced, the
/// list read `(<withheld…> | "1.3")` or `(… | <withheld…>y)`, and which
/// entry was replaced told what the value held.
const ALLOWED: [&str; 6] = [
    TLS_VERSIONS,
    WILDCARD,
    CLIENT_AUTH_MODES,
    ROLES,
    ENTRY_TYPES,
    BALANCES,
];

/// How serde's message for an enum field (`tree::read`) lists the values
/// it takes: `, expected one of `a`, `b``, after the value.
const SERDE_ONE_OF: &str = ", expected one of `";

/// What [`set_aside_allowed`] set aside: each list, and what stands for it.
pub(super) struct Aside(Vec<(String, String)>);

/// `message` with each list of allowed values in it set aside, while
/// values are withheld from it: what stands for one is a label, so
/// nothing is replaced within it (`<withheld: ...>` is left alone) and it
/// shows no piece of a value; [`put_back_allowed`] restores them. A list
/// ends its message, after the value: only there is it set aside, so a
/// value shown whole that holds a list's text is still the value.
pub(super) fn set_aside_allowed(message: &mut String) -> Aside {
    let mut aside = Vec::new();
    let mut set_aside = |message: &mut String, at: usize, len: usize| {
        let stand_in = format!("<withheld allowed {}>", aside.len());
        let list = message[at..at + len].to_owned();
        message.replace_range(at..at + len, &stand_in);
        aside.push((stand_in, list));
    };
    if let Some(at) = message.rfind(SERDE_ONE_OF) {
        let names = at + SERDE_ONE_OF.len() - 1;
        let list = serde_list(&message[names..]);
        if list > 0 && names + list == message.len() {
            // From `expected`: the `, ` ends the value's part.
            set_aside(message, at + 2, message.len() - at - 2);
        }
    }
    if let Some(allowed) = ALLOWED.iter().find(|a| message.ends_with(*a)) {
        set_aside(message, message.len() - allowed.len(), allowed.len());
    }
    Aside(aside)
}

/// The length of the list of backticked names `text` starts with
/// (`` `a`, `b` ``), each whole.
fn serde_list(text: &str) -> usize {
    let mut len = 0;
    loop {
        let sep = if len == 0 { "" } else { ", " };
        let item = text[len..].strip_prefix(sep);
        let Some(item) = item.and_then(|i| i.strip_prefix('`')) else {
            return len;
        };
        let Some(end) = item.find('`') else {
            return len;
        };
        len += sep.len() + end + 2;
    }
}

/// `message` with the lists [`set_aside_allowed`] set aside put back.
pub(super) fn put_back_allowed(message: &mut String, aside: Aside) {
    for (stand_in, list) in aside.0.into_iter().rev() {
        if let Some(at) = message.rfind(&stand_in) {
            message.replace_range(at..at + stand_in.len(), &list);
        }
    }
}

/// `message` with each label in it `<withheld>`: what it shows of the
/// values. A label's own text (what was written, cut: `${A}${B}…`,
/// `/srv/x…` before `${NAME}`) is no piece of a value it shows.
pub(super) fn outside_labels(message: &str, label: &str) -> String {
    let (mut out, mut kept) = (String::with_capacity(message.len()), 0);
    for (start, end) in labels(message, label) {
        if start >= kept {
            out.push_str(&message[kept..start]);
            out.push_str("<withheld>");
        }
        kept = kept.max(end);
    }
    out.push_str(&message[kept..]);
    out
}

/// The byte ranges of the labels in `message`: each `<withheld` to its
/// `>`, or to the end of `label` where it is that (whose variable's name
/// may hold a `>`).
fn labels(message: &str, label: &str) -> Vec<(usize, usize)> {
    let spans = message.match_indices("<withheld").map(|(at, _)| {
        let close = message[at..]
            .find('>')
            .map_or(message.len(), |e| at + e + 1);
        match message[at..].starts_with(label) {
            true => (at, close.max(at + label.len())),
            false => (at, close),
        }
    });
    spans.collect()
}

/// `message` with each quoted piece (`"..."`, outside the labels) made
/// only of pieces of `value`, as a message shows it cut (`"http://…@host"`,
/// a server URL's credentials left out; `":80…"`), replaced by `label`:
/// the reason around it stays. A piece holding other text too is left
/// for [`quotes_a_piece`], which withholds the message whole.
pub(super) fn replace_quoted_pieces(message: &mut String, value: &str, label: &str) {
    let escaped = format!("{value:?}");
    let escaped = &escaped[1..escaped.len() - 1];
    let labels = labels(message, label);
    let quotes: Vec<usize> = message
        .match_indices('"')
        .map(|(at, _)| at)
        .filter(|&at| !labels.iter().any(|&(s, e)| s <= at && at < e))
        .collect();
    let mut out = String::with_capacity(message.len());
    let mut kept = 0;
    for pair in quotes.chunks_exact(2) {
        let (open, close) = (pair[0], pair[1]);
        let mut parts = message[open + 1..close]
            .split(CUT)
            .filter(|p| !p.is_empty());
        let ours = parts.clone().all(|p| escaped.contains(p));
        if ours && parts.any(|p| p.len() >= 3) {
            out.push_str(&message[kept..open]);
            out.push_str(label);
            kept = close + 1;
        }
    }
    if kept > 0 {
        out.push_str(&message[kept..]);
        *message = out;
    }
}

/// `message` with each piece of `form` (a quoted value) that [`super::withhold::quoted`]
/// cut replaced by `label`: its opening quote and at least three
/// characters, then `…` and the closing quote. Whether there was one.
pub(super) fn replace_cut(message: &mut String, form: &str, label: &str) -> bool {
    let Some(quote) = form.chars().next().filter(|q| matches!(q, '"' | '`')) else {
        return false;
    };
    let stem = &form[..form.len() - 1];
    let end_mark = format!("{CUT}{quote}");
    let Some((head, _)) = stem.char_indices().nth(4) else {
        return false;
    };
    let (mut from, mut found) = (0, false);
    while let Some(at) = message[from..].find(&stem[..head]) {
        let start = from + at;
        let rest = &message[start..];
        let mut same = rest
            .bytes()
            .zip(stem.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        while !rest.is_char_boundary(same) {
            same -= 1;
        }
        if same < stem.len() && rest[same..].starts_with(&end_mark) {
            message.replace_range(start..start + same + end_mark.len(), label);
            (from, found) = (start + label.len(), true);
        } else {
            // Past the opening quote, one byte.
            from = start + 1;
        }
    }
    found
}

/// Whether `message` still shows some of `value`: a PEM marker, a quoted
/// (`"..."`) piece of it of 3 characters or more, cut (`"x…"`, a host's
/// port; `"http://…@x"`) or not, or its start cut bare (`/srv/ab…`).
pub(super) fn quotes_a_piece(message: &str, value: &str) -> bool {
    if message.contains("-----BEGIN") || message.contains("-----END") {
        return true;
    }
    let escaped = format!("{value:?}");
    let escaped = &escaped[1..escaped.len() - 1];
    let mut quoted = message.split('"').skip(1).step_by(2);
    let bare = super::tree::shown_written(value);
    let bare = bare.strip_suffix(CUT).unwrap_or(&bare);
    let starts = || (BARE_MIN..=bare.len()).filter_map(|k| bare.get(..k));
    let bare_cut = |(at, _)| starts().any(|b| message[..at].ends_with(b));
    quoted.any(|q| q.split(CUT).any(|p| p.len() >= 3 && escaped.contains(p)))
        || message.match_indices(CUT).any(bare_cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "<withheld: the value of ${V}>";

    fn replaced(message: &str, shown: &str, word: bool) -> String {
        let mut m = message.to_owned();
        replace(&mut m, shown, LABEL, word);
        m
    }

    /// A short value is replaced where it stands as a token of its own,
    /// not within a longer word or value (`ca-bundle`, `"1.2"`, a path).
    #[test]
    fn a_short_value_is_replaced_as_a_token() {
        let said = replaced("/c.pem is listed twice", "/c.pem", true);
        assert_eq!(said, format!("{LABEL} is listed twice"));
        let said = replaced("ab in absent, (ab) and ab", "ab", true);
        assert_eq!(said, format!("{LABEL} in absent, ({LABEL}) and {LABEL}"));
        let said = replaced("/s\\tx, `/s\\tx`: is /s\\tx.", "/s\\tx", true);
        assert_eq!(said, format!("{LABEL}, `{LABEL}`: is {LABEL}."));
        assert_eq!(replaced("absent", "ab", true), "absent");
        assert_eq!(replaced("absent", "ab", false), format!("{LABEL}sent"));
        for kept in [
            "type ca-bundle",
            "(\"1.2\" | \"1.3\")",
            "/old/ca.crl is listed twice",
            "1.2",
            "x1",
        ] {
            for value in ["ca", "1", "ca.crl"] {
                assert_eq!(replaced(kept, value, true), kept, "{value}");
            }
        }
    }

    /// A quoted piece made only of pieces of the value is named, the
    /// reason around it kept; one holding other text too is left.
    #[test]
    fn a_quoted_piece_of_only_the_value_is_named() {
        let value = "http://u:pw@h.example:80";
        let mut m = "\"http://…@h.example:80\": credentials; remove \":\"".to_owned();
        replace_quoted_pieces(&mut m, value, LABEL);
        assert_eq!(m, format!("{LABEL}: credentials; remove \":\""));
        for kept in ["\"http://…@other.host\": x", "\"ab\" and \"zzz…\""] {
            let mut m = kept.to_owned();
            replace_quoted_pieces(&mut m, value, LABEL);
            assert_eq!(m, kept);
        }
    }

    /// No label is mangled: a value that is a piece of one (`value`, `e`,
    /// `withheld`) is replaced only outside them.
    #[test]
    fn no_label_is_replaced_into() {
        for shown in ["value", "e", "withheld", "V", "${V}>"] {
            for word in [true, false] {
                let m = format!("{LABEL}; {shown} <withheld: a PEM block>");
                let said = replaced(&m, shown, word);
                let want = format!("{LABEL}; {LABEL} <withheld: a PEM block>");
                assert_eq!(said, want, "{shown:?} {word}");
            }
        }
        let odd = "<withheld: the value of ${A}>b>";
        let mut m = format!("{odd} is b");
        replace(&mut m, "b", odd, true);
        assert_eq!(m, format!("{odd} is {odd}"));
    }

    /// Each list a message allows is set aside whole where it ends the
    /// message, and put back as it was: a value shown before it holding
    /// its text is the value's, and serde's list starts at `expected`.
    #[test]
    fn what_a_message_allows_is_set_aside_and_put_back() {
        for (said, aside) in [
            (
                format!("unknown role `x {ROLES}` {ROLES}"),
                format!("unknown role `x {ROLES}` <withheld allowed 0>"),
            ),
            (
                format!("unknown role `{ROLES}`"),
                format!("unknown role `{ROLES}`"),
            ),
            (
                "unknown variant `a, expected one of `b``, expected one of `none`, `xfcc`"
                    .to_owned(),
                "unknown variant `a, expected one of `b``, <withheld allowed 0>".to_owned(),
            ),
            (
                format!("unknown variant `x {BALANCES}`, expected one of `a`"),
                format!("unknown variant `x {BALANCES}`, <withheld allowed 0>"),
            ),
        ] {
            let mut m = said.clone();
            let set = set_aside_allowed(&mut m);
            assert_eq!(m, aside);
            put_back_allowed(&mut m, set);
            assert_eq!(m, said);
        }
    }

    /// What a message shows outside its labels: each label `<withheld>`,
    /// one whose variable's name holds a `>` whole.
    #[test]
    fn outside_labels_is_the_message_without_them() {
        let odd = "<withheld: the value of ${A}>b>";
        let m = format!("x {LABEL}; y {odd} <withheld: a PEM block> z…");
        let said = outside_labels(&m, odd);
        assert_eq!(said, "x <withheld>; y <withheld> <withheld> z…");
    }
}
