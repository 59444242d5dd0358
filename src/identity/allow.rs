//! `allow` rules: which verified client identities may connect (listener) or use a route.
//!
//! A rule is a set of fields that must all match; a list matches when any
//! rule does. Globs: `*` matches within one segment (a URI path segment, a
//! DNS label; in `cn`/`ou`/`email_san` any run of characters), and a
//! `uri_san` may end in `/**` for "any suffix below this path". A value no
//! CA should issue (a NUL or control character in a CN or OU; in a SAN
//! also a space, a second `@`, a dot segment) matches no rule of its field.

use serde::{Deserialize, Serialize};

use crate::identity::Identity;

mod pattern;

/// Why a rule is malformed (reported by `check` with the rule's line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "an allow rule needs at least one of cn, ou, dns_san, uri_san, email_san, fingerprint_sha256"
    )]
    Empty,
    /// A field's pattern refused: `reason` is hotproxy's wording alone,
    /// the value is apart, so the admin API can say why without it. The
    /// file's reader is shown the value as every refused value is
    /// (escaped, its first 64 bytes and `…`): quoted whole, 200 bytes ran
    /// the message into its 300-byte cut and the reason went.
    #[error("{field}: {}: {reason}", crate::config::found_text(value))]
    Field {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl RuleError {
    /// What is wrong with the rule at `place` (`allow[2]`), naming the
    /// field and not the value given there: the admin API's answer, which
    /// never repeats a value of a body (a value's redaction there would
    /// blank the wording's own `**` and `/**` too).
    pub fn without_value(&self, place: &str) -> String {
        match self {
            RuleError::Empty => format!("{place}: {self}"),
            RuleError::Field { field, reason, .. } => format!("{place}.{field}: {reason}"),
        }
    }
}

/// One rule as written: every present field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_san: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri_san: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_san: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
}

/// A checked rule. Deserializes from (and serializes to) its [`RuleSpec`],
/// checked as it is read. The configuration reads the spec and checks it
/// in the resolver (`TryFrom`), as the admin API does: a malformed rule is
/// a problem at its place (`allow[2]`) and line, and the rest of the file
/// is still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "RuleSpec")]
pub struct AllowRule {
    spec: RuleSpec,
    cn: Option<Glob>,
    ou: Option<Glob>,
    dns_san: Option<Glob>,
    uri_san: Option<Glob>,
    email_san: Option<Glob>,
    /// Normalised: lowercase hex, no colons.
    fingerprint: Option<String>,
}

impl TryFrom<RuleSpec> for AllowRule {
    type Error = RuleError;

    /// The rule, or the first reason it is refused ([`AllowRule::checked`]
    /// gives every one).
    fn try_from(spec: RuleSpec) -> Result<AllowRule, RuleError> {
        AllowRule::checked(spec).map_err(|mut refused| refused.remove(0))
    }
}

impl AllowRule {
    /// `spec` checked: the rule, or every reason it is refused, one per
    /// refused field (the fingerprint's first, then the patterns' in field
    /// order), or [`RuleError::Empty`] alone. Each field is checked: the
    /// file's reader says every problem of the file in one run, and a rule
    /// stopped at its first refused field hid a bad pattern beside it.
    pub fn checked(spec: RuleSpec) -> Result<AllowRule, Vec<RuleError>> {
        let mut refused = Vec::new();
        let r = &mut refused;
        let glob = |kind| move |p: &str| Glob::new(p, kind);
        let fingerprint = read_field(
            r,
            "fingerprint_sha256",
            &spec.fingerprint_sha256,
            normalise_fingerprint,
        );
        let cn = read_field(r, "cn", &spec.cn, glob(Kind::Text));
        let ou = read_field(r, "ou", &spec.ou, glob(Kind::Text));
        let dns_san = read_field(r, "dns_san", &spec.dns_san, glob(Kind::Dns));
        let uri_san = read_field(r, "uri_san", &spec.uri_san, glob(Kind::Uri));
        let email_san = read_field(r, "email_san", &spec.email_san, glob(Kind::Email));
        if !refused.is_empty() {
            return Err(refused);
        }
        if spec == RuleSpec::default() {
            return Err(vec![RuleError::Empty]);
        }
        Ok(AllowRule {
            spec,
            cn,
            ou,
            dns_san,
            uri_san,
            email_san,
            fingerprint,
        })
    }
}

