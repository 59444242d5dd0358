//! One entry's reload: re-read, offer, refuse, retry with back-off; its logs and metrics.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::cut::Cut;
use super::warnings::{log_notes, warn_validity};
use super::{Cause, LOG, Reloader};
use crate::config::EntrySpec;
use crate::material::catalogue::{Entry, ReloadResult, Unsettled, unix};
use crate::material::info::rfc3339;
use crate::material::pem::Step;
use crate::material::{Loaded, Material, pem};
use crate::metrics::{self, METRICS};

/// How long the wait for a CRL dated ahead lasts at most before the wall
/// clock is read again ([`Reloader::crl_choice_at`]): a step of the clock
/// delays its choice that long at most.
pub(super) const CRL_DUE_LOOK: Duration = Duration::from_secs(60);

/// How long after a listener or upstream refused the CRLs chosen again
/// ([`Reloader::choose_again`]) they are chosen again. Only that choice
/// takes a CRL that came due with no change to the files, so it is tried
/// until what refused it (elsewhere in that listener's or upstream's
/// material or settings) is gone; each try rebuilds the verifiers of
/// everything on the bundle and warns, so not at every wake of the
/// reloader but as seldom as the longest back-off of a refused entry and
/// of a rejected configuration (`CONFIG_RETRY_MAX`): 30 s. SPEC §2 says so.
const CRL_CHOICE_RETRY: Duration = Duration::from_secs(30);

