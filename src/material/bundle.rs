//! A CA bundle's parse: its certificates and each CRL file's CRLs, as webpki will use them (the newest of an issuer's issued; no revoked CA as an anchor), chosen again once one dated ahead is issued.

use std::sync::Arc;

use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::crls::{
    Crl, CrlRollback, newest, next_issued, revoked_cas, rolled_back, signature_fails,
};
use super::info::CertInfo;
use super::pem::{MaterialError, certificates, sections, text_only};
use super::{CaBundle, Material, Note};

/// What a bundle's CRLs are chosen from again once one dated in the future
/// is issued: all of them, with their files, and the certificates' file.
pub(super) struct Pending {
    origin: String,
    crls: Vec<Crl>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending {{ {} CRLs }}", self.crls.len())
    }
}

/// The CA certificates of `parts[0]` (named `names[0]`) and the CRLs of
/// each further part: at least one certificate, and at least one CRL in
/// each CRL source, each parsed as webpki will parse it (the
/// certificates as trust anchors); of an issuer's CRLs, the newest; a
/// CA certificate they revoke is no trust anchor.
pub(super) fn parse(names: &[String], parts: &[Vec<u8>]) -> Result<Material, MaterialError> {
    let (roots, certs) = certificates(&names[0], &parts[0])?;
    // What verifies peers is webpki, which takes each certificate as a
    // trust anchor only if it parses it (stricter than x509-parser: an
    // extension twice, say). One it refuses is refused here, where the
    // file and the certificate can be named, not when a listener's or an
    // upstream's verifier is built after the material was taken (a reload
    // failing late, naming neither; /certs/validate saying valid).
    for (position, (der, info)) in roots.iter().zip(&certs).enumerate() {
        webpki::anchor_from_trusted_cert(der).map_err(|e| MaterialError::BadAnchor {
            origin: names[0].clone(),
            position: position + 1,
            subject: info.subject.clone(),
            reason: format!("{e:?}"),
        })?;
    }
    // Parsed once for every CRL's signature check.
    let cas: Vec<X509Certificate<'_>> = roots
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let mut crls = Vec::new();
    let mut crl_counts = Vec::new();
    for (origin, bytes) in names.iter().zip(parts).skip(1) {
        let mut found = 0;
        for (kind, der) in sections(origin, bytes)? {
            if kind != SectionKind::Crl {
                continue;
            }
            crl_read_whole(origin, &der)?;
            // What verifies client certificates is webpki, which is
            // stricter (RFC 5280's profile: a v2 CRL): a CRL it refuses
            // is refused here, where the file is named, not when the
            // listener's verifier is built after the material was
            // taken (a reload failing late, an API call's 400 after
            // /certs/validate said valid). Parsed owned, as the verifiers
            // parse it: the borrowed parse reads the header alone, and a
            // revoked entry webpki refuses (a reasonCode RFC 5280 leaves
            // unused, an indirect CRL's certificateIssuer, an unknown
            // critical extension) failed only there, naming the listener.
            webpki::OwnedCertRevocationList::from_der(&der).map_err(|e| MaterialError::BadCrl {
                origin: origin.clone(),
                reason: format!("not usable to check revocation: {e:?}"),
            })?;
            // Parsed whole, but not signed by its issuer's key in the
            // bundle: a re-issue of the same length written in place,
            // read half-way. Waited on, then refused, the CRLs in use
            // kept: used, it refused every client of its issuer.
            if signature_fails(&der, &cas) {
                return Err(MaterialError::CrlSignature {
                    origin: origin.clone(),
                });
            }
            crls.push(Crl {
                origin: origin.clone(),
                der,
            });
            found += 1;
        }
        if found == 0 {
            // Text and no BEGIN line yet (`openssl crl -text > FILE` read
            // before it reaches the PEM) is waited on, as for a
            // certificate file; PEM of other sections, or DER, is not.
            return Err(MaterialError::NoCrl {
                origin: origin.clone(),
                text_only: text_only(bytes),
            });
        }
        crl_counts.push(found);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let origin = names[0].clone();
    Ok(Material::Ca(choose(
        origin, roots, certs, crls, crl_counts, now,
    )))
}

/// Checks that `der`, a CRL of `origin` under whole PEM, parses to its
/// end. One that does not (cut short, or followed by trailing bytes) is
/// what a writer that does not truncate (`rsync --inplace`, `dd
/// conv=notrunc`) leaves read half-way over a CRL of another length (a
/// re-issue revoking one more serial): the new PEM's head on the old
/// one's tail, whole base64 up to the old END line. So it is
/// [`MaterialError::Torn`], waited on, as a certificate so read is.
fn crl_read_whole(origin: &str, der: &[u8]) -> Result<(), MaterialError> {
    let torn = |reason: String| MaterialError::Torn {
        origin: origin.into(),
        what: "invalid CRL",
        reason,
    };
    match x509_parser::parse_x509_crl(der) {
        Ok(([], _)) => Ok(()),
        Ok((rest, _)) => Err(torn(format!("{} trailing bytes after the CRL", rest.len()))),
        Err(e) => Err(torn(e.to_string())),
    }
}

/// The bundle of `roots` (from `origin`, described by `certs`) with the
/// CRLs of `crls` webpki is given as of `now` (Unix seconds): of an
/// issuer's, the newest issued, and so on ([`newest`]). While one is dated
/// after `now`, all are kept to choose from again then.
fn choose(
    origin: String,
    roots: Vec<CertificateDer<'static>>,
    certs: Vec<CertInfo>,
    crls: Vec<Crl>,
    crl_counts: Vec<usize>,
    now: i64,
) -> CaBundle {
    let crl_due = next_issued(&crls, now);
    let pending = crl_due.map(|_| {
        Arc::new(Pending {
            origin: origin.clone(),
            crls: crls.clone(),
        })
    });
    let mut notes = unverifiable_keys(&origin, &roots, &certs);
    let crls = newest(crls, &roots, now, &mut notes);
    let revoked = revoked_cas(&origin, &roots, &certs, &crls, &mut notes);
    let crl_files = crls.iter().map(|c| c.origin.clone()).collect();
    let crls = crls
        .into_iter()
        .map(|c| CertificateRevocationListDer::from(c.der))
        .collect();
    CaBundle {
        roots,
        revoked,
        crls,
        crl_files,
        certs,
        crl_counts,
        notes,
        crl_due,
        pending,
        rechosen: 0,
    }
}

/// What a certificate the weak-CA note names as issued by the CA says
/// when nothing but its issuer's name tells so.
const NAME_ONLY: &str = "told by its issuer name alone: no key identifiers to compare and no signature check with this key";

/// A note for each certificate of `roots` whose key rustls verifies no
/// signature by (RSA 1024 or 16384 bits, DSA, secp256k1, Ed448): it loads
/// as an anchor, and every client or upstream certificate it issued is
/// refused in the handshake as `unknown_ca` or `bad_client_cert`, which
/// names neither the CA nor its file. Not refused: nginx and OpenSSL
/// verify with such keys, and a bundle may hold it beside CAs that work.
/// The certificates of the bundle it issued that are CAs or have no
/// basicConstraints (v1), with keys rustls verifies by, are anchors
/// themselves: webpki ends a path at one without this key, so what they
/// issue is accepted, and the note names them rather than say every
/// certificate under the CA is refused. Issued by it is told by key
/// ([`der::issued_by`](super::der::issued_by)), not by the issuer's name
/// alone: a CA re-keyed under its name (the weak key's certificate kept
/// beside the new one's) did not issue what the new key signed. Where
/// only the name tells, the note says so of that certificate.
fn unverifiable_keys(origin: &str, roots: &[CertificateDer<'_>], certs: &[CertInfo]) -> Vec<Note> {
    let parsed: Vec<Option<X509Certificate<'_>>> = (roots.iter())
        .map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    let mut notes = Vec::new();
    for (position, (cert, info)) in parsed.iter().zip(certs).enumerate() {
        let Some(cert) = cert else {
            continue;
        };
        let Some(key) = super::der::unverifiable_key(cert.public_key().raw) else {
            continue;
        };
        // Those webpki ends a path at without this key: issued by it, a
        // CA or a certificate without basicConstraints (X.509 v1, which
        // `openssl x509 -req` writes without -extfile), and with a key
        // rustls verifies by (a weak intermediate has its own note: what
        // it issues is refused; the weak CA itself is one).
        let issued_here = (parsed.iter().zip(roots).zip(certs).enumerate())
            .filter_map(|(at, ((c, der), i))| {
                let c = c.as_ref()?;
                let anchor = (i.is_ca || matches!(c.basic_constraints(), Ok(None)))
                    && super::der::unverifiable_key(c.public_key().raw).is_none();
                if !anchor {
                    return None;
                }
                let named = format!("certificate {} ({})", at + 1, i.subject);
                match super::der::issued_by(c, der, cert) {
                    Some(issued) => issued.then_some(named),
                    // Told by name alone, a certificate of the CA's own
                    // name is taken for one it did not issue (the same
                    // CA's new key, self-signed).
                    None => (c.subject().as_raw() != cert.subject().as_raw())
                        .then(|| format!("{named} ({NAME_ONLY})")),
                }
            })
            .collect();
        notes.push(Note::UnverifiableCaKey {
            file: origin.to_owned(),
            position: position + 1,
            subject: info.subject.clone(),
            key,
            issued_here,
        });
    }
    notes
}

impl CaBundle {
    /// The bundle with its CRLs chosen again as of `now` (Unix seconds),
    /// once [`crl_due`](Self::crl_due) has come: a CRL set aside as not
    /// issued yet may be the newest issued now. `None` before then, or
    /// without one. [`rechosen`](Self::rechosen) counts the choices that
    /// changed the CRLs in use.
    pub fn chosen_again(&self, now: i64) -> Option<CaBundle> {
        let pending = self.pending.as_ref()?;
        if self.crl_due.is_none_or(|due| due > now) {
            return None;
        }
        let mut again = choose(
            pending.origin.clone(),
            self.roots.clone(),
            self.certs.clone(),
            pending.crls.clone(),
            self.crl_counts.clone(),
            now,
        );
        let changed = again.crls != self.crls || again.revoked != self.revoked;
        again.rechosen = self.rechosen.wrapping_add(u32::from(changed));
        Some(again)
    }

    /// The CRLs in use that are older than the one of their issuer and
    /// scope in use in `previous`, the bundle they replace (SPEC §3: a
    /// CRL rolled back is applied, and warned about). Only one that
    /// replaces a CRL issued already, and not one a CA of `previous`
    /// verifies in place of one none did (a repair; `crls::rolled_back`).
    pub fn crls_rolled_back_from(&self, previous: &CaBundle) -> Vec<CrlRollback> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        rolled_back(
            &previous.crls,
            &previous.roots,
            &self.crls,
            &self.crl_files,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    use super::*;

    /// A self-signed CA `cn`: its certificate's DER and the issuer it makes.
    fn ca(cn: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        (cert.der().clone(), Issuer::new(p, key))
    }

    /// A CRL of `issuer` issued at `this_update` revoking serial 5 when
    /// `revokes`, from `file`.
    fn crl(
        issuer: &Issuer<'_, KeyPair>,
        this_update: OffsetDateTime,
        revokes: bool,
        file: &str,
    ) -> Crl {
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revokes
                .then(|| RevokedCertParams {
                    serial_number: SerialNumber::from(5u64),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .into_iter()
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Crl {
            origin: file.to_owned(),
            der: params.signed_by(issuer).unwrap().der().to_vec(),
        }
    }

    /// A CRL dated after the load is set aside then, and chosen once its
    /// thisUpdate comes (not a second before); then nothing is pending.
    /// One dated later still that would not be chosen (no CA of the
    /// bundle signed it) makes a choice again that changes nothing.
    #[test]
    fn a_crl_dated_ahead_is_chosen_when_it_is_issued() {
        let (root, issuer) = ca("a");
        let (_, imposter) = ca("a");
        let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (ahead, later) = (t0 + Duration::seconds(100), t0 + Duration::seconds(200));
        let crls = vec![
            crl(&issuer, t0 - Duration::hours(1), false, "current"),
            crl(&issuer, ahead, true, "ahead"),
            crl(&imposter, later, false, "forged"),
        ];
        let certs = vec![super::super::info::inspect(&root).unwrap()];
        let bundle = choose(
            "ca".into(),
            vec![root],
            certs,
            crls.clone(),
            vec![3],
            t0.unix_timestamp(),
        );
        let in_use = |b: &CaBundle| -> Vec<String> {
            b.crls
                .iter()
                .map(|c| {
                    let at = crls.iter().position(|x| x.der == c.as_ref()).unwrap();
                    crls[at].origin.clone()
                })
                .collect()
        };
        assert_eq!(in_use(&bundle), ["current"]);
        assert_eq!(bundle.crl_due, Some(ahead.unix_timestamp()));
        assert!(bundle.chosen_again(ahead.unix_timestamp() - 1).is_none());
        let again = bundle.chosen_again(ahead.unix_timestamp()).unwrap();
        assert_eq!(in_use(&again), ["ahead"]);
        assert_eq!(again.rechosen, 1);
        assert_eq!(again.crl_due, Some(later.unix_timestamp()));
        let still = again.chosen_again(later.unix_timestamp()).unwrap();
        assert_eq!(in_use(&still), ["ahead"]);
        assert_eq!((still.rechosen, still.crl_due), (1, None));
        assert!(still.pending.is_none() && still.chosen_again(i64::MAX).is_none());
    }

    /// `der` as PEM under `label`, in lines of 64.
    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// The bundle of the CA certificate `root` (`a.crt`) with the CRL file
    /// `crl` (`a.crl`).
    fn load_beside(root: &[u8], crl: &str) -> Result<Material, MaterialError> {
        let names = ["a.crt".to_owned(), "a.crl".to_owned()];
        let ca_pem = pem("CERTIFICATE", root);
        parse(&names, &[ca_pem.into_bytes(), crl.as_bytes().to_vec()])
    }

    /// `new` written over `old` in place and read half-way: the new PEM's
    /// first half on the old one's rest.
    fn spliced(old: &str, new: &str) -> String {
        let half = new.len() / 2;
        format!("{}{}", &new[..half], &old[half..])
    }

    /// A CRL re-issued with a revoked serial more or fewer, written over
    /// the one before in place and read half-way: the new PEM's head on
    /// the old one's tail, a CRL cut short or followed by trailing
    /// bytes. Each is a writer's step (Torn), said as an invalid CRL;
    /// each CRL whole loads.
    #[test]
    fn a_crl_spliced_over_another_of_another_length_is_torn() {
        let (root, issuer) = ca("a");
        let t0 = OffsetDateTime::now_utc();
        let crl_pem = |revokes| pem("X509 CRL", &crl(&issuer, t0, revokes, "a.crl").der);
        let (short, long) = (crl_pem(false), crl_pem(true));
        let load = |crl: &str| load_beside(&root, crl);
        for (old, new) in [(&short, &long), (&long, &short)] {
            assert!(load(new).is_ok());
            let e = load(&spliced(old, new)).unwrap_err();
            assert!(matches!(e, MaterialError::Torn { .. }), "{e}");
            assert!(e.to_string().starts_with("a.crl: invalid CRL: "), "{e}");
            assert!(e.is_transient(), "{e}");
        }
    }

    /// A CRL re-issued at the same length (a later thisUpdate, another
    /// signature of one length), written over the one before in place and
    /// read half-way: the new PEM's head on the old one's tail parses, the
    /// old signature over a new head. It is a writer's step (transient),
    /// said as an invalid CRL whose signature does not verify, naming the
    /// file; each CRL whole loads, and so does one of the issuer's name
    /// signed by another key (an imposter's: it names another key, ranked
    /// below the genuine ones as before). It was taken as its issuer's
    /// only CRL, every client of the issuer refused.
    #[test]
    fn a_crl_spliced_over_another_of_its_length_is_waited_on() {
        let (root, issuer) = ca("a");
        let (_, imposter) = ca("a");
        let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let old = crl(&issuer, t0 - Duration::hours(1), true, "a.crl").der;
        // ECDSA signatures of one key differ in length by a byte or two.
        let new = (0..200)
            .map(|_| crl(&issuer, t0, true, "a.crl").der)
            .find(|der| der.len() == old.len())
            .expect("a re-issue of the same length in 200 tries");
        let (old, new) = (pem("X509 CRL", &old), pem("X509 CRL", &new));
        let forged = pem("X509 CRL", &crl(&imposter, t0, true, "a.crl").der);
        let load = |crl: &str| load_beside(&root, crl);
        for whole in [&old, &new, &forged] {
            assert!(load(whole).is_ok());
        }
        let e = load(&spliced(&old, &new)).unwrap_err();
        assert!(matches!(e, MaterialError::CrlSignature { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("a.crl: invalid CRL: its signature does not verify"),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
    }

    /// `openssl ARGS`, run in `dir`.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let status = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl on PATH");
        assert!(status.success(), "openssl {args:?}");
    }

    /// The `-newkey` arguments of `openssl req` for `key`: `rsa:1024`,
    /// `ec` (P-256) or `ec:CURVE`.
    fn newkey(key: &str) -> Vec<String> {
        let mut args = vec!["-newkey".to_owned()];
        match key.strip_prefix("ec") {
            Some(curve) => {
                let curve = curve.strip_prefix(':').unwrap_or("P-256");
                args.extend(["ec".into(), "-pkeyopt".into()]);
                args.push(format!("ec_paramgen_curve:{curve}"));
            }
            None => args.push(key.to_owned()),
        }
        args
    }

    /// A self-signed CA of a new `key` ([`newkey`]) named `cn`, as
    /// `openssl req -x509` writes it (key identifiers included), written
    /// as `FILE.crt` and `FILE.key`.
    fn root(dir: &std::path::Path, key: &str, cn: &str, file: &str) {
        let (subj, keyout, out) = (
            format!("/CN={cn}"),
            format!("{file}.key"),
            format!("{file}.crt"),
        );
        let mut args: Vec<&str> = vec!["req", "-x509", "-nodes", "-days", "30"];
        let key = newkey(key);
        args.extend(key.iter().map(String::as_str));
        args.extend(["-subj", &subj, "-keyout", &keyout, "-out", &out]);
        openssl(dir, &args);
    }

    /// A certificate for a new `key` (`rsa:1024`, `ec`) named `cn`, issued
    /// by `weak` (its files `weak.crt` and `weak.key` in `dir`) with the
    /// extensions `ext` (none: an X.509 v1 certificate, as `openssl x509
    /// -req` writes without `-extfile`); written as `CN.crt`.
    fn issued(dir: &std::path::Path, key: &str, cn: &str, ext: Option<&str>) {
        signed(dir, "weak", "-sha256", key, cn, ext);
    }

    /// [`issued`] by the CA of the files `by.crt` and `by.key`, with the
    /// digest `digest` (`-sha256`, `-sha1`).
    fn signed(
        dir: &std::path::Path,
        by: &str,
        digest: &str,
        key: &str,
        cn: &str,
        ext: Option<&str>,
    ) {
        let mut req: Vec<&str> = vec!["req", "-new", "-nodes"];
        let key = newkey(key);
        req.extend(key.iter().map(String::as_str));
        let subj = format!("/CN={cn}");
        let (keyout, csr, crt) = (
            format!("{cn}.key"),
            format!("{cn}.csr"),
            format!("{cn}.crt"),
        );
        req.extend(["-subj", &subj, "-keyout", &keyout, "-out", &csr]);
        openssl(dir, &req);
        let (ca, ca_key) = (format!("{by}.crt"), format!("{by}.key"));
        let mut x509 = vec![
            "x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-days", "30", digest,
            "-out", &crt,
        ];
        if let Some(ext) = ext {
            std::fs::write(dir.join(format!("{cn}.ext")), ext).unwrap();
        }
        let extfile = format!("{cn}.ext");
        if ext.is_some() {
            x509.extend(["-extfile", &extfile]);
        }
        openssl(dir, &x509);
    }

    /// What [`unverifiable_keys`] says of the PEM files `names` (`CN.crt`
    /// in `dir`), in order: each note's position and `issued_here`.
    fn named_in(dir: &std::path::Path, names: &[&str]) -> Vec<(usize, Vec<String>)> {
        let pem: String = (names.iter())
            .map(|cn| std::fs::read_to_string(dir.join(format!("{cn}.crt"))).unwrap())
            .collect();
        let (roots, certs) = certificates("ca.pem", pem.as_bytes()).unwrap();
        unverifiable_keys("ca.pem", &roots, &certs)
            .into_iter()
            .map(|n| match n {
                Note::UnverifiableCaKey {
                    position,
                    issued_here,
                    ..
                } => (position, issued_here),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// A CA re-keyed under its name, the weak RSA-1024 `CN=root` kept
    /// beside its P-256 successor `CN=root`: the weak one's note names the
    /// CAs its key issued, told by key identifier or, without one, by its
    /// signature (SHA-256 or SHA-1), and not those the new key issued,
    /// whose issuer bears the same name. Where neither tells (a secp256k1
    /// CA, whose signatures are not checked here, and no key identifiers)
    /// the name does, and the note says so. A CA of the root's own name
    /// its old key signed (a key roll's link certificate) is one it
    /// issued. Before: matched by the name alone, the new key's CAs were
    /// named (certificates 4 and 7), the link left out as the root's own
    /// name, and the secp256k1 CA's named without a word.
    #[test]
    fn a_weak_ca_names_what_its_key_issued_not_its_successor_s() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        root(dir, "rsa:1024", "root", "weak");
        root(dir, "ec", "root", "new");
        root(dir, "ec:secp256k1", "k1", "k1");
        let ca = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
        let no_ids = format!("{ca}subjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n");
        signed(dir, "weak", "-sha256", "ec", "old-kid", Some(ca));
        signed(dir, "new", "-sha256", "ec", "new-kid", Some(ca));
        signed(dir, "weak", "-sha256", "ec", "old-sig", Some(&no_ids));
        signed(dir, "weak", "-sha1", "ec", "old-sha1", Some(&no_ids));
        signed(dir, "new", "-sha256", "ec", "new-sig", Some(&no_ids));
        signed(dir, "k1", "-sha256", "ec", "k1-mid", Some(&no_ids));
        // The old key's link to a new one: issued by it under its own name.
        signed(dir, "weak", "-sha256", "ec", "root", Some(ca));
        let named = named_in(
            dir,
            &[
                "weak", "new", "old-kid", "new-kid", "old-sig", "old-sha1", "new-sig", "k1",
                "k1-mid", "root",
            ],
        );
        let cert = |n: usize, cn: &str| format!("certificate {n} (CN={cn})");
        assert_eq!(
            named,
            [
                (
                    1,
                    vec![
                        cert(3, "old-kid"),
                        cert(5, "old-sig"),
                        cert(6, "old-sha1"),
                        cert(10, "root")
                    ]
                ),
                (
                    8,
                    vec![format!(
                        "{} (told by its issuer name alone: no key identifiers to compare and \
                         no signature check with this key)",
                        cert(9, "k1-mid")
                    )]
                ),
            ]
        );
    }

    /// A weak CA's key tells its signatures by family, not as RSA or not:
    /// an Ed448 and a DSA `CN=root` re-keyed to P-256 did not sign the
    /// ECDSA signature of what the new key issued (no key identifiers),
    /// and an RSA-1024 CA's RSA signature outside the PKCS #1 arc (SHA3-256)
    /// may be its, which the name alone tells, with the caveat. Before:
    /// the Ed448 and the DSA CA's notes named `new-sig` by name alone (not
    /// RSA either), and the RSA CA's left `sha3` out without a word.
    #[test]
    fn a_weak_ca_tells_a_signature_of_another_family_by_its_oid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let params = [
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-out",
            "dsa.param",
        ];
        openssl(dir, &params);
        root(dir, "ed448", "root", "ed");
        root(dir, "dsa:dsa.param", "root", "dsa");
        root(dir, "ec", "root", "new");
        root(dir, "rsa:1024", "rsa-root", "rsa");
        let no_ids = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
                      subjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n";
        signed(dir, "new", "-sha256", "ec", "new-sig", Some(no_ids));
        signed(dir, "rsa", "-sha3-256", "ec", "sha3", Some(no_ids));
        let named = named_in(dir, &["ed", "dsa", "new", "new-sig", "rsa", "sha3"]);
        assert_eq!(
            named,
            [
                (1, vec![]),
                (2, vec![]),
                (5, vec![format!("certificate 6 (CN=sha3) ({NAME_ONLY})")]),
            ]
        );
    }

    /// The certificates a weak root's warning names as anchors themselves
    /// are those of the bundle it issued that webpki ends a path at
    /// without its key: a CA or a certificate without basicConstraints
    /// (a v1 one) whose own key rustls verifies by. A weak intermediate
    /// it issued was named (its own note saying every certificate it
    /// issued is refused), and a v1 anchor was left out.
    #[test]
    fn a_weak_ca_names_the_anchors_it_issued_that_verify() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30", "-subj",
                "/CN=weak", "-keyout", "weak.key", "-out", "weak.crt",
            ],
        );
        let ca = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
        issued(dir, "rsa:1024", "weak-mid", Some(ca));
        issued(dir, "ec", "v1", None);
        issued(dir, "ec", "mid", Some(ca));
        issued(
            dir,
            "ec",
            "leaf",
            Some("basicConstraints=critical,CA:FALSE\n"),
        );
        let named = named_in(dir, &["weak", "weak-mid", "v1", "mid", "leaf"]);
        assert_eq!(
            named,
            [
                (
                    1,
                    vec![
                        "certificate 3 (CN=v1)".to_owned(),
                        "certificate 4 (CN=mid)".to_owned()
                    ]
                ),
                (2, vec![])
            ]
        );
    }
}
