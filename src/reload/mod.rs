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
//!
//! This file holds the thread and what it publishes; one entry's reload is
//! in `entry`, a configuration's apply in `apply`, the snapshot builders in
//! `snapshot`, and what the admin API asks of the catalogue in `api`.

mod api;
mod apply;
mod changes;
mod config_file;
mod cut;
mod entry;
mod handover;
mod keep;
mod rebind;
mod rotation;
mod shortage;
mod snapshot;
#[cfg(test)]
mod tests;
mod warnings;
mod watching;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{ClientAuthConfig, Config, ListenerCert, ListenerConfig, UpstreamConfig};
use crate::material::catalogue::{Entry, EntryView, Reference};
use crate::material::store::Store;
use crate::proxy::drain::Drain;
use crate::proxy::forward::Upstream;
use crate::proxy::listener::Listener;
use crate::tls::server::SniResolver;
use crate::watch::{Subject, Watcher};

/// The target of every reloader log line, submodules included: operators
/// filter JSON logs on it, and it stayed `hotproxy::reload` when the module
/// became a folder.
const LOG: &str = module_path!();

/// A request to the reloader thread.
pub enum Command {
    /// The watcher saw something that may have changed this subject.
    Changed(Subject),
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
    /// Held for writing while an entry's new material is stored in the
    /// listeners and upstreams and its view published, and for reading by
    /// [`Shared::entry_views`]: the admin API never shows an entry's view
    /// older than the material served (a client handshaking with the new
    /// certificate, then asking, saw the old fingerprint or the new one
    /// still labelled `api`), nor newer.
    publishing: RwLock<()>,
}

impl Shared {
    /// The entries' views, as of a moment when they describe the material
    /// served (see `publishing`).
    pub fn entry_views(&self) -> Arc<EntryViews> {
        let _published = self
            .publishing
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.entries.load_full()
    }
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
    /// A SIGHUP's re-read waits in the queue, not begun ([`Handle::sighup`]).
    hup_pending: Arc<AtomicBool>,
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

    /// SIGHUP: re-read the configuration and every file (the admin token
    /// files first with `tokens`), unless a re-read asked for earlier has
    /// not begun: that one reads what this signal asks for, and answers
    /// for both (nginx keeps one reload pending). Each signal queued its
    /// own re-read of every file: a burst of them kept the reloader busy
    /// for seconds, and SIGTERM's release of the ports waited behind them.
    pub fn sighup(&self, tokens: bool) {
        if self.hup_pending.swap(true, Ordering::AcqRel) {
            debug!(target: LOG, "SIGHUP: a re-read is already waiting; this one joins it");
            return;
        }
        let pending = self.hup_pending.clone();
        self.send(Command::Call(Box::new(move |r| {
            // Cleared before reading: a signal from now on may follow
            // writes this re-read misses, and gets its own.
            pending.store(false, Ordering::Release);
            if tokens {
                r.reread_admin_tokens();
            }
            r.reload_all();
        })));
    }
}

struct LiveListener {
    config: ListenerConfig,
    live: Arc<Listener>,
    bound: SocketAddr,
    /// Its listening socket, shared with the accept loop, for a listener
    /// that takes over the address in a reload ([`handover::Givers`]);
    /// None when its duplicate was refused (at the descriptor limit): the
    /// listener is still given up when removed ([`LiveListener::stop`]).
    socket: Option<std::net::TcpListener>,
    /// The listeners a reload binds beside its socket, which it gives up:
    /// where the connections queued on it for their addresses go
    /// ([`Reloader::inherit`]).
    heirs: Vec<crate::proxy::listener::Heir>,
    key: u64,
    /// The certificates it serves for each name and the client CA
    /// certificates it trusts for it, as its connections were last told
    /// ([`rotation::InUse`]).
    rotation: rotation::InUse,
    stop: watch::Sender<crate::proxy::listener::Stop>,
    /// The live snapshot's resolver: a rotation derives the next one from
    /// it instead of indexing every pair's names again.
    resolver: Arc<SniResolver>,
    /// Where each entry sits in `config.certs`, so a rotation finds its
    /// pairs without a scan.
    positions: HashMap<String, Vec<usize>>,
    /// What it admits ([`snapshot::admission_key`]) as its connections
    /// were last told.
    admits: snapshot::Admits,
}

