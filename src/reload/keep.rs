//! Names a renewal moves between a listener's entries kept with the entry whose client_auth they had: added, dropped, or answered before by resolution.

use std::collections::{BTreeMap, HashMap, HashSet};

use tracing::warn;

use super::LOG;
use crate::config::{ClientAuthConfig, ClientAuthMode, ListenerConfig};
use crate::material::catalogue::Entry;
use crate::tls;
use crate::tls::server::SniResolver;
// A name as the pairs' lists are compared here.
use crate::tls::server::name_key as key;

/// Per pair of `l`, the names it answers when they are not its own
/// (`None`: its `server_names`, else its certificate's SANs). A renewal
/// can bring a SAN that another pair of the listener answers under a
/// different client_auth; which pair answers a name is the operator's
/// configuration, not the CA's, so the name stays with the pair that
/// answered it in `before` (the snapshot being replaced), whose
/// client_auth keeps applying to it, and the renewal is served. Only a
/// SAN is moved this way, and only to the side of its previous owner's
/// client_auth ([`tls::server::side_of`]): two pairs the
/// configuration itself points at one name, or a name nobody answered
/// before, are refused as [`tls::server::refuse_shadowed`] says. A
/// renewal that drops a SAN is met the same way ([`keep_dropped`]).
pub(super) fn keep_owners(
    l: &ListenerConfig,
    policies: &[&ClientAuthConfig],
    pairs: &[&crate::material::Pair],
    entries: &BTreeMap<String, Entry>,
    before: Option<&SniResolver>,
) -> Result<Vec<Option<Vec<String>>>, String> {
    let mut names: Vec<Vec<String>> = l
        .certs
        .iter()
        .zip(pairs)
        .map(|(c, p)| {
            c.server_names
                .clone()
                .unwrap_or_else(|| p.leaf.dns_names.clone())
        })
        .collect();
    let mut moved = vec![false; names.len()];
    if let Some(before) = before {
        let owned = before.owned();
        keep_dropped(
            l,
            policies,
            entries,
            owned,
            |_| None,
            &mut names,
            &mut moved,
        );
    }
    let ids: Vec<&str> = l.certs.iter().map(|c| c.entry.as_str()).collect();
    let had = |name: &str| before.and_then(|r| r.owner(name));
    // Its server_names are the operator's, not a CA's: never moved.
    let fixed = |at: usize| l.certs[at].server_names.is_some();
    let kept = |name: &str, loser: usize, keeper: usize| {
        moved[loser] = true;
        warn!(target: LOG, listener = %l.name, name = %name, entry = %l.certs[loser].entry, kept_by = %l.certs[keeper].entry, "a certificate names a host another entry of the listener answers with a different client_auth; that entry keeps answering it (give the entries server_names: check and a restart refuse this)");
    };
    tls::server::settle_shadowed(&mut names, policies, had, fixed, kept)
        .map_err(|s| s.refusal(&ids))?;
    if let Some(before) = before {
        let answered = |n: &str| {
            before
                .answers(n)
                .then(|| before.position_or_default(Some(n)))
        };
        keep_resolved(l, policies, answered, &mut names, &mut moved)?;
    }
    Ok(names
        .into_iter()
        .zip(moved)
        .map(|(n, m)| m.then_some(n))
        .collect())
}

