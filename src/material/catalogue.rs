//! The catalogue: entries by id, their live material, last reload result, references.
//!
//! Owned by the reloader (the single writer). Readers (admin API, `check`)
//! see [`EntryView`]s published after every change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{ClientAuthConfig, Config, EntryKind, EntrySource, EntrySpec, UpstreamCa};
use crate::material::info::rfc3339;
use crate::material::pem::Step;
use crate::material::{CertInfo, Loaded};

/// Where an entry was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The configuration file (named or anonymous).
    Config,
    /// Created through the admin API, persisted in the store.
    Store,
}

/// The outcome of the last attempt to (re)load an entry. Serialized with
/// `time` in RFC 3339 and `time_unix` in Unix seconds; a `pending` result
/// also has the `reason` it waits and its `deadline` (+ `deadline_unix`).
#[derive(Clone, Debug)]
pub struct ReloadResult {
    /// Unix seconds.
    pub time: i64,
    /// `success`, `failure`, or `pending`: changed files that do not load
    /// yet are waited for (a writer half-way) until `deadline`.
    pub result: &'static str,
    /// The problem: why it failed, or what a pending reload waits for.
    pub error: Option<String>,
    /// Pending only: Unix seconds when waiting ends and it counts as failed.
    pub deadline: Option<i64>,
}

impl Serialize for ReloadResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            time: String,
            time_unix: i64,
            result: &'a str,
            error: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            deadline: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            deadline_unix: Option<i64>,
        }
        let pending = self.result == "pending";
        Out {
            time: rfc3339(self.time),
            time_unix: self.time,
            result: self.result,
            error: if pending { None } else { self.error.as_deref() },
            reason: if pending { self.error.as_deref() } else { None },
            deadline: self.deadline.map(rfc3339),
            deadline_unix: self.deadline,
        }
        .serialize(s)
    }
}

impl ReloadResult {
    /// A success, now.
    pub fn success() -> Option<ReloadResult> {
        Some(ReloadResult {
            time: unix(SystemTime::now()),
            result: "success",
            error: None,
            deadline: None,
        })
    }

    /// A failure with its reason, now.
    pub fn failure(error: String) -> Option<ReloadResult> {
        Some(ReloadResult {
            time: unix(SystemTime::now()),
            result: "failure",
            error: Some(error),
            deadline: None,
        })
    }

    /// Waiting for `reason` to go away until `deadline`.
    pub fn pending(reason: String, deadline: SystemTime) -> Option<ReloadResult> {
        Some(ReloadResult {
            time: unix(SystemTime::now()),
            result: "pending",
            error: Some(reason),
            deadline: Some(unix(deadline)),
        })
    }
}

/// A wait on a writer mid-way: its files changed and do not load yet.
#[derive(Clone, Copy, Debug)]
pub struct Unsettled {
    /// The first read that found the files not loading (since the entry
    /// last served what they hold, or a wait ended in a failure), or the
    /// last since then that found them holding more bytes than any before
    /// (a writer getting on): past [`Step::KINDS`] × `settle_timeout` from
    /// there the files are refused, however the writer's steps change.
    pub first: Instant,
    /// The most bytes the files held together at a read since they
    /// stopped loading ([`crate::material::pem::files_size`]).
    pub size: u64,
    /// Since when the entry has been refused for the step of the writer it
    /// is refused for now, a transient problem: failures count only after
    /// `settle_timeout`. A problem of another step starts a wait of its
    /// own.
    pub since: Instant,
    pub step: Step,
    /// Refused for not settling within the bound from `first`: the writer
    /// is still at work, and its later steps are refused too (said once),
    /// until the files load or stay on one step for `settle_timeout`.
    pub refused: bool,
}

