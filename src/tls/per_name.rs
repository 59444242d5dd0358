//! Client auth per server name (HAProxy crt-list style): one `ServerConfig` per certificate entry, chosen by SNI before the handshake.
//!
//! rustls has one client verifier per `ServerConfig`, so a listener whose
//! `certs` entries carry their own `client_auth` gets one config per entry
//! (all sharing the listener's SNI resolver) and the ClientHello is read
//! first (`tls::accept`) to pick the config of the entry the SNI
//! selects — no SNI, or a name no entry answers, selects the default (first)
//! entry, exactly as certificate selection does. Requests are then held to
//! that entry: a `Host`/`:authority` that belongs to an entry with another
//! `client_auth` gets 421 (otherwise per-name mTLS is bypassed by
//! `Host: admin.example` on a connection made to `public.example`).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::{ClientAuthMode, ListenerCert};
use crate::tls::server::{ServedPair, SniResolver, settle_shadowed};

/// A listener's per-entry TLS configs.
pub struct PerName {
    /// By position in the listener's `certs`; the first is the default.
    /// Entries with the same `client_auth` share one (one config is built
    /// per distinct policy): [`PerName::same_client_auth`] reads that.
    pub configs: Vec<Arc<ServerConfig>>,
    /// Each entry's client-auth mode (whether its peer certificate is a
    /// verified identity).
    pub modes: Vec<ClientAuthMode>,
    /// Each entry's client verifier in a verifying mode, which open
    /// connections are checked against again when the rules change.
    pub gates: Vec<Option<Arc<crate::identity::gate::Gate>>>,
    pub resolver: Arc<SniResolver>,
    /// Which entry a host belongs to and which entries share a
    /// `client_auth`: all an open connection keeps ([`Entries`]).
    pub entries: Arc<Entries>,
}

impl PerName {
    /// The configs of a listener's entries, by position, with their modes,
    /// gates and the resolver they share.
    pub fn new(
        configs: Vec<Arc<ServerConfig>>,
        modes: Vec<ClientAuthMode>,
        gates: Vec<Option<Arc<crate::identity::gate::Gate>>>,
        resolver: Arc<SniResolver>,
        left_out: HashMap<String, usize>,
    ) -> PerName {
        // Each entry's policy: the first position sharing its config.
        let policy: Vec<usize> = (configs.iter())
            .map(|c| configs.iter().position(|o| Arc::ptr_eq(o, c)).unwrap_or(0))
            .collect();
        let entries = Arc::new(Entries {
            resolver: resolver.clone(),
            policy,
            left_out,
        });
        PerName {
            configs,
            modes,
            gates,
            resolver,
            entries,
        }
    }

    /// Position of the entry answering `host` (a `Host` value, perhaps
    /// with a port); unknown names belong to the default entry.
    pub fn position_of_host(&self, host: &str) -> usize {
        self.entries.position_of_host(host)
    }

    /// Whether entries `a` and `b` admit clients alike: the same
    /// `client_auth` (mode, CA entry and so its CA set and CRLs, `allow`,
    /// `allow_expired_crl`), whose entries share one config, verifier and
    /// all; every other setting of a listener's configs is the listener's.
    pub fn same_client_auth(&self, a: usize, b: usize) -> bool {
        self.entries.same_client_auth(a, b)
    }
}

/// What an open connection keeps of its listener's [`PerName`] for the
/// 421 check: which entry a host belongs to, and which entries share a
/// `client_auth`. Not the configs: their verifiers hold the CA bundle's
/// parsed CRLs (some 30 MB for a large one), and a connection holding
/// them kept every CRL change's in memory for as long as it stayed open.
pub struct Entries {
    resolver: Arc<SniResolver>,
    /// Each entry's client-auth policy, by position: the first position
    /// sharing its config.
    policy: Vec<usize>,
    /// The names an entry lists that no SNI can carry (rustls refuses
    /// them: `host.123`), each with the entry it belongs to
    /// ([`owners_of_left_out`]: entries listing one have one
    /// `client_auth`, the first of them, or the one a renewal kept it
    /// with). No handshake selects an entry by them, but a request's host
    /// still belongs to it.
    left_out: HashMap<String, usize>,
}

