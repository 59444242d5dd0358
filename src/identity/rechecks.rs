//! A gate's verdicts on open connections' chains after a change of a listener's rules: each distinct chain verified once per change, not once per connection.
//!
//! A CRL change (re-issued hourly at many CAs) wakes every open mTLS
//! connection of the listener at once, and each had its chain verified
//! again, the issuer's CRLs hashed each time: 10,000 connections times a
//! few milliseconds with a large CRL, all on the runtime's workers, stalled
//! traffic, though most connections share a few chains. The verdict
//! depends only on the gate (its CA set and CRLs), the chain and the time,
//! so it is kept per chain for one change of the rules (an admission
//! generation): the connections that wake for it all at once share it.
//! Another change clears them (the time has moved on). The connection's
//! `allow` rules are still applied to each connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls_pki_types::CertificateDer;

/// Distinct chains a gate keeps verdicts of for one change: beyond them a
/// chain is verified uncached, as before. A verdict is some 100 bytes.
const MAX_CHAINS: usize = 16_384;

/// Verdicts on chains for one admission generation.
#[derive(Debug, Default)]
pub struct Rechecks {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    /// By the SHA-256 of the chain's DER (each certificate's length first).
    verdicts: HashMap<[u8; 32], Arc<OnceLock<bool>>>,
}

impl Rechecks {
    /// `verify`'s verdict on `chain`, run once per distinct chain for
    /// admission `generation`: connections checking the same chain for it
    /// meanwhile wait for that one verdict rather than each verifying.
    pub fn verdict(
        &self,
        generation: u64,
        chain: &[CertificateDer<'_>],
        verify: impl FnOnce() -> bool,
    ) -> bool {
        let key = digest(chain);
        let once = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if generation > state.generation {
                // Its capacity let go too: one change's herd may be large.
                *state = State {
                    generation,
                    verdicts: HashMap::new(),
                };
            }
            let full = state.verdicts.len() >= MAX_CHAINS;
            match state.verdicts.get(&key) {
                // An older change's check, late: a later one cleared it.
                _ if generation < state.generation => None,
                Some(once) => Some(once.clone()),
                None if full => None,
                None => Some(state.verdicts.entry(key).or_default().clone()),
            }
        };
        match once {
            Some(once) => *once.get_or_init(verify),
            None => verify(),
        }
    }
}

fn digest(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for cert in chain {
        d.update(&(cert.len() as u64).to_be_bytes());
        d.update(cert.as_ref());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(d.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One verification per chain per generation; another generation
    /// verifies again; an older one's late check is not cached.
    #[test]
    fn once_per_chain_per_generation() {
        let r = Rechecks::default();
        let (a, b) = (
            [
                CertificateDer::from(vec![1, 2]),
                CertificateDer::from(vec![3]),
            ],
            [
                CertificateDer::from(vec![1]),
                CertificateDer::from(vec![2, 3]),
            ],
        );
        let calls = std::cell::Cell::new(0);
        let verify = |v| {
            calls.set(calls.get() + 1);
            v
        };
        assert!(r.verdict(1, &a, || verify(true)));
        assert!(r.verdict(1, &a, || verify(false)), "the kept verdict");
        assert!(!r.verdict(1, &b, || verify(false)), "another chain");
        assert_eq!(calls.get(), 2);
        assert!(!r.verdict(2, &a, || verify(false)), "a new change");
        assert!(r.verdict(1, &a, || verify(true)), "late: uncached");
        assert!(!r.verdict(2, &a, || verify(true)));
        assert_eq!(calls.get(), 4);
    }
}