/// One entry with its live material and reload bookkeeping.
#[derive(Clone)]
pub struct Entry {
    pub spec: EntrySpec,
    pub origin: Origin,
    /// The last good material: what snapshots are built from.
    pub current: Option<Arc<Loaded>>,
    pub last_reload: Option<ReloadResult>,
    /// The wait in progress on a writer mid-way. Cleared when material is
    /// served or the wait ends in a failure, so the next writer's wait
    /// starts at its first read.
    pub unsettled: Option<Unsettled>,
    /// Consecutive failures, for retry backoff.
    pub failures: u32,
    /// The last problem logged, so each distinct problem is logged once.
    pub last_logged: Option<String>,
    /// The problem of the last failure counted in
    /// `hotproxy_cert_reloads_total` (without the words of a refusal for
    /// not settling), so a back-off retry that fails the same way counts
    /// nothing more.
    pub last_counted: Option<String>,
    /// Whether a retry timer is already pending.
    pub retry_pending: bool,
    /// The live material was put through the admin API over a definition
    /// that reads files; it stays until the files are read again.
    pub from_api: bool,
    /// With `from_api`: the state of the files when the API replaced their
    /// material (`pem::files_state`: their content's hash, or the way they
    /// failed to read), whatever was served then. A re-read that finds
    /// them the same (a chmod, a kubelet swap for another key, a poll)
    /// keeps the API's material; only files that changed since (a
    /// rollback of broken files too), or an explicit reload, take over.
    pub files_hash: Option<[u8; 32]>,
    /// The state of the files (as `pem::files_state` says it) at their
    /// last read; `None` while a writer is at work (no two reads agree).
    pub read_state: Option<[u8; 32]>,
    /// The `read_state` of the last read that refused them since the
    /// entry last loaded: a watcher's report of files that hold it still (a
    /// `touch`, a chmod, a kubelet swap for another key) counts nothing.
    pub refused_state: Option<[u8; 32]>,
}

impl Entry {
    pub fn new(spec: EntrySpec, origin: Origin) -> Entry {
        Entry {
            spec,
            origin,
            current: None,
            last_reload: None,
            unsettled: None,
            failures: 0,
            last_logged: None,
            last_counted: None,
            retry_pending: false,
            from_api: false,
            files_hash: None,
            read_state: None,
            refused_state: None,
        }
    }
}

/// Who uses an entry: shown as `{"listener": "public", "field": "tls.certs[0]"}`
/// or `{"upstream": "api", "field": "tls.client_cert"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub kind: &'static str,
    pub name: String,
    pub field: String,
}

impl Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(self.kind, &self.name)?;
        m.serialize_entry("field", &self.field)?;
        m.end()
    }
}

/// Every reference to every entry in `config`, with the client auth set at
/// runtime through the admin API (by listener) in place of the file's.
pub fn references(
    config: &Config,
    client_auth_overrides: &BTreeMap<String, ClientAuthConfig>,
) -> BTreeMap<String, Vec<Reference>> {
    let mut refs: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
    let mut add = |entry: &str, kind, name: &str, field: String| {
        refs.entry(entry.to_owned()).or_default().push(Reference {
            kind,
            name: name.to_owned(),
            field,
        })
    };
    for l in &config.listeners {
        for (i, c) in l.certs.iter().enumerate() {
            add(&c.entry, "listener", &l.name, format!("tls.certs[{i}]"));
            if let Some(ca) = c.client_auth.as_ref().and_then(|a| a.ca.as_ref()) {
                add(
                    ca,
                    "listener",
                    &l.name,
                    format!("tls.certs[{i}].client_auth.ca"),
                );
            }
        }
        let (client_auth, field) = match client_auth_overrides.get(&l.name) {
            Some(runtime) => (runtime, "tls.client_auth.ca (set at runtime)"),
            None => (&l.client_auth, "tls.client_auth.ca"),
        };
        if let Some(ca) = &client_auth.ca {
            add(ca, "listener", &l.name, field.into());
        }
    }
    for u in &config.upstreams {
        if let UpstreamCa::Entry(ca) = &u.tls.ca {
            add(ca, "upstream", &u.name, "tls.ca".into());
        }
        if let Some(c) = &u.tls.client_cert {
            add(c, "upstream", &u.name, "tls.client_cert".into());
        }
    }
    refs
}