/// `value`, written at `field`, as `check` reads it; `None` when it is not
/// written, or refused (why, with the value, added to `refused`).
fn read_field<T>(
    refused: &mut Vec<RuleError>,
    field: &'static str,
    value: &Option<String>,
    check: impl FnOnce(&str) -> Result<T, &'static str>,
) -> Option<T> {
    let value = value.as_deref()?;
    check(value)
        .map_err(|reason| {
            refused.push(RuleError::Field {
                field,
                value: value.to_owned(),
                reason,
            })
        })
        .ok()
}

/// The keys of a rule, for readers that list the ones that fit.
const FIELDS: &[&str] = &[
    "cn",
    "ou",
    "dns_san",
    "uri_san",
    "email_san",
    "fingerprint_sha256",
];

impl<'de> Deserialize<'de> for AllowRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AllowRule, D::Error> {
        struct Rule;
        impl<'de> serde::de::Visitor<'de> for Rule {
            type Value = AllowRule;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an allow rule (cn, ou, dns_san, uri_san, email_san, fingerprint_sha256)",
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AllowRule, A::Error> {
                let spec =
                    RuleSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                AllowRule::try_from(spec).map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_struct("AllowRule", FIELDS, Rule)
    }
}

impl From<AllowRule> for RuleSpec {
    fn from(r: AllowRule) -> RuleSpec {
        r.spec
    }
}

impl std::hash::Hash for AllowRule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The compiled fields are a function of the spec.
        self.spec.hash(state);
    }
}

impl AllowRule {
    /// Whether every field of this rule matches `id`. A multi-valued field
    /// (OUs, SANs) matches when any of its values does. The CN is one
    /// value: a subject with several (`CN=intern, CN=ops`) matches no `cn`
    /// rule, since backends disagree on which is the name (OpenSSL's
    /// lookups read the first, HAProxy's `ssl_c_s_dn(CN)` the last).
    pub fn matches(&self, id: &Identity) -> bool {
        let any = |g: &Option<Glob>, values: &[String]| {
            g.as_ref()
                .is_none_or(|g| values.iter().any(|v| g.matches(v)))
        };
        let one = |g: &Option<Glob>, values: &[String]| {
            g.as_ref()
                .is_none_or(|g| matches!(values, [v] if g.matches(v)))
        };
        one(&self.cn, &id.cn)
            && any(&self.ou, &id.ou)
            && any(&self.dns_san, &id.dns_sans)
            && any(&self.uri_san, &id.uri_sans)
            && any(&self.email_san, &id.email_sans)
            && self
                .fingerprint
                .as_deref()
                .is_none_or(|f| f == id.fingerprint_sha256)
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }
}

/// A listener's or route's rules. `None` where configured means "no
/// restriction"; an empty list is refused by config validation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowList {
    pub rules: Vec<AllowRule>,
}

impl AllowList {
    /// Whether `id` matches one of the rules.
    pub fn permits(&self, id: &Identity) -> bool {
        self.rules.iter().any(|r| r.matches(id))
    }

    /// The URI SAN of `id` these rules let it in by: of the first rule
    /// with a `uri_san` that `id` matches, the first URI SAN that field
    /// matched. `None` when no such rule matches (the client was let in
    /// by its CN, OU, other SANs or fingerprint, or not at all).
    pub fn admitting_uri_san<'a>(&self, id: &'a Identity) -> Option<&'a str> {
        self.rules
            .iter()
            .filter(|r| r.uri_san.is_some() && r.matches(id))
            .find_map(|r| {
                let glob = r.uri_san.as_ref()?;
                id.uri_sans.iter().find(|u| glob.matches(u))
            })
            .map(String::as_str)
    }
}

