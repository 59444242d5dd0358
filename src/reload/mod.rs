//! The single writer: applies entry and config changes, rebuilds dependent snapshots.
//!
//! Every change to live state happens here, on one dedicated thread that
//! owns the catalogue, the listeners and the upstreams. Watch events, retry
//! timers, SIGHUP and admin API calls all arrive as [`Command`]s, so changes
//! are serialized without locks and each one is all-or-nothing: the new
//! state is *planned* (material loaded, snapshots built, sockets bound)
//! before anything is stored, and a failed plan leaves everything as it was.
//!
//! Snapshots are keyed by a fingerprint of what they are built from, so a
//! change rebuilds exactly the listeners and upstreams whose inputs changed.
//! One entry's change costs what that entry touches, not the size of the
//! catalogue: its dependents are updated from their previous snapshot (the
//! other pairs' keys and names are shared, not rebuilt) and only its own
//! view is republished.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::{
    self, ClientAuthConfig, ClientAuthMode, Config, EntrySpec, ListenerCert, ListenerConfig,
    UpstreamCa, UpstreamConfig,
};
use crate::material::catalogue::{self, Entry, EntryView, Origin, Reference, ReloadResult, unix};
use crate::material::store::Store;
use crate::material::{Loaded, pem};
use crate::metrics::{self, METRICS};
use crate::proxy::forward::Upstream;
use crate::proxy::listener::{self, Drain, Listener, ServedCert};
use crate::proxy::router::Router;
use crate::tls;
use crate::tls::server::{ServedPair, SniResolver};
use crate::watch::{Subject, Watcher};

/// A request to the reloader thread.
pub enum Command {
    /// The watcher saw something that may have changed this subject.
    Changed(Subject),
    /// SIGHUP: re-read the configuration and every file.
    ReloadAll,
    /// Run a closure on the reloader thread (the admin API's mutations).
    Call(Box<dyn FnOnce(&mut Reloader) + Send>),
    /// Stop the thread.
    Stop,
}

/// Entry views by id. Each view sits behind its own `Arc` so publishing
/// one entry's change copies pointers, not every view.
pub type EntryViews = BTreeMap<Arc<str>, Arc<EntryView>>;

/// What readers (admin API, probes) see; published by the reloader after
/// every change.
pub struct Shared {
    pub entries: ArcSwap<EntryViews>,
    pub listeners: ArcSwap<BTreeMap<String, ListenerView>>,
    pub config: ArcSwap<Config>,
    /// Every listener is bound and has usable material.
    pub ready: AtomicBool,
}

/// A listener as the admin API shows it.
#[derive(Clone)]
pub struct ListenerView {
    pub name: String,
    pub bind: SocketAddr,
    pub entries: Vec<String>,
    pub client_auth: ClientAuthConfig,
    pub live: Arc<Listener>,
}

/// The reloader's address: send commands, read the published state.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    pub shared: Arc<Shared>,
}

impl Handle {
    pub fn send(&self, command: Command) {
        // The thread only stops at shutdown; a send after that is moot.
        let _ = self.tx.send(command);
    }

    /// Run `f` on the reloader thread and await its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Reloader) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Call(Box::new(move |r| {
            let _ = tx.send(f(r));
        })));
        rx.await.ok()
    }
}

struct LiveListener {
    config: ListenerConfig,
    live: Arc<Listener>,
    bound: SocketAddr,
    key: u64,
    stop: watch::Sender<bool>,
    /// The live snapshot's resolver: a rotation derives the next one from
    /// it instead of indexing every pair's names again.
    resolver: Arc<SniResolver>,
    /// Where each entry sits in `config.certs`, so a rotation finds its
    /// pairs without a scan.
    positions: HashMap<String, Vec<usize>>,
}

struct LiveUpstream {
    config: UpstreamConfig,
    live: Arc<Upstream>,
    key: u64,
}

/// The owner of all live state. Lives on its own thread.
pub struct Reloader {
    rt: tokio::runtime::Handle,
    config: Arc<Config>,
    entries: BTreeMap<String, Entry>,
    listeners: BTreeMap<String, LiveListener>,
    upstreams: BTreeMap<String, LiveUpstream>,
    /// Runtime client-auth changes made through the admin API; they win
    /// over the configuration file until the listener is removed.
    client_auth_overrides: BTreeMap<String, ClientAuthConfig>,
    /// Entries to retry, and when.
    retries: BTreeMap<String, Instant>,
    watcher: Watcher,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    drain: Arc<Drain>,
    /// Last configuration problem logged, so a broken file is logged once.
    last_config_error: Option<String>,
    /// When to look at the configuration file again because it looked
    /// mid-write, and since when it has looked so.
    config_retry: Option<Instant>,
    config_unsettled_since: Option<Instant>,
    /// Where entries created through the admin API persist (`store:`).
    store: Option<Store>,
    /// Who references each entry in `config`; changes with the configuration only.
    refs: BTreeMap<String, Vec<Reference>>,
    /// The entry views last published, updated one entry at a time.
    views: EntryViews,
}

