//! Catalogue entries over the API: create, replace, delete, rotate, validate.
//!
//! Each function runs on the reloader thread (the single writer) and either
//! fully applies or leaves the store and the catalogue as they were.

use http::StatusCode;
use serde_json::{Value, json};
use tracing::info;

use super::{Reply, bad_request, load_refused, no_entry, problem, short_of_resources};
use crate::admin::paths;
use crate::config::EntrySpec;
use crate::material::catalogue::{EntryView, Origin};
use crate::material::pem;
use crate::material::store::SaveError;
use crate::reload::Reloader;

/// 412 unless `If-Match` (when given) names the entry's current ETag.
fn check_if_match(
    r: &Reloader,
    id: &str,
    if_match: Option<&str>,
) -> Result<EntryView, (StatusCode, Value)> {
    let view = r.entry_view(id).ok_or_else(|| no_entry(id))?;
    if let Some(want) = if_match
        && want.trim() != "*"
        && !want.split(',').any(|t| t.trim() == view.etag)
    {
        return Err(problem(
            StatusCode::PRECONDITION_FAILED,
            format!("entry {id} changed since that ETag was read; GET it again"),
        ));
    }
    Ok(view)
}

/// 409 while a reload changed where or with which key the store is kept
/// (it applies at the next restart): a write now would land where that
/// restart does not read it, or sealed with a key it does not have.
fn check_store_unmoved(r: &Reloader) -> Result<(), (StatusCode, Value)> {
    match r.store_moved() {
        None => Ok(()),
        Some(field) => Err(problem(
            StatusCode::CONFLICT,
            format!(
                "store settings changed in the configuration ({field}); restart to apply them: until then entries are not created, replaced in the store or deleted"
            ),
        )),
    }
}

pub(super) fn entry_reply(r: &Reloader, id: &str, status: StatusCode) -> Reply {
    let view = r.entry_view(id).ok_or_else(|| no_entry(id))?;
    let etag = view.etag.clone();
    Ok((status, json!(view), Some(etag)))
}

/// POST /certs: load, persist, then apply; a failure leaves store and
/// catalogue as they were.
pub(super) fn create(r: &mut Reloader, spec: EntrySpec) -> Reply {
    let id = spec.id.clone();
    // Paths must be under store.file_roots as they are now, as for a PUT.
    // The handler checked them against the configuration published when
    // it ran; a reload queued ahead of this call may have narrowed the
    // roots since, and its warning about files outside them (run before
    // this entry existed) would never name this one.
    paths::check(&spec.source, &paths::roots(r.config())).map_err(bad_request)?;
    if r.entry_spec(&id).is_some() {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("entry {id} already exists"),
        ));
    }
    check_store_unmoved(r)?;
    let Some(store) = r.store() else {
        return Err(bad_request(
            "no store is configured: entries created through the API must persist (add store: { path, key_file })",
        ));
    };
    // Read once: what is checked here is what is applied below.
    let loaded = pem::load(spec.kind, &spec.source).map_err(load_refused)?;
    let before = r.stored_entries();
    let mut after = before.clone();
    after.push(spec.clone());
    store.save(&after).map_err(store_failed)?;
    if let Err(e) = r.put_entry(spec, Origin::Store, loaded) {
        restore(r, &before);
        return Err(bad_request(e));
    }
    info!(entry = %id, "certificate entry created");
    entry_reply(r, &id, StatusCode::CREATED)
}

