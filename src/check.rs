//! `hotproxy check` and `certs inspect`: the report operators read before deploying.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{self, Config, EntrySpec};
use crate::material::catalogue::{Entry, Origin, references, unix};
use crate::material::store::{Preview, Store, id_clash};
use crate::material::{CertInfo, Loaded, pem, shown_path};

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
/// at startup (admin tokens and exposure, the store, listener and upstream
/// TLS built by the proxy's own builders), print a table and
/// every problem. Exit 0 only when there is no problem at all (an unused
/// entry whose files do not load is a warning, as in `run`). Creates and
/// changes nothing.
pub fn run(path: &Path) -> ExitCode {
    // Every problem in one run, like `nginx -t`: the configuration's (each
    // unknown key, wrong value and bad reference, with its line), then the
    // files of every entry that resolved.
    let (file, text) = match config::read(path) {
        Ok(read) => read,
        Err(e) => {
            crate::errln!("{}", e.render());
            crate::errln!("configuration check failed: 1 problem(s)");
            return ExitCode::FAILURE;
        }
    };
    let (config, config_problems) = config::parse_all(&text, &file);
    let config_problems: Vec<String> = config_problems
        .into_iter()
        .map(|p| format!("{}: {}", p.location, p.message))
        .collect();
    let Some(config) = config else {
        let lines = config_problems
            .iter()
            .map(|p| format!("{}: {p}", shown_path(&file)));
        for line in config::listed(&file, lines.collect()) {
            crate::errln!("{line}");
        }
        crate::errln!(
            "configuration check failed: {} problem(s)",
            config_problems.len()
        );
        return ExitCode::FAILURE;
    };
    let refs = references(&config, &Default::default());
    // Where the file has a problem, the value read in its place (an
    // address of `0.0.0.0:0`, a listener with no certificate) is built on
    // no further: `run` reports the problem alone.
    let flagged: Vec<String> = config_problems
        .iter()
        .map(|p| flagged_path(p).to_owned())
        .collect();
    // Either way round: a problem inside the section (a refused field) or
    // on a path that holds it (`listeners[1]` a scalar, the whole item a
    // stand-in) leaves the section built on nothing `run` would build.
    let flagged = |within: &str| {
        flagged
            .iter()
            .any(|p| is_within(p, within) || is_within(within, p))
    };
    let mut problems = config_problems;
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
    // Held as the proxy holds them, so its own snapshot builder runs on them.
    let mut loaded: BTreeMap<String, Entry> = BTreeMap::new();
    for spec in &config.entries {
        match pem::load(spec.kind, &spec.source) {
            Ok(l) => {
                rows.extend(entry_rows(spec, &l, &mut warnings));
                let mut entry = Entry::new(spec.clone(), Origin::Config);
                entry.current = Some(Arc::new(l));
                loaded.insert(spec.id.clone(), entry);
            }
            Err(e) => {
                let line = format!(
                    "entry {} ({}, {}): {e}",
                    spec.id,
                    spec.kind.as_str(),
                    used_by(refs.get(&spec.id))
                );
                // As `run` does: only a referenced entry refuses to start;
                // an unused one is warned about ("unused entry has no
                // usable material") and waits for its files.
                if refs.contains_key(&spec.id) {
                    problems.push(line);
                } else {
                    warnings.push(format!("{line} (`run` starts without it)"));
                }
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
    // Snapshots: what `run` builds — the listener's client_auth and every
    // certs entry's own (crt-list style) — by the proxy's own builder, so a
    // check passes only if run would start.
    for (i, l) in config.listeners.iter().enumerate() {
        // A redirect_https listener speaks plain HTTP: no TLS to build.
        // One whose TLS section has a problem was read without what was
        // refused (every certificate: "no server certificate").
        if l.front.redirect_https.is_some() || flagged(&format!("listeners[{i}].tls")) {
            continue;
        }
        // An entry that did not load is reported above, once.
        let cas = std::iter::once(&l.client_auth)
            .chain(l.certs.iter().filter_map(|c| c.client_auth.as_ref()))
            .filter_map(|a| a.ca.as_deref());
        let all_loaded = l
            .certs
            .iter()
            .map(|c| c.entry.as_str())
            .chain(cas)
            .all(|id| loaded.contains_key(id));
        if !all_loaded {
            continue;
        }
        if let Err(e) = crate::reload::build_listener_tls(l, &loaded) {
            problems.push(format!("listener {}: {e}", l.name));
        }
    }
    // Every upstream's TLS too, as `run` builds it before any listener
    // (a CA bundle webpki refuses as trust anchors, a CRL its verifier
    // refuses). Built whether its servers are https:// or not, as `run` does.
    for u in &config.upstreams {
        let ca = match &u.tls.ca {
            config::UpstreamCa::Entry(id) => Some(id.as_str()),
            config::UpstreamCa::System => None,
        };
        // An entry that did not load is reported above, once.
        let all_loaded = ca
            .into_iter()
            .chain(u.tls.client_cert.as_deref())
            .all(|id| loaded.contains_key(id));
        if !all_loaded {
            continue;
        }
        if let Err(e) = crate::reload::build_upstream_tls(u, &loaded) {
            problems.push(format!("upstream {}: {e}", u.name));
        }
    }
    // Said once, as `run` logs it when it first builds such an upstream.
    let system = |u: &config::UpstreamConfig| matches!(u.tls.ca, config::UpstreamCa::System);
    if config.upstreams.iter().any(system)
        && let Some(w) = crate::tls::client::system_roots_warning()
    {
        warnings.push(w.to_owned());
    }
    let mut notes = Vec::new();
    // The admin API's exposure, unless its address or tokens were refused
    // (read as `0.0.0.0:0`, or without a token: said to expose it).
    let exposure = !flagged("admin.bind") && !flagged("admin.tokens");
    let seen = (&mut problems, &mut warnings, &mut notes);
    let stored = startup(&config, &mut rows, exposure, seen);
    if !problems.is_empty() {
        // The table comes first: `check … | head` must still exit 1.
        crate::stdio::failing();
    }
    print_table(&rows);
    for w in &warnings {
        crate::outln!("warning: {w}");
    }
    for n in &notes {
        crate::outln!("note: {n}");
    }
    if problems.is_empty() {
        // Every entry of the table: the store's too.
        let from_store = if stored > 0 {
            format!(" ({stored} from the store)")
        } else {
            String::new()
        };
        crate::outln!(
            "configuration {} is valid: {} entries{from_store}, {} listeners, {} upstreams",
            shown_path(&config.file),
            config.entries.len() + stored,
            config.listeners.len(),
            config.upstreams.len()
        );
        ExitCode::SUCCESS
    } else {
        let lines = problems
            .iter()
            .map(|p| format!("{}: {p}", shown_path(&config.file)));
        for line in config::listed(&config.file, lines.collect()) {
            crate::errln!("{line}");
        }
        crate::errln!("configuration check failed: {} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

/// The table rows of one loaded entry; an expired certificate, and what
/// the material does less than it may seem to, are warnings.
fn entry_rows(spec: &EntrySpec, l: &Loaded, warnings: &mut Vec<String>) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    // What loads but does less than it may seem to (a CA certificate
    // revoked or unchecked), as the proxy logs it at load.
    for note in l.notes().iter().filter(|n| n.is_warning()) {
        warnings.push(format!("entry {}: {note}", spec.id));
    }
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
        // `run` loads it too, and warns: no client accepts it until then.
        if info.not_before > unix(std::time::SystemTime::now()) {
            warnings.push(format!(
                "entry {}: certificate {} is not valid until {} (loaded anyway)",
                spec.id,
                info.subject,
                date(info.not_before)
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
/// listener's exposure and tokens, the access log's file, and the store (key, decryption, ids),
/// through the same functions. Creates nothing: a missing store key is a
/// note, since `run` creates it. Returns how many entries the store holds.
fn startup(
    config: &Config,
    rows: &mut Vec<[String; 7]>,
    exposure: bool,
    (problems, warnings, notes): (&mut Vec<String>, &mut Vec<String>, &mut Vec<String>),
) -> usize {
    if let Some(admin) = &config.admin {
        problems.extend(admin_problems(admin, exposure, warnings));
    }
    let (refused, store) = restart_problems(config, false, true, warnings);
    problems.extend(refused);
    // `run` raises the soft limit to the hard one; what is still short is said.
    if let Some(short) = crate::nofile::check_warning(config) {
        warnings.push(short.to_string());
    }
    // First match wins: said as `run` logs it at startup and on reload.
    for (i, l) in config.listeners.iter().enumerate() {
        warnings.extend(l.route_overlaps.iter().cloned());
        warnings.extend(config::left_out_warnings(l, &format!("listeners[{i}]")));
    }
    if let Some(Err(e)) = config.access_log.as_ref().map(crate::access_log::preview) {
        problems.push(e);
    }
    match (store, &config.store) {
        (Some(Preview::CreatesKey), Some(store)) => {
            notes.push(format!(
                "store.key_file {} does not exist: `hotproxy run` will create it (mode 0600); back it up with the store",
                crate::material::shown_path(&store.key_file)
            ));
            0
        }
        (Some(Preview::Opens(stored)), Some(store)) => {
            // Like startup: material that does not load is only a warning
            // (the entry waits for fixes), and so are files outside
            // store.file_roots.
            let roots = crate::admin::paths::roots(config);
            for spec in &stored {
                if let Some(files) = crate::admin::paths::outside_shown(&spec.source, &roots) {
                    warnings.push(format!(
                        "stored entry {} names files outside store.file_roots ({files}): {}",
                        spec.id,
                        crate::admin::paths::OUTSIDE_ROOTS
                    ));
                }
                match pem::load(spec.kind, &spec.source) {
                    Ok(l) => rows.extend(entry_rows(spec, &l, warnings)),
                    Err(e) => warnings.push(format!(
                        "stored entry {} ({}, in {}): {e}",
                        spec.id,
                        spec.kind.as_str(),
                        crate::material::shown_path(&store.path)
                    )),
                }
            }
            stored.len()
        }
        _ => 0,
    }
}

/// What `run` refuses in the admin section: its token sources that do
/// not read, and, if `exposure`, the API exposed without tokens (a
/// loopback address without any is a warning).
fn admin_problems(
    admin: &config::AdminConfig,
    exposure: bool,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match crate::admin::exposure(admin) {
        _ if !exposure => {}
        Ok(Some(w)) => warnings.push(format!("admin.bind {}: {w}", admin.bind_shown)),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    problems.extend(crate::admin::auth::Tokens::problems(admin, warnings));
    problems
}

/// The field a problem of the file is at: its location without the line
/// (`line 7: listeners[0].tls.certs[0].ref: no entry …`).
fn flagged_path(problem: &str) -> &str {
    let at = problem.strip_prefix("line ").map_or(problem, |rest| {
        rest.split_once(": ").map_or(rest, |(_, at)| at)
    });
    at.split_once(": ").map_or(at, |(at, _)| at)
}

/// Whether field `path` is `within` or inside it.
fn is_within(path: &str, within: &str) -> bool {
    path.strip_prefix(within)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// What `run` refuses to start with in the sections it reads once, at
/// startup: the admin listener exposed without tokens and a token source
/// that does not read (`admin`), the store's key, its decryption and a
/// stored id the file's entries take (`store`). `check` asks for both; a
/// reload that changes such a section asks for it and is refused, as the
/// next restart would be. Creates nothing; the admin listener's warning
/// (loopback, no tokens) goes to `warnings`. Also returns what the store
/// would open (when asked and there is one), its entries whose ids are
/// free.
pub fn restart_problems(
    config: &Config,
    admin: bool,
    store: bool,
    warnings: &mut Vec<String>,
) -> (Vec<String>, Option<Preview>) {
    let mut problems = Vec::new();
    if let Some(admin) = config.admin.as_ref().filter(|_| admin) {
        problems.extend(admin_problems(admin, true, warnings));
    }
    let Some(store) = config.store.as_ref().filter(|_| store) else {
        return (problems, None);
    };
    let preview = match Store::preview(store) {
        Err(e) => {
            problems.push(e);
            return (problems, None);
        }
        Ok(Preview::Opens(stored)) => {
            // Like startup: a clashing id refuses to start.
            let mut seen: HashSet<&str> = config.entries.iter().map(|e| e.id.as_str()).collect();
            let mut free = Vec::new();
            for spec in &stored {
                if seen.insert(&spec.id) {
                    free.push(spec.clone());
                } else {
                    problems.push(id_clash(&spec.id, &config.file, &store.path));
                }
            }
            Preview::Opens(free)
        }
        Ok(creates) => creates,
    };
    (problems, Some(preview))
}

/// `used by listener public (tls.certs[0]), upstream api (tls.ca)`, or `unused`.
fn used_by(refs: Option<&Vec<crate::material::catalogue::Reference>>) -> String {
    match refs {
        Some(refs) if !refs.is_empty() => {
            let names: Vec<String> = refs
                .iter()
                .map(|r| format!("{} {} ({})", r.kind, r.name, r.field))
                .collect();
            format!("used by {}", names.join(", "))
        }
        _ => "unused".to_owned(),
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
            // Padded by hand: `{c:<w$}` panics on a width past 65,535
            // (a certificate's SANs joined, which nothing bounds).
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        crate::outln!("{}", line.join("  ").trim_end());
    }
}

/// `certs inspect`: metadata of every certificate in each file. Never key material.
pub fn inspect(files: &[PathBuf]) -> ExitCode {
    // Every file read first: a failure decided before the first line is
    // printed still exits 1 when `| head` closes stdout early.
    let read: Vec<_> = files.iter().map(|f| (f, pem::certificates_in(f))).collect();
    let failed = read.iter().any(|(_, r)| r.is_err());
    if failed {
        crate::stdio::failing();
    }
    for (f, result) in read {
        match result {
            Ok(certs) => {
                // As the file's load messages show it: a name holding an
                // ESC or a line break is escaped, not written to the
                // terminal as is.
                let shown = crate::material::shown_path(f);
                for (i, c) in certs.iter().enumerate() {
                    crate::outln!("{shown} [{i}]");
                    crate::outln!("  subject:     {}", c.subject);
                    crate::outln!("  issuer:      {}", c.issuer);
                    crate::outln!("  SANs:        {}", c.sans.join(", "));
                    crate::outln!("  serial:      {}", c.serial);
                    crate::outln!("  not before:  {}", date(c.not_before));
                    crate::outln!(
                        "  not after:   {} ({} days left)",
                        date(c.not_after),
                        days_left(c.not_after)
                    );
                    crate::outln!("  CA:          {}", c.is_ca);
                    crate::outln!("  SHA-256:     {}", c.fingerprint_sha256);
                }
            }
            Err(e) => crate::errln!("{e}"),
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