impl Reloader {
    /// Read `id`'s files: `None` when they hold the bytes served now (the
    /// parse, a signing key and every certificate, is most of a re-read's
    /// cost, and the start-up re-check and a SIGHUP re-read every entry,
    /// nearly all unchanged), else the parsed material. `Ok(None)` too for
    /// an unknown or inline entry. Over material the API put, "unchanged"
    /// means the files are as they were then (holding the same bytes, or
    /// failing to read the same way), unless `take_files` (an explicit
    /// reload or rotation), which compares with what is served.
    fn read_changed(
        &mut self,
        id: &str,
        take_files: bool,
    ) -> Result<Option<Loaded>, pem::MaterialError> {
        let Some(entry) = self
            .entries
            .get_mut(id)
            .filter(|e| !e.spec.source.is_inline())
        else {
            return Ok(None);
        };
        let keeps_api = entry.from_api && !take_files;
        let raw = match pem::read_consistent(&entry.spec.source) {
            Ok(raw) => raw,
            // Hotproxy's own shortage tells nothing of the files: what was
            // known of them stays (`shortage`).
            Err(e) if e.is_out_of_resources() => return Err(e),
            Err(e) => {
                entry.read_state = match e {
                    pem::MaterialError::Unsettled { .. } => None,
                    _ => Some(pem::unreadable_state(&e)),
                };
                if keeps_api && entry.read_state.is_some() && entry.files_hash == entry.read_state {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        entry.read_state = Some(raw.hash);
        let baseline = if keeps_api {
            entry.files_hash
        } else {
            entry.current.as_ref().map(|c| c.hash)
        };
        if baseline == Some(raw.hash) {
            return Ok(None);
        }
        Ok(Some(Loaded {
            material: pem::parse(entry.spec.kind, &entry.spec.source, &raw)?,
            hash: raw.hash,
            loaded_at: SystemTime::now(),
        }))
    }

    /// Re-read one entry's files; swap it in if its content changed and is
    /// valid. Returns the problem when the material is refused (the old
    /// material stays) or `Ok(false)` when nothing changed. `take_files`
    /// (an explicit reload or rotation) replaces material the API put even
    /// when the files are as they were; a watcher's or a retry's re-read
    /// does not.
    pub fn reload_entry(&mut self, id: &str, take_files: bool) -> Result<bool, String> {
        let Some(entry) = self.entries.get(id) else {
            return Err(format!("no entry {id:?}"));
        };
        if entry.spec.source.is_inline() {
            return Ok(false);
        }
        let started = Instant::now();
        let loaded = self.read_changed(id, take_files);
        self.apply_read(id, take_files, loaded, started)
    }

    /// Rotate `ids` from their files, all or none (SPEC §4): each entry's
    /// files are read once. When any does not load, its refusal is
    /// recorded and nothing is applied; the answer holds those entries
    /// alone. Else each is applied from the bytes read then, as
    /// [`Reloader::reload_entry`] with `take_files` applies them: never
    /// read again, so a file rewritten in between cannot be refused after
    /// others were applied (the checked files used to be read anew to be
    /// applied). Unknown and inline entries are skipped; an entry listed
    /// twice is read once.
    pub fn rotate(&mut self, ids: &[String]) -> Vec<(String, Result<bool, String>)> {
        let mut read = Vec::with_capacity(ids.len());
        for id in ids {
            let file_backed = self
                .entries
                .get(id)
                .is_some_and(|e| !e.spec.source.is_inline());
            if file_backed && !read.iter().any(|(seen, _, _)| seen == id) {
                read.push((id.clone(), Instant::now(), self.read_changed(id, true)));
            }
        }
        if read.iter().any(|(_, _, r)| r.is_err()) {
            read.retain(|(_, _, r)| r.is_err());
        }
        read.into_iter()
            .map(|(id, started, r)| {
                let outcome = self.apply_read(&id, true, r, started);
                (id, outcome)
            })
            .collect()
    }

    /// Apply what [`Reloader::read_changed`] found in `id`'s files, read
    /// from `started`.
    fn apply_read(
        &mut self,
        id: &str,
        take_files: bool,
        loaded: Result<Option<Loaded>, pem::MaterialError>,
        started: Instant,
    ) -> Result<bool, String> {
        let keeps_api = self.entries.get(id).is_some_and(|e| e.from_api) && !take_files;
        match &loaded {
            Err(e) if e.is_out_of_resources() => {
                self.short_of_resources(id, e);
                return Err(e.to_string());
            }
            _ => self.not_short(id),
        }
        match loaded {
            Ok(None) if keeps_api => {
                debug!(target: LOG, entry = %id, "certificate files re-read: unchanged since the API replaced their material; it stays");
                self.unchanged(id);
                Ok(false)
            }
            Ok(None) => {
                debug!(target: LOG, entry = %id, "certificate files re-read: unchanged");
                self.unchanged(id);
                self.read_from_files(id);
                Ok(false)
            }
            Ok(Some(loaded)) => {
                if !take_files && let Some(problem) = self.cut_short(id, &loaded) {
                    self.refused(id, &problem, Some(Step::Cut));
                    return Err(problem);
                }
                let changed = self.offer_since(id, loaded, started)?;
                self.read_from_files(id);
                Ok(changed)
            }
            Err(e) => {
                let message = e.to_string();
                self.refused(id, &message, e.step());
                Err(message)
            }
        }
    }

    /// Whether a re-read of `id` is to be waited on because a file holds
    /// fewer sections than what is served from it: a pair's chain, a CA
    /// bundle's certificates, a CRL file's CRLs. A file written in place in
    /// steps (`cat leaf > crt; cat chain >> crt`, `cat ca1.pem > bundle;
    /// cat ca2.pem >> bundle`, a writer flushing one section first) can be
    /// read whole up to a section's end, which parses cleanly. A chain cut
    /// short fails every client that needs the intermediates; a bundle or
    /// CRL file cut short refuses the clients of the CAs not written yet
    /// (unknown issuer, unknown revocation status) and closes their open
    /// connections (the admission re-check), until the next write. Only
    /// the count is compared, as for chains: a bundle written anew in steps
    /// matches nothing served at its first step either. A file that stays
    /// shorter for `settle_timeout` is meant (a CA taken out): `None` then,
    /// and it is applied. That wait is its own: one the entry is in for
    /// another step of the writer (a new key before its certificate) does
    /// not shorten it.
    fn cut_short(&self, id: &str, loaded: &Loaded) -> Option<String> {
        let entry = self.entries.get(id)?;
        let cut = Cut::find(&entry.current.as_ref()?.material, &loaded.material)?;
        let settle = self.config.watch.settle_timeout;
        let file = pem::origins(&entry.spec.source).swap_remove(cut.source);
        let since = match entry.unsettled {
            Some(u) if u.step == Step::Cut => u.since,
            _ => Instant::now(),
        };
        if since.elapsed() >= settle {
            if cut.crls || loaded.ca().is_some() {
                warn!(target: LOG, entry = %id, file = %file, read = cut.read, served = cut.served, "CA bundle holds fewer certificates or CRLs than the one it replaces; applying it after settle_timeout");
            } else {
                warn!(target: LOG, entry = %id, file = %file, certificates = cut.read, previous_certificates = cut.served, "certificate chain is shorter than the one it replaces; serving it after settle_timeout");
            }
            return None;
        }
        let (read, served) = (cut.read, cut.served);
        Some(match (cut.crls, loaded.ca().is_some()) {
            (true, _) => format!(
                "{file}: {read} CRL(s) where {served} are served (a writer half-way through the file?); fewer CRLs are applied once they stay for settle_timeout"
            ),
            (false, true) => format!(
                "{file}: {read} certificate(s) where {served} are served (a writer half-way through the bundle?); a shorter bundle is applied once it stays for settle_timeout"
            ),
            (false, false) => format!(
                "{file}: {read} certificate(s) where {served} are served (a writer half-way through the chain?); a shorter chain is served once it stays for settle_timeout"
            ),
        })
    }

    /// The material of `id` now comes from its files again (it may have
    /// been put through the admin API before).
    pub(super) fn read_from_files(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.from_api
        {
            entry.from_api = false;
            entry.files_hash = None;
            self.publish_entry(id);
        }
    }

    /// A re-read of `id` found the content it serves. When the entry was
    /// failing or waiting for a writer, the good content came back (e.g. a
    /// writer finished): clear that state.
    pub(super) fn unchanged(&mut self, id: &str) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let recovering = entry
            .last_reload
            .as_ref()
            .is_some_and(|r| r.result != "success")
            || entry.unsettled.is_some();
        if !recovering {
            return;
        }
        if entry.last_logged.is_some() {
            info!(target: LOG, entry = %id, "certificate material is valid again; still serving it");
        }
        entry.unsettled = None;
        entry.failures = 0;
        entry.last_logged = None;
        entry.last_counted = None;
        entry.refused_state = None;
        entry.last_reload = ReloadResult::success();
        self.retries.remove(id);
        set_state(id, State::Settled);
        self.publish_entry(id);
    }

    /// Swap in material the admin API brought for `id` if it differs,
    /// rebuilding dependents. On a build failure the old material stays and
    /// nothing else changes: the caller answers the refusal, and the
    /// entry's reload state, failure count and retries (which are about its
    /// files) are left alone; a retry would re-read the files and replace
    /// what the API had set before. Over a file-backed entry the material
    /// then stays until its files change from what they are now: whatever
    /// they hold (broken or missing files too, which may well be why the
    /// API was used), not what was served. Compared with the material
    /// served, files rolled back to it would count as unchanged, and the
    /// API's material would stay over the files it was only meant to
    /// bridge. `files`: that state, read by the caller before the offer
    /// (`pem::files_state`), which answers a read that found hotproxy
    /// short and offers nothing.
    pub fn offer(
        &mut self,
        id: &str,
        loaded: Loaded,
        files: Option<[u8; 32]>,
    ) -> Result<bool, String> {
        let changed = self.swap(id, loaded, Instant::now(), Live::Api(files))?;
        // Material the entry serves already (`swap` changed nothing):
        // the API's from now on all the same.
        if !changed
            && let Some(entry) = self.entries.get_mut(id)
            && !entry.spec.source.is_inline()
        {
            entry.files_hash = files;
            entry.from_api = true;
            self.publish_entry(id);
        }
        Ok(changed)
    }

    /// Swap in `loaded`, read from `id`'s own files for the admin API (a
    /// PUT naming the paths the entry has): what the files hold, as a
    /// reload takes it, so not material the API put over them. A build
    /// failure is answered to the caller, as for [`Reloader::offer`].
    pub fn offer_own_files(&mut self, id: &str, loaded: Loaded) -> Result<bool, String> {
        let changed = self.swap(id, loaded, Instant::now(), Live::OwnFiles)?;
        self.read_from_files(id);
        Ok(changed)
    }

    /// Swap in material re-read from `id`'s files, whose reading began at
    /// `started` (the logged `reload_ms` runs from there to the published
    /// snapshot); a build failure counts as the files' failure (retried).
    pub(super) fn offer_since(
        &mut self,
        id: &str,
        loaded: Loaded,
        started: Instant,
    ) -> Result<bool, String> {
        self.swap(id, loaded, started, Live::Files)
    }

    /// Swap in `loaded` from `live` for `id`, rebuilding what uses it. The
    /// material served and the entry's view (its fingerprint and where it
    /// came from, `live_source`) change as one for the admin API
    /// ([`Shared::entry_views`](super::Shared::entry_views)): the label
    /// was set after the material was served, so a GET in between showed
    /// the files' new certificate as the API's, or the API's as the files'.
    fn swap(
        &mut self,
        id: &str,
        loaded: Loaded,
        started: Instant,
        live: Live,
    ) -> Result<bool, String> {
        let entry = self
            .entries
            .get_mut(id)
            .expect("caller checked the entry exists");
        if entry
            .current
            .as_ref()
            .is_some_and(|c| c.hash == loaded.hash)
        {
            self.unchanged(id);
            return Ok(false);
        }
        let loaded = Arc::new(loaded);
        let previous = entry.current.replace(loaded.clone());
        let plan = self.plan_entry_change(id, previous.as_deref());
        let changes = match plan {
            Ok(c) => c,
            Err(problem) => {
                self.entries.get_mut(id).expect("present").current = previous;
                if live == Live::Files {
                    self.refused(id, &problem, None);
                }
                return Err(problem);
            }
        };
        let shared = self.shared.clone();
        let publishing = shared
            .publishing
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.commit_material(changes);
        let entry = self.entries.get_mut(id).expect("present");
        if !entry.spec.source.is_inline() {
            (entry.from_api, entry.files_hash) = match live {
                Live::Api(files) => (true, files),
                Live::Files | Live::OwnFiles => (false, None),
            };
        }
        entry.unsettled = None;
        entry.failures = 0;
        entry.last_logged = None;
        entry.last_counted = None;
        entry.refused_state = None;
        entry.last_reload = Some(ReloadResult {
            time: unix(loaded.loaded_at),
            result: "success",
            error: None,
            deadline: None,
        });
        self.retries.remove(id);
        self.crl_retries.remove(id);
        set_state(id, State::Settled);
        record_success(&entry.spec, &loaded);
        warn_validity(id, &loaded, previous.as_deref());
        self.publish_entry(id);
        drop(publishing);
        if let Some(p) = loaded.primary() {
            let reload_ms = started.elapsed().as_secs_f64() * 1e3;
            info!(target: LOG, entry = %id, fingerprint = %p.fingerprint_sha256, subject = %p.subject, not_after = %rfc3339(p.not_after), not_after_unix = p.not_after, reload_ms, "certificate reloaded");
        }
        Ok(true)
    }

    /// When the CRLs of a CA bundle served are next to be chosen again:
    /// the earliest `crl_due` (a CRL dated in the future becomes issued),
    /// or a retry of a choice refused.
    pub(super) fn next_crl_choice(&self) -> Option<Instant> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.entries
            .iter()
            .filter_map(|(id, e)| self.crl_choice_at(id, e, now, wall))
            .min()
    }

    /// When `entry`'s CRLs are to be chosen again, `now` being `wall`: at
    /// `crl_due` by the wall clock, looked at again at least every
    /// [`CRL_DUE_LOOK`], as a wait on the monotonic clock does not follow
    /// a step of the wall clock (NTP at boot, a VM resumed).
    pub(super) fn crl_choice_at(
        &self,
        id: &str,
        entry: &Entry,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Instant> {
        let due = entry.current.as_ref()?.ca()?.crl_due?;
        if let Some(&retry) = self.crl_retries.get(id) {
            return Some(retry);
        }
        let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(due).unwrap_or(0));
        let wait = at.duration_since(wall).unwrap_or_default();
        Some(now + wait.min(CRL_DUE_LOOK))
    }

    /// Choose the CRLs of each CA bundle whose `crl_due` came again: a CRL
    /// set aside as not issued yet, with no change to the files, is
    /// issued now and may be the newest of its issuer, used from now on.
    pub(super) fn choose_crls_again(&mut self) {
        let entries = &self.entries;
        self.crl_retries.retain(|id, _| entries.contains_key(id));
        let (now, wall) = (Instant::now(), SystemTime::now());
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(id, e)| {
                self.crl_choice_at(id, e, now, wall)
                    .is_some_and(|at| at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.choose_again(&id, unix(wall));
        }
    }

    /// `id`'s CRLs chosen again as of `now` (Unix seconds); where the
    /// CRLs in use change, the listeners and upstreams verifying against
    /// them are rebuilt (connections they no longer admit close). Refused
    /// by one, the CRLs in use stay, and the choice is made again later.
    /// A retry of a choice refused is made here, whatever comes of it: one
    /// left over material whose `crl_due` has not come (replaced since)
    /// was a time gone by, waited on with no wait until `crl_due`.
    fn choose_again(&mut self, id: &str, now: i64) {
        self.crl_retries.remove(id);
        let Some(current) = self.entries.get(id).and_then(|e| e.current.clone()) else {
            return;
        };
        let Some(ca) = current.ca() else { return };
        let Some(bundle) = ca.chosen_again(now) else {
            return;
        };
        let changed = bundle.rechosen != ca.rechosen;
        let loaded = Arc::new(Loaded {
            material: Material::Ca(bundle),
            hash: current.hash,
            loaded_at: current.loaded_at,
        });
        let entry = self.entries.get_mut(id).expect("present");
        let previous = entry.current.replace(loaded.clone());
        if changed {
            match self.plan_entry_change(id, previous.as_deref()) {
                Ok(changes) => self.commit_material(changes),
                Err(problem) => {
                    self.entries.get_mut(id).expect("present").current = previous;
                    warn!(target: LOG, entry = %id, error = %problem, retry_s = CRL_CHOICE_RETRY.as_secs(), "a CRL set aside as not issued yet is issued now, but the CRLs chosen again are refused: the ones in use stay");
                    self.crl_retries
                        .insert(id.to_owned(), Instant::now() + CRL_CHOICE_RETRY);
                    return;
                }
            }
            info!(target: LOG, entry = %id, "a CRL set aside as not issued yet is issued now: the CRLs in use are chosen again");
            log_notes(id, &loaded);
            metrics::crl_next_update(id, loaded.ca().and_then(|ca| ca.crl_next_update()));
            self.publish_entry(id);
        }
    }

    /// Material for `id` was refused: keep the old, count, log once per
    /// distinct problem, schedule a retry. Transient problems (a writer
    /// half-way, `step` says at which step) are only waited on until
    /// `settle_timeout`, counted from the first read of their step since
    /// the entry was last served or failing, and while the files have not
    /// been unsettled for [`Step::KINDS`] × `settle_timeout` in all since
    /// they first changed or last grew.
    pub(super) fn refused(&mut self, id: &str, problem: &str, step: Option<Step>) {
        let settle = self.config.watch.settle_timeout;
        let bound = settle.saturating_mul(Step::KINDS);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        // A failing entry re-read with the very problem it fails on is
        // still failing; any other transient problem is a writer at work
        // again, waited on from now (the last wait ended at the failure:
        // counted from its start, a chain cut short by the fix of a
        // missing file was served at its first read, see `cut_short`).
        let still_failing = entry
            .last_reload
            .as_ref()
            .is_some_and(|r| r.result == "failure" && r.error.as_deref() == Some(problem));
        if let Some(step) = step
            && !still_failing
        {
            // A problem of another step than the one waited on (the
            // certificate back before its key, a leaf before its chain) is
            // the writer's next step, waited on from now: counted from the
            // step before, one read just before that wait ran out was a
            // failure, or a chain cut short served, at once.
            let started = entry.unsettled.is_none_or(|u| u.step != step);
            let size = pem::files_size(&entry.spec.source);
            let unsettled = entry.unsettled.get_or_insert(Unsettled {
                first: now,
                since: now,
                size,
                step,
                refused: false,
            });
            if started {
                unsettled.since = now;
                unsettled.step = step;
            }
            // More bytes than at any read before: a writer getting on (a
            // bundle written in place, read cut inside a section and at
            // its end in turn). The bound counts from here.
            if size > unsettled.size {
                unsettled.size = size;
                unsettled.first = now;
            }
            let waited = now.duration_since(unsettled.since);
            let unsettled_for = now.duration_since(unsettled.first);
            if waited < settle && unsettled_for >= bound {
                // Every step within its own wait, the files no bigger, and
                // still not settled: the writer went back to a step it had
                // left (a leaf without its chain, a certificate without its
                // key, the leaf again...), each change starting a wait anew
                // for as long as it goes on. Refused, said once (and at the
                // end of a wait after the files grew); its later steps too,
                // until the files load or stay on one step for settle_timeout
                // (served if meant, a chain cut short, or a failure as any).
                let pending = matches!(&entry.last_reload, Some(r) if r.result == "pending");
                let newly = !unsettled.refused || pending;
                unsettled.refused = true;
                let error = format!(
                    "{problem} (not settled {bound:?} after the files first changed or last grew, {} × settle_timeout: a writer going back and forth between states that do not load?)",
                    Step::KINDS
                );
                if !newly {
                    debug!(target: LOG, entry = %id, error = %error, "certificate files still not settled; still refused");
                }
                let step_over = settle - waited;
                self.failed(id, problem, error, newly, Some(step_over));
                return;
            }
            if waited < settle {
                let retry = Duration::from_millis(100).min(settle);
                self.retries.insert(id.to_owned(), now + retry);
                // Shown at once (API, gauge, one info line), not only when
                // settle_timeout runs out: an operator who just wrote a
                // file sees what it is waiting for.
                let newly = entry
                    .last_reload
                    .as_ref()
                    .is_none_or(|r| r.result != "pending");
                let reason_changed = entry
                    .last_reload
                    .as_ref()
                    .is_none_or(|r| r.error.as_deref() != Some(problem));
                if newly || reason_changed || started {
                    // The step's own wait, or the bound on them all if
                    // that comes first.
                    let left = (settle - waited).min(bound - unsettled_for);
                    let deadline = SystemTime::now() + left;
                    entry.last_reload = ReloadResult::pending(problem.to_owned(), deadline);
                    // Said again for a wait of its own: its deadline is
                    // later than the one said before.
                    if newly || started {
                        info!(target: LOG, entry = %id, reason = %problem, deadline = %rfc3339(unix(deadline)), settle_timeout_ms = settle.as_millis() as u64, "certificate files changed but do not load yet; waiting for the writer to finish");
                        set_state(id, State::Pending);
                    } else {
                        debug!(target: LOG, entry = %id, reason = %problem, "material not settled yet; waiting");
                    }
                    self.publish_entry(id);
                }
                return;
            }
        }
        // The wait for a writer is over: a later one starts its own.
        entry.unsettled = None;
        self.failed(id, problem, problem.to_owned(), true, None);
    }

    /// `id`'s files are refused for `error` (`problem`, and what a refusal
    /// for not settling adds): failing, logged once per distinct error
    /// (when `say`), counted once per failed material, and read again
    /// after a back-off, or sooner, after `at` (a step's own wait over).
    ///
    /// Counted: a read a SIGHUP or the API asked for, one the watcher asked
    /// for that finds the files otherwise than at the last read refusing
    /// them (a report says only that they may have changed: a `touch`, a
    /// chmod, a kubelet swap for another key of the volume re-link them
    /// unchanged), one ending a wait (pending: the files changed, so a new
    /// bad write, also logged, if it fails as the last), or a retry whose
    /// problem is not the last counted since the entry last loaded (such a
    /// refusal and the failure its step's wait ends in are one bad write)
    /// or that finds the files otherwise than at the last read refusing
    /// them (another bad write, read before the watcher reports it).
    fn failed(&mut self, id: &str, problem: &str, error: String, say: bool, at: Option<Duration>) {
        let cause = self.reading;
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let waited = matches!(&entry.last_reload, Some(r) if r.result == "pending");
        entry.failures = entry.failures.saturating_add(1);
        entry.last_reload = ReloadResult::failure(error.clone());
        set_state(id, State::Failing);
        let as_refused = entry.read_state.is_some() && entry.read_state == entry.refused_state;
        // Files a retry finds otherwise than at the last refusal are a bad
        // write of their own: the watcher's read of them, after, finds
        // what was refused, and would count nothing either.
        let other_bytes =
            entry.read_state.is_some() && entry.refused_state.is_some() && !as_refused;
        entry.refused_state = entry.read_state;
        let counted = waited
            || match cause {
                Cause::Asked => true,
                Cause::Watcher => !as_refused,
                Cause::Retry => other_bytes || entry.last_counted.as_deref() != Some(problem),
            };
        if counted {
            metrics::cert_reload(id, "failure");
            entry.last_counted = Some(problem.to_owned());
        } else if cause == Cause::Watcher {
            debug!(target: LOG, entry = %id, "certificate files re-read on a change hold what was refused already; not counted again");
        }
        if say && (waited || entry.last_logged.as_deref() != Some(error.as_str())) {
            // An entry that never loaded (an unused one of the file, a
            // stored one whose files were gone at startup) has nothing to
            // keep: saying it keeps its material would name what no one serves.
            if entry.current.is_some() {
                warn!(target: LOG, entry = %id, error = %error, "certificate reload failed; keeping the previous material");
            } else {
                warn!(target: LOG, entry = %id, error = %error, "certificate reload failed; the entry has no material: none is served");
            }
            entry.last_logged = Some(error);
        }
        let backoff = Duration::from_millis(500)
            .saturating_mul(1u32 << entry.failures.min(6))
            .min(Duration::from_secs(30));
        let retry = at.map_or(backoff, |u| u.min(backoff));
        self.retries.insert(id.to_owned(), Instant::now() + retry);
        self.publish_entry(id);
    }
}

/// Where material swapped in comes from ([`Reloader::swap`]).
#[derive(Clone, Copy, PartialEq)]
enum Live {
    /// A re-read of the entry's files: a build failure is theirs (retried).
    Files,
    /// A PUT naming the entry's own files: taken as a reload takes them, a
    /// build failure answered to the caller.
    OwnFiles,
    /// Put through the admin API over the files, in the state given
    /// (`Entry::files_hash`).
    Api(Option<[u8; 32]>),
}

pub(super) fn record_success(spec: &EntrySpec, loaded: &Loaded) {
    metrics::cert_reload(&spec.id, "success");
    METRICS
        .cert_last_reload
        .get_or_create(&metrics::EntryLabels {
            entry: spec.id.clone(),
        })
        .set(unix(loaded.loaded_at));
    METRICS
        .cert_not_after
        .get_or_create(&metrics::EntryTypeLabels {
            entry: spec.id.clone(),
            r#type: spec.kind.as_str().into(),
        })
        .set(loaded.not_after());
    metrics::crl_next_update(&spec.id, loaded.ca().and_then(|ca| ca.crl_next_update()));
}

/// A removed entry's series leave `/metrics` with it: a dashboard or an
/// expiry alert must not keep seeing an entry that no longer exists.
pub(super) fn forget_entry_metrics(id: &str, kind: &str) {
    forget_material_metrics(id, kind);
    let entry = metrics::EntryLabels {
        entry: id.to_owned(),
    };
    METRICS.cert_reload_pending.remove(&entry);
    METRICS.cert_reload_failing.remove(&entry);
    for result in ["success", "failure"] {
        METRICS.cert_reloads.remove(&metrics::EntryResultLabels {
            entry: id.to_owned(),
            result: result.into(),
        });
    }
}

/// The series that describe an entry's material (`kind` is the type it
/// was reported under): gone with the material, so an expiry alert does
/// not fire for a certificate nobody serves.
pub(super) fn forget_material_metrics(id: &str, kind: &str) {
    METRICS.cert_not_after.remove(&metrics::EntryTypeLabels {
        entry: id.to_owned(),
        r#type: kind.to_owned(),
    });
    METRICS.cert_last_reload.remove(&metrics::EntryLabels {
        entry: id.to_owned(),
    });
    metrics::crl_next_update(id, None);
}

/// Where an entry's reload stands, for the two gauges.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum State {
    /// Serving what its files hold.
    Settled,
    /// Changed files that do not load yet, waited for until settle_timeout.
    Pending,
    /// Files refused; the previous material is served.
    Failing,
}

/// `hotproxy_cert_reload_pending` / `_failing` for `id`. Series are only
/// created once an entry has been pending or failing; afterwards they
/// read 0.
pub(super) fn set_state(id: &str, state: State) {
    let labels = metrics::EntryLabels {
        entry: id.to_owned(),
    };
    let exists = METRICS.cert_reload_pending.get(&labels).is_some();
    if state == State::Settled && !exists {
        return;
    }
    METRICS
        .cert_reload_pending
        .get_or_create(&labels)
        .set(i64::from(state == State::Pending));
    METRICS
        .cert_reload_failing
        .get_or_create(&labels)
        .set(i64::from(state == State::Failing));
}
