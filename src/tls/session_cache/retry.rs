//! A handshake that may get a HelloRetryRequest: its own view of the listener's ticketer, keeping the birth of the ticket it opened for the tickets it issues.
//!
//! [`super::keep_tls13_birth`] hands a TLS 1.3 resumption's birth to its
//! tickets through the connection's resumption data, set as soon as the
//! first ClientHello is read. After a HelloRetryRequest the ticket is
//! opened with the second ClientHello, later, maybe on another thread,
//! where nothing of this connection is in reach but its config: so a
//! handshake `tls::accept` foresees a retry for gets a config of its own
//! whose ticketer notes the birth of what it opens and gives it to what
//! it seals. A client provoking a retry (a group listed first with no key
//! share) kept a session alive for ever: each resumption's tickets were
//! stamped as new.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::ServerConfig;
use rustls::server::ProducesTickets;

/// Run `f` (the listener's ticketer sealing) with `opened`, the birth of
/// the ticket this connection opened if any, in [`super::RETRIED`].
fn during<T>(opened: Option<u64>, f: impl FnOnce() -> T) -> T {
    super::RETRIED.set(Some(opened));
    let out = f();
    super::RETRIED.set(None);
    out
}

/// `config` with a ticketer of its own for one connection
/// ([`Retrying`]), if it issues tickets (else `config` itself).
pub fn retrying(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if !config.ticketer.enabled() {
        return config;
    }
    let mut own = (*config).clone();
    own.ticketer = Arc::new(Retrying {
        inner: config.ticketer.clone(),
        opened: AtomicU64::new(NONE),
    });
    Arc::new(own)
}

/// No TLS 1.3 ticket opened (unix second 0 is no session's birth).
const NONE: u64 = 0;

/// The listener's ticketer as one connection sees it: the birth of the
/// TLS 1.3 ticket it last opened, given to the tickets it seals. rustls
/// stops at the first ticket it resumes, so that is the last opened; a
/// handshake that resumed none after opening one (a ticket for another
/// name) seals its tickets with that older birth: shorter, never longer.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn ProducesTickets>,
    opened: AtomicU64,
}

impl ProducesTickets for Retrying {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let opened = self.opened.load(Ordering::Relaxed);
        during((opened != NONE).then_some(opened), || {
            self.inner.encrypt(plain)
        })
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher);
        // Set by the listener's ticketer in this very call, for TLS 1.3.
        let birth = plain.as_ref().and(super::OPENED_TLS13.get());
        self.opened.store(birth.unwrap_or(NONE), Ordering::Relaxed);
        plain
    }
}
