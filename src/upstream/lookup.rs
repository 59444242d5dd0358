//! One blocking lookup of a server's name, shared by all who wait for it: the re-resolution that started it, the next one after it timed out, an edit's replacement.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// What a lookup found, or why it found nothing.
pub type Answer = Result<Vec<SocketAddr>, String>;

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
}

/// Ends its lookup: with the answer once it ran ([`Ending::ran`]), or
/// failed when dropped before (it never ran, or panicked).
struct Ending(Option<Arc<Lookup>>);

impl Ending {
    fn ran(mut self, answer: Answer) {
        if let Some(lookup) = self.0.take() {
            lookup.end(answer);
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(lookup) = self.0.take() {
            lookup.end(Err("lookup failed: it did not run to its end".to_owned()));
        }
    }
}

impl Lookup {
    /// Look `host:port` up now, in the background; ended at once (failed)
    /// when no thread takes it.
    pub fn start(host: &str, port: u16) -> Arc<Lookup> {
        let lookup = Arc::new(Lookup {
            answer: Mutex::new(None),
            ended: Condvar::new(),
            told: tokio::sync::Notify::new(),
        });
        let ending = Ending(Some(lookup.clone()));
        let host = host.to_owned();
        let run = move || {
            let found = (host.as_str(), port).to_socket_addrs();
            ending.ran(found.map(Iterator::collect).map_err(|e| e.to_string()));
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

    /// Whether it has ended (its answer is there).
    pub fn ended(&self) -> bool {
        self.answer.lock().expect("lookup lock").is_some()
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