/// Start serving `config`: load every entry, bind every listener, start
/// the watcher and the reloader thread. Any problem is fatal here (like
/// `nginx -t`): the error lists what is wrong.
pub fn start(
    config: Config,
    rt: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    drain: Arc<Drain>,
) -> Result<Handle, String> {
    let (watcher, mut events) = {
        let _enter = rt.enter();
        Watcher::start(config.watch.clone())
    };
    let shared = Arc::new(Shared {
        entries: ArcSwap::from_pointee(BTreeMap::new()),
        listeners: ArcSwap::from_pointee(BTreeMap::new()),
        config: ArcSwap::from_pointee(config.clone()),
        ready: AtomicBool::new(false),
    });
    let mut reloader = Reloader {
        rt: rt.clone(),
        config: Arc::new(config.clone()),
        entries: BTreeMap::new(),
        listeners: BTreeMap::new(),
        upstreams: BTreeMap::new(),
        client_auth_overrides: BTreeMap::new(),
        retries: BTreeMap::new(),
        watcher,
        shared: shared.clone(),
        shutdown,
        drain,
        last_config_error: None,
        config_retry: None,
        config_unsettled_since: None,
        store: None,
        refs: BTreeMap::new(),
        views: BTreeMap::new(),
    };
    reloader.apply_config(config.clone(), true)?;
    if let Some(store_config) = &config.store {
        let (store, stored) = Store::open(store_config)?;
        for spec in stored {
            reloader.restore_stored(spec, store.path())?;
        }
        reloader.store = Some(store);
        reloader.rewatch();
        reloader.publish();
    }
    let (tx, rx) = mpsc::channel();
    let forward = tx.clone();
    rt.spawn(async move {
        while let Some(subject) = events.recv().await {
            if forward.send(Command::Changed(subject)).is_err() {
                break;
            }
        }
    });
    std::thread::Builder::new()
        .name("hotproxy-reload".into())
        .spawn(move || reloader.run(rx))
        .map_err(|e| format!("cannot start the reloader thread: {e}"))?;
    Ok(Handle { tx, shared })
}