impl LiveListener {
    /// Its admission rules are `admits` now (and stored in `live`): when
    /// that is a change, connections admitted under the old ones are
    /// checked again and those it no longer admits close; all of them,
    /// when they cannot be checked again ([`snapshot::Admits::fixed`]).
    fn readmit(&mut self, admits: snapshot::Admits) {
        if self.admits.all != admits.all {
            let recheck = self.admits.fixed == admits.fixed;
            self.admits = admits;
            self.live.readmit(recheck);
            if recheck {
                info!(target: LOG, listener = %self.config.name, "admission rules changed; open connections are checked again and those no longer admitted close");
            } else {
                info!(target: LOG, listener = %self.config.name, "admission rules changed; connections admitted under the old ones close");
            }
        }
    }
}

/// Who asked for an entry's re-read: a failure it finds counts in
/// `hotproxy_cert_reloads_total` as SPEC §5 says for each.
#[derive(Clone, Copy, PartialEq)]
enum Cause {
    /// A SIGHUP or the admin API (a reload, a rotation).
    Asked,
    /// A watcher's report: the files may have changed.
    Watcher,
    /// A back-off retry of a refusal.
    Retry,
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
    /// over the configuration file until the listener is removed or the
    /// file's `client_auth` for it changes (an operator's newer decision,
    /// such as a rule taken out to revoke a client).
    client_auth_overrides: BTreeMap<String, ClientAuthConfig>,
    /// The file's `client_auth` of each overridden listener when the API
    /// changed it.
    client_auth_file: BTreeMap<String, ClientAuthConfig>,
    /// Entries to retry, and when.
    retries: BTreeMap<String, Instant>,
    /// Entries whose last reads in a row found hotproxy out of file
    /// descriptors or memory: the run (`shortage`).
    short: BTreeMap<String, shortage::Run>,
    /// The run of reads of the configuration in a row that found it so.
    config_short: Option<shortage::Run>,
    /// The admin token files under re-read by the watcher's loop, one
    /// loop per token (`watching`).
    token_retries: Arc<shortage::TokenRetries>,
    /// Who asked for the re-read under way, which decides whether a
    /// failure it finds is counted (`entry::failed`).
    reading: Cause,
    /// CA bundles whose CRLs, chosen again at their `crl_due`, were
    /// refused by a listener or upstream, and when to choose again.
    crl_retries: BTreeMap<String, Instant>,
    watcher: Watcher,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    drain: Arc<Drain>,
    /// Last configuration problem logged, so a broken file is logged once.
    last_config_error: Option<String>,
    /// When to look at the configuration file again because it looked
    /// mid-write or was rejected, and since when it has looked mid-write.
    config_retry: Option<Instant>,
    config_unsettled_since: Option<Instant>,
    /// The writer's state the wait was last said to be for (`empty`,
    /// `missing`): said once per state and wait, whatever began the wait
    /// (a quiet check too, which says nothing).
    config_wait_said: Option<&'static str>,
    /// The writer's state the file was in when it was last rejected (its
    /// wait run out), which a backoff's retry does not wait on again.
    config_rejected_in: Option<&'static str>,
    /// The edit (`config_file::edit_digest`) the running wait deferred for
    /// entry files, and when the wait's first deferred edit began: another
    /// edit read has a wait of its own, within 5 × settle_timeout of that.
    config_waited_edit: Option<(u64, Instant)>,
    /// The entries whose files a configuration read was deferred for.
    config_unsettled_entries: Vec<String>,
    /// The read of the configuration under way may wait for entry files
    /// it names that are not settled (`apply::reload_config_for`).
    config_entries_wait: bool,
    /// Problems found outside the configuration's sections the start
    /// applies (the admin section's): the first `apply_config` is refused
    /// for them too, with its own, before it binds.
    refused_at_start: Vec<String>,
    /// A read of the configuration was deferred for entry files not
    /// settled, and said so: until a read is not.
    config_entries_waited: bool,
    /// The configuration file's mtime and size at a look, and since when
    /// looks have seen them: whether a file with an mtime in the future is
    /// still being written (see `apply::config_wait`).
    config_seen: Option<((SystemTime, u64), Instant)>,
    /// A SIGHUP's read of the configuration was deferred: the read that
    /// follows counts as asked.
    config_asked: bool,
    /// Shutdown has begun and a configuration change was ignored (and
    /// said so, once).
    shutdown_ignores_config: bool,
    /// The wait before the next retry of a rejected configuration; `None`
    /// while the file is the running configuration.
    config_backoff: Option<Duration>,
    /// Where entries created through the admin API persist (`store:`).
    store: Option<Store>,
    /// Who references each entry in `config`; changes with the configuration only.
    refs: BTreeMap<String, Vec<Reference>>,
    /// The entry views last published, updated one entry at a time.
    views: EntryViews,
    /// The admin listener's tokens, whose files are watched here too
    /// ([`Reloader::watch_admin_tokens`]).
    admin_tokens: Option<Arc<crate::admin::auth::Tokens>>,
    /// Where the admin listener listens: the startup configuration's
    /// `admin.bind`, then the address it bound ([`Reloader::set_admin_bound`]).
    /// `admin.bind` applies at restart, so a reload's listeners are
    /// checked against this, not the file's.
    admin_bound: Option<SocketAddr>,
    /// The startup configuration's `admin.bind` as a message says it in
    /// place of [`Reloader::admin_bound`], when set by `${NAME}` (SPEC §2):
    /// the file reloaded may no longer say so, and withhold nothing.
    admin_shown: Option<crate::config::Shown>,
}

