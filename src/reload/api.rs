//! The catalogue queries and mutations the admin API runs on the reloader thread.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::warn;

use super::entry::{State, forget_entry_metrics, record_success, set_state};
use super::warnings::warn_validity;
use super::{LOG, Reloader};
use crate::admin::paths;
use crate::config::{self, ClientAuthConfig, EntrySpec};
use crate::material::catalogue::{Entry, EntryView, Origin, Reference, ReloadResult};
use crate::material::store::Store;
use crate::material::{Loaded, pem};

impl Reloader {
    /// Who uses `id` right now.
    pub fn references_to(&self, id: &str) -> Vec<Reference> {
        self.refs.get(id).cloned().unwrap_or_default()
    }

    /// Entry ids, for callers that iterate (rotate all, reload CAs).
    pub fn entry_ids(&self) -> Vec<(String, config::EntryKind)> {
        self.entries
            .iter()
            .map(|(id, e)| (id.clone(), e.spec.kind))
            .collect()
    }

    /// Entry ids used by one listener's server pairs.
    pub fn listener_entries(&self, name: &str) -> Option<Vec<String>> {
        self.listeners
            .get(name)
            .map(|l| l.config.certs.iter().map(|c| c.entry.clone()).collect())
    }

    /// Add or replace an entry defined outside the configuration file (the
    /// admin API) with `loaded`, its material as the caller read and
    /// checked it (read once: a second read could find files a renewal
    /// rewrote meanwhile, and apply bytes nobody checked); refused material
    /// changes nothing.
    pub fn put_entry(
        &mut self,
        spec: EntrySpec,
        origin: Origin,
        loaded: Loaded,
    ) -> Result<(), String> {
        let previous = self
            .entries
            .insert(spec.id.clone(), Entry::new(spec.clone(), origin));
        let entry = self.entries.get_mut(&spec.id).expect("just inserted");
        entry.current = Some(Arc::new(loaded));
        entry.last_reload = ReloadResult::success();
        let was = previous.as_ref().and_then(|p| p.current.clone());
        match self.plan_entry_change(&spec.id, was.as_deref()) {
            Ok(changes) => {
                self.commit_material(changes);
                // A retry of a choice of CRLs was about the material replaced.
                self.crl_retries.remove(&spec.id);
                let e = &self.entries[&spec.id];
                if let Some(l) = &e.current {
                    record_success(&e.spec, l);
                    // SPEC §3: expired material loads, loudly, whichever
                    // way it came.
                    warn_validity(&spec.id, l, was.as_deref());
                }
                // A fresh entry: whatever its files did before is over.
                set_state(&spec.id, State::Settled);
                self.rewatch();
                self.publish();
                Ok(())
            }
            Err(problem) => {
                match previous {
                    Some(p) => self.entries.insert(spec.id.clone(), p),
                    None => self.entries.remove(&spec.id),
                };
                Err(problem)
            }
        }
    }

    /// Bring back an entry from the store at startup. Its id must not be
    /// taken by the configuration file; file-backed material that does not
    /// load is kept as an entry without material (retried on change).
    pub(super) fn restore_stored(
        &mut self,
        spec: EntrySpec,
        store: &std::path::Path,
    ) -> Result<(), String> {
        if self.entries.contains_key(&spec.id) {
            return Err(crate::material::store::id_clash(
                &spec.id,
                &self.config.file,
                store,
            ));
        }
        let mut entry = Entry::new(spec.clone(), Origin::Store);
        match pem::load(spec.kind, &spec.source) {
            Ok(l) => {
                record_success(&spec, &l);
                warn_validity(&spec.id, &l, None);
                entry.current = Some(Arc::new(l));
                entry.last_reload = ReloadResult::success();
            }
            Err(e) => {
                warn!(target: LOG, entry = %spec.id, error = %e, "stored entry has no usable material");
                entry.last_reload = ReloadResult::failure(e.to_string());
            }
        }
        self.entries.insert(spec.id.clone(), entry);
        Ok(())
    }

    /// Warn about each entry created through the API whose files are
    /// outside the roots the admin API may name now (SPEC §4). Narrowing
    /// them refuses a PUT of the entry and nothing else: it was named when
    /// the roots allowed it, and listeners or upstreams may use it, so it
    /// is kept, served and re-read until deleted, and the operator is told.
    /// `before`: the roots of the configuration a reload replaced (only a
    /// file they held is news), `None` at startup.
    pub(super) fn warn_outside_roots(&self, before: Option<&[PathBuf]>) {
        let roots = paths::roots(&self.config);
        for (id, e) in self
            .entries
            .iter()
            .filter(|(_, e)| e.origin == Origin::Store)
        {
            let files = paths::outside(&e.spec.source, &roots);
            if files.is_empty()
                || before.is_some_and(|b| paths::outside(&e.spec.source, b) == files)
            {
                continue;
            }
            let files: Vec<String> = files
                .iter()
                .map(|f| crate::material::shown_path(f))
                .collect();
            warn!(target: LOG, entry = %id, files = %files.join(", "), "entry created through the admin API names files outside store.file_roots; {}", crate::admin::paths::OUTSIDE_ROOTS);
        }
    }

    /// A listener's client authentication as it runs now (runtime
    /// overrides included).
    pub fn client_auth(&self, name: &str) -> Option<ClientAuthConfig> {
        self.listeners
            .get(name)
            .map(|l| self.client_auth_for(name, &l.config))
    }

    /// The store, when `store:` is configured.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The store setting a reload changed (`store` itself added or
    /// removed, `store.path`, `store.key_file`): it applies at the next
    /// restart, so the running store is not the one that restart opens.
    /// `None` when they are the same.
    pub fn store_moved(&self) -> Option<&'static str> {
        let running = self.store.as_ref().map(|s| (s.path(), s.key_file()));
        let configured = self.config().store.as_ref();
        let configured = configured.map(|c| (c.path.as_path(), c.key_file.as_path()));
        match (running, configured) {
            (None, None) => None,
            (Some((path, key)), Some((next_path, next_key))) => {
                if path != next_path {
                    Some("store.path")
                } else if key != next_key {
                    Some("store.key_file")
                } else {
                    None
                }
            }
            _ => Some("store"),
        }
    }

    /// An entry as the API shows it, with a fresh ETag.
    pub fn entry_view(&self, id: &str) -> Option<EntryView> {
        self.entries
            .get(id)
            .map(|e| EntryView::of(e, self.references_to(id)))
    }

    /// Remove an entry nothing references.
    pub fn remove_entry(&mut self, id: &str) -> Result<(), Vec<Reference>> {
        let refs = self.references_to(id);
        if !refs.is_empty() {
            return Err(refs);
        }
        if let Some(e) = self.entries.remove(id) {
            forget_entry_metrics(id, e.spec.kind.as_str());
            self.retries.remove(id);
            self.short.remove(id);
        }
        self.rewatch();
        self.publish();
        Ok(())
    }

    /// Stored entries (origin Store), for persisting.
    pub fn stored_entries(&self) -> Vec<EntrySpec> {
        self.entries
            .values()
            .filter(|e| e.origin == Origin::Store)
            .map(|e| e.spec.clone())
            .collect()
    }

    /// The definition of an entry.
    pub fn entry_spec(&self, id: &str) -> Option<(&EntrySpec, Origin)> {
        self.entries.get(id).map(|e| (&e.spec, e.origin))
    }

    /// Whether `id` holds material: a stored entry whose files did not
    /// load at startup, or an unused one whose files never loaded, has none.
    pub fn has_material(&self, id: &str) -> bool {
        self.entries.get(id).is_some_and(|e| e.current.is_some())
    }
}