impl Reloader {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            let timeout = self
                .retries
                .values()
                .chain(self.config_retry.iter())
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(timeout) {
                Ok(Command::Changed(Subject::Config)) => {
                    let _ = self.reload_config();
                }
                Ok(Command::Changed(Subject::Entry(id))) => {
                    let _ = self.reload_entry(&id);
                }
                Ok(Command::ReloadAll) => {
                    info!("SIGHUP: re-reading the configuration and every certificate file");
                    let _ = self.reload_config();
                    let ids: Vec<String> = self.entries.keys().cloned().collect();
                    for id in ids {
                        let _ = self.reload_entry(&id);
                    }
                }
                Ok(Command::Call(f)) => f(&mut self),
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.run_due_retries();
        }
        debug!("reloader stopped");
    }

    fn run_due_retries(&mut self) {
        let now = Instant::now();
        if self.config_retry.is_some_and(|at| at <= now) {
            self.config_retry = None;
            let _ = self.reload_config();
        }
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.retries.remove(&id);
            let _ = self.reload_entry(&id);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Re-read one entry's files; swap it in if its content changed and is
    /// valid. Returns the problem when the material is refused (the old
    /// material stays) or `Ok(false)` when nothing changed.
    pub fn reload_entry(&mut self, id: &str) -> Result<bool, String> {
        let Some(entry) = self.entries.get(id) else {
            return Err(format!("no entry {id:?}"));
        };
        if entry.spec.source.is_inline() {
            return Ok(false);
        }
        let spec = entry.spec.clone();
        let started = Instant::now();
        let current = entry.current.as_ref().map(|c| c.hash);
        let loaded = pem::read_consistent(&spec.source).and_then(|raw| {
            // Same bytes as served: skip the parse (a signing key, every
            // certificate), most of a re-read's cost. The start-up re-check
            // and a SIGHUP re-read every entry, nearly all unchanged.
            if current == Some(raw.hash) {
                return Ok(None);
            }
            let material = pem::parse(spec.kind, &spec.source, &raw)?;
            Ok(Some(Loaded {
                material,
                hash: raw.hash,
                loaded_at: SystemTime::now(),
            }))
        });
        match loaded {
            Ok(None) => {
                self.unchanged(id);
                self.read_from_files(id);
                Ok(false)
            }
            Ok(Some(loaded)) => {
                let changed = self.offer_since(id, loaded, started)?;
                self.read_from_files(id);
                Ok(changed)
            }
            Err(e) => {
                let message = e.to_string();
                self.refused(id, &message, e.is_transient());
                Err(message)
            }
        }
    }

    /// The material of `id` now comes from its files again (it may have
    /// been put through the admin API before).
    fn read_from_files(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.from_api
        {
            entry.from_api = false;
            self.publish_entry(id);
        }
    }

    /// The admin API put new material over the file-backed entry `id`: the
    /// API shows it as such until the files are read again.
    pub fn mark_from_api(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id)
            && !entry.spec.source.is_inline()
        {
            entry.from_api = true;
            self.publish_entry(id);
        }
    }

    /// A re-read of `id` found the content it serves. When the entry was
    /// failing or waiting for a writer, the good content came back (e.g. a
    /// writer finished): clear that state.
    fn unchanged(&mut self, id: &str) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let recovering = entry
            .last_reload
            .as_ref()
            .is_some_and(|r| r.result == "failure")
            || entry.unsettled_since.is_some();
        if !recovering {
            return;
        }
        if entry.last_logged.is_some() {
            info!(entry = %id, "certificate material is valid again; still serving it");
        }
        entry.unsettled_since = None;
        entry.failures = 0;
        entry.last_logged = None;
        entry.last_reload = ReloadResult::success();
        self.retries.remove(id);
        self.publish_entry(id);
    }

    /// Swap in freshly loaded material for `id` if it differs, rebuilding
    /// dependents; on a build failure the old material stays.
    pub fn offer(&mut self, id: &str, loaded: Loaded) -> Result<bool, String> {
        self.offer_since(id, loaded, Instant::now())
    }

    /// [`Reloader::offer`] of material whose reading began at `started`
    /// (the logged `reload_ms` runs from there to the published snapshot).
    fn offer_since(&mut self, id: &str, loaded: Loaded, started: Instant) -> Result<bool, String> {
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
                self.refused(id, &problem, false);
                return Err(problem);
            }
        };
        self.commit_material(changes);
        let entry = self.entries.get_mut(id).expect("present");
        entry.unsettled_since = None;
        entry.failures = 0;
        entry.last_logged = None;
        entry.last_reload = Some(ReloadResult {
            time: unix(loaded.loaded_at),
            result: "success",
            error: None,
        });
        self.retries.remove(id);
        record_success(&entry.spec, &loaded);
        warn_validity(id, &loaded, previous.as_deref());
        self.publish_entry(id);
        if let Some(p) = loaded.primary() {
            let reload_ms = started.elapsed().as_secs_f64() * 1e3;
            info!(entry = %id, fingerprint = %p.fingerprint_sha256, subject = %p.subject, not_after = p.not_after, reload_ms, "certificate reloaded");
        }
        Ok(true)
    }

    /// Material for `id` was refused: keep the old, count, log once per
    /// distinct problem, schedule a retry. Transient problems (a writer
    /// half-way) are only waited on until `settle_timeout`.
    fn refused(&mut self, id: &str, problem: &str, transient: bool) {
        let settle = self.config.watch.settle_timeout;
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        if transient {
            let since = *entry.unsettled_since.get_or_insert(now);
            if now.duration_since(since) < settle {
                debug!(entry = %id, error = %problem, "material not settled yet; waiting");
                let retry = Duration::from_millis(100).min(settle);
                self.retries.insert(id.to_owned(), now + retry);
                return;
            }
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_reload = ReloadResult::failure(problem.to_owned());
        if entry.last_logged.as_deref() != Some(problem) {
            warn!(entry = %id, error = %problem, "certificate reload failed; keeping the previous material");
            entry.last_logged = Some(problem.to_owned());
        }
        METRICS
            .cert_reloads
            .get_or_create(&metrics::EntryResultLabels {
                entry: id.to_owned(),
                result: "failure".into(),
            })
            .inc();
        let backoff = Duration::from_millis(500)
            .saturating_mul(1u32 << entry.failures.min(6))
            .min(Duration::from_secs(30));
        self.retries.insert(id.to_owned(), now + backoff);
        self.publish_entry(id);
    }

    /// Re-read the configuration file and apply it if it changed and is valid.
    pub fn reload_config(&mut self) -> Result<(), String> {
        let path = self.config.file.clone();
        // An in-place writer truncates, then writes: a read in between
        // sees an empty or cut file that may still parse (a configuration
        // without its listeners). Wait until the file has been still for a
        // moment, bounded by settle_timeout; an empty file is never applied.
        let now = Instant::now();
        if let Some(age) = modified_ago(&path)
            && age < CONFIG_QUIET
        {
            let since = *self.config_unsettled_since.get_or_insert(now);
            if now.duration_since(since) < self.config.watch.settle_timeout {
                self.config_retry = Some(now + CONFIG_QUIET - age);
                return Ok(());
            }
        }
        self.config_unsettled_since = None;
        let result = config::read(&path)
            .map_err(|e| e.render())
            .and_then(|(file, text)| {
                if text.trim().is_empty() {
                    return Err(format!(
                        "{}: the file is empty; the running configuration stays (write the new one whole)",
                        path.display()
                    ));
                }
                let new = config::parse(&text, &file).map_err(|e| e.render())?;
                if new.listeners.is_empty() && !self.config.listeners.is_empty() {
                    // Most likely a cut-off write (listeners come last);
                    // stopping every listener is what SIGTERM is for.
                    return Err(format!(
                        "{}: the new configuration has no listeners; the running configuration stays",
                        path.display()
                    ));
                }
                if new == *self.config {
                    return Ok(false);
                }
                self.apply_config(new, false).map(|_| true)
            });
        match result {
            Ok(false) => {
                self.last_config_error = None;
                Ok(())
            }
            Ok(true) => {
                self.last_config_error = None;
                METRICS
                    .config_reloads
                    .get_or_create(&metrics::ResultLabels {
                        result: "success".into(),
                    })
                    .inc();
                info!(path = %path.display(), "configuration reloaded");
                Ok(())
            }
            Err(problem) => {
                METRICS
                    .config_reloads
                    .get_or_create(&metrics::ResultLabels {
                        result: "failure".into(),
                    })
                    .inc();
                if self.last_config_error.as_deref() != Some(&problem) {
                    error!(path = %path.display(), error = %problem, "configuration rejected; the running configuration stays");
                    self.last_config_error = Some(problem.clone());
                }
                Err(problem)
            }
        }
    }

    /// Make `new` the running configuration, or change nothing.
    fn apply_config(&mut self, new: Config, startup: bool) -> Result<(), String> {
        let mut overrides = self.client_auth_overrides.clone();
        overrides.retain(|name, _| new.listeners.iter().any(|l| &l.name == name));
        let refs = catalogue::references(&new, &overrides);
        let mut problems = Vec::new();

        // 1. Entries: keep the live state of unchanged ones, load the rest.
        let mut entries = BTreeMap::new();
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
                }
                Err(e) if refs.contains_key(&spec.id) => {
                    problems.push(format!("entry {}: {e}", spec.id));
                }
                Err(e) => {
                    warn!(entry = %spec.id, error = %e, "unused entry has no usable material");
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
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }

        // 2. Upstreams: reuse unchanged ones (keeps their pools).
        let mut upstreams = BTreeMap::new();
        for u in &new.upstreams {
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
                    upstreams.insert(u.name.clone(), (Upstream::new(u.clone(), tls), key, None))
                }
            };
        }
        let by_name: HashMap<String, Arc<Upstream>> = upstreams
            .iter()
            .map(|(n, (u, _, _))| (n.clone(), u.clone()))
            .collect();

        // 3. Listeners: build snapshots, bind new addresses.
        let mut planned = Vec::new();
        for l in &new.listeners {
            let client_auth = self
                .client_auth_overrides
                .get(&l.name)
                .cloned()
                .unwrap_or_else(|| l.client_auth.clone());
            let built = match listener_tls(l, &client_auth, &entries) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("listener {}: {e}", l.name));
                    continue;
                }
            };
            let router = Router::new(&l.routes, &by_name);
            let existing = self
                .listeners
                .get(&l.name)
                .filter(|o| o.config.bind == l.bind);
            let socket = match existing {
                Some(_) => None,
                None => match bind_std(l.bind, &self.rt) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        problems.push(format!("listener {}: cannot bind {}: {e}", l.name, l.bind));
                        continue;
                    }
                },
            };
            planned.push((l.clone(), built, router, socket));
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }

        // 4. Commit: nothing below can fail.
        let removed_entries: Vec<(String, &'static str)> = self
            .entries
            .iter()
            .filter(|(id, _)| !entries.contains_key(*id))
            .map(|(id, e)| (id.clone(), e.spec.kind.as_str()))
            .collect();
        for (id, kind) in removed_entries {
            forget_entry_metrics(&id, kind);
            self.retries.remove(&id);
        }
        for (id, e) in &entries {
            let fresh = self.entries.get(id).is_none_or(|old| old.spec != e.spec);
            if fresh && let Some(l) = &e.current {
                record_success(&e.spec, l);
                warn_validity(id, l, None);
            }
        }
        self.entries = entries;
        let mut live_upstreams = BTreeMap::new();
        for (name, (live, key, new_tls)) in upstreams {
            if let Some(tls) = new_tls {
                live.set_tls(tls);
            }
            let config = new
                .upstreams
                .iter()
                .find(|u| u.name == name)
                .expect("planned")
                .clone();
            live_upstreams.insert(name, LiveUpstream { config, live, key });
        }
        self.upstreams = live_upstreams;
        let mut live_listeners = BTreeMap::new();
        for (cfg, built, router, socket) in planned {
            let live = match (socket, self.listeners.remove(&cfg.name)) {
                (None, Some(mut old)) => {
                    if old.key != built.key {
                        old.live.set_tls(built.tls, built.mode, built.served);
                        old.key = built.key;
                        old.resolver = built.resolver;
                    }
                    old.live.router.store(Arc::new(router));
                    old.live.set_limits(cfg.limits.clone());
                    old.positions = positions(&cfg);
                    old.config = cfg.clone();
                    old
                }
                (Some(socket), old) => {
                    if let Some(old) = old {
                        let _ = old.stop.send(true);
                        info!(listener = %cfg.name, "listener re-bound; old address closed");
                    }
                    let live = Listener::new(
                        &cfg.name,
                        built.tls,
                        built.mode,
                        router,
                        cfg.limits.clone(),
                        built.served,
                    );
                    self.spawn_listener(cfg.clone(), live, socket, built.key, built.resolver)
                }
                (None, None) => unreachable!("a socket is bound for every new listener"),
            };
            live_listeners.insert(cfg.name.clone(), live);
        }
        for (name, old) in std::mem::take(&mut self.listeners) {
            let _ = old.stop.send(true);
            info!(listener = %name, "listener removed");
        }
        self.listeners = live_listeners;
        self.client_auth_overrides = overrides;
        self.refs = refs;
        self.config = Arc::new(new);
        self.shared.config.store(self.config.clone());
        self.rewatch();
        self.publish();
        if startup {
            for (name, l) in &self.listeners {
                debug!(listener = %name, addr = %l.bound, "listener ready");
            }
        }
        Ok(())
    }

    fn spawn_listener(
        &self,
        config: ListenerConfig,
        live: Arc<Listener>,
        socket: std::net::TcpListener,
        key: u64,
        resolver: Arc<SniResolver>,
    ) -> LiveListener {
        let (stop, stop_rx) = watch::channel(false);
        let bound = socket.local_addr().unwrap_or(config.bind);
        let _enter = self.rt.enter();
        let socket = tokio::net::TcpListener::from_std(socket)
            .expect("socket is non-blocking and the runtime is entered");
        listener::log_listening(&config.name, bound);
        self.rt.spawn(listener::serve(
            live.clone(),
            socket,
            stop_rx,
            self.shutdown.clone(),
            self.drain.clone(),
        ));
        LiveListener {
            positions: positions(&config),
            config,
            live,
            bound,
            key,
            stop,
            resolver,
        }
    }

    /// The snapshots that depend on entry `id`, rebuilt after its material
    /// changed from `previous` (`None`: it had none), but not yet stored.
    /// Listeners that do not use `id` are not looked at beyond a lookup.
    fn plan_entry_change(
        &self,
        id: &str,
        previous: Option<&Loaded>,
    ) -> Result<Vec<MaterialChange>, String> {
        let mut changes = Vec::new();
        for (name, l) in &self.listeners {
            let client_auth = self.client_auth_for(name, &l.config);
            if let Some(built) = listener_tls_after(l, &client_auth, &self.entries, id, previous)
                .map_err(|e| format!("listener {name}: {e}"))?
            {
                changes.push(MaterialChange::Listener(name.clone(), built));
            }
        }
        for (name, u) in &self.upstreams {
            if upstream_key(&u.config, &self.entries) != u.key {
                let (tls, key) = upstream_tls(&u.config, &self.entries)
                    .map_err(|e| format!("upstream {name}: {e}"))?;
                changes.push(MaterialChange::Upstream(name.clone(), tls, key));
            }
        }
        Ok(changes)
    }

    fn commit_material(&mut self, changes: Vec<MaterialChange>) {
        for change in changes {
            match change {
                MaterialChange::Listener(name, built) => {
                    let l = self
                        .listeners
                        .get_mut(&name)
                        .expect("planned from live listeners");
                    l.live.set_tls(built.tls, built.mode, built.served);
                    l.key = built.key;
                    l.resolver = built.resolver;
                    debug!(listener = %name, "listener TLS snapshot replaced");
                }
                MaterialChange::Upstream(name, tls, key) => {
                    let u = self
                        .upstreams
                        .get_mut(&name)
                        .expect("planned from live upstreams");
                    u.live.set_tls(tls);
                    u.key = key;
                    debug!(upstream = %name, "upstream TLS snapshot replaced");
                }
            }
        }
    }

    fn client_auth_for(&self, name: &str, config: &ListenerConfig) -> ClientAuthConfig {
        self.client_auth_overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| config.client_auth.clone())
    }

    /// Change a listener's client-auth mode and CA at runtime (new
    /// connections only). All-or-nothing.
    pub fn set_client_auth(
        &mut self,
        listener: &str,
        client_auth: ClientAuthConfig,
    ) -> Result<(), String> {
        let Some(l) = self.listeners.get(listener) else {
            return Err(format!("no listener {listener:?}"));
        };
        let built = listener_tls(&l.config, &client_auth, &self.entries)?;
        let l = self.listeners.get_mut(listener).expect("checked");
        l.key = built.key;
        l.resolver = built.resolver;
        l.live.set_tls(built.tls, built.mode, built.served);
        self.client_auth_overrides
            .insert(listener.to_owned(), client_auth);
        // The runtime CA is in use: deleting it must answer 409.
        self.refs = catalogue::references(&self.config, &self.client_auth_overrides);
        info!(listener = %listener, "client authentication changed at runtime");
        self.publish();
        Ok(())
    }

    /// Tell the watcher which files stand behind what.
    fn rewatch(&self) {
        let mut subjects = vec![(Subject::Config, vec![self.config.file.clone()])];
        for (id, e) in &self.entries {
            let paths: Vec<_> = e
                .spec
                .source
                .paths()
                .iter()
                .map(|p| p.to_path_buf())
                .collect();
            if !paths.is_empty() {
                subjects.push((Subject::Entry(id.clone()), paths));
            }
        }
        self.watcher.set(subjects);
    }

    /// Publish the read-side views.
    fn publish(&mut self) {
        self.views = self
            .entries
            .iter()
            .map(|(id, e)| {
                let refs = self.refs.get(id).cloned().unwrap_or_default();
                (Arc::from(id.as_str()), Arc::new(EntryView::of(e, refs)))
            })
            .collect();
        self.shared.entries.store(Arc::new(self.views.clone()));
        let listeners = self
            .listeners
            .iter()
            .map(|(name, l)| {
                let client_auth = self.client_auth_for(name, &l.config);
                let mut entries: Vec<String> =
                    l.config.certs.iter().map(|c| c.entry.clone()).collect();
                entries.extend(client_auth.ca.clone());
                (
                    name.clone(),
                    ListenerView {
                        name: name.clone(),
                        bind: l.bound,
                        entries,
                        client_auth,
                        live: l.live.clone(),
                    },
                )
            })
            .collect();
        self.shared.listeners.store(Arc::new(listeners));
        // Usable material is guaranteed for every live listener: a plan
        // that lacks it is never committed.
        self.shared.ready.store(true, Ordering::SeqCst);
    }

    /// Publish the view of one entry whose material or reload result
    /// changed; listeners and the other entries look the same as before.
    fn publish_entry(&mut self, id: &str) {
        match self.entries.get(id) {
            Some(e) => {
                let refs = self.refs.get(id).cloned().unwrap_or_default();
                self.views
                    .insert(Arc::from(id), Arc::new(EntryView::of(e, refs)));
            }
            None => {
                self.views.remove(id);
            }
        }
        self.shared.entries.store(Arc::new(self.views.clone()));
    }

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
    /// admin API), loading its material first; refused material changes
    /// nothing.
    pub fn put_entry(&mut self, spec: EntrySpec, origin: Origin) -> Result<(), String> {
        let loaded = pem::load(spec.kind, &spec.source).map_err(|e| e.to_string())?;
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
                let e = &self.entries[&spec.id];
                if let Some(l) = &e.current {
                    record_success(&e.spec, l);
                }
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
    fn restore_stored(&mut self, spec: EntrySpec, store: &std::path::Path) -> Result<(), String> {
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
                entry.current = Some(Arc::new(l));
                entry.last_reload = ReloadResult::success();
            }
            Err(e) => {
                warn!(entry = %spec.id, error = %e, "stored entry has no usable material");
                entry.last_reload = ReloadResult::failure(e.to_string());
            }
        }
        self.entries.insert(spec.id.clone(), entry);
        Ok(())
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
}