/// Listener `l`'s TLS built as a start builds it — its `client_auth` and
/// every `certs` entry's own — from `entries`, then dropped: how `hotproxy
/// check` refuses exactly what the proxy refuses, with the same builder.
pub fn build_listener_tls(
    l: &ListenerConfig,
    entries: &BTreeMap<String, Entry>,
) -> Result<(), String> {
    snapshot::listener_tls(l, &l.client_auth, entries, None).map(|_| ())
}

/// Upstream `u`'s TLS built as a start builds it (its CA bundle's roots and
/// CRLs, its client pair), then dropped: `hotproxy check` refuses an
/// upstream the proxy would refuse, with the same builder.
pub fn build_upstream_tls(
    u: &crate::config::UpstreamConfig,
    entries: &BTreeMap<String, Entry>,
) -> Result<(), String> {
    snapshot::upstream_tls(u, entries).map(|_| ())
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
    start_refusing(config, rt, shutdown, drain, Vec::new())
}

/// [`start`], refused for `refused` too (the admin section's problems,
/// found by its caller) with the configuration's own, in one error, before
/// any listener is bound.
pub fn start_refusing(
    config: Config,
    rt: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    drain: Arc<Drain>,
    refused: Vec<String>,
) -> Result<Handle, String> {
    let (mut reloader, mut events) = Reloader::new(&config, rt.clone(), shutdown, drain);
    let shared = reloader.shared.clone();
    reloader.refused_at_start = refused;
    reloader.apply_config(config.clone(), true)?;
    crate::metrics::METRICS.config_last_reload_successful.set(1);
    // The listeners serve from here on: a failure past this point stops
    // them before returning. Dropped unstopped with the reloader, each took
    // its thread for gone, said so ("restart the process") and served on.
    if let Err(problem) = reloader.open_store(&config) {
        reloader.stop_listeners();
        return Err(problem);
    }
    let (tx, rx) = mpsc::channel();
    // The reloader goes to its thread once the thread is up, so that a
    // thread refused leaves it here to stop the listeners.
    let (give, take) = mpsc::channel::<Reloader>();
    let spawned = std::thread::Builder::new()
        .name("hotproxy-reload".into())
        .spawn(move || {
            if let Ok(reloader) = take.recv() {
                reloader.run(rx);
            }
        });
    if let Err(e) = spawned {
        reloader.stop_listeners();
        return Err(format!("cannot start the reloader thread: {e}"));
    }
    let _ = give.send(reloader);
    let forward = tx.clone();
    rt.spawn(async move {
        while let Some(subject) = events.recv().await {
            if forward.send(Command::Changed(subject)).is_err() {
                break;
            }
        }
    });
    Ok(Handle {
        tx,
        shared,
        hup_pending: Arc::default(),
    })
}