/// PUT /certs/{id}: stored entries get their definition replaced and
/// persisted; entries of the configuration file take new material only
/// (it stays until their files change again or they are rotated).
pub(super) fn replace(r: &mut Reloader, spec: EntrySpec, if_match: Option<&str>) -> Reply {
    let id = spec.id.clone();
    check_if_match(r, &id, if_match)?;
    let (current, origin) = r
        .entry_spec(&id)
        .map(|(s, o)| (s.clone(), o))
        .ok_or_else(|| no_entry(&id))?;
    // Paths must be under store.file_roots as they are now. A stored
    // entry's paths were an editor's choice, checked against the roots of
    // that day: checked again even unchanged, or narrowing the roots would
    // leave them re-sendable. A configuration entry's own paths (unchanged)
    // are the operator's.
    if origin == Origin::Store || spec.source != current.source {
        paths::check(&spec.source, &paths::roots(r.config())).map_err(bad_request)?;
    }
    if current.kind != spec.kind {
        return Err(bad_request(format!(
            "entry {id} is a {}; its type cannot change to {}",
            current.kind.as_str(),
            spec.kind.as_str()
        )));
    }
    // Refusals that need no file come before the read: read first, a
    // file caught mid-renewal turned them into a load error, and a read
    // (up to 8 MiB, on this thread) was spent on a call refused anyway.
    match origin {
        Origin::Store => check_store_unmoved(r)?,
        Origin::Config if !spec.source.is_inline() && spec.source != current.source => {
            return Err(bad_request(format!(
                "entry {id} is defined in the configuration file; change its paths there (the API can replace its material inline)"
            )));
        }
        Origin::Config => {}
    }
    // Read once: what is checked here is what is applied below.
    let loaded = pem::load(spec.kind, &spec.source).map_err(load_refused)?;
    match origin {
        Origin::Store => {
            let store = r.store().expect("stored entries exist only with a store");
            let before = r.stored_entries();
            let after: Vec<EntrySpec> = before
                .iter()
                .map(|s| if s.id == id { spec.clone() } else { s.clone() })
                .collect();
            store.save(&after).map_err(store_failed)?;
            if let Err(e) = r.put_entry(spec, Origin::Store, loaded) {
                restore(r, &before);
                return Err(bad_request(e));
            }
        }
        Origin::Config => {
            if spec.source.is_inline() {
                // What the entry's files hold now, which the material
                // stays over until they change. A read that found
                // hotproxy out of descriptors or memory says nothing of
                // them: 503, nothing applied nor recorded (SPEC §4).
                let files = pem::files_state(&current.source).map_err(load_refused)?;
                r.offer(&id, loaded, files).map_err(bad_request)?;
            } else {
                // Its own paths (others were refused above): the files'
                // material, not the API's.
                r.offer_own_files(&id, loaded).map_err(bad_request)?;
            }
        }
    }
    info!(entry = %id, "certificate entry replaced");
    entry_reply(r, &id, StatusCode::OK)
}

/// DELETE /certs/{id}: never touches files; refused while referenced.
pub(super) fn delete(r: &mut Reloader, id: &str, if_match: Option<&str>) -> Reply {
    let view = check_if_match(r, id, if_match)?;
    if !view.referenced_by.is_empty() {
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is still referenced; change those first"),
        );
        p.1["references"] = json!(view.referenced_by);
        return Err(p);
    }
    if view.origin == Origin::Config {
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is defined in the configuration file; remove it there"),
        );
        p.1["references"] = json!([]);
        return Err(p);
    }
    check_store_unmoved(r)?;
    let store = r.store().expect("stored entries exist only with a store");
    let after: Vec<EntrySpec> = r
        .stored_entries()
        .into_iter()
        .filter(|s| s.id != id)
        .collect();
    store.save(&after).map_err(store_failed)?;
    if let Err(refs) = r.remove_entry(id) {
        // Unreachable while the check above holds; keep the store truthful.
        restore(r, &r.stored_entries());
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is still referenced"),
        );
        p.1["references"] = json!(refs);
        return Err(p);
    }
    info!(entry = %id, "certificate entry deleted (files on disk untouched)");
    Ok((StatusCode::OK, json!({ "id": id, "deleted": true }), None))
}

/// The store was not written: nothing was changed. Too big for start-up
/// to read back is the caller's to fix (507); a write that failed (a full
/// disk, a read-only directory) is the operator's, who needs to know
/// beyond this caller (500, logged).
fn store_failed(e: SaveError) -> (StatusCode, Value) {
    let status = match &e {
        SaveError::TooLarge(_) => StatusCode::INSUFFICIENT_STORAGE,
        SaveError::Write(_) => {
            tracing::warn!(error = %e, "cannot write the store; the change was not applied");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    problem(status, format!("{e}; nothing was changed"))
}

/// Put the store back as it was after a failed apply.
fn restore(r: &Reloader, entries: &[EntrySpec]) {
    if let Some(store) = r.store()
        && let Err(e) = store.save(entries)
    {
        tracing::error!(error = %e, "could not restore the store after a refused change");
    }
}

/// POST /certs/{id}/reload.
pub(super) fn reload_one(r: &mut Reloader, id: &str) -> Reply {
    let (spec, _) = r.entry_spec(id).ok_or_else(|| no_entry(id))?;
    if spec.source.is_inline() {
        return Err(bad_request(format!(
            "entry {id} is inline: there is nothing on disk to re-read (PUT new material instead)"
        )));
    }
    match r.reload_entry(id, true) {
        Ok(changed) => {
            let (status, mut body, etag) = entry_reply(r, id, StatusCode::OK)?;
            body["changed"] = json!(changed);
            Ok((status, body, etag))
        }
        // hotproxy's own shortage says nothing of the files (SPEC §4).
        Err(e) if r.is_short(id) => Err(short_of_resources(&e)),
        // Nothing is served from an entry that never loaded (or lost its
        // material to a redefinition): "the previous material stays" named
        // material it does not have.
        Err(e) if !r.has_material(id) => Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; entry {id} has no material yet: none is served"),
        )),
        Err(e) => Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; the previous material stays"),
        )),
    }
}

