//! One blocking lookup of a `host:port`, shared by all in the process who ask for it while it runs (re-resolutions, configuration-time lookups of any upstream, a rejected reload's too, dials by name); at most 64 at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::upstream::conn::out_of_local_resources;

/// What a lookup found, or why it found nothing.
pub type Answer = Result<Vec<SocketAddr>, Failure>;

/// Why a lookup found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub why: String,
    /// The resolver said the name has no address (`EAI_NONAME`,
    /// `EAI_NODATA`: NXDOMAIN, or no `A`/`AAAA` record), and not for want
    /// of the proxy's own descriptors (glibc, unable to open /etc/hosts
    /// or a socket, says the same): the name's addresses are gone, where
    /// any other failure (SERVFAIL, a timeout) says nothing of them.
    pub no_such_name: bool,
}

impl Failure {
    pub fn other(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            no_such_name: false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// `host:port`'s addresses: getaddrinfo as std's `to_socket_addrs` asks
/// it (any family, stream sockets), its error code kept, which std turns
/// into words only.
fn resolve(host: &str, port: u16) -> Answer {
    use dns_lookup::{AddrInfoHints, LookupErrorKind};
    let hints = AddrInfoHints {
        socktype: libc::SOCK_STREAM,
        ..AddrInfoHints::default()
    };
    let found = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).map_err(|e| {
        let gone = matches!(e.kind(), LookupErrorKind::NoName | LookupErrorKind::NoData);
        Failure {
            no_such_name: gone && probe().is_none(),
            why: format!(
                "failed to lookup address information: {}",
                std::io::Error::from(e)
            ),
        }
    })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for info in found {
        let mut addr = info.map_err(|e| Failure::other(e.to_string()))?.sockaddr;
        addr.set_port(port);
        addrs.push(addr);
    }
    Ok(addrs)
}

/// A lookup on the runtime's blocking pool (outside a runtime, on a
/// thread of its own), its answer kept once it ends for every waiter, the
/// first and the later ones alike.
pub struct Lookup {
    /// `None` while it runs.
    answer: Mutex<Option<Answer>>,
    /// Told when it ends, for a blocking wait.
    ended: Condvar,
    /// Told when it ends, for an async wait.
    told: tokio::sync::Notify,
    /// Never started: [`MAX_LOOKUPS`] ran already.
    refused: bool,
    /// Once it failed and a dial asked: whether the proxy is out of its
    /// own resources ([`Lookup::failed_dial`]), probed once for all who
    /// joined it.
    starved: std::sync::OnceLock<Option<i32>>,
}

/// Told when a place of the [`MAX_LOOKUPS`] frees, for [`place_freed`].
static FREED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Once a place of the [`MAX_LOOKUPS`] frees (a lookup ends): for a name
/// refused one to ask again before its wait after the refusal is over.
pub async fn place_freed() {
    FREED.notified().await;
}

/// Lookups running in the process (see [`MAX_LOOKUPS`]).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The lookup running for each `host:port`, for [`Lookup::start`] to
/// join: one process-wide table, so a name's lookups never overlap,
/// whoever asks (each upstream, each edit's or rejected reload's
/// replacement, two servers or upstreams naming one `host:port`). An
/// entry goes as its lookup ends. Shared only with an edit's direct
/// predecessor, a rejected reload left its lookups running and the next
/// attempt asked beside them: one blocked lookup per name per attempt on
/// a hung resolver, until all 64 places were taken.
static TABLE: Mutex<BTreeMap<(String, u16), Arc<Lookup>>> = Mutex::new(BTreeMap::new());

/// The most lookups running at once in the process: each holds a thread
/// until its resolver answers, and on a hung resolver every name held one
/// of its own (names of every upstream, and each edit's, before those
/// took over their predecessors' lookups), without bound.
pub const MAX_LOOKUPS: usize = 64;

/// One of the [`MAX_LOOKUPS`] places, held while a lookup runs.
struct Permit;

impl Permit {
    fn take() -> Option<Permit> {
        let free = |n: usize| (n < MAX_LOOKUPS).then_some(n + 1);
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, free)
            .ok()
            .map(|_| Permit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
        FREED.notify_waiters();
    }
}

/// Ends its lookup: with the answer once it ran ([`Ending::ran`]), or
/// failed when dropped before (it never ran, or panicked). Its place is
/// given back first: whoever the end wakes may start another at once.
struct Ending {
    key: (String, u16),
    lookup: Option<Arc<Lookup>>,
    permit: Option<Permit>,
}

impl Ending {
    fn ran(mut self, answer: Answer) {
        self.end(answer);
    }