/// `aa:BB:...` -> `aabb...`; must be 32 bytes of hex.
fn normalise_fingerprint(s: &str) -> Result<String, &'static str> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not a SHA-256 fingerprint (64 hex digits; colons and case are ignored)");
    }
    Ok(hex)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `cn`, `ou`: exact, `*` matches any run of characters (not a
    /// control character: [`plain_text`]).
    Text,
    /// `dns_san`: case-insensitive, `*` within one label.
    Dns,
    /// `uri_san`: `*` within one path segment, optional trailing `/**`.
    Uri,
    /// `email_san`: case-insensitive, `*` matches any run of characters.
    Email,
}

/// A compiled pattern: segments split on the field's separator.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob {
    kind: Kind,
    segments: Vec<String>,
    /// Ended in `/**`: the value may continue with `/` and anything.
    any_suffix: bool,
}

impl Glob {
    /// The glob of `pattern`, or why it is refused (without the pattern).
    fn new(pattern: &str, kind: Kind) -> Result<Glob, &'static str> {
        if pattern.is_empty() {
            return Err("empty pattern");
        }
        let (body, any_suffix) = match pattern.strip_suffix("/**") {
            Some(b) if kind == Kind::Uri => (b, true),
            _ => (pattern, false),
        };
        if body.contains("**") {
            return Err("`**` is only allowed as a final `/**` of a uri_san");
        }
        // A pattern no value this kind judges could fit would let no one in.
        match kind {
            Kind::Dns => pattern::dns(body)?,
            Kind::Email => pattern::email(body)?,
            Kind::Text => pattern::text(body)?,
            Kind::Uri => pattern::uri(body)?,
        }
        let body = match kind {
            Kind::Dns | Kind::Email => body.to_ascii_lowercase(),
            Kind::Text | Kind::Uri => body.to_owned(),
        };
        let segments = match kind.separator() {
            Some(sep) => body.split(sep).map(str::to_owned).collect(),
            None => vec![body],
        };
        Ok(Glob {
            kind,
            segments,
            any_suffix,
        })
    }

    fn matches(&self, value: &str) -> bool {
        if !self.kind.judges(value) {
            return false;
        }
        let lowered;
        let value = match self.kind {
            Kind::Dns | Kind::Email => {
                lowered = value.to_ascii_lowercase();
                lowered.as_str()
            }
            Kind::Text | Kind::Uri => value,
        };
        let Some(sep) = self.kind.separator() else {
            return segment_matches(&self.segments[0], value);
        };
        let mut parts = value.split(sep);
        for pat in &self.segments {
            match parts.next() {
                Some(part) if segment_matches(pat, part) => {}
                _ => return false,
            }
        }
        match (self.any_suffix, parts.next()) {
            (false, None) => true,
            (false, Some(_)) => false,
            // `/**` needs something below the prefix, and no empty segment
            // there (`.../prod//` is no workload below `prod`; no SPIFFE ID
            // has one, and a backend merging slashes reads `prod` itself).
            (true, Some(first)) => !first.is_empty() && parts.all(|p| !p.is_empty()),
            (true, None) => false,
        }
    }
}

/// A URI SAN a `uri_san` rule can judge: no `.` or `..` path segment, no
/// `%`, `;` or `\`, no query or fragment, and nothing but printable ASCII
/// (no control byte, space or DEL). A SPIFFE ID never has them (its
/// segments are `[A-Za-z0-9._-]`, dot segments excluded); in a certificate
/// they can only come from a CA that signs what it is asked, and a backend
/// that resolves `spiffe://td/ns/prod/../admin`, decodes `%2e%2e`, drops
/// `;` parameters and resolves what is left (`..;` is `..` to Tomcat and
/// Jetty, as `proxy::path` refuses it in request paths) or reads `\` as
/// `/` would read another identity than the rule matched. So would one
/// that parses it as WHATWG URL parsers do (Node's `new URL`, Python's
/// `urlsplit`, Rust's `url`): they remove every tab, CR and LF first, so
/// `ops/.\t./admin` is `ops/../admin` to them, and `ns/admin` once
/// resolved.
fn plain_uri(value: &str) -> bool {
    let path = value.split_once("://").map_or(value, |(_, rest)| rest);
    value.bytes().all(|b| b.is_ascii_graphic())
        && !value.contains(['%', '?', '#', ';', '\\'])
        && !path.split('/').skip(1).any(|seg| seg == "." || seg == "..")
}

