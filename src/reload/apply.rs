//! Applying a configuration: entries, upstreams and listeners planned, bound and started or stopped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::config_file::{CONFIG_QUIET, ENTRIES_UNSETTLED, edit_digest};
pub(super) use super::config_file::{ConfigOutcome, Deferral};
use super::entry::{
    State, forget_entry_metrics, forget_material_metrics, record_success, set_state,
};
use super::handover::{Givers, NewListeners};
use super::rebind::Registered;
use super::shortage::ENTRIES_SHORT;
use super::snapshot::{client_ca, defined_alike, listener_tls, positions, upstream_tls};
use super::warnings::warn_validity;
use super::{LOG, LiveListener, LiveUpstream, Reloader};
use crate::config::{self, ClientAuthConfig, Config, ListenerCert, ListenerConfig, UpstreamConfig};
use crate::material::catalogue::{self, Entry, Origin, ReloadResult};
use crate::material::pem;
use crate::metrics::{self, METRICS};
use crate::proxy::edge::EdgePolicy;
use crate::proxy::forward::Upstream;
use crate::proxy::front::Front;
use crate::proxy::listener::{self, Handshake, Listener};
use crate::proxy::router::Router;
use crate::tls::server::SniResolver;

impl Reloader {
    /// Re-read the configuration file and apply it if it changed and is valid.
    pub fn reload_config(&mut self) -> Result<(), String> {
        self.reload_config_for(false, false).map(|_| ())
    }

