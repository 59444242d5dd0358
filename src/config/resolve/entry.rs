//! Catalogue entries: `certs:` items, `ref:`s to them, and direct file fields made anonymous entries.

use super::{Named, Resolver, shown};
use crate::config::bare::ENTRY_TYPES;
use crate::config::raw;
use std::path::PathBuf;

use crate::config::{
    EntryKind, EntrySource, EntrySpec, UpstreamCa, crl_files_problem, valid_entry_id,
};

impl Resolver {
    /// The kind and source of `certs[i]`; the source is `None` when a path
    /// of it was refused (the entry is known to `ref:`s but not loaded).
    pub(super) fn named_entry(
        &mut self,
        i: usize,
        e: &raw::Entry,
    ) -> Option<(EntryKind, Option<EntrySource>)> {
        let at = format!("certs[{i}]");
        if !valid_entry_id(&e.id) {
            self.problem(
                format!("{at}.id"),
                format!(
                    "invalid id {}: must match ^[a-z0-9][a-z0-9_-]{{0,63}}$",
                    shown(&e.id)
                ),
            );
        }
        // How a problem of another field names the entry: by its id, or
        // by its place (`certs[0]`) when the id is refused, or withheld
        // (`${NAME}`, a block scalar), which only its own field's problems
        // may hold, withheld there (SPEC §2).
        let id_at = format!("{at}.id");
        let name = if valid_entry_id(&e.id)
            && !self.withheld.contains(&id_at)
            && !self.blocks.contains(&id_at)
        {
            shown(&e.id)
        } else {
            at.clone()
        };
        let Some(kind) = EntryKind::parse(&e.kind) else {
            self.problem(
                format!("{at}.type"),
                format!("unknown type {} {ENTRY_TYPES}", shown(&e.kind)),
            );
            return None;
        };
        let source = match kind {
            EntryKind::ServerPair | EntryKind::ClientPair => {
                if e.ca_file.is_some() || e.crl_files.is_some() {
                    self.problem(
                        &at,
                        format!(
                            "a {} takes cert_file and key_file, not ca_file/crl_files",
                            kind.as_str()
                        ),
                    );
                }
                match (&e.cert_file, &e.key_file) {
                    (Some(c), Some(k)) => {
                        let cert_file = self.path_of(&format!("{at}.cert_file"), Some(&name), c);
                        let key_file = self.path_of(&format!("{at}.key_file"), Some(&name), k);
                        cert_file.zip(key_file).map(|(cert_file, key_file)| {
                            EntrySource::PairFiles {
                                cert_file,
                                key_file,
                            }
                        })
                    }
                    _ => {
                        self.problem(
                            &at,
                            format!("a {} needs cert_file and key_file", kind.as_str()),
                        );
                        return None;
                    }
                }
            }
            EntryKind::CaBundle => {
                if e.cert_file.is_some() || e.key_file.is_some() {
                    self.problem(
                        &at,
                        "a ca-bundle takes ca_file (and crl_files), not cert_file/key_file",
                    );
                }
                let Some(ca) = &e.ca_file else {
                    self.problem(&at, "a ca-bundle needs ca_file");
                    return None;
                };
                let ca_file = self.path_of(&format!("{at}.ca_file"), Some(&name), ca);
                let crl_files = self.crl_files(&at, Some(&name), e.crl_files.as_deref());
                ca_file
                    .zip(crl_files)
                    .map(|(ca_file, crl_files)| EntrySource::CaFiles { ca_file, crl_files })
            }
        };
        Some((kind, source))
    }