enum MaterialChange {
    Listener(String, BuiltListener),
    Upstream(String, Arc<ClientConfig>, u64),
}

/// A listener's TLS snapshot, built but not yet stored.
struct BuiltListener {
    tls: Arc<ServerConfig>,
    mode: ClientAuthMode,
    served: Vec<Arc<ServedCert>>,
    resolver: Arc<SniResolver>,
    key: u64,
}

fn loaded<'a>(entries: &'a BTreeMap<String, Entry>, id: &str) -> Result<&'a Arc<Loaded>, String> {
    entries
        .get(id)
        .ok_or_else(|| format!("entry {id:?} does not exist"))?
        .current
        .as_ref()
        .ok_or_else(|| format!("entry {id:?} has no usable material"))
}

fn hash_of(entries: &BTreeMap<String, Entry>, id: &str) -> Option<[u8; 32]> {
    entries
        .get(id)
        .and_then(|e| e.current.as_ref())
        .map(|x| x.hash)
}

/// Fingerprint of everything a listener's snapshot is built from: a term
/// for its settings and client CA plus one term per served pair, summed,
/// so that one entry's change updates it from that entry's terms alone
/// (see [`listener_tls_after`]).
fn listener_key(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
) -> u64 {
    let ca_hash = client_auth
        .ca
        .as_deref()
        .and_then(|ca| hash_of(entries, ca));
    l.certs
        .iter()
        .enumerate()
        .fold(settings_term(l, client_auth, ca_hash), |key, (i, c)| {
            key.wrapping_add(pair_term(i, c, hash_of(entries, &c.entry)))
        })
}

