//! What material taken into service warns about: expired, not yet valid, rolled back (certificates and CRLs), and its notes.

use std::time::SystemTime;

use tracing::{info, warn};

use super::LOG;
use crate::material::catalogue::unix;
use crate::material::info::{inspect_crl, rfc3339};
use crate::material::{Loaded, Note};

/// Expired, not-yet-valid and rolled-back certificates load, loudly; so
/// does material that does less than it may seem to (its notes).
pub(super) fn warn_validity(id: &str, loaded: &Loaded, previous: Option<&Loaded>) {
    log_notes(id, loaded);
    warn_crl_rollback(id, loaded, previous);
    let now = unix(SystemTime::now());
    // Each CRL in use past it, by its file and issuer: a bundle may have
    // 64 CRL files, and any one refuses every client.
    for (crl, file) in loaded
        .ca()
        .into_iter()
        .flat_map(|ca| ca.crls.iter().zip(&ca.crl_files))
    {
        let Ok(info) = inspect_crl(crl) else { continue };
        let Some(next_update) = info.next_update.filter(|&t| t <= now) else {
            continue;
        };
        warn!(target: LOG, entry = %id, file = %file, issuer = %info.issuer, next_update = %rfc3339(next_update), next_update_unix = next_update, "CRL is past its nextUpdate: verifying listeners refuse client certificates (unless client_auth.allow_expired_crl)");
    }
    let Some(p) = loaded.primary() else { return };
    if loaded.not_after() < now {
        warn!(target: LOG, entry = %id, fingerprint = %p.fingerprint_sha256, not_after = %rfc3339(loaded.not_after()), not_after_unix = loaded.not_after(), "certificate is expired (loaded anyway)");
    }
    if p.not_before > now {
        warn!(target: LOG, entry = %id, fingerprint = %p.fingerprint_sha256, not_before = %rfc3339(p.not_before), not_before_unix = p.not_before, "certificate is not valid yet (loaded anyway)");
    }
    if let Some(prev) = previous
        && loaded.not_after() < prev.not_after()
    {
        warn!(target: LOG, entry = %id, fingerprint = %p.fingerprint_sha256, not_after = %rfc3339(loaded.not_after()), not_after_unix = loaded.not_after(), previous_not_after = %rfc3339(prev.not_after()), "new certificate expires earlier than the one it replaces");
    }
}

/// CRLs rolled back to older ones of their issuer (a backup restored, a
/// stale copy pushed): applied as written, as an operator may mean it,
/// but a client revoked since is admitted again, so never silently (as a
/// certificate rolled back to one that expires earlier).
fn warn_crl_rollback(id: &str, loaded: &Loaded, previous: Option<&Loaded>) {
    let (Some(ca), Some(was)) = (loaded.ca(), previous.and_then(Loaded::ca)) else {
        return;
    };
    for r in ca.crls_rolled_back_from(was) {
        if r.maybe_other_key {
            // No CA of the bundle and no key identifiers to tell: a re-keyed
            // issuer's first CRL re-admits no one.
            warn!(target: LOG, entry = %id, file = %r.file, issuer = %r.issuer, this_update = %rfc3339(r.this_update), this_update_unix = r.this_update, crl_number = r.crl_number.as_deref(), previous_this_update = %rfc3339(r.previous_this_update), previous_this_update_unix = r.previous_this_update, previous_crl_number = r.previous_crl_number.as_deref(), "CRL rolled back, possibly, or another key's: older than the one it replaces, and neither a CA of the bundle nor key identifiers tell which (applied as written: if rolled back, clients revoked since it was issued are admitted again)");
            continue;
        }
        warn!(target: LOG, entry = %id, file = %r.file, issuer = %r.issuer, this_update = %rfc3339(r.this_update), this_update_unix = r.this_update, crl_number = r.crl_number.as_deref(), previous_this_update = %rfc3339(r.previous_this_update), previous_this_update_unix = r.previous_this_update, previous_crl_number = r.previous_crl_number.as_deref(), "CRL rolled back: older than the one it replaces (applied as written: clients revoked since it was issued are admitted again)");
    }
}

/// The notes of `id`'s material, each with the file it is about.
pub(super) fn log_notes(id: &str, loaded: &Loaded) {
    for note in loaded.notes() {
        match note {
            Note::SupersededCrl {
                file,
                issuer,
                this_update,
                by_file,
                by_this_update,
            } => {
                info!(target: LOG, entry = %id, file = %file, issuer = %issuer, this_update = %rfc3339(*this_update), by_file = %by_file, by_this_update = %rfc3339(*by_this_update), "CRL superseded by a newer one of the same issuer: not used");
            }
            Note::CrlOfAnotherKey {
                file,
                issuer,
                this_update,
                by_file,
                by_this_update,
            } => {
                warn!(target: LOG, entry = %id, file = %file, issuer = %issuer, this_update = %rfc3339(*this_update), by_file = %by_file, by_this_update = %rfc3339(*by_this_update), "CRL signed by another key of its issuer than the newer one used: not used, and clients whose issuer certificate has that key are refused (crl_invalid: one CRL serves an issuer name)");
            }
            Note::UnusedCrl {
                file,
                issuer,
                why,
                by_file,
            } => {
                warn!(target: LOG, entry = %id, file = %file, issuer = %issuer, why = %why, by_file = %by_file, "CRL not used, though the newest of its issuer: an older one is used instead");
            }
            Note::RevokedCa {
                file,
                position,
                subject,
                revoked,
                crl_file,
            } => {
                warn!(target: LOG, entry = %id, file = %file, position, subject = %subject, revoked = %revoked, crl_file = %crl_file, "CA certificate is revoked by a CRL of its issuer in the bundle (or issued by one that is): not a trust anchor");
            }
            Note::UncheckedCa {
                file,
                position,
                subject,
                issuer,
            } => {
                warn!(target: LOG, entry = %id, file = %file, position, subject = %subject, issuer = %issuer, "CA certificate is issued by another of the bundle, and no CRL of that issuer is given that its key verifies (none, or one signed by another key, with an algorithm not supported, or by a CA without cRLSign): its revocation is not checked (list only root CAs in ca_file and let clients send the intermediate, or add the CRL of its issuer)");
            }
            Note::MustStaple { file, subject } => {
                warn!(target: LOG, entry = %id, file = %file, subject = %subject, "certificate requires OCSP stapling (Must-Staple), which hotproxy does not do: clients that enforce it (Firefox) refuse it; get one without --must-staple");
            }
            Note::UnverifiableCaKey {
                file,
                position,
                subject,
                key,
                issued_here,
            } if issued_here.is_empty() => {
                warn!(target: LOG, entry = %id, file = %file, position, subject = %subject, key = %key, "CA certificate has a key rustls verifies no signature by: every certificate it issued is refused (unknown_ca, bad_client_cert); re-issue the CA with RSA 2048-8192 bits, ECDSA P-256/P-384/P-521 or Ed25519");
            }
            Note::UnverifiableCaKey {
                file,
                position,
                subject,
                key,
                issued_here,
            } => {
                let issued_here = issued_here.join(", ");
                warn!(target: LOG, entry = %id, file = %file, position, subject = %subject, key = %key, issued_here = %issued_here, "CA certificate has a key rustls verifies no signature by: the CAs it issued that the bundle holds (issued_here) are trust anchors themselves, what they issue is accepted; any other certificate it issued is refused (unknown_ca, bad_client_cert): leave it out of the bundle if it issues nothing else, or re-issue it with RSA 2048-8192 bits, ECDSA P-256/P-384/P-521 or Ed25519");
            }
        }
    }
}