    /// The `crl_files` of the ca-bundle at `at` (named `entry`), as paths;
    /// a list too long or naming a file twice is a problem (SPEC §2).
    /// `None` when a path of it was refused.
    fn crl_files(
        &mut self,
        at: &str,
        entry: Option<&str>,
        list: Option<&[String]>,
    ) -> Option<Vec<PathBuf>> {
        let at = format!("{at}.crl_files");
        let crl_files: Vec<Option<PathBuf>> = list
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, p)| self.path_of(&format!("{at}[{j}]"), entry, p))
            .collect();
        // Judged only when every path is one: the problem names a path.
        let crl_files: Vec<PathBuf> = crl_files.into_iter().collect::<Option<_>>()?;
        if let Some(problem) = crl_files_problem(&crl_files) {
            self.problem(at, problem);
        }
        Some(crl_files)
    }

    /// A `ref:` to a named entry of kind `want`, or `None` after recording why not.
    fn reference(&mut self, at: &str, id: &str, want: EntryKind, named: &Named) -> Option<String> {
        match named.get(id) {
            Some(kind) if *kind == want => Some(id.to_owned()),
            Some(kind) => {
                self.problem(
                    at,
                    format!(
                        "entry {} is a {}, a {} is needed here",
                        shown(id),
                        kind.as_str(),
                        want.as_str()
                    ),
                );
                None
            }
            None => {
                self.problem(at, format!("no entry {} in certs", shown(id)));
                None
            }
        }
    }

    /// A pair given by `ref` or by files (an anonymous entry named `place`).
    pub(super) fn pair(
        &mut self,
        at: &str,
        c: &raw::CertRef,
        want: EntryKind,
        place: String,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> Option<String> {
        match (&c.reference, &c.cert_file, &c.key_file) {
            (Some(r), None, None) => self.reference(&format!("{at}.ref"), r, want, named),
            (None, Some(cert), Some(key)) => {
                let cert_file = self.path(&format!("{at}.cert_file"), cert);
                let key_file = self.path(&format!("{at}.key_file"), key);
                // A refused path: the place is named, nothing is loaded.
                if let (Some(cert_file), Some(key_file)) = (cert_file, key_file) {
                    anonymous.push(EntrySpec {
                        id: place.clone(),
                        kind: want,
                        source: EntrySource::PairFiles {
                            cert_file,
                            key_file,
                        },
                        anonymous: true,
                    });
                }
                Some(place)
            }
            (Some(_), _, _) => {
                self.problem(at, "give either ref or cert_file + key_file, not both");
                None
            }
            _ => {
                self.problem(at, "needs ref, or cert_file and key_file");
                None
            }
        }
    }

    /// A CA bundle given by `ref` or files; `Ok(None)` = `system: true`.
    pub(super) fn ca(
        &mut self,
        at: &str,
        c: &raw::CaRef,
        place: String,
        allow_system: bool,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> Option<UpstreamCa> {
        let system = c.system.unwrap_or(false);
        match (&c.reference, &c.ca_file, system) {
            (Some(r), None, false) => {
                if c.crl_files.is_some() {
                    self.problem(
                        format!("{at}.crl_files"),
                        "crl_files go on the referenced ca-bundle entry",
                    );
                }
                self.reference(&format!("{at}.ref"), r, EntryKind::CaBundle, named)
                    .map(UpstreamCa::Entry)
            }
            (None, Some(f), false) => {
                let ca_file = self.path(&format!("{at}.ca_file"), f);
                let crl_files = self.crl_files(at, None, c.crl_files.as_deref());
                // A refused path: the place is named, nothing is loaded.
                if let (Some(ca_file), Some(crl_files)) = (ca_file, crl_files) {
                    anonymous.push(EntrySpec {
                        id: place.clone(),
                        kind: EntryKind::CaBundle,
                        source: EntrySource::CaFiles { ca_file, crl_files },
                        anonymous: true,
                    });
                }
                Some(UpstreamCa::Entry(place))
            }
            (None, None, true) if allow_system => Some(UpstreamCa::System),
            (None, None, true) => {
                self.problem(format!("{at}.system"), "the system trust store is not accepted for client certificates; give ref or ca_file");
                None
            }
            _ => {
                self.problem(
                    at,
                    if allow_system {
                        "needs exactly one of ref, ca_file or system: true"
                    } else {
                        "needs exactly one of ref or ca_file"
                    },
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, messages, parse_str};

    /// Direct file fields become anonymous entries named after their place.
    #[test]
    fn direct_files_become_anonymous_entries() {
        let text = MINIMAL.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge }, { cert_file: /le/fullchain.pem, key_file: /le/privkey.pem, server_names: [Example.com] }]",
        );
        let c = parse_str(&text).unwrap();
        let anon = c.entries.iter().find(|e| e.anonymous).unwrap();
        assert_eq!(anon.id, "listeners.public.tls.certs[1]");
        assert_eq!(
            c.listeners[0].certs[1].server_names.as_deref(),
            Some(&["example.com".to_owned()][..])
        );
    }

    /// A ca-bundle lists at most 64 CRL files, each once, in `certs:` and
    /// in a direct `ca_file` alike: every re-read of the entry opens each
    /// listed file, on the reloader's thread.
    #[test]
    fn crl_files_are_bounded_and_each_listed_once() {
        let ca = "    ca_file: pki/ca.crt\n";
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("c{i}.crl"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = MINIMAL.replace(ca, &format!("{ca}    crl_files: [{}]\n", list(64)));
        assert_eq!(
            parse_str(&text).unwrap().entries[1].source.paths().len(),
            65
        );
        let text = MINIMAL.replace(ca, &format!("{ca}    crl_files: [{}]\n", list(65)));
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(
            m.contains("certs[1].crl_files: 65 files listed; at most 64"),
            "{m}"
        );
        let text = MINIMAL.replace(
            "ca: { ref: ca }",
            "ca: { ca_file: pki/ca.crt, crl_files: [a.crl, b.crl, a.crl] }",
        );
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(
            m.contains("upstreams[0].tls.ca.crl_files: ") && m.contains("a.crl is listed twice"),
            "{m}"
        );
    }

    /// A client-pair where a server-pair is needed names both.
    #[test]
    fn ref_type_mismatch_names_both() {
        let text = MINIMAL.replace("certs: [{ ref: edge }]", "certs: [{ ref: client }]");
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(
            m.contains("\"client\" is a client-pair") && m.contains("server-pair is needed"),
            "{m}"
        );
        assert!(m.contains("listeners[0].tls.certs[0].ref"), "{m}");
    }
}