/// The part of [`listener_key`] for the settings and the client CA's material.
fn settings_term(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    ca_hash: Option<[u8; 32]>,
) -> u64 {
    let mut h = DefaultHasher::new();
    l.certs.len().hash(&mut h);
    client_auth.mode.as_str().hash(&mut h);
    if let Some(ca) = &client_auth.ca {
        ca.hash(&mut h);
        ca_hash.hash(&mut h);
    }
    l.alpn.hash(&mut h);
    matches!(l.min_version, config::TlsVersion::V13).hash(&mut h);
    h.finish()
}

/// The part of [`listener_key`] for the pair at position `i`, with material `hash`.
fn pair_term(i: usize, c: &ListenerCert, hash: Option<[u8; 32]>) -> u64 {
    let mut h = DefaultHasher::new();
    (i, &c.entry, &c.server_names, hash).hash(&mut h);
    h.finish()
}

/// Where each entry sits in a listener's `certs`.
fn positions(l: &ListenerConfig) -> HashMap<String, Vec<usize>> {
    let mut at: HashMap<String, Vec<usize>> = HashMap::with_capacity(l.certs.len());
    for (i, c) in l.certs.iter().enumerate() {
        at.entry(c.entry.clone()).or_default().push(i);
    }
    at
}

fn served_cert(c: &ListenerCert, pair: &crate::material::Pair) -> Arc<ServedCert> {
    Arc::new(ServedCert {
        entry: c.entry.clone(),
        server_names: c
            .server_names
            .clone()
            .unwrap_or_else(|| pair.leaf.dns_names.clone()),
        info: pair.leaf.clone(),
    })
}