/// Re-read file-backed `ids`; inline ones are skipped. Always 200 with
/// what changed and what failed (failures keep their old material).
pub(super) fn reload_many(r: &mut Reloader, ids: Vec<String>) -> Reply {
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        if r.entry_spec(&id).is_none_or(|(s, _)| s.source.is_inline()) {
            continue;
        }
        let result = r.reload_entry(&id, true);
        results.push((id, result));
    }
    Ok((StatusCode::OK, outcomes(r, results), None))
}

/// What became of each entry re-read: `entries` (its result and the
/// fingerprint it serves now) and the ids of the `failed` ones.
pub(super) fn outcomes(r: &Reloader, results: Vec<(String, Result<bool, String>)>) -> Value {
    let mut entries = Vec::new();
    let mut failed = Vec::new();
    for (id, result) in results {
        let fingerprint = r.entry_view(&id).and_then(|v| v.fingerprint_sha256);
        match result {
            Ok(changed) => entries.push(json!({
                "id": id, "result": if changed { "changed" } else { "unchanged" },
                "fingerprint_sha256": fingerprint,
            })),
            Err(e) => {
                entries.push(json!({
                    "id": id, "result": "failed", "error": e,
                    "fingerprint_sha256": fingerprint,
                }));
                failed.push(id);
            }
        }
    }
    json!({ "entries": entries, "failed": failed })
}