/// Names the pairs list now that another pair answered in `before` by
/// resolution rather than by the same name (`before(name)`: the pair
/// answering it by its names, `None` for the default; a resolver's, or
/// the left-out names' [`tls::per_name::Entries::answering`]): through its `*.` wildcard
/// (a.test's renewal naming x.b.test, which `*.b.test` answered), or as
/// the default (a SAN no pair named before, added to a `none` pair while
/// the default pair requires a verified certificate). An exact name wins
/// over a wildcard and any name over the default, and [`shadowed`]
/// compares names as listed, so without this the name would change pairs
/// and client_auth with nothing said. As in [`keep_owners`], a name a
/// wildcard answered stays with that pair when their client_auth differs;
/// one the default answered stays with it only when the new pair's
/// client_auth lets in a client the default's refused ([`admits_more`]):
/// a renewal for a new host under a stricter client_auth is served. The
/// name is dropped from the new owner's `names` (`moved` set), with the
/// same warning; a name the new owner lists in `server_names` is refused. Unlike a name two pairs
/// list, `check` and a restart cannot tell this from a configured
/// exception to a wildcard: they give the name to the pair that lists it.
///
/// [`shadowed`]: tls::server::shadowed
pub(super) fn keep_resolved(
    l: &ListenerConfig,
    policies: &[&ClientAuthConfig],
    before: impl Fn(&str) -> Option<usize>,
    names: &mut [Vec<String>],
    moved: &mut [bool],
) -> Result<(), String> {
    // Name -> the pairs listing it, earliest first: the first answers it
    // now, since an exact name (or `*.x` as such) wins over a wildcard and
    // the default; when it is taken from one, the next does. One map, not
    // one per name moved: a renewal adding thousands of SANs another pair
    // answered moved each in turn, recounting every pair's names each time.
    let listers = listers(names);
    let mut listed: Vec<&String> = listers.keys().collect();
    listed.sort();
    // Per pair, the names taken from it, dropped from its list once.
    let mut taken: Vec<HashSet<&str>> = vec![HashSet::new(); names.len()];
    for name in listed {
        // Fell to the default: no pair's configuration claimed it, so the
        // name may move (a renewal for a new host), unless its new pair
        // lets in a client the default refused it.
        let answered = before(name);
        let by_default = answered.is_none();
        let was = answered.unwrap_or(0);
        for &now in &listers[name] {
            if was >= names.len()
                || now == was
                || policies[now] == policies[was]
                || (by_default && !admits_more(policies[now], policies[was]))
            {
                break;
            }
            if l.certs[now].server_names.is_some() {
                return Err(format!(
                    "tls.certs[{now}] (entry {:?}) answers {name:?} by its server_names, which tls.certs[{was}] (entry {:?}) answered before with a different client_auth (drop the name from one of them, or give both the same client_auth)",
                    l.certs[now].entry, l.certs[was].entry
                ));
            }
            taken[now].insert(name);
            moved[now] = true;
            warn!(target: LOG, listener = %l.name, name = %name, entry = %l.certs[now].entry, kept_by = %l.certs[was].entry, "a certificate names a host another entry of the listener answers with a different client_auth; that entry keeps answering it (settle the host in server_names: a restart, or a reload that changes the listener's certs or redefines an entry it uses, gives it to the entry that names it)");
        }
    }
    for (list, taken) in names.iter_mut().zip(&taken) {
        if !taken.is_empty() {
            list.retain(|n| !taken.contains(key(n).as_str()));
        }
    }
    Ok(())
}

/// Whether client_auth `new` may let in a client `old` refuses: one
/// without a certificate, one whose certificate is not verified, or one
/// verified under other rules (another CA, `allow`, CRL leniency).
fn admits_more(new: &ClientAuthConfig, old: &ClientAuthConfig) -> bool {
    use ClientAuthMode as M;
    let without_cert = |m| matches!(m, M::None | M::Request | M::VerifyIfGiven);
    let unverified = |m| matches!(m, M::None | M::Request | M::RequireAny);
    let rules = |c: &ClientAuthConfig| (c.ca.clone(), c.allow.clone(), c.allow_expired_crl);
    (without_cert(new.mode) && !without_cert(old.mode))
        || (unverified(new.mode) && !unverified(old.mode))
        || (new.mode.verifies() && old.mode.verifies() && rules(new) != rules(old))
}