fn client_ca<'a>(
    client_auth: &ClientAuthConfig,
    entries: &'a BTreeMap<String, Entry>,
) -> Result<Option<&'a crate::material::CaBundle>, String> {
    match &client_auth.ca {
        Some(id) => {
            Ok(Some(loaded(entries, id)?.ca().ok_or_else(|| {
                format!("entry {id:?} is not a ca-bundle")
            })?))
        }
        None => Ok(None),
    }
}

/// A listener's snapshot from scratch: every pair, every name.
fn listener_tls(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
) -> Result<BuiltListener, String> {
    let mut pairs = Vec::with_capacity(l.certs.len());
    let mut served = Vec::with_capacity(l.certs.len());
    for c in &l.certs {
        let m = loaded(entries, &c.entry)?;
        let pair = m
            .pair()
            .ok_or_else(|| format!("entry {:?} is not a server-pair", c.entry))?;
        pairs.push(ServedPair {
            entry: &c.entry,
            pair,
            server_names: c.server_names.as_deref(),
        });
        served.push(served_cert(c, pair));
    }
    let resolver = Arc::new(SniResolver::new(&pairs).ok_or("no server certificate")?);
    let inputs = tls::server::ServerInputs {
        listener: l,
        mode: client_auth.mode,
        client_ca: client_ca(client_auth, entries)?,
    };
    let tls = tls::server::build(&inputs, resolver.clone()).map_err(|e| e.to_string())?;
    Ok(BuiltListener {
        tls,
        mode: client_auth.mode,
        served,
        resolver,
        key: listener_key(l, client_auth, entries),
    })
}