    /// [`Reloader::reload_config`]; `asked` when an operator asked for it
    /// (SIGHUP): then a file equal to the running configuration is a
    /// successful reload too, logged and counted, not a silent no-op.
    /// `retry`: the backoff's retry of a rejected configuration, counted
    /// and logged only when its outcome is news.
    ///
    /// A rejected configuration is retried with backoff (1 s doubling to
    /// 30 s) until one applies: what it lacks may come without any event
    /// the watcher could see (a Secret's new key that kubelet writes after
    /// the ConfigMap naming it, a port still held by a process going away).
    pub(super) fn reload_config_for(
        &mut self,
        asked: bool,
        retry: bool,
    ) -> Result<ConfigOutcome, String> {
        let path = self.config.file.clone();
        // As every message shows a path: escaped, whole (SPEC §2).
        let shown = crate::material::shown_path(&path);
        // A SIGHUP whose read was deferred is answered by the next read:
        // counted and logged as asked (SPEC §3: every SIGHUP counts).
        let asked = asked || std::mem::take(&mut self.config_asked);
        // Shutting down, the accept loops have stopped and the listening
        // sockets are let go (`release_sockets`): a listener this reload
        // added or moved would bind its port again, with nobody accepting
        // on it until the process exits, and clients would queue there
        // instead of trying another pod. As nginx, no reload while
        // shutting down; a queued retry of a rejected one ends too.
        if *self.shutdown.borrow() {
            return Ok(self.ignored_while_shutting_down(&shown));
        }
        // An in-place writer truncates, then writes: a read in between
        // sees an empty or cut file that may still parse (a configuration
        // without its listeners). Wait until the file has been still for a
        // moment, bounded by settle_timeout; an empty file is never applied.
        // A missing file is a writer at work too (`rm` then `cp`, a
        // symlink swapped in two steps), waited on like a missing entry
        // file before it counts as rejected. So is an empty one: a
        // truncate whose mtime reads as old (a coarse clock, a host that
        // lags, `cp -p` setting the source's) passed the quiet check, and
        // the write that followed a moment later found it rejected.
        let now = Instant::now();
        let look = match self.look(&path, &shown, now, asked, retry) {
            Ok(look) => look,
            Err(deferred) => return Ok(deferred),
        };
        if let Err(e) = &look.checked
            && crate::fsutil::out_of_resources(e)
        {
            return Ok(self.config_short(&shown, &e.to_string(), asked));
        }
        let read = config::read(&path);
        // The look got through but the read did not, for want of
        // descriptors or memory (a burst in between): deferred as the
        // look's would be, not rejected (SPEC §3).
        if let Err(e) = &read
            && e.short
        {
            return Ok(self.config_short(&shown, &e.render(), asked));
        }
        // A writer that began between the check above and the read (its
        // truncate just then) left the read an empty or cut file: the file
        // is not what was checked, so it is waited on as one still being
        // written, not rejected (a spurious "configuration rejected").
        if let Ok(before) = &look.checked
            && super::config_file::changed(&path, before)
        {
            let since = *self.config_unsettled_since.get_or_insert(now);
            if now.duration_since(since) < self.config.watch.settle_timeout {
                self.config_retry = Some(now + CONFIG_QUIET);
                self.config_asked = asked;
                return Ok(ConfigOutcome::Deferred(Deferral::Writing));
            }
        }
        // Entry files the file names may be a writer at work too (a key
        // installed after the configuration naming it, certbot relinking
        // a pair): waited on within the same wait (`apply_config`), but
        // not by a backoff's retry of a rejected configuration. Another
        // edit read in that wait has a wait of its own (`new_edit_since`).
        let edit = read.as_ref().ok().map(|(_, text)| edit_digest(text));
        let since = self.config_unsettled_since.take();
        let since = since.map(|s| self.new_edit_since(s, edit, now));
        self.config_wait_said = None;
        self.config_entries_wait = since.map_or(!(retry && self.config_backoff.is_some()), |s| {
            now.duration_since(s) < self.config.watch.settle_timeout
        });
        let result = read
            .map_err(|e| e.render())
            .and_then(|(file, text)| {
                if text.trim().is_empty() {
                    return Err(format!(
                        "{}: the file is empty; the running configuration stays (write the new one whole)",
                        shown
                    ));
                }
                let new = config::parse(&text, &file).map_err(|e| e.render())?;
                if new.listeners.is_empty() && !self.config.listeners.is_empty() {
                    // Most likely a cut-off write (listeners come last);
                    // stopping every listener is what SIGTERM is for.
                    return Err(format!(
                        "{}: the new configuration has no listeners; the running configuration stays",
                        shown
                    ));
                }
                if new == *self.config {
                    return Ok(None);
                }
                // Checked against the file's admin.bind by `parse`; the
                // running one stays until a restart.
                let shown = self.admin_shown.as_ref();
                let on_admin = self
                    .admin_bound
                    .map(|a| config::on_running_admin(&text, &new, a, shown));
                if let Some(problems) = on_admin.filter(|p| !p.is_empty()) {
                    return Err(problems.join("\n"));
                }
                let changes = super::changes::describe(&self.config, &new);
                let restart = super::changes::at_next_restart(&self.config, &new);
                // A section read at startup alone (admin, store) that changed
                // is checked as `check` and `run` check it: applied, the
                // reload said "reloaded" and the next restart refused the
                // file (a crash loop). Refused now, as `run` would.
                let changed = |section: &str| restart.iter().any(|f| f.starts_with(section));
                let (problems, _) = crate::check::restart_problems(
                    &new,
                    changed("admin."),
                    changed("store."),
                    &mut Vec::new(),
                );
                if !problems.is_empty() {
                    return Err(problems.join("\n"));
                }
                let roots = crate::admin::paths::roots(&self.config);
                self.apply_config(new, false)?;
                self.warn_outside_roots(Some(&roots));
                Ok(Some((changes, restart)))
            });
        self.config_entries_wait = false;
        if let Err(Some(problems)) = result
            .as_ref()
            .map_err(|e| e.strip_prefix(ENTRIES_UNSETTLED))
        {
            return Ok(self.entries_unsettled(since, now, asked, &shown, problems, edit));
        }
        if let Err(Some(problems)) = result.as_ref().map_err(|e| e.strip_prefix(ENTRIES_SHORT)) {
            // A wait for a writer under way goes on from where it was.
            self.config_unsettled_since = since;
            return Ok(self.config_short(&shown, problems, asked));
        }
        self.config_short = None;
        self.config_entries_waited = false;
        self.config_waited_edit = None;
        // Shutdown began while the reload was built (a name's lookup
        // waited for): `apply_config` dropped it before its commit, and the
        // sockets' release waited behind it.
        if result.as_ref().is_err_and(|e| e == SHUTDOWN_BEGAN) {
            return Ok(self.ignored_while_shutting_down(&shown));
        }
        let count = |result: &str| {
            METRICS
                .config_reloads
                .get_or_create(&metrics::ResultLabels {
                    result: result.into(),
                })
                .inc();
        };
        if result.is_ok() {
            self.config_backoff = None;
        }
        // Not a counter's news: 0 for as long as the file is rejected,
        // retries that fail the same way included (SPEC §5).
        METRICS
            .config_last_reload_successful
            .set(i64::from(result.is_ok()));
        match result {
            Ok(None) => {
                // The file is the running configuration. After a rejected
                // one that means it was restored: say so, it is the
                // confirmation the operator waits for.
                let restored = self.last_config_error.take().is_some();
                if restored {
                    count("success");
                    info!(target: LOG, path = %shown, "configuration restored: the file matches the running configuration again");
                    Ok(ConfigOutcome::Restored)
                } else if asked {
                    count("success");
                    Ok(ConfigOutcome::Unchanged)
                } else {
                    Ok(ConfigOutcome::Unchanged)
                }
            }
            Ok(Some((changes, restart))) => {
                self.last_config_error = None;
                count("success");
                info!(target: LOG, path = %shown, changes = %changes, "configuration reloaded");
                if !restart.is_empty() {
                    warn!(target: LOG, path = %shown, settings = %restart.join(", "), "these settings apply at the next restart; their running values stay");
                }
                Ok(ConfigOutcome::Applied)
            }
            Err(problem) => {
                self.config_rejected_in = look.state;
                let news = self.last_config_error.as_deref() != Some(&problem);
                // A read that ends a wait is the waited-on write's, not a
                // backoff's retry, though the retry timer made it: a new
                // bad write, counted however it fails (SPEC §5).
                if news || asked || !retry || since.is_some() {
                    count("failure");
                }
                // Logged as it is counted: the operator's new edit is told
                // rejected, however like the last rejection it fails.
                if news || asked || since.is_some() {
                    error!(target: LOG, path = %shown, error = %problem, "configuration rejected; the running configuration stays");
                    self.last_config_error = Some(problem.clone());
                }
                let backoff = self
                    .config_backoff
                    .map_or(CONFIG_RETRY_FIRST, |b| (b * 2).min(CONFIG_RETRY_MAX));
                self.config_backoff = Some(backoff);
                self.config_retry = Some(Instant::now() + backoff);
                Err(problem)
            }
        }
    }