/// A CN or OU a `cn` or `ou` rule can judge: no control character (C0,
/// DEL, C1; Unicode's `Cc`), NUL included. A name may hold spaces and
/// letters that are not ASCII (`José Smith`), but no CA should put a
/// control in one, and a glob's `*` matched them: under `cn: "*.svc"`,
/// `evil\0x.svc` is `evil` to a C backend reading the subject, or the CN
/// hotproxy vouches for, up to the NUL.
fn plain_text(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// An email SAN an `email_san` rule can judge: a mailbox as RFC 5280
/// §4.2.1.6 has it, `local-part@domain` in ASCII (a UTF-8 one is an
/// SmtpUTF8Mailbox, RFC 8398, not an rfc822Name): one `@`, a local part
/// of RFC 5321's dot-atom characters (no quoted string, so no space, `@`
/// or `"` within it), and a domain [`plain_dns`] reads (no address
/// literal). The parser reads an IA5String's bytes as they are, NUL
/// included, and a glob's `*` matched them: `victim@other.example\0@ours`
/// is another mailbox to a backend reading up to the NUL or the first
/// `@`, and only a CA that signs what it is asked issues it.
fn plain_email(value: &str) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b);
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && local.bytes().all(atext) && plain_host(domain, false)
        }
        None => false,
    }
}

/// A DNS SAN a `dns_san` rule can judge: a host name (RFC 5280 §4.2.1.6,
/// RFC 1034's preferred syntax; an IDN is written as its `xn--` A-label):
/// non-empty labels of letters, digits, `-` and `_` (which private CAs put
/// in host names), and a `*` only as a whole first label (a wildcard
/// certificate). No NUL, space, `@`, `/` or byte that is not ASCII: within
/// one label a glob's `*` matched them, and a backend reading up to the
/// NUL reads another name.
fn plain_dns(value: &str) -> bool {
    plain_host(value, true)
}

/// `value` as [`plain_dns`] reads it; a `*` first label (of a name with
/// more) only when `wildcard`.
fn plain_host(value: &str, wildcard: bool) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let wildcard = wildcard && value.contains('.');
    value
        .split('.')
        .enumerate()
        .all(|(i, l)| label(l) || (wildcard && i == 0 && l == "*"))
}

impl Kind {
    /// Whether `value` is one this kind's rules judge at all: anything
    /// else (what no CA should issue) matches no pattern, failing closed.
    fn judges(self, value: &str) -> bool {
        match self {
            Kind::Text => plain_text(value),
            Kind::Dns => plain_dns(value),
            Kind::Uri => plain_uri(value),
            Kind::Email => plain_email(value),
        }
    }

    fn separator(self) -> Option<char> {
        match self {
            Kind::Dns => Some('.'),
            Kind::Uri => Some('/'),
            Kind::Text | Kind::Email => None,
        }
    }
}