/// Listener `l`'s snapshot after entry `id`'s material changed from
/// `previous` (`entries` holds the new one), or `None` when `l` does not
/// use it. A pair that answers the same names as before only has its key
/// replaced in the previous resolver and its metadata in the served list;
/// the other pairs are shared, never re-read, re-indexed or re-cloned. A
/// changed client CA rebuilds the verifier around the same resolver.
fn listener_tls_after(
    l: &LiveListener,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
    id: &str,
    previous: Option<&Loaded>,
) -> Result<Option<BuiltListener>, String> {
    let at = l.positions.get(id).map(Vec::as_slice).unwrap_or_default();
    let is_ca = client_auth.ca.as_deref() == Some(id);
    let now = hash_of(entries, id);
    if (at.is_empty() && !is_ca) || previous.map(|p| p.hash) == now {
        return Ok(None);
    }
    let Some(previous) = previous else {
        return listener_tls(&l.config, client_auth, entries).map(Some);
    };
    let mut key = l.key;
    let (resolver, served) = if at.is_empty() {
        (l.resolver.clone(), (**l.live.served.load()).clone())
    } else {
        let pair = loaded(entries, id)?
            .pair()
            .ok_or_else(|| format!("entry {id:?} is not a server-pair"))?;
        let same_names = at.iter().all(|&i| l.config.certs[i].server_names.is_some())
            || previous
                .pair()
                .is_some_and(|p| p.leaf.dns_names == pair.leaf.dns_names);
        if !same_names {
            return listener_tls(&l.config, client_auth, entries).map(Some);
        }
        let mut served = (**l.live.served.load()).clone();
        for &i in at {
            let c = &l.config.certs[i];
            served[i] = served_cert(c, pair);
            key = key
                .wrapping_sub(pair_term(i, c, Some(previous.hash)))
                .wrapping_add(pair_term(i, c, now));
        }
        (Arc::new(l.resolver.with_key(at, &pair.key)), served)
    };
    if is_ca {
        key = key
            .wrapping_sub(settings_term(&l.config, client_auth, Some(previous.hash)))
            .wrapping_add(settings_term(&l.config, client_auth, now));
    }
    debug_assert_eq!(key, listener_key(&l.config, client_auth, entries));
    let inputs = tls::server::ServerInputs {
        listener: &l.config,
        mode: client_auth.mode,
        client_ca: client_ca(client_auth, entries)?,
    };
    let tls = tls::server::build(&inputs, resolver.clone()).map_err(|e| e.to_string())?;
    Ok(Some(BuiltListener {
        tls,
        mode: client_auth.mode,
        served,
        resolver,
        key,
    }))
}