/// What the admin API and `check` show about an entry. Never key material.
#[derive(Clone, Debug, Serialize)]
pub struct EntryView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `file` or `inline`: how the entry is defined.
    pub source: &'static str,
    /// Where the material served now came from: `file`, `inline`, or
    /// `api` (a PUT over a file-backed entry, until its files change again
    /// or it is reloaded from disk).
    pub live_source: &'static str,
    pub origin: Origin,
    pub anonymous: bool,
    pub paths: Vec<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub sans: Vec<String>,
    pub serial: Option<String>,
    /// RFC 3339; `*_unix` hold the same instants in Unix seconds.
    pub not_before: Option<String>,
    pub not_before_unix: Option<i64>,
    pub not_after: Option<String>,
    pub not_after_unix: Option<i64>,
    pub fingerprint_sha256: Option<String>,
    /// Every certificate of a CA bundle (empty for pairs).
    pub ca_certs: Vec<CertInfo>,
    pub crl_count: usize,
    pub last_reload: Option<ReloadResult>,
    pub referenced_by: Vec<Reference>,
    /// Changes whenever the live material or the definition changes: the ETag.
    pub etag: String,
}

impl EntryView {
    pub fn of(entry: &Entry, referenced_by: Vec<Reference>) -> EntryView {
        let primary = entry.current.as_ref().and_then(|l| l.primary().cloned());
        let (ca_certs, crl_count) = match entry.current.as_ref().and_then(|l| l.ca()) {
            Some(ca) => (ca.certs.clone(), ca.crls.len()),
            None => (Vec::new(), 0),
        };
        let etag = etag(entry);
        EntryView {
            id: entry.spec.id.clone(),
            kind: entry.spec.kind.as_str(),
            source: if entry.spec.source.is_inline() {
                "inline"
            } else {
                "file"
            },
            live_source: if entry.from_api {
                "api"
            } else if entry.spec.source.is_inline() {
                "inline"
            } else {
                "file"
            },
            origin: entry.origin,
            anonymous: entry.spec.anonymous,
            paths: entry
                .spec
                .source
                .paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            subject: primary.as_ref().map(|p| p.subject.clone()),
            issuer: primary.as_ref().map(|p| p.issuer.clone()),
            sans: primary.as_ref().map(|p| p.sans.clone()).unwrap_or_default(),
            serial: primary.as_ref().map(|p| p.serial.clone()),
            not_before: primary.as_ref().map(|p| rfc3339(p.not_before)),
            not_before_unix: primary.as_ref().map(|p| p.not_before),
            not_after: entry.current.as_ref().map(|l| rfc3339(l.not_after())),
            not_after_unix: entry.current.as_ref().map(|l| l.not_after()),
            fingerprint_sha256: primary.as_ref().map(|p| p.fingerprint_sha256.clone()),
            ca_certs,
            crl_count,
            last_reload: entry.last_reload.clone(),
            referenced_by,
            etag,
        }
    }
}

/// A strong validator over the definition and the live material's hash.
fn etag(entry: &Entry) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    entry.spec.id.hash(&mut h);
    entry.spec.kind.as_str().hash(&mut h);
    for p in entry.spec.source.paths() {
        p.hash(&mut h);
    }
    if let Some(l) = &entry.current {
        l.key().hash(&mut h);
    }
    format!("\"{:016x}\"", h.finish())
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether an entry's source can be re-read from disk.
pub fn is_file_backed(source: &EntrySource) -> bool {
    !source.is_inline()
}

/// Kind check used by runtime changes (admin API): `want` is what the
/// place needs.
pub fn kind_matches(entry: &EntrySpec, want: EntryKind) -> bool {
    entry.kind == want
}
