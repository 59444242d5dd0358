//! `hotproxy check` and `certs inspect`: the report operators read before deploying.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, Config, EntrySpec};
use crate::material::catalogue::{references, unix};
use crate::material::store::{Preview, Store, id_clash};
use crate::material::{CertInfo, Loaded, pem};

/// A date as `2026-11-23T10:00:00Z`.
pub fn date(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_secs.to_string())
}

/// Whole days from now until `not_after` (negative once expired).
pub fn days_left(not_after: i64) -> i64 {
    (not_after - unix(std::time::SystemTime::now())).div_euclid(86_400)
}

/// Parse the configuration, load every entry, apply the checks `run` makes
/// at startup (admin tokens and exposure, the store), print a table and
/// every problem. Exit 0 only when there is no problem at all. Creates and
/// changes nothing.
pub fn run(path: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render());
            eprintln!(
                "configuration check failed: {} problem(s)",
                e.problems.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let refs = references(&config, &Default::default());
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut rows = vec![[
        "ID".to_owned(),
        "TYPE".to_owned(),
        "SUBJECT".to_owned(),
        "SANS".to_owned(),
        "NOT AFTER".to_owned(),
        "DAYS LEFT".to_owned(),
        "SHA-256 FINGERPRINT".to_owned(),
    ]];
    // By id: every listener pair looks its entry up (10,000 of them, maybe).
    let mut loaded: HashMap<String, Loaded> = HashMap::new();
    for spec in &config.entries {
        match pem::load(spec.kind, &spec.source) {
            Ok(l) => {
                rows.extend(entry_rows(spec, &l, &mut warnings));
                loaded.insert(spec.id.clone(), l);
            }
            Err(e) => {
                let used = refs.get(&spec.id).map(|r| r.len()).unwrap_or(0);
                problems.push(format!(
                    "entry {} ({}, used by {used}): {e}",
                    spec.id,
                    spec.kind.as_str()
                ));
                rows.push([
                    spec.id.clone(),
                    spec.kind.as_str().to_owned(),
                    "INVALID".to_owned(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
    }
    // Snapshots: what `run` would build, so a check passes only if run would start.
    for l in &config.listeners {
        let find = |id: &str| loaded.get(id);
        let pairs: Option<Vec<_>> = l
            .certs
            .iter()
            .map(|c| {
                find(&c.entry)
                    .and_then(|m| m.pair())
                    .map(|pair| crate::tls::server::ServedPair {
                        entry: &c.entry,
                        pair,
                        server_names: c.server_names.as_deref(),
                    })
            })
            .collect();
        let ca = l
            .client_auth
            .ca
            .as_deref()
            .map(|id| find(id).and_then(|m| m.ca()));
        if let (Some(pairs), Some(Some(_)) | None) = (pairs, &ca) {
            let Some(resolver) = crate::tls::server::SniResolver::new(&pairs) else {
                problems.push(format!("listener {}: no server certificate", l.name));
                continue;
            };
            let inputs = crate::tls::server::ServerInputs {
                listener: l,
                mode: l.client_auth.mode,
                client_ca: ca.flatten(),
                allow: l.client_auth.allow.as_ref(),
                allow_expired_crl: l.client_auth.allow_expired_crl,
            };
            if let Err(e) = crate::tls::server::build(&inputs, std::sync::Arc::new(resolver)) {
                problems.push(format!("listener {}: {e}", l.name));
            }
        }
    }
    let mut notes = Vec::new();
    startup(&config, &mut rows, &mut problems, &mut warnings, &mut notes);
    print_table(&rows);
    for w in &warnings {
        println!("warning: {w}");
    }
    for n in &notes {
        println!("note: {n}");
    }
    if problems.is_empty() {
        println!(
            "configuration {} is valid: {} entries, {} listeners, {} upstreams",
            config.file.display(),
            config.entries.len(),
            config.listeners.len(),
            config.upstreams.len()
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("{}: {p}", config.file.display());
        }
        eprintln!("configuration check failed: {} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

/// The table rows of one loaded entry; an expired certificate is a warning.
fn entry_rows(spec: &EntrySpec, l: &Loaded, warnings: &mut Vec<String>) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    for info in infos(l) {
        let days = days_left(info.not_after);
        if days < 0 {
            warnings.push(format!(
                "entry {}: certificate {} expired on {}",
                spec.id,
                info.subject,
                date(info.not_after)
            ));
        }
        rows.push([
            spec.id.clone(),
            spec.kind.as_str().to_owned(),
            info.subject.clone(),
            info.sans.join(","),
            date(info.not_after),
            days.to_string(),
            info.fingerprint_sha256.clone(),
        ]);
    }
    if let Some(ca) = l.ca() {
        for crl in ca.crl_infos() {
            let (next, days) = match crl.next_update {
                Some(t) => {
                    crl_warning(&spec.id, &crl.issuer, t, warnings);
                    (date(t), days_left(t).to_string())
                }
                None => (String::new(), String::new()),
            };
            rows.push([
                spec.id.clone(),
                "crl".to_owned(),
                format!("CRL of {}", crl.issuer),
                String::new(),
                next,
                days,
                String::new(),
            ]);
        }
    }
    rows
}

/// How far ahead `check` warns that a CRL's nextUpdate is coming: a CRL
/// publisher that stopped has this long to be fixed.
const CRL_WARN_DAYS: i64 = 7;

/// A CRL past its nextUpdate makes verifying listeners refuse every client
/// certificate (unless `client_auth.allow_expired_crl`); warn before that.
fn crl_warning(entry: &str, issuer: &str, next_update: i64, warnings: &mut Vec<String>) {
    let now = unix(std::time::SystemTime::now());
    if next_update <= now {
        warnings.push(format!(
            "entry {entry}: the CRL of {issuer} expired on {} (nextUpdate): listeners verifying client certificates with it refuse them until a fresh CRL is in place (or set client_auth.allow_expired_crl: true)",
            date(next_update)
        ));
    } else if next_update - now < CRL_WARN_DAYS * 86_400 {
        warnings.push(format!(
            "entry {entry}: the CRL of {issuer} expires on {} (nextUpdate, in {} hours): publish a fresh one before then, or listeners verifying with it refuse client certificates",
            date(next_update),
            (next_update - now) / 3600
        ));
    }
}

/// What `run` checks at startup beyond entries and listeners: the admin
/// listener's exposure and tokens, and the store (key, decryption, ids),
/// through the same functions. Creates nothing: a missing store key is a
/// note, since `run` creates it.
fn startup(
    config: &Config,
    rows: &mut Vec<[String; 7]>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    if let Some(admin) = &config.admin {
        match crate::admin::exposure(admin) {
            Ok(Some(w)) => warnings.push(format!("admin.bind {}: {w}", admin.bind)),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
        problems.extend(crate::admin::auth::Tokens::problems(admin));
    }
    let Some(store) = &config.store else {
        return;
    };
    match Store::preview(store) {
        Err(e) => problems.push(e),
        Ok(Preview::CreatesKey) => notes.push(format!(
            "store.key_file {} does not exist: `hotproxy run` will create it (mode 0600); back it up with the store",
            store.key_file.display()
        )),
        Ok(Preview::Opens(stored)) => {
            // Like startup: a clashing id refuses to start, material that
            // does not load is only a warning (the entry waits for fixes).
            let mut seen: HashSet<&str> = config.entries.iter().map(|e| e.id.as_str()).collect();
            for spec in &stored {
                if !seen.insert(&spec.id) {
                    problems.push(id_clash(&spec.id, &config.file, &store.path));
                    continue;
                }
                match pem::load(spec.kind, &spec.source) {
                    Ok(l) => rows.extend(entry_rows(spec, &l, warnings)),
                    Err(e) => warnings.push(format!(
                        "stored entry {} ({}, in {}): {e}",
                        spec.id,
                        spec.kind.as_str(),
                        store.path.display()
                    )),
                }
            }
        }
    }
}

fn infos(l: &Loaded) -> Vec<&CertInfo> {
    match (l.pair(), l.ca()) {
        (Some(p), _) => vec![&p.leaf],
        (_, Some(ca)) => ca.certs.iter().collect(),
        _ => Vec::new(),
    }
}

fn print_table(rows: &[[String; 7]]) {
    let mut widths = [0usize; 7];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `certs inspect`: metadata of every certificate in each file. Never key material.
pub fn inspect(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        match pem::certificates_in(f) {
            Ok(certs) => {
                for (i, c) in certs.iter().enumerate() {
                    println!("{} [{}]", f.display(), i);
                    println!("  subject:     {}", c.subject);
                    println!("  issuer:      {}", c.issuer);
                    println!("  SANs:        {}", c.sans.join(", "));
                    println!("  serial:      {}", c.serial);
                    println!("  not before:  {}", date(c.not_before));
                    println!(
                        "  not after:   {} ({} days left)",
                        date(c.not_after),
                        days_left(c.not_after)
                    );
                    println!("  CA:          {}", c.is_ca);
                    println!("  SHA-256:     {}", c.fingerprint_sha256);
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