fn upstream_key(u: &UpstreamConfig, entries: &BTreeMap<String, Entry>) -> u64 {
    let mut h = DefaultHasher::new();
    let hash_of = |id: &str| hash_of(entries, id);
    match &u.tls.ca {
        UpstreamCa::Entry(id) => (id, hash_of(id)).hash(&mut h),
        UpstreamCa::System => "system".hash(&mut h),
    }
    if let Some(c) = &u.tls.client_cert {
        (c, hash_of(c)).hash(&mut h);
    }
    h.finish()
}

fn upstream_tls(
    u: &UpstreamConfig,
    entries: &BTreeMap<String, Entry>,
) -> Result<(Arc<ClientConfig>, u64), String> {
    let ca = match &u.tls.ca {
        UpstreamCa::Entry(id) => Some(
            loaded(entries, id)?
                .ca()
                .ok_or_else(|| format!("entry {id:?} is not a ca-bundle"))?,
        ),
        UpstreamCa::System => None,
    };
    let client = match &u.tls.client_cert {
        Some(id) => Some(
            loaded(entries, id)?
                .pair()
                .ok_or_else(|| format!("entry {id:?} is not a client-pair"))?,
        ),
        None => None,
    };
    let tls = tls::client::build(ca, client).map_err(|e| e.to_string())?;
    Ok((tls, upstream_key(u, entries)))
}

fn bind_std(
    addr: SocketAddr,
    rt: &tokio::runtime::Handle,
) -> std::io::Result<std::net::TcpListener> {
    // Bound through tokio's socket builder for SO_REUSEADDR, then handed
    // back as a std listener so binding can happen before committing.
    // `listen` registers with tokio's reactor: on the reloader thread (a
    // config reload adds a listener) that needs the runtime entered.
    let _enter = rt.enter();
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let l = socket.listen(1024)?;
    l.into_std()
}

/// How long the configuration file must have been left alone before a
/// reload reads it (see [`Reloader::reload_config`]).
const CONFIG_QUIET: Duration = Duration::from_millis(20);

/// Time since `path` was last modified (None when it cannot be told).
fn modified_ago(path: &std::path::Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default(),
    )
}

fn record_success(spec: &EntrySpec, loaded: &Loaded) {
    METRICS
        .cert_reloads
        .get_or_create(&metrics::EntryResultLabels {
            entry: spec.id.clone(),
            result: "success".into(),
        })
        .inc();
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
}

fn forget_entry_metrics(id: &str, kind: &str) {
    METRICS.cert_not_after.remove(&metrics::EntryTypeLabels {
        entry: id.to_owned(),
        r#type: kind.to_owned(),
    });
    METRICS.cert_last_reload.remove(&metrics::EntryLabels {
        entry: id.to_owned(),
    });
}

/// Expired, not-yet-valid and rolled-back certificates load, loudly.
fn warn_validity(id: &str, loaded: &Loaded, previous: Option<&Loaded>) {
    let now = unix(SystemTime::now());
    let Some(p) = loaded.primary() else { return };
    if loaded.not_after() < now {
        warn!(entry = %id, fingerprint = %p.fingerprint_sha256, not_after = loaded.not_after(), "certificate is expired (loaded anyway)");
    }
    if p.not_before > now {
        warn!(entry = %id, fingerprint = %p.fingerprint_sha256, not_before = p.not_before, "certificate is not valid yet (loaded anyway)");
    }
    if let Some(prev) = previous
        && loaded.not_after() < prev.not_after()
    {
        warn!(entry = %id, fingerprint = %p.fingerprint_sha256, not_after = loaded.not_after(), previous_not_after = prev.not_after(), "new certificate expires earlier than the one it replaces");
    }
}