impl Entries {
    /// Position of the entry answering `host` (a `Host` value, perhaps
    /// with a port); unknown names belong to the default entry.
    /// A name an entry lists that SNI cannot carry is that entry's, as
    /// one it answers (exact before wildcard): on another entry's
    /// connection a request for it gets 421, where the default entry's
    /// `client_auth` would let it in.
    pub fn position_of_host(&self, host: &str) -> usize {
        let name = strip_port(host).trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            &lower
        } else {
            name
        };
        if self.left_out.is_empty() {
            return self.resolver.position_or_default(Some(name));
        }
        // Exact names first, SNI's or not (no name is both), then wildcards.
        if let Some(&at) = self.left_out.get(name) {
            return at;
        }
        if self.resolver.answers(name) {
            return self.resolver.position_or_default(Some(name));
        }
        let wildcard = name.split_once('.').map(|(_, up)| format!("*.{up}"));
        wildcard
            .and_then(|w| self.left_out.get(&w).copied())
            .unwrap_or(0)
    }

    /// Each name SNI cannot carry with the entry it belongs to.
    pub fn left_out(&self) -> impl Iterator<Item = (String, usize)> + '_ {
        self.left_out.iter().map(|(n, &at)| (n.clone(), at))
    }

    /// The names SNI cannot carry that pick an entry, with its position,
    /// sorted: those whose entry is not the one
    /// [`position_of_host`](Self::position_of_host) would give them
    /// without it (for an exact name, the entry an SNI name or a left-out
    /// `*.` wildcard gives it, else the default, 0; for a wildcard, the
    /// default), as [`SniResolver::picks`] leaves out the default's names.
    /// Two with the same picks (and resolvers with the same picks) give
    /// every host the same entry: a renewal of the default entry adding
    /// `DNS:host.123` moves nothing.
    pub fn picks(&self) -> Vec<(String, usize)> {
        let otherwise = |name: &str| match name.strip_prefix("*.") {
            Some(_) => 0,
            None if self.resolver.answers(name) => self.resolver.position_or_default(Some(name)),
            None => (name.split_once('.'))
                .and_then(|(_, up)| self.left_out.get(&format!("*.{up}")).copied())
                .unwrap_or(0),
        };
        let mut picks: Vec<_> = (self.left_out.iter())
            .filter(|&(name, &at)| at != otherwise(name))
            .map(|(name, &at)| (name.clone(), at))
            .collect();
        picks.sort_unstable();
        picks
    }

    /// The entry `name` (lowercase) belongs to, if not the default for
    /// want of one, in [`position_of_host`](Self::position_of_host)'s
    /// order: one listing it among its names SNI cannot carry, else one
    /// whose SNI names answer it (an SNI `*.` wildcard over
    /// `-a.example.test`), else one listing its `*.` wildcard SNI cannot
    /// carry either.
    pub fn answering(&self, name: &str) -> Option<usize> {
        let sni =
            || (self.resolver.answers(name)).then(|| self.resolver.position_or_default(Some(name)));
        let wildcard = || {
            let (_, up) = name.split_once('.').filter(|_| !name.starts_with("*."))?;
            self.left_out.get(&format!("*.{up}")).copied()
        };
        self.left_out
            .get(name)
            .copied()
            .or_else(sni)
            .or_else(wildcard)
    }

    /// [`PerName::same_client_auth`].
    pub fn same_client_auth(&self, a: usize, b: usize) -> bool {
        match (self.policy.get(a), self.policy.get(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// The names each entry of `certs` (served as `pairs`) lists that SNI
/// cannot carry ([`crate::config::host_only_name`]), by position: its
/// `server_names` left out, else its certificate's DNS SANs left out of
/// those it answers.
pub fn hosts_left_out(certs: &[ListenerCert], pairs: &[ServedPair<'_>]) -> Vec<Vec<String>> {
    (certs.iter().zip(pairs))
        .map(|(c, p)| match c.server_names {
            Some(_) => c.left_out.clone(),
            None => (p.pair.leaf.dns_left_out.iter())
                .filter_map(|n| crate::config::host_only_name(n))
                .collect(),
        })
        .collect()
}

/// A name SNI cannot carry that a renewal gave entry `entry`'s
/// certificate while entry `kept_by`, with another `client_auth`, had it:
/// it stays `kept_by`'s ([`owners_of_left_out`]), and a warning says so.
pub struct KeptLeftOut {
    pub name: String,
    pub entry: usize,
    pub kept_by: usize,
}

/// The entry each name of `listed` ([`hosts_left_out`]) belongs to for
/// the 421 check: the first listing it, every entry listing it having one
/// `client_auth` (`policies[i]` is entry `i`'s). No handshake selects an
/// entry by such a name, so nothing would settle whose `client_auth`
/// guards it: given to the first, a `none` entry listing it beside a
/// `require_and_verify` one let its clients reach that host without a
/// certificate; given to none, the strict entry's own verified clients
/// got 421. Entries with different `client_auth` listing one such name
/// are refused as SNI names two entries answer so are
/// ([`crate::tls::server::shadowed`]), naming both entries and the name
/// (the first such conflict, [`settle_shadowed`]) — unless the entries in force
/// (`before`, in a rotation) gave it to one of the two and the other
/// lists it by its certificate: a CA's renewal, which does not choose
/// whose a host is. The name then stays with the side that has its
/// previous owner's `client_auth` (that entry, or one sharing it when the
/// owner's renewal dropped the name: [`crate::tls::server::side_of`]), and
/// is returned for a warning, as the reloader keeps an SNI name
/// (`reload::keep::keep_owners`). A name the entry that had it no longer
/// lists is put back in `listed` beforehand (`reload::keep::keep_dropped`);
/// `resolved` then keeps one the default or a wildcard's entry answered
/// from moving to the entry now listing it (`reload::keep::keep_resolved`).
pub fn owners_of_left_out<P: PartialEq>(
    certs: &[ListenerCert],
    mut listed: Vec<Vec<String>>,
    policies: &[&P],
    before: Option<&Entries>,
    resolved: impl FnOnce(&mut [Vec<String>]) -> Result<(), String>,
) -> Result<(HashMap<String, usize>, Vec<KeptLeftOut>), String> {
    let names: Vec<&str> = certs.iter().map(|c| c.entry.as_str()).collect();
    let mut kept = Vec::new();
    let had = |name: &str| before.and_then(|b| b.left_out.get(name).copied());
    // Its server_names are the operator's, not a CA's: never moved.
    let fixed = |at: usize| certs[at].server_names.is_some();
    let keep = |name: &str, entry, kept_by| {
        let name = name.to_owned();
        kept.push(KeptLeftOut {
            name,
            entry,
            kept_by,
        });
    };
    settle_shadowed(&mut listed, policies, had, fixed, keep)
        .map_err(|s| s.refusal_host_only(&names))?;
    resolved(&mut listed)?;
    let mut owners = HashMap::new();
    for (at, list) in listed.into_iter().enumerate() {
        for name in list {
            owners.entry(name).or_insert(at);
        }
    }
    Ok((owners, kept))
}

/// Why entry `c` (served as `p`) answers no name, for its refusal: its
/// `server_names` are empty or all left out, or its certificate has no
/// DNS SAN or none SNI can carry.
pub fn why_no_name(c: &ListenerCert, p: &ServedPair<'_>) -> String {
    let (whose, left_out) = match c.server_names {
        Some(_) if c.left_out.is_empty() => return "its server_names are empty".to_owned(),
        Some(_) => ("server_names name", &c.left_out),
        None if p.pair.leaf.dns_left_out.is_empty() => {
            return "its certificate has no DNS name".to_owned();
        }
        None => ("certificate names", &p.pair.leaf.dns_left_out),
    };
    let what = if c.server_names.is_some() {
        ""
    } else {
        "DNS SANs "
    };
    format!(
        "its {whose} no host an SNI can carry ({what}left out: {})",
        left_out.join(", ")
    )
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    //! Work in a certificate's names SNI cannot carry, counted by
    //! [`crate::tls::server::name_key`]: a renewal another entry's names are kept from is
    //! linear in them, not quadratic.

    use super::*;

    /// How many such names the renewed certificate has.
    const N: usize = 2_000;

    /// y's renewal lists the N names SNI cannot carry that x (another
    /// client_auth) had: each stays x's, and each was settled in a pass
    /// of its own, every list keyed again (N conflicts x 2N names).
    #[test]
    fn a_renewal_listing_another_entrys_names_keys_each_a_bounded_number_of_times() {
        let cert = |entry: &str| ListenerCert {
            entry: entry.to_owned(),
            server_names: None,
            left_out: Vec::new(),
            client_auth: None,
        };
        let certs = [cert("x"), cert("y")];
        let had: Vec<String> = (0..N).map(|i| format!("n{i}.123")).collect();
        let before = Entries {
            resolver: Arc::new(SniResolver::none()),
            policy: vec![0, 1],
            left_out: had.iter().map(|n| (n.clone(), 0)).collect(),
        };
        let (policies, listed) = ([&"request", &"none"], vec![had.clone(), had.clone()]);
        let counter = &crate::tls::server::NAME_KEYED;
        counter.with(|k| k.set(0));
        let (owners, kept) =
            owners_of_left_out(&certs, listed, &policies, Some(&before), |_| Ok(())).unwrap();
        let count = counter.with(|k| k.get());
        assert_eq!(owners, before.left_out);
        assert_eq!(kept.len(), N);
        assert!(kept.iter().all(|k| (k.entry, k.kept_by) == (1, 0)));
        assert!(
            (N..=8 * N).contains(&count),
            "{count} names keyed for {N} names"
        );
    }
}