impl Reloader {
    /// The address the admin listener bound (its port, for `admin.bind`
    /// port 0): a reload's listeners may not take it.
    pub fn set_admin_bound(&mut self, addr: SocketAddr) {
        self.admin_bound = Some(addr);
    }

    /// Open `config`'s store, if any, and restore the entries it holds.
    fn open_store(&mut self, config: &Config) -> Result<(), String> {
        let Some(store_config) = &config.store else {
            return Ok(());
        };
        let (store, stored) = Store::open(store_config)?;
        for spec in stored {
            self.restore_stored(spec, store.path())?;
        }
        self.store = Some(store);
        self.rewatch();
        self.publish();
        self.warn_outside_roots(None);
        Ok(())
    }

    /// `problems` of a configuration refused, one a line, then those of
    /// [`start_refusing`]'s caller (said once, with the first refusal).
    fn refusal(&mut self, mut problems: Vec<String>) -> String {
        problems.append(&mut self.refused_at_start);
        problems.join("\n")
    }

    /// Stop every listener's accept loop and close its socket: the start
    /// failed after they were spawned and the process ends.
    fn stop_listeners(&mut self) {
        for (_, l) in std::mem::take(&mut self.listeners) {
            // Stopped at once: the clients queued now are reset as the
            // process exits either way.
            l.stop(true);
        }
    }

    /// A reloader of nothing yet (no entry, listener or upstream) for
    /// `config`, and its watcher's events; [`Reloader::apply_config`]
    /// brings in the configuration.
    fn new(
        config: &Config,
        rt: tokio::runtime::Handle,
        shutdown: watch::Receiver<bool>,
        drain: Arc<Drain>,
    ) -> (Reloader, tokio::sync::mpsc::UnboundedReceiver<Subject>) {
        let (watcher, events) = {
            let _enter = rt.enter();
            Watcher::start(config.watch.clone())
        };
        let shared = Arc::new(Shared {
            entries: ArcSwap::from_pointee(BTreeMap::new()),
            listeners: ArcSwap::from_pointee(BTreeMap::new()),
            config: ArcSwap::from_pointee(config.clone()),
            ready: AtomicBool::new(false),
            publishing: RwLock::new(()),
        });
        let reloader = Reloader {
            rt,
            config: Arc::new(config.clone()),
            entries: BTreeMap::new(),
            listeners: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            client_auth_overrides: BTreeMap::new(),
            client_auth_file: BTreeMap::new(),
            retries: BTreeMap::new(),
            short: BTreeMap::new(),
            config_short: None,
            token_retries: Arc::default(),
            reading: Cause::Asked,
            crl_retries: BTreeMap::new(),
            watcher,
            shared: shared.clone(),
            shutdown,
            drain,
            last_config_error: None,
            config_retry: None,
            config_unsettled_since: None,
            config_wait_said: None,
            config_rejected_in: None,
            config_waited_edit: None,
            config_unsettled_entries: Vec::new(),
            config_entries_wait: false,
            refused_at_start: Vec::new(),
            config_entries_waited: false,
            config_seen: None,
            config_backoff: None,
            shutdown_ignores_config: false,
            config_asked: false,
            store: None,
            refs: BTreeMap::new(),
            views: BTreeMap::new(),
            admin_tokens: None,
            admin_bound: config.admin.as_ref().map(|a| a.bind),
            admin_shown: config
                .admin
                .as_ref()
                .filter(|a| a.bind_shown.0 != a.bind.to_string())
                .map(|a| a.bind_shown.clone()),
        };
        (reloader, events)
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            let timeout = self
                .retries
                .values()
                .chain(self.config_retry.iter())
                .copied()
                .chain(self.next_crl_choice())
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(timeout) {
                Ok(Command::Changed(Subject::Config)) => {
                    let _ = self.reload_config();
                }
                Ok(Command::Changed(Subject::Entry(id))) => {
                    self.reading = Cause::Watcher;
                    let _ = self.reload_entry(&id, false);
                    self.reading = Cause::Asked;
                }
                Ok(Command::Changed(Subject::AdminToken(i))) => self.reread_admin_token(i),
                Ok(Command::Call(f)) => f(&mut self),
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.run_due_retries();
        }
        debug!("reloader stopped");
    }