/// `*` matches any run of characters within one segment; a segment that is
/// only `*` must not be empty (`*.example` does not match `.example`).
fn segment_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            subject: "CN=billing, OU=payments".into(),
            issuer: "CN=partners CA".into(),
            cn: vec!["billing".into()],
            ou: vec!["payments".into(), "emea".into()],
            dns_sans: vec!["api.Partners.example".into()],
            uri_sans: vec!["spiffe://cluster.local/ns/prod/sa/billing".into()],
            email_sans: vec!["Ops@partners.example".into()],
            serial: "01".into(),
            fingerprint_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                .into(),
            not_before: 0,
            not_after: 1,
            chain: vec![],
            anchors: Default::default(),
            forwarded: Default::default(),
            logged: Default::default(),
        }
    }

    fn rule(yaml: &str) -> Result<AllowRule, String> {
        serde_json::from_str::<AllowRule>(yaml).map_err(|e| e.to_string())
    }

    fn ok(yaml: &str) -> bool {
        rule(yaml).unwrap().matches(&id())
    }

    /// Each field, alone: exact values, globs, case rules.
    #[test]
    fn each_field() {
        assert!(ok(r#"{"cn":"billing"}"#));
        assert!(!ok(r#"{"cn":"Billing"}"#));
        assert!(ok(r#"{"cn":"bill*"}"#));
        assert!(ok(r#"{"ou":"emea"}"#));
        assert!(!ok(r#"{"ou":"apac"}"#));
        assert!(ok(r#"{"dns_san":"*.partners.example"}"#));
        assert!(ok(r#"{"dns_san":"API.partners.EXAMPLE"}"#));
        assert!(!ok(r#"{"dns_san":"*.example"}"#), "* spans one label only");
        assert!(ok(r#"{"uri_san":"spiffe://cluster.local/ns/prod/sa/*"}"#));
        assert!(!ok(r#"{"uri_san":"spiffe://cluster.local/ns/prod/*"}"#));
        assert!(ok(r#"{"uri_san":"spiffe://cluster.local/ns/prod/**"}"#));
        assert!(ok(
            r#"{"uri_san":"spiffe://cluster.local/ns/*/sa/billing"}"#
        ));
        assert!(!ok(r#"{"uri_san":"spiffe://cluster.local/ns/staging/**"}"#));
        assert!(ok(r#"{"email_san":"*@PARTNERS.example"}"#));
        assert!(ok(
            r#"{"fingerprint_sha256":"9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08"}"#
        ));
        assert!(!ok(
            r#"{"fingerprint_sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        ));
    }

    /// Fields of one rule must all match; a list matches when any rule does.
    #[test]
    fn all_fields_any_rule() {
        assert!(ok(r#"{"cn":"billing","ou":"payments"}"#));
        assert!(!ok(r#"{"cn":"billing","ou":"ops"}"#));
        let list = AllowList {
            rules: vec![
                rule(r#"{"cn":"ops"}"#).unwrap(),
                rule(r#"{"uri_san":"spiffe://cluster.local/**"}"#).unwrap(),
            ],
        };
        assert!(list.permits(&id()));
        let list = AllowList {
            rules: vec![rule(r#"{"cn":"ops"}"#).unwrap()],
        };
        assert!(!list.permits(&id()));
        assert!(!AllowList::default().permits(&id()));
    }

    /// The URI SAN a list let a client in by is the one its `uri_san`
    /// matched, not the certificate's first; none when no `uri_san` rule
    /// matched.
    #[test]
    fn admitting_uri_san_is_the_one_matched() {
        let mut two = id();
        two.uri_sans
            .insert(0, "spiffe://cluster.local/ns/dev/sa/x".into());
        let list = |rules: &[&str]| AllowList {
            rules: rules.iter().map(|r| rule(r).unwrap()).collect(),
        };
        let prod = r#"{"uri_san":"spiffe://cluster.local/ns/prod/**"}"#;
        let matched = |rules: &[&str]| list(rules).admitting_uri_san(&two).map(str::to_owned);
        assert_eq!(matched(&[prod]).as_deref(), Some(two.uri_sans[1].as_str()));
        // A rule that does not match as a whole does not name one.
        let prod_ops = r#"{"uri_san":"spiffe://cluster.local/ns/prod/**","ou":"ops"}"#;
        assert_eq!(matched(&[prod_ops]), None);
        assert_eq!(matched(&[r#"{"cn":"billing"}"#]), None);
        assert_eq!(
            matched(&[
                r#"{"cn":"billing"}"#,
                r#"{"uri_san":"spiffe://cluster.local/**"}"#
            ])
            .as_deref(),
            Some("spiffe://cluster.local/ns/dev/sa/x")
        );
    }

    /// A subject with two CNs is read as either by some backend: no `cn`
    /// rule matches it, whichever CN it names; other fields still judge.
    #[test]
    fn several_cns_match_no_cn_rule() {
        let mut two = id();
        two.cn = vec!["intern".into(), "ops".into()];
        for r in [r#"{"cn":"ops"}"#, r#"{"cn":"intern"}"#, r#"{"cn":"*"}"#] {
            assert!(!rule(r).unwrap().matches(&two), "{r}");
        }
        assert!(rule(r#"{"ou":"emea"}"#).unwrap().matches(&two));
    }

    /// A URI SAN no SPIFFE ID could be matches no `uri_san` rule: dot
    /// segments, escapes, a query or fragment, `;` parameters (`..;`),
    /// backslashes, and bytes that are not printable ASCII.
    #[test]
    fn dot_segments_and_escapes_match_no_uri_rule() {
        let g = Glob::new("spiffe://td/ns/prod/**", Kind::Uri).unwrap();
        assert!(g.matches("spiffe://td/ns/prod/sa/web"));
        for v in [
            "spiffe://td/ns/prod/../admin",
            "spiffe://td/ns/prod/./sa/web",
            "spiffe://td/ns/prod/%2e%2e/admin",
            "spiffe://td/ns/prod/sa/web?x",
            "spiffe://td/ns/prod/sa/web#x",
            // Tomcat and Jetty drop `;` parameters, then resolve `..`.
            "spiffe://td/ns/prod/..;/admin",
            "spiffe://td/ns/prod/.;/sa/web",
            "spiffe://td/ns/prod/sa;v=1/web",
            // A backend reading `\` as `/` climbs out of `prod`.
            "spiffe://td/ns/prod/..\\admin",
            "spiffe://td/ns/prod/sa\\web",
            // WHATWG URL parsers remove tabs and line breaks: `..` again.
            "spiffe://td/ns/prod/.\t./admin",
            "spiffe://td/ns/prod/.\n./admin",
            "spiffe://td/ns/prod/.\r./admin",
            // No SPIFFE ID holds a control byte, a space, DEL or non-ASCII.
            "spiffe://td/ns/prod/sa/web\u{0}",
            "spiffe://td/ns/prod/sa/a b",
            "spiffe://td/ns/prod/sa/web\u{7f}",
            "spiffe://td/ns/prod/sa/w\u{e9}b",
        ] {
            assert!(!g.matches(v), "{v}");
        }
        // Nor can a pattern holding one: it is refused, not let no one in.
        assert!(Glob::new("spiffe://td/ns/prod/../admin", Kind::Uri).is_err());
        // A dot inside a segment is an ordinary character.
        let g = Glob::new("spiffe://td/ns/*/sa/web.v2", Kind::Uri).unwrap();
        assert!(g.matches("spiffe://td/ns/a.b/sa/web.v2"));
    }

    /// An email or DNS SAN no CA should issue matches no rule, even `*`:
    /// a NUL, a space, a second `@`, a quoted local part, a byte that is
    /// not ASCII; a DNS label of anything but letters, digits, `-`, `_`.
    #[test]
    fn email_and_dns_sans_are_judged_plain() {
        let email = Glob::new("*@partners.example", Kind::Email).unwrap();
        for v in ["alice@partners.example", "A.b+c_d-e@Partners.EXAMPLE"] {
            assert!(email.matches(v), "{v}");
        }
        for v in [
            "victim@other.example\0@partners.example",
            "a@evil.example@partners.example",
            "a b@partners.example",
            "\"a\"@partners.example",
            "zo\u{eb}@partners.example",
            "@partners.example",
        ] {
            assert!(!email.matches(v), "{v:?}");
        }
        let any = Glob::new("*", Kind::Email).unwrap();
        for v in ["a@b.example", "a@[127.0.0.1]", "a@b..example", "a", "a@"] {
            assert_eq!(any.matches(v), v == "a@b.example", "{v:?}");
        }
        let dns = Glob::new("*.partners.example", Kind::Dns).unwrap();
        for v in [
            "a-1_b.partners.example",
            "xn--zo-cka.partners.example",
            "*.partners.example",
        ] {
            assert!(dns.matches(v), "{v}");
        }
        for v in [
            "x\0y.partners.example",
            "a b.partners.example",
            "a@b.partners.example",
            "a/b.partners.example",
            "a*.partners.example",
            "zo\u{eb}.partners.example",
        ] {
            assert!(!dns.matches(v), "{v:?}");
        }
        let exact = Glob::new("a.*.example", Kind::Dns).unwrap();
        assert!(!exact.matches("a.*.example"), "a wildcard only first");
        assert!(!Glob::new("*", Kind::Dns).unwrap().matches("*"));
    }

    /// A CN or OU with a control character (C0, DEL, C1) matches no rule,
    /// even `*`; spaces and letters that are not ASCII are a name's own.
    #[test]
    fn cn_and_ou_values_are_judged_plain() {
        let g = Glob::new("*.svc", Kind::Text).unwrap();
        assert!(g.matches("api.svc") && g.matches("Jos\u{e9} Smith.svc"));
        for v in [
            "evil\0x.svc",
            "a\nb.svc",
            "a\tb.svc",
            "a\u{7f}.svc",
            "a\u{85}.svc",
        ] {
            assert!(!g.matches(v), "{v:?}");
        }
        assert!(!Glob::new("*", Kind::Text).unwrap().matches("\u{9b}"));
    }

    /// `/**` needs at least one more segment; `*` never matches an empty segment.
    #[test]
    fn glob_edges() {
        let g = Glob::new("spiffe://td/ns/**", Kind::Uri).unwrap();
        assert!(g.matches("spiffe://td/ns/a"));
        assert!(g.matches("spiffe://td/ns/a/b/c"));
        assert!(!g.matches("spiffe://td/ns"));
        assert!(!g.matches("spiffe://td/ns/"));
        assert!(!g.matches("spiffe://td/ns//"));
        assert!(!g.matches("spiffe://td/ns//a"));
        assert!(!g.matches("spiffe://td/ns/a//b"));
        assert!(!g.matches("spiffe://td/ns/a/"));
        assert!(!g.matches("spiffe://td/nsx/a"));
        let g = Glob::new("spiffe://td/ns/*", Kind::Uri).unwrap();
        assert!(!g.matches("spiffe://td/ns/"));
        assert!(!g.matches("spiffe://td/ns/a/b"));
        let g = Glob::new("*.example", Kind::Dns).unwrap();
        assert!(!g.matches(".example"));
        assert!(!g.matches("example"));
        assert!(segment_matches("a*b*c", "aXXbYYc"));
        assert!(!segment_matches("a*b*c", "aXXbYY"));
        assert!(segment_matches("*x", "xxx"));
    }

    /// Malformed rules are refused with the field and the reason.
    #[test]
    fn malformed_rules() {
        let e = rule("{}").unwrap_err();
        assert!(e.contains("needs at least one"), "{e}");
        let e = rule(r#"{"fingerprint_sha256":"abc"}"#).unwrap_err();
        assert!(
            e.contains("fingerprint_sha256") && e.contains("64 hex"),
            "{e}"
        );
        let e = rule(r#"{"uri_san":"spiffe://x/**/y"}"#).unwrap_err();
        assert!(e.contains("uri_san") && e.contains("/**"), "{e}");
        // The file's reader is told the value; the API's is not, and the
        // wording's own `**` and `/**` stay.
        let spec = RuleSpec {
            uri_san: Some("spiffe://x/**/y".into()),
            ..RuleSpec::default()
        };
        let e = AllowRule::try_from(spec).unwrap_err();
        let said = "`**` is only allowed as a final `/**` of a uri_san";
        assert_eq!(
            e.to_string(),
            format!("uri_san: \"spiffe://x/**/y\": {said}")
        );
        assert_eq!(
            e.without_value("allow[3]"),
            format!("allow[3].uri_san: {said}")
        );
        assert!(
            RuleError::Empty
                .without_value("allow[0]")
                .starts_with("allow[0]: an allow rule")
        );
        let e = rule(r#"{"dns_san":"**.example"}"#).unwrap_err();
        assert!(e.contains("dns_san"), "{e}");
        let e = rule(r#"{"cn":""}"#).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = rule(r#"{"subject":"x"}"#).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        // Round trip: what the API shows is what was written.
        let r = rule(r#"{"cn":"billing","ou":"payments"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cn":"billing","ou":"payments"}"#
        );
    }
}