    /// No reload once shutdown has begun (logged once).
    fn ignored_while_shutting_down(&mut self, shown: &impl std::fmt::Display) -> ConfigOutcome {
        self.config_retry = None;
        if !std::mem::replace(&mut self.shutdown_ignores_config, true) {
            info!(target: LOG, path = %shown, "shutting down; configuration change ignored");
        }
        ConfigOutcome::Ignored
    }

    /// Make `new` the running configuration, or change nothing.
    pub(super) fn apply_config(&mut self, new: Config, startup: bool) -> Result<(), String> {
        // An override stays while its listener does and the file's
        // client_auth for it is what it was when the API set it.
        let mut replaced = Vec::new();
        let mut renamed = Vec::new();
        let mut overrides = self.client_auth_overrides.clone();
        // By name and address, once: a search of the new listeners for each override.
        let listed = NewListeners::new(&new, |name| self.listeners.contains_key(name));
        overrides.retain(|name, _| {
            let Some(l) = listed.named(name) else {
                // Renamed (a new name on its address): the file's
                // client_auth of the new name replaces what the operator
                // set, which must not go unsaid. The address is where the
                // old one listens, as for the socket's hand-over: two
                // port-0 binds are two ports, no rename.
                let bound = self.listeners.get(name).map(|o| o.bound);
                if let Some(to) = bound.and_then(|b| listed.renamed_to(b)) {
                    renamed.push((name.clone(), to.to_owned()));
                }
                return false;
            };
            let kept = self.client_auth_file.get(name) == Some(&l.client_auth);
            if !kept {
                replaced.push(name.clone());
            }
            kept
        });
        let refs = catalogue::references(&new, &overrides);
        let mut problems = Vec::new();
        // A kept override is checked against the new routes, as the PUT
        // that set it was (409): a route `allow` the file adds under an
        // API mode that verifies no one would answer 403 to every request.
        // Refused, not resolved by dropping the override: the operator set
        // it on purpose, and the file's client_auth was not touched, so
        // neither side may silently change how the listener admits clients.
        for (name, client_auth) in &overrides {
            let Some(l) = listed.named(name) else {
                continue;
            };
            if let Some(m) = l.stranded_route_allow(client_auth) {
                // By place alone, as the PUT's 409 names it: the route's
                // values may be `${NAME}` values.
                let n = new.listeners.iter().position(|x| std::ptr::eq(x, l));
                let n = n.expect("a listener of the new configuration");
                problems.push(format!(
                    "listener {name}: listeners[{n}].routes[{m}].allow needs a verified identity, but the client auth set through the admin API (mode {}) verifies no client certificate, and it stays while the file's client_auth of the listener is unchanged: every request to that route would get 403; PUT a verifying mode to /api/v1/listeners/{name}/client-auth first, or change the listener's client_auth in the file (which ends the API's), or remove the route's allow",
                    client_auth.mode.as_str()
                ));
            }
        }

        // 1. Entries: keep the live state of unchanged ones, load the rest.
        let mut entries = BTreeMap::new();
        let mut settled = Vec::new();
        // Unused entries whose files do not load: said once the
        // configuration commits. A rejected one changes nothing, and its
        // retries (every 30 s at most) said it again each time.
        let mut unusable = Vec::new();
        // Referenced entries whose files are not settled (SPEC §3).
        let mut unsettled = Vec::new();
        // Entries whose files were not read for want of descriptors or memory.
        let mut short = Vec::new();
        for spec in &new.entries {
            if let Some(old) = self
                .entries
                .get(&spec.id)
                .filter(|e| e.spec == *spec && e.current.is_some())
            {
                entries.insert(spec.id.clone(), old.clone());
                continue;
            }
            let mut entry = Entry::new(spec.clone(), Origin::Config);
            match pem::load(spec.kind, &spec.source) {
                Ok(loaded) => {
                    entry.current = Some(Arc::new(loaded));
                    entry.last_reload = ReloadResult::success();
                    // Redefined and loading: a previous definition's
                    // pending or failing state is over, once committed.
                    settled.push(spec.id.clone());
                }
                // Hotproxy's own shortage judges neither the files nor the
                // configuration: the read is deferred (`shortage`).
                Err(e) if e.is_out_of_resources() && !startup => {
                    short.push(format!("entry {}: {e}", spec.id));
                }
                Err(e) if refs.contains_key(&spec.id) => {
                    if e.is_transient() {
                        unsettled.push(spec.id.clone());
                    }
                    problems.push(format!("entry {}: {e}", spec.id));
                }
                Err(e) => {
                    unusable.push((spec.id.clone(), e.to_string()));
                    entry.last_reload = ReloadResult::failure(e.to_string());
                }
            }
            entries.insert(spec.id.clone(), entry);
        }
        // Entries created through the admin API live on across config reloads.
        for (id, e) in &self.entries {
            if e.origin != Origin::Store {
                continue;
            }
            if entries.contains_key(id) {
                problems.push(format!(
                    "entry {id}: already created through the admin API (in the store); ids are unique"
                ));
            } else {
                entries.insert(id.clone(), e.clone());
            }
        }
        if !short.is_empty() {
            return Err(format!("{ENTRIES_SHORT}{}", short.join("\n")));
        }
        if self.config_entries_wait && !unsettled.is_empty() && unsettled.len() == problems.len() {
            self.config_unsettled_entries = unsettled;
            return Err(format!("{ENTRIES_UNSETTLED}{}", problems.join("\n")));
        }
        if !problems.is_empty() {
            return Err(self.refusal(problems));
        }

        // 2. Upstreams: reuse unchanged ones (keeps their pools).
        let mut upstreams = BTreeMap::new();
        for u in &new.upstreams {
            // Each may wait 5 s for its names: not once shutdown began.
            if self.shutting_down() {
                return Err(SHUTDOWN_BEGAN.to_owned());
            }
            let (tls, key) = match upstream_tls(u, &entries) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("upstream {}: {e}", u.name));
                    continue;
                }
            };
            match self.upstreams.get(&u.name).filter(|l| l.config == *u) {
                Some(old) => upstreams.insert(
                    u.name.clone(),
                    (old.live.clone(), key, (old.key != key).then_some(tls)),
                ),
                None => {
                    let previous = self.upstreams.get(&u.name).map(|l| &*l.live);
                    // Its lookups on the runtime's blocking pool: one still
                    // running after 5 s is its re-resolution's to wait for.
                    let _enter = self.rt.enter();
                    let live = Upstream::new(u.clone(), tls, previous);
                    upstreams.insert(u.name.clone(), (live, key, None))
                }
            };
        }
        let by_name: HashMap<String, Arc<Upstream>> = upstreams
            .iter()
            .map(|(n, (u, _, _))| (n.clone(), u.clone()))
            .collect();

        // 3. Listeners: build snapshots, bind new addresses (they listen
        // last). Not once shutdown began during the lookups above.
        if self.shutting_down() {
            return Err(SHUTDOWN_BEGAN.to_owned());
        }
        let mut planned = Vec::new();
        // Running listeners whose socket a new one serves on (a rename, a
        // swap), with the name of that one.
        let mut shared = BTreeMap::new();
        let givers = Givers::new(&self.listeners, &listed);
        for l in &new.listeners {
            let client_auth = match overrides.get(&l.name) {
                // The file may no longer name the CA anywhere: say that the
                // reference is the API's, or the operator looks in the file.
                Some(c) => match client_ca(c, &entries) {
                    Ok(_) => c.clone(),
                    Err(e) => {
                        problems.push(format!("listener {name}: tls.client_auth.ca (set at runtime through the admin API): {e}; PUT another CA to /api/v1/listeners/{name}/client-auth first, or keep the entry", name = l.name));
                        continue;
                    }
                },
                None => l.client_auth.clone(),
            };
            let before = self.rebuilt_over(&l.name, &l.certs, &client_auth, &entries);
            let built = match listener_tls(l, &client_auth, &entries, before) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("listener {}: {e}", l.name));
                    continue;
                }
            };
            let router = Router::new(&l.name, &l.routes, &by_name);
            match self.socket_for(l, &givers, &mut shared) {
                Ok(placed) => planned.push((l.clone(), (built, router), placed)),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() || !self.refused_at_start.is_empty() {
            return Err(self.refusal(problems));
        }
        // Shutdown may have begun while this was built (up to 5 s, the
        // last upstream's lookup): committed, it would make new ports
        // listen with nobody to accept on them, and hold the release of
        // the listening sockets queued behind it (SPEC §3).
        if self.shutting_down() {
            return Err(SHUTDOWN_BEGAN.to_owned());
        }
        // Every address bound (none listening yet), then the access log
        // opened (a path that cannot be opened refuses the reload; a file
        // is created only if no address did), then the new sockets listen.
        let bound = self.bind_beside_last(planned, &givers)?;
        let access_log = crate::access_log::prepare(new.access_log.as_ref())?;
        let planned = self.listen_last(bound)?;

        // 4. Commit: nothing below can fail.
        access_log.apply();
        for id in settled {
            set_state(&id, State::Settled);
        }
        let removed_entries: Vec<(String, &'static str)> = self
            .entries
            .iter()
            .filter(|(id, _)| !entries.contains_key(*id))
            .map(|(id, e)| (id.clone(), e.spec.kind.as_str()))
            .collect();
        for (id, kind) in removed_entries {
            forget_entry_metrics(&id, kind);
            self.retries.remove(&id);
            self.short.remove(&id);
            self.crl_retries.remove(&id);
        }
        for (id, e) in &entries {
            let old = self.entries.get(id);
            // An unused entry whose files first load now (its definition
            // unchanged) is reported like a new one: without its series no
            // expiry alert could ever fire for it.
            let first_load = old.is_some_and(|o| o.current.is_none()) && e.current.is_some();
            if old.is_some_and(|old| old.spec == e.spec) && !first_load {
                continue;
            }
            // A retry of a choice of CRLs was about the material replaced.
            self.crl_retries.remove(id);
            // Redefined: what was reported of the old definition goes
            // (under its type, if that changed), and a new definition
            // whose files do not load says so.
            if let Some(old) = old {
                forget_material_metrics(id, old.spec.kind.as_str());
            }
            // Material of the same kind replaced under the same id is
            // compared with what it replaces, as a re-read or an API put of
            // it is (SPEC §3): `crl_files` pointed at a stale mirror is a
            // CRL rolled back, however the new one was reached.
            let replaced = old
                .filter(|o| o.spec.kind == e.spec.kind)
                .and_then(|o| o.current.as_deref());
            match &e.current {
                Some(l) => {
                    record_success(&e.spec, l);
                    warn_validity(id, l, replaced);
                }
                None => set_state(id, State::Failing),
            }
        }
        self.entries = entries;
        let mut live_upstreams = BTreeMap::new();
        // By name: a search of the list for each was 4e8 comparisons for 20,000.
        let configs: HashMap<&str, &UpstreamConfig> =
            new.upstreams.iter().map(|u| (u.name.as_str(), u)).collect();
        for (name, (live, key, new_tls)) in upstreams {
            if let Some(tls) = new_tls {
                live.set_tls(tls);
            }
            let config = (*configs.get(name.as_str()).expect("planned")).clone();
            live_upstreams.insert(name, LiveUpstream { config, live, key });
        }
        // The upstreams replaced or removed, retired once no new request
        // can reach them (see below).
        let outgoing = std::mem::replace(&mut self.upstreams, live_upstreams);
        let mut live_listeners = BTreeMap::new();
        let mut inherited = self.hand_over(&planned, &shared);
        for (cfg, (built, router), socket, _) in planned {
            let admits = built.admits;
            router.register_metrics();
            let live = match (socket, self.listeners.remove(&cfg.name)) {
                (None, Some(mut old)) => {
                    // Rules and snapshot go together: one built from
                    // scratch over the running listener (an entry
                    // redefined with the same bytes) keeps its key but
                    // may give a name a renewal kept to another entry.
                    if old.key != built.key || old.admits != admits {
                        old.live.set_tls(
                            built.tls,
                            built.mode,
                            built.gate,
                            built.served,
                            built.per_name,
                            built.resolver.clone(),
                            built.rotation.rotated_from(&old.rotation),
                        );
                        old.key = built.key;
                        old.rotation = built.rotation;
                        old.resolver = built.resolver;
                    }
                    old.live.edge.store(Arc::new(EdgePolicy::of(&cfg)));
                    old.live.set_router(router, old.config.routes != cfg.routes);
                    old.live.set_limits(cfg.limits.clone());
                    old.live.front.store(Front::new(&cfg.front));
                    old.positions = positions(&cfg);
                    old.config = cfg.clone();
                    // After the new rules are stored (see `readmit`).
                    old.readmit(admits);
                    old
                }
                (Some(socket), old) => {
                    if let Some(old) = old {
                        old.stop(shared.contains_key(&cfg.name));
                        info!(target: LOG, listener = %cfg.name, "listener re-bound; old address closed");
                    }
                    let live = Listener::new(
                        &cfg.name,
                        Handshake {
                            config: built.tls,
                            mode: built.mode,
                            gate: built.gate,
                            generation: 0,
                            per_name: built.per_name,
                            resolver: built.resolver.clone(),
                        },
                        router,
                        cfg.limits.clone(),
                        built.served,
                    );
                    live.front.store(Front::new(&cfg.front));
                    live.edge.store(Arc::new(EdgePolicy::of(&cfg)));
                    let mut live = self.spawn_listener(
                        cfg.clone(),
                        live,
                        socket,
                        built.key,
                        built.resolver,
                        built.rotation,
                        inherited.remove(&cfg.name),
                    );
                    live.admits = admits;
                    live
                }
                (None, None) => unreachable!("a socket is bound for every new listener"),
            };
            live_listeners.insert(cfg.name.clone(), live);
        }
        for (name, old) in std::mem::take(&mut self.listeners) {
            old.stop(shared.contains_key(&name));
            info!(target: LOG, listener = %name, "listener removed");
        }
        self.listeners = live_listeners;
        // Upstreams replaced or removed: their idle connections are closed
        // now, not when the last request holding them ends (a long poll
        // can keep an old endpoint, and its pool, for hours). Only now that
        // the routers are the new ones: retired before, a request accepted
        // meanwhile loaded the old router and went to a drained pool.
        for (name, old) in outgoing {
            let kept = self.upstreams.get(&name);
            if kept.is_none_or(|k| !Arc::ptr_eq(&k.live, &old.live)) {
                old.live.retire(kept.map(|k| &*k.live));
            }
        }
        // Then put the successors in service: a predecessor not yet
        // retired could write the endpoints gauge (an ejection, one's end)
        // over what a successor published first.
        for u in self.upstreams.values() {
            u.live.start_background(&self.rt);
        }
        for name in replaced {
            info!(target: LOG, listener = %name, "the configuration file's client_auth replaces the one set through the API");
        }
        for (from, to) in renamed {
            warn!(target: LOG, listener = %to, renamed_from = %from, "the configuration file's client_auth replaces the one set through the API");
        }
        self.client_auth_file
            .retain(|name, _| overrides.contains_key(name));
        self.client_auth_overrides = overrides;
        self.refs = refs;
        self.config = Arc::new(new);
        self.shared.config.store(self.config.clone());
        self.rewatch();
        self.publish();
        for l in &self.config.listeners {
            for o in &l.route_overlaps {
                warn!(target: LOG, listener = %l.name, overlap = %o, "an earlier route takes some requests of a later, more specific one (first match wins)");
            }
            for w in crate::config::left_out_warnings(l, &format!("listeners.{}", l.name)) {
                warn!(target: LOG, listener = %l.name, warning = %w, "a server name no client can send as SNI is left out");
            }
        }
        for (id, e) in unusable {
            warn!(target: LOG, entry = %id, error = %e, "unused entry has no usable material");
        }
        if startup {
            for (name, l) in &self.listeners {
                let (addr, port) = l.config.bind_shown.bound(l.config.bind, l.bound);
                debug!(target: LOG, listener = %name, addr = %addr, port, "listener ready");
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_listener(
        &self,
        config: ListenerConfig,
        live: Arc<Listener>,
        socket: Registered,
        key: u64,
        resolver: Arc<SniResolver>,
        rotation: super::rotation::InUse,
        inherited: Option<listener::Inherited>,
    ) -> LiveListener {
        let (stop, stop_rx) = watch::channel(listener::Stop::No);
        let Registered {
            socket,
            bound,
            shared,
        } = socket;
        listener::log_listening(&config.name, &config.bind_shown, config.bind, bound);
        self.rt.spawn(listener::serve(
            live.clone(),
            socket,
            stop_rx,
            self.shutdown.clone(),
            self.drain.clone(),
            inherited,
        ));
        LiveListener {
            positions: positions(&config),
            config,
            live,
            bound,
            socket: shared,
            heirs: Vec::new(),
            key,
            stop,
            resolver,
            rotation,
            admits: Default::default(),
        }
    }

    /// Shutting down: let go of the listening sockets kept for a hand-over,
    /// so that with the accept loops stopped the ports close now (a client
    /// is refused at once and tries another pod) rather than when the
    /// drain ends, with connections queued that nobody accepts.
    pub fn release_sockets(&mut self) {
        for l in self.listeners.values_mut() {
            l.socket = None;
        }
    }

    pub(super) fn client_auth_for(&self, name: &str, config: &ListenerConfig) -> ClientAuthConfig {
        self.client_auth_overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| config.client_auth.clone())
    }

    /// The snapshot listener `name` is rebuilt over when it keeps its
    /// `certs` and `client_auth` (a reload that left them alone, or a
    /// client-auth PUT of the one it runs with) and `entries` define each
    /// entry it uses as now ([`defined_alike`]): names a rotation kept with
    /// their previous pair stay there (see keep_owners). Any other change
    /// builds from scratch, as `check` and a restart would.
    fn rebuilt_over(
        &self,
        name: &str,
        certs: &[ListenerCert],
        client_auth: &ClientAuthConfig,
        entries: &BTreeMap<String, Entry>,
    ) -> Option<&LiveListener> {
        self.listeners.get(name).filter(|o| {
            o.config.certs == certs
                && self.client_auth_for(name, &o.config) == *client_auth
                && defined_alike(certs, client_auth, &self.entries, entries)
        })
    }

    /// Change a listener's client-auth mode and CA at runtime: new
    /// connections are checked under it, and open ones it no longer admits
    /// close (all of them when the mode changed: `LiveListener::readmit`).
    /// All-or-nothing.
    pub fn set_client_auth(
        &mut self,
        listener: &str,
        client_auth: ClientAuthConfig,
    ) -> Result<(), String> {
        let Some(l) = self.listeners.get(listener) else {
            return Err(format!("no listener {listener:?}"));
        };
        let before = self.rebuilt_over(listener, &l.config.certs, &client_auth, &self.entries);
        let built = listener_tls(&l.config, &client_auth, &self.entries, before)?;
        let l = self.listeners.get_mut(listener).expect("checked");
        l.key = built.key;
        l.resolver = built.resolver.clone();
        let rotated = built.rotation.rotated_from(&l.rotation);
        l.rotation = built.rotation;
        l.live.set_tls(
            built.tls,
            built.mode,
            built.gate,
            built.served,
            built.per_name,
            built.resolver,
            rotated,
        );
        l.readmit(built.admits);
        self.client_auth_file
            .insert(listener.to_owned(), l.config.client_auth.clone());
        self.client_auth_overrides
            .insert(listener.to_owned(), client_auth);
        // The runtime CA is in use: deleting it must answer 409.
        self.refs = catalogue::references(&self.config, &self.client_auth_overrides);
        info!(target: LOG, listener = %listener, "client authentication changed at runtime");
        self.publish();
        Ok(())
    }
}

/// What [`Reloader::apply_config`] answers when shutdown began while it
/// built the configuration: nothing was applied.
pub(super) const SHUTDOWN_BEGAN: &str = "shutting down; the configuration was not applied";

/// The first and the longest wait before a rejected configuration is read again.
const CONFIG_RETRY_FIRST: Duration = Duration::from_secs(1);
const CONFIG_RETRY_MAX: Duration = Duration::from_secs(30);