    fn end(&mut self, answer: Answer) {
        drop(self.permit.take());
        if let Some(lookup) = self.lookup.take() {
            // Out of the table and ended at once: who asks after joins
            // no ended lookup (its answer is stale), and who asked before
            // gets this answer.
            let mut table = TABLE.lock().expect("lookup table lock");
            if table
                .get(&self.key)
                .is_some_and(|l| Arc::ptr_eq(l, &lookup))
            {
                table.remove(&self.key);
            }
            lookup.end(answer);
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.end(Err(Failure::other(
            "lookup failed: it did not run to its end",
        )));
    }
}

impl Lookup {
    /// The lookup of `host:port` running in the process, or a new one,
    /// in the background; ended at once, failed, when [`MAX_LOOKUPS`] run
    /// already (not queued: the caller's wait is bounded, and it asks
    /// again next time) or no thread takes it. One that has ended is
    /// never joined: its answer was for those who asked before.
    pub fn start(host: &str, port: u16) -> Arc<Lookup> {
        let key = (host.to_owned(), port);
        let mut table = TABLE.lock().expect("lookup table lock");
        if let Some(running) = table.get(&key) {
            return running.clone();
        }
        let permit = Permit::take();
        let lookup = Arc::new(Lookup {
            answer: Mutex::new(None),
            ended: Condvar::new(),
            told: tokio::sync::Notify::new(),
            refused: permit.is_none(),
            starved: std::sync::OnceLock::new(),
        });
        let Some(permit) = permit else {
            let full = format!("too many lookups running ({MAX_LOOKUPS} at once)");
            lookup.end(Err(Failure::other(full)));
            return lookup;
        };
        table.insert(key.clone(), lookup.clone());
        // Released before the spawn: a task dropped unrun ends (and
        // leaves the table) in the dropping thread.
        drop(table);
        let ending = Ending {
            key,
            lookup: Some(lookup.clone()),
            permit: Some(permit),
        };
        let host = host.to_owned();
        let run = move || {
            ending.ran(resolve(&host, port));
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            drop(rt.spawn_blocking(run));
        } else {
            // No thread (a process at its limit): `run`, dropped, fails it.
            drop(
                std::thread::Builder::new()
                    .name("hotproxy-lookup".into())
                    .spawn(run),
            );
        }
        lookup
    }

    fn end(&self, answer: Answer) {
        *self.answer.lock().expect("lookup lock") = Some(answer);
        self.ended.notify_all();
        self.told.notify_waiters();
    }

    /// Whether it was refused a place (it failed at once, never ran).
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Its answer once it has ended (`None` while it runs).
    pub fn ended(&self) -> Option<Answer> {
        self.answer.lock().expect("lookup lock").clone()
    }

    /// Its answer, waiting (blocking) for it until `deadline` at most.
    pub fn wait_until(&self, deadline: Instant) -> Option<Answer> {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = self.answer.lock().expect("lookup lock");
        let (answer, _) = self
            .ended
            .wait_timeout_while(answer, left, |a| a.is_none())
            .expect("lookup lock");
        answer.clone()
    }

    /// Its answer, once it ends.
    pub async fn answer(&self) -> Answer {
        loop {
            let told = self.told.notified();
            tokio::pin!(told);
            // Told from now on: an end after the check below wakes it.
            told.as_mut().enable();
            if let Some(answer) = self.answer.lock().expect("lookup lock").clone() {
                return answer;
            }
            told.await;
        }
    }
}

impl Lookup {
    /// A dial's error for this lookup's failure (`why`): the proxy's own
    /// want of resources ([`out_of_local_resources`]) when a probe socket
    /// cannot be opened either, else the resolver's words. Out of
    /// descriptors, glibc can open neither /etc/hosts nor a socket to a
    /// name server and says the name is unknown (`EAI_NONAME`): that was a
    /// connect error, counted against the endpoint (ejected, the request
    /// retried on another, which failed alike), where a connect's own
    /// `EMFILE` is `local_resources`. Probed once per lookup, the verdict
    /// shared by every dial that joined it: each opened a probe socket of
    /// its own, as many as requests waited on a name that failed.
    pub fn failed_dial(&self, why: Failure) -> std::io::Error {
        self.failed_dial_with(why, probe)
    }

    /// [`Lookup::failed_dial`], `probe` telling the want of resources.
    fn failed_dial_with(
        &self,
        why: Failure,
        probe: impl FnOnce() -> Option<i32>,
    ) -> std::io::Error {
        match *self.starved.get_or_init(probe) {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(why.why),
        }
    }
}

/// The error a probe socket fails with for want of the proxy's own
/// resources, if it does.
fn probe() -> Option<i32> {
    match std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)) {
        Err(e) if out_of_local_resources(&e) => e.raw_os_error(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Eight dials joined to one lookup that fails probe for a want of
    /// descriptors once in all, and share its verdict: each opened a
    /// probe socket of its own (a name joined by every request to it
    /// failing at once opened as many). A lookup after it probes anew.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dials_joined_to_a_failed_lookup_probe_once() {
        let probes = AtomicUsize::new(0);
        let probe = || {
            probes.fetch_add(1, Ordering::SeqCst);
            Some(libc::EMFILE)
        };
        // A NUL in the name: the lookup fails at once, no resolver asked.
        for round in 1..=2 {
            let lookup = Lookup::start("joined\0.lookup.test", 443);
            let dials = (0..8).map(|_| async {
                let why = lookup.answer().await.expect_err("a name with a NUL");
                lookup.failed_dial_with(why, probe)
            });
            for e in futures_util::future::join_all(dials).await {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
            }
            assert_eq!(
                probes.load(Ordering::SeqCst),
                round,
                "probes for {round} lookups"
            );
        }
    }
}