    /// SIGHUP: re-read the configuration and every file, then say how it
    /// went in one line (the operator who sent it waits for that line).
    /// Files that do not load yet and are waited on (a writer half-way)
    /// are pending, not refused: the line stays INFO for them.
    fn reload_all(&mut self) {
        info!(target: LOG, "SIGHUP: re-reading the configuration and every certificate file");
        let config = self.reload_config_for(true, false);
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        let (mut changed, mut refused, mut pending) = (0usize, 0usize, 0usize);
        for id in &ids {
            // A re-read, not a rotation: material the API put over files
            // that did not change stays (SPEC §4).
            match self.reload_entry(id, false) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(_) if self.is_pending(id) => pending += 1,
                Err(_) => refused += 1,
            }
        }
        match config {
            Ok(outcome) if refused == 0 => {
                info!(target: LOG, config = %outcome.describe(), entries = ids.len(), entries_changed = changed, entries_refused = refused, entries_pending = pending, "SIGHUP: done");
            }
            Ok(outcome) => {
                warn!(target: LOG, config = %outcome.describe(), entries = ids.len(), entries_changed = changed, entries_refused = refused, entries_pending = pending, "SIGHUP: done; some certificate files were refused (see above)");
            }
            Err(_) => {
                warn!(target: LOG, config = "rejected", entries = ids.len(), entries_changed = changed, entries_refused = refused, entries_pending = pending, "SIGHUP: done; the configuration was rejected (see above), the running one stays");
            }
        }
    }

    /// Whether `id`'s files, refused, are waited on (a writer half-way),
    /// or were not read for want of file descriptors or memory and are
    /// read again (`shortage`): no refusal of the files either.
    fn is_pending(&self, id: &str) -> bool {
        self.short.contains_key(id)
            || self
                .entries
                .get(id)
                .and_then(|e| e.last_reload.as_ref())
                .is_some_and(|r| r.result == "pending")
    }

    fn run_due_retries(&mut self) {
        let now = Instant::now();
        if self.config_retry.is_some_and(|at| at <= now) {
            self.config_retry = None;
            // A rejected one, or one read mid-write (deferred).
            debug!(target: LOG, "reading the configuration file again");
            let _ = self.reload_config_for(false, true);
        }
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.retries.remove(&id);
            self.reading = Cause::Retry;
            let _ = self.reload_entry(&id, false);
            self.reading = Cause::Asked;
        }
        self.choose_crls_again();
    }

    /// Whether shutdown (SIGTERM/SIGINT/SIGQUIT) has begun: nothing the admin API
    /// asks is applied from then on (SPEC §1, §4).
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
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
                let entries = used_entries(&l.config.certs, &client_auth);
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
}

/// The entries a listener uses, as its view lists them (SPEC §4): each
/// certificate entry then its own client-auth CA, in `certs` order, then
/// the listener's CA, the order `references()` records them in; each
/// once. The entries' own CAs were left out, while `referenced_by` and
/// DELETE's 409 counted them.
fn used_entries(certs: &[ListenerCert], client_auth: &ClientAuthConfig) -> Vec<String> {
    let own_cas = |c: &ListenerCert| c.client_auth.as_ref().and_then(|a| a.ca.clone());
    let mut entries: Vec<String> = Vec::new();
    let named = certs
        .iter()
        .flat_map(|c| std::iter::once(c.entry.clone()).chain(own_cas(c)))
        .chain(client_auth.ca.clone());
    for id in named {
        if !entries.contains(&id) {
            entries.push(id);
        }
    }
    entries
}