/// Names a renewal dropped from a pair's SANs that the pair answered in
/// `before` (each name with its pair: a resolver's
/// [`SniResolver::owned`], or the names SNI cannot carry the pairs listed,
/// [`tls::per_name::Entries::left_out`], where the pair listing a name or
/// its wildcard first, else the default, takes it next as well; `sni`
/// gives such a name to the pair whose SNI names answer it, an SNI `*.`
/// wildcard's, before a wildcard SNI cannot carry). Such a name would fall to another pair (the default, when no
/// other names it), and that pair's client_auth would apply to it: a
/// renewal of `b.example`'s certificate for `b2.example` alone would let
/// clients without a certificate reach `b.example`. As with a name a
/// renewal adds ([`keep_owners`]), the name stays with the pair that
/// answered it when the other pair's client_auth differs (added back to
/// its `names`, `moved` set): its clients get a certificate that does not
/// name it, under the client_auth the name had, and a warning says so.
/// Only SAN-derived names are kept: a pair's `server_names` are its
/// configuration.
pub(super) fn keep_dropped(
    l: &ListenerConfig,
    policies: &[&ClientAuthConfig],
    entries: &BTreeMap<String, Entry>,
    before: impl Iterator<Item = (String, usize)>,
    sni: impl Fn(&str) -> Option<usize>,
    names: &mut [Vec<String>],
    moved: &mut [bool],
) {
    // Name -> the pairs listing it, earliest first, taken once: looking
    // each name a pair had up in its new list, and in every list for who
    // takes it next, was quadratic in a certificate's SANs.
    let mut listers = listers(names);
    let mut dropped: Vec<(String, usize)> = before
        .filter(|(name, at)| {
            l.certs.get(*at).is_some_and(|c| c.server_names.is_none())
                && !listers.get(&key(name)).is_some_and(|by| by.contains(at))
        })
        .collect();
    // `*.x` sorts before the names under it, so one put back is found.
    dropped.sort();
    for (name, keeper) in dropped {
        let want = key(&name);
        let by = |name: &str| listers.get(name).map(Vec::as_slice).unwrap_or_default();
        // An entry with the keeper's client_auth whose certificate still
        // names it takes it, wherever it sits: a conflict with an earlier
        // entry of another client_auth is then settled for that side
        // (`side_of`), and the keeper's renewal is not undone for a name
        // a certificate of its own client_auth serves.
        let named_alike = by(&want).iter().any(|&i| policies[i] == policies[keeper]);
        // As a request's host is routed (`answerer`): exact names, then the
        // SNI names (`sni`, for names SNI cannot carry), then wildcards.
        let wildcard = || {
            let (_, up) = want.split_once('.').filter(|_| !want.starts_with("*."))?;
            by(&format!("*.{up}")).first().copied()
        };
        let instead = (by(&want).first().copied())
            .or_else(|| sni(&want))
            .or_else(wildcard)
            .unwrap_or(0);
        if named_alike || policies[instead] == policies[keeper] {
            continue;
        }
        let entry = &l.certs[keeper].entry;
        let file = entries
            .get(entry)
            .map(|e| crate::material::pem::origins(&e.spec.source).swap_remove(0))
            .unwrap_or_default();
        warn!(target: LOG, listener = %l.name, name = %name, entry = %entry, file = %file, instead = %l.certs[instead].entry, "a renewed certificate no longer names a host its entry answered, and another entry with a different client_auth would answer it; the entry keeps answering it under its client_auth, with a certificate that does not name it (settle the host in server_names: a restart, or a reload that changes the listener's certs or redefines an entry it uses, gives it to the entry that names it then)");
        let by = listers.entry(want).or_default();
        by.insert(by.partition_point(|&i| i < keeper), keeper);
        names[keeper].push(name);
        moved[keeper] = true;
    }
}

/// Each name the pairs list (as [`key`] has it) with the pairs listing
/// it, earliest first, each once.
fn listers(names: &[Vec<String>]) -> HashMap<String, Vec<usize>> {
    let mut by: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, list) in names.iter().enumerate() {
        for n in list {
            let at = by.entry(key(n)).or_default();
            if at.last() != Some(&i) {
                at.push(i);
            }
        }
    }
    by
}

#[cfg(test)]
mod tests {
    //! Work in a certificate's SANs, counted by [`key`]: a renewal
    //! dropping or moving names is linear in them, not quadratic.

    use super::*;

    /// How many SANs the renewed certificate has.
    const N: usize = 2_000;

    /// Listener `public`: x (`request`) and y (`none`), two client_auth.
    fn listener() -> ListenerConfig {
        let yaml = "listeners:\n  - { name: public, bind: 127.0.0.1:0, routes: [], tls: { certs: [{ cert_file: x.crt, key_file: x.key, client_auth: { mode: request } }, { cert_file: y.crt, key_file: y.key, client_auth: { mode: none } }] } }\n";
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(yaml, &dir.path().join("config.yaml")).unwrap();
        config.listeners.into_iter().next().unwrap()
    }