/// Validation reports metadata only; bookkeeping fields mean nothing there.
pub(super) fn strip_for_validate(view: &mut Value) {
    if let Some(m) = view.as_object_mut() {
        for k in [
            "origin",
            "last_reload",
            "referenced_by",
            "etag",
            "anonymous",
        ] {
            m.remove(k);
        }
        m.insert("valid".into(), json!(true));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use http::StatusCode;
    use serde_json::json;
    use tokio::sync::watch;

    use super::create;
    use crate::admin::paths;
    use crate::config::{self, Config, EntrySpec};
    use crate::material::store::Definition;
    use crate::proxy::drain::Drain;
    use crate::reload::Command;
    use crate::watch::Subject;

    /// `dir/config.yaml`, written and read: a store under `dir` whose
    /// `file_roots` is `[dir/root]`, and no listener. Dated a minute ago:
    /// a reload takes it at once, not after waiting for it to be still.
    fn config(dir: &Path, root: &str) -> Config {
        let yaml = format!(
            "store: {{ path: {}, key_file: {}, file_roots: [{}] }}\nlisteners: []\n",
            dir.join("store.json").display(),
            dir.join("store.key").display(),
            dir.join(root).display()
        );
        let file = dir.join("config.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let written = std::fs::File::options().write(true).open(&file).unwrap();
        written
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        config::parse(&yaml, &file).unwrap()
    }

    /// The file's roots narrowed to `pki/narrow` by a reload, applied once
    /// this returns (the reloader's queue runs in order).
    async fn narrow_the_roots(handle: &crate::reload::Handle, d: &Path) {
        config(d, "pki/narrow");
        handle.send(Command::Changed(Subject::Config));
        handle.call(|_| ()).await.unwrap();
        let roots = paths::roots(&handle.shared.config.load());
        assert_eq!(roots, [d.join("pki/narrow")], "the reload was applied");
    }

    /// The real reloader on `config(dir, "pki")` (`pki/narrow` made, for a
    /// reload to narrow the roots to), and the spec of a ca-bundle entry
    /// `id` naming `pki/ca.crt`, allowed under those roots and not under
    /// the narrowed ones; the shutdown channel's ends, kept by the caller.
    fn reloader_with_a_ca_file(
        d: &Path,
        id: &str,
    ) -> (
        crate::reload::Handle,
        EntrySpec,
        (watch::Sender<bool>, watch::Receiver<bool>),
    ) {
        std::fs::create_dir_all(d.join("pki/narrow")).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        std::fs::write(d.join("pki/ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(d.join("store.key"), [7u8; 32]).unwrap();
        std::fs::set_permissions(d.join("store.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let (stop, shutdown) = watch::channel(false);
        let drain = Arc::new(Drain::new(Duration::from_secs(1), shutdown.clone()));
        let rt = tokio::runtime::Handle::current();
        let handle = crate::reload::start(config(d, "pki"), rt, shutdown.clone(), drain).unwrap();
        let def: Definition = serde_json::from_value(json!({
            "type": "ca-bundle", "source": "file", "ca_file": d.join("pki/ca.crt"),
        }))
        .unwrap();
        (handle, def.into_spec(id).unwrap(), (stop, shutdown))
    }

    /// A reload narrowing `store.file_roots` that the reloader takes
    /// between the handler's check of a POST /certs (against the roots
    /// published then) and its create: the create is refused, as a PUT
    /// is. It created the entry, naming a file the roots in force forbid,
    /// which the warning of a reload (run before it) never named either.
    /// The reloader runs its queue in order: the reload is queued first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_create_the_reloader_takes_after_the_roots_narrowed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (handle, spec, _shutdown) = reloader_with_a_ca_file(d, "outside");
        // The handler's check, on the roots published when it runs.
        paths::check(&spec.source, &paths::roots(&handle.shared.config.load())).unwrap();
        config(d, "pki/narrow");
        handle.send(Command::Changed(Subject::Config));
        let reply = handle.call(move |r| create(r, spec)).await.unwrap();

        let roots = paths::roots(&handle.shared.config.load());
        assert_eq!(roots, [d.join("pki/narrow")], "the reload went first");
        let (status, body) = reply.expect_err("created under roots that forbid its file");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("field ca_file") && message.contains("not under store.file_roots"),
            "{message}"
        );
        assert!(!handle.shared.entries.load().contains_key("outside"));
        handle.send(Command::Stop);
    }

    /// A POST /certs/validate whose turn (one validation at a time) comes
    /// after a reload narrowed `store.file_roots`: refused as not under
    /// them, its file never opened. It was checked against the roots
    /// published before it waited, then read and parsed the file the
    /// roots now forbid, answering 200 with what it holds. The turn is
    /// held here while the real reloader applies the reload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_validation_whose_turn_comes_after_the_roots_narrowed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (handle, spec, (_stop, shutdown)) = reloader_with_a_ca_file(d, "validate");

        // Another validation's turn: this one passes the check on the
        // roots published now, then waits.
        let turn = super::super::TURN.acquire().await.unwrap();
        let mut validation = Box::pin(super::super::validate(&handle, &shutdown, spec));
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(validation.as_mut().poll(cx).is_pending())
        });
        assert!(first.await, "waits for its turn");
        narrow_the_roots(&handle, d).await;
        drop(turn);

        let (status, body) = validation.await.expect_err("read a file the roots forbid");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("field ca_file") && message.contains("not under store.file_roots"),
            "{message}"
        );
        handle.send(Command::Stop);
    }

    /// A POST /certs/validate whose turn came, and whose file read then
    /// waits for a blocking thread (every one busy) while a reload
    /// narrows `store.file_roots`: refused as not under them, its file
    /// never opened. The second check on the roots ran on the worker
    /// before the read was queued, so the read then opened and parsed the
    /// file the roots now forbid, answering 200 with what it holds; it
    /// now runs on the blocking thread, right before the read. The one
    /// blocking thread is held here while the real reloader applies the
    /// reload.
    #[test]
    fn a_validation_whose_read_waits_for_a_thread_while_the_roots_narrow_is_refused() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let (handle, spec, (_stop, shutdown)) = reloader_with_a_ca_file(d, "validate");
            let (busy, held) = tokio::sync::oneshot::channel();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let blocker = tokio::task::spawn_blocking(move || {
                busy.send(()).unwrap();
                released.recv().unwrap();
            });
            held.await.unwrap();
            // Its turn now (the test holding none), its read queued.
            let mut validation = Box::pin(super::super::validate(&handle, &shutdown, spec));
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(validation.as_mut().poll(cx).is_pending())
            });
            assert!(first.await, "waits for a blocking thread");
            narrow_the_roots(&handle, d).await;
            release.send(()).unwrap();
            blocker.await.unwrap();

            let (status, body) = validation.await.expect_err("read a file the roots forbid");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains("field ca_file") && message.contains("not under store.file_roots"),
                "{message}"
            );
            handle.send(Command::Stop);
        });
    }
}
