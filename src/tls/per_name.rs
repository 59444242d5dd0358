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
use crate::tls::server::{ServedPair, SniResolver};

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
        left_out: HashMap<String, Vec<usize>>,
    ) -> PerName {
        // Each entry's policy: the first position sharing its config.
        let policy: Vec<usize> = (configs.iter())
            .map(|c| configs.iter().position(|o| Arc::ptr_eq(o, c)).unwrap_or(0))
            .collect();
        let left_out = owners_of_left_out(left_out, &policy);
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
    /// ([`owners_of_left_out`]): the first listing it, or [`NO_ENTRY`]
    /// when entries with different `client_auth` list it. No handshake
    /// selects an entry by them, but a request's host still belongs to it.
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

    /// [`PerName::same_client_auth`].
    pub fn same_client_auth(&self, a: usize, b: usize) -> bool {
        match (self.policy.get(a), self.policy.get(b)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// The names each entry of `certs` (served as `pairs`) lists that SNI
/// cannot carry ([`crate::config::host_only_name`]), each with the
/// entries listing it, in order: its `server_names` left out, else its
/// certificate's DNS SANs left out of those it answers.
pub fn hosts_left_out(
    certs: &[ListenerCert],
    pairs: &[ServedPair<'_>],
) -> HashMap<String, Vec<usize>> {
    let mut left_out: HashMap<String, Vec<usize>> = HashMap::new();
    for (at, (c, p)) in certs.iter().zip(pairs).enumerate() {
        let names = match c.server_names {
            Some(_) => c.left_out.clone(),
            None => (p.pair.leaf.dns_left_out.iter())
                .filter_map(|n| crate::config::host_only_name(n))
                .collect(),
        };
        for name in names {
            left_out.entry(name).or_default().push(at);
        }
    }
    left_out
}

/// The entry a left-out name belongs to for the 421 check: the first
/// listing it when every entry listing it has one `client_auth` (by
/// `policy`, [`Entries::same_client_auth`]'s), else [`NO_ENTRY`]. No
/// handshake selects an entry by such a name, so nothing settles which
/// entry's `client_auth` guards it (SNI names are refused as shadowed, and
/// kept with their owner across a renewal, neither of which a name SNI
/// cannot carry has): given to the first, an entry without client
/// certificates listing it beside one that requires them (or gaining it in
/// a CA's renewal) let its clients reach that host. Such a host is
/// misdirected on every connection (421), where a request for it cannot
/// be told whose it is.
fn owners_of_left_out(
    left_out: HashMap<String, Vec<usize>>,
    policy: &[usize],
) -> HashMap<String, usize> {
    let policy_of = |at: usize| policy.get(at).copied();
    (left_out.into_iter())
        .map(|(name, listers)| {
            let first = listers[0];
            let one = listers.iter().all(|&at| policy_of(at) == policy_of(first));
            (name, if one { first } else { NO_ENTRY })
        })
        .collect()
}

/// No entry: the position of a host no connection's entry may serve
/// ([`owners_of_left_out`]); [`Entries::same_client_auth`] is false for it.
pub const NO_ENTRY: usize = usize::MAX;

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
    use super::*;

    /// A left-out name listed by entries of one `client_auth` is the
    /// first's; listed by entries whose `client_auth` differs (a `none`
    /// entry beside a `require_and_verify` one), no entry's: given to the
    /// first, the `none` entry's clients reached it without a certificate.
    #[test]
    fn a_left_out_name_listed_under_two_client_auths_is_no_entrys() {
        // Entries 0 and 1 share a policy; entry 2 has its own.
        let policy = [0, 0, 2];
        let listed = |at: &[usize]| HashMap::from([("host.123".to_owned(), at.to_vec())]);
        assert_eq!(owners_of_left_out(listed(&[1]), &policy)["host.123"], 1);
        assert_eq!(owners_of_left_out(listed(&[0, 1]), &policy)["host.123"], 0);
        assert_eq!(
            owners_of_left_out(listed(&[0, 2]), &policy)["host.123"],
            NO_ENTRY
        );
        assert_eq!(
            owners_of_left_out(listed(&[2, 1]), &policy)["host.123"],
            NO_ENTRY
        );
    }
}