    fn sans(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}.test")).collect()
    }

    /// The names [`tls::server::name_key`] takes while `f` runs, whoever
    /// calls it ([`key`], [`tls::server::answerer`], [`tls::server::shadowed`]):
    /// the bodies these replaced keyed through those, so a count of this
    /// module's calls alone passed on them.
    fn keyed(f: impl FnOnce()) -> usize {
        let counter = &tls::server::NAME_KEYED;
        counter.with(|k| k.set(0));
        f();
        counter.with(|k| k.get())
    }

    /// Each entry's `client_auth`, in the listener's order.
    fn policies(l: &ListenerConfig) -> Vec<&ClientAuthConfig> {
        let policies = l.certs.iter().map(|c| c.client_auth.as_ref().unwrap());
        policies.collect()
    }

    /// Each of the N SANs keyed at least once (a count of 0 means the
    /// work went uncounted, not that it was linear) and a bounded number
    /// of times.
    fn assert_linear(count: usize) {
        assert!(
            (N..=8 * N).contains(&count),
            "{count} names keyed for {N} SANs"
        );
    }

    /// x answered N names and its renewal drops the first: each name x
    /// had was looked for in x's new list (N x N names keyed). Linear
    /// work keys each a bounded number of times; quadratic work keys
    /// some N²/2 = 2,000,000.
    #[test]
    fn a_renewal_dropping_a_name_keys_each_san_a_bounded_number_of_times() {
        let l = listener();
        let policies = policies(&l);
        let had = sans(N);
        // y's `*.test` would take the dropped name.
        let mut names = vec![had[1..].to_vec(), vec!["*.test".to_owned()]];
        let mut moved = vec![false; 2];
        let before = had.iter().map(|n| (n.clone(), 0));
        let count = keyed(|| {
            let entries = BTreeMap::new();
            keep_dropped(
                &l,
                &policies,
                &entries,
                before,
                |_| None,
                &mut names,
                &mut moved,
            );
        });
        assert_eq!(moved, [true, false]);
        assert_eq!(names[0].len(), N);
        assert!(names[0].contains(&"n0.test".to_owned()));
        assert_linear(count);
    }

    /// y's renewal adds N names x answered before through a wildcard:
    /// each stays x's, and after each the listers of every name were
    /// counted again (N moves x N names keyed).
    #[test]
    fn a_renewal_adding_names_keys_each_san_a_bounded_number_of_times() {
        let l = listener();
        let policies = policies(&l);
        let mut names = vec![vec!["*.test".to_owned()], sans(N)];
        let mut moved = vec![false; 2];
        let count = keyed(|| {
            let wildcard = |n: &str| (n != "*.test").then_some(0);
            keep_resolved(&l, &policies, wildcard, &mut names, &mut moved).unwrap();
        });
        assert_eq!(moved, [false, true]);
        assert!(names[1].is_empty(), "{:?}", &names[1][..3]);
        assert_linear(count);
    }

    /// y's renewal names the N SANs x answered before: each stays x's,
    /// and each was settled in a pass of its own, every list keyed again
    /// (N conflicts x 2N names).
    #[test]
    fn a_renewal_naming_another_entrys_names_keys_each_san_a_bounded_number_of_times() {
        let l = listener();
        let policies = policies(&l);
        let had = sans(N);
        let mut now: Vec<&str> = had.iter().map(String::as_str).collect();
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let x = tls::server::tests::pair(alg, &now);
        let y_before = tls::server::tests::pair(alg, &["y.test"]);
        now.push("y.test");
        let y = tls::server::tests::pair(alg, &now);
        let served: Vec<_> = [("x", &x), ("y", &y_before)]
            .map(|(entry, pair)| tls::server::ServedPair {
                entry,
                pair,
                server_names: None,
            })
            .into();
        let before = SniResolver::new(&served).unwrap();
        let mut kept = Vec::new();
        let count = keyed(|| {
            let entries = BTreeMap::new();
            kept = keep_owners(&l, &policies, &[&x, &y], &entries, Some(&before)).unwrap();
        });
        assert_eq!(kept, [None, Some(vec!["y.test".to_owned()])]);
        assert_linear(count);
    }
}
