//! DER read where x509-parser and webpki leave it raw: a signature checked as webpki checks it (a leaf's against its issuer) or by a key it does not take (what a weak CA issued), the TLS Feature extension.

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

/// An element read: its tag, its contents, the whole element (tag and
/// length included) and what follows it.
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The element at the start of `input`. `None` for a high tag number, an
/// indefinite or over-long length, or one past the end.
fn element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    let whole = &input[..input.len() - rest.len()];
    Some((tag, contents, whole, rest))
}

/// The DER of the rsaEncryption OID (1.2.840.113549.1.1.1), as a key's
/// AlgorithmIdentifier starts.
const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// The size in bits of an RSA public key's modulus (`key`: an
/// RSAPublicKey, SEQUENCE { modulus, publicExponent }).
fn rsa_modulus_bits(key: &[u8]) -> Option<usize> {
    let (SEQUENCE, body, _, _) = element(key)? else {
        return None;
    };
    let (INTEGER, modulus, _, _) = element(body)? else {
        return None;
    };
    let at = modulus.iter().position(|&b| b != 0)?;
    Some((modulus.len() - at) * 8 - modulus[at].leading_zeros() as usize)
}

/// The contents of a BIT STRING without unused bits (a key, a signature).
fn whole_bytes(bits: &[u8]) -> Option<&[u8]> {
    match bits.split_first()? {
        (0, bytes) => Some(bytes),
        _ => None,
    }
}

/// The key of `spki` (a SubjectPublicKeyInfo) as text (`RSA 1024-bit`,
/// `ECDSA secp256k1`) when rustls verifies no signature by it: an RSA key
/// outside 2048 to 8192 bits, or an algorithm none of the provider's
/// verification algorithms takes (webpki matches the key's algorithm
/// identifier, curve included, as these do). A CA with such a key loads
/// and every certificate it issued is refused in the handshake, with
/// nothing naming the CA. `None` for a key rustls verifies with, or DER
/// this does not read.
pub(super) fn unverifiable_key(spki: &[u8]) -> Option<String> {
    let (SEQUENCE, spki, _, []) = element(spki)? else {
        return None;
    };
    let (SEQUENCE, key_alg, _, rest) = element(spki)? else {
        return None;
    };
    let (BIT_STRING, key, _, []) = element(rest)? else {
        return None;
    };
    let provider = crate::tls::provider::get();
    let verified = provider
        .signature_verification_algorithms
        .all
        .iter()
        .any(|a| a.public_key_alg_id().as_ref() == key_alg);
    if key_alg.starts_with(RSA_ENCRYPTION) {
        let bits = rsa_modulus_bits(whole_bytes(key)?)?;
        return (!verified || !(2048..=8192).contains(&bits)).then(|| format!("RSA {bits}-bit"));
    }
    if verified {
        return None;
    }
    let (OID, oid, _, params) = element(key_alg)? else {
        return None;
    };
    let curve = element(params).map(|(_, curve, _, _)| curve);
    Some(match (oid, curve) {
        ([0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], _) => "DSA".into(),
        ([0x2b, 0x65, 0x71], _) => "Ed448".into(),
        ([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a], _) => "RSA-PSS".into(),
        ([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], Some([0x2b, 0x81, 0x04, 0x00, 0x0a])) => {
            "ECDSA secp256k1".into()
        }
        ([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], _) => "ECDSA (a curve not supported)".into(),
        _ => "unknown-algorithm".into(),
    })
}

/// Whether `signed` (a certificate or a CRL: the signed part, its
/// signature algorithm and its signature) is signed by the key of `spki`
/// (a SubjectPublicKeyInfo), with one of the algorithms rustls verifies
/// peers with, matched on both algorithm identifiers as webpki matches
/// them.
pub(crate) fn signed_by(signed: &[u8], spki: &[u8]) -> bool {
    verifies(signed, spki).unwrap_or(false)
}

/// The parts a signature check reads: of the signed DER, the signed part,
/// its signature algorithm (the AlgorithmIdentifier's contents) and the
/// signature; of the SubjectPublicKeyInfo, the key's algorithm and the key.
struct Parts<'a> {
    tbs: &'a [u8],
    signature_alg: &'a [u8],
    signature: &'a [u8],
    key_alg: &'a [u8],
    key: &'a [u8],
}

/// The [`Parts`] of `signed` (a certificate or a CRL) and `spki`; `None`
/// for DER this does not read.
fn parts<'a>(signed: &'a [u8], spki: &'a [u8]) -> Option<Parts<'a>> {
    let (SEQUENCE, body, _, []) = element(signed)? else {
        return None;
    };
    let (SEQUENCE, _, tbs, rest) = element(body)? else {
        return None;
    };
    let (SEQUENCE, signature_alg, _, rest) = element(rest)? else {
        return None;
    };
    let (BIT_STRING, signature, _, []) = element(rest)? else {
        return None;
    };
    let (SEQUENCE, spki, _, []) = element(spki)? else {
        return None;
    };
    let (SEQUENCE, key_alg, _, rest) = element(spki)? else {
        return None;
    };
    let (BIT_STRING, key, _, []) = element(rest)? else {
        return None;
    };
    let (signature, key) = (whole_bytes(signature)?, whole_bytes(key)?);
    Some(Parts {
        tbs,
        signature_alg,
        signature,
        key_alg,
        key,
    })
}

/// [`signed_by`], `None` when it cannot tell: DER it does not read,
/// algorithms rustls does not verify with (a SHA-1 signature), or an RSA
/// key of a size it does not take (1024 or 16384 bits).
fn verifies(signed: &[u8], spki: &[u8]) -> Option<bool> {
    let Parts {
        tbs,
        signature_alg,
        signature,
        key_alg,
        key,
    } = parts(signed, spki)?;
    // rustls verifies with RSA keys of 2048 to 8192 bits alone (webpki's
    // RSA_*_2048_8192_* and RSA_PKCS1_3072_8192_SHA384, matched on the
    // same identifiers): another size is refused whatever the signature.
    if key_alg.starts_with(RSA_ENCRYPTION) && !(2048..=8192).contains(&rsa_modulus_bits(key)?) {
        return None;
    }
    let provider = crate::tls::provider::get();
    provider
        .signature_verification_algorithms
        .all
        .iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == signature_alg
                && a.public_key_alg_id().as_ref() == key_alg
        })
        .map(|a| a.verify_signature(key, tbs, signature).is_ok())
        .reduce(|a, b| a || b)
}

/// The PKCS#1 v1.5 RSA signature algorithms (sha1-, sha256- and
/// sha512WithRSAEncryption) and aws-lc-rs's verification of each with a
/// key of 1024 to 8192 bits, which rustls does not do under 2048.
const LEGACY_RSA: [(&[u8], &aws_lc_rs::signature::RsaParameters); 3] = {
    use aws_lc_rs::signature as sig;
    [
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
            &sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
            &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        ),
    ]
};

/// A signature family: the key algorithms of its keys, and its signature
/// algorithms, each an OID's contents that stands for itself and every
/// OID under it (a byte under 0x80 ends a subidentifier, so an OID under
/// an arc starts with the arc's bytes and no other does).
struct Family {
    keys: &'static [&'static [u8]],
    signatures: &'static [&'static [u8]],
}

/// The signature families whose signature algorithms a key of another
/// family cannot have made (ecdsa-with-SHA256 by a DSA key). An OID none
/// of them holds tells nothing.
const FAMILIES: [Family; 5] = [
    // rsaEncryption and RSASSA-PSS; the PKCS #1 arc
    // (1.2.840.113549.1.1: md5-, sha1-, sha256WithRSAEncryption, PSS ...),
    // OIW's md4WithRSA, md5WithRSA, md4WithRSAEncryption and
    // sha1WithRSASignature (1.3.14.3.2.2-4, .29), NIST's
    // id-rsassa-pkcs1-v1_5-with-sha3-* (2.16.840.1.101.3.4.3.13-16).
    Family {
        keys: &[
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
        ],
        signatures: &[
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01],
            &[0x2b, 0x0e, 0x03, 0x02, 0x02],
            &[0x2b, 0x0e, 0x03, 0x02, 0x03],
            &[0x2b, 0x0e, 0x03, 0x02, 0x04],
            &[0x2b, 0x0e, 0x03, 0x02, 0x1d],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0d],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0e],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0f],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x10],
        ],
    },
    // id-ecPublicKey, whatever its curve; ecdsa-with-* (1.2.840.10045.4),
    // NIST's id-ecdsa-with-sha3-* (2.16.840.1.101.3.4.3.9-12).
    Family {
        keys: &[&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]],
        signatures: &[
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x09],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0a],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0b],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x0c],
        ],
    },
    // id-dsa and OIW's dsa key (1.3.14.3.2.12); id-dsa-with-sha1
    // (1.2.840.10040.4.3), OIW's dsaWithSHA and dsaWithSHA1
    // (1.3.14.3.2.13, .27), NIST's dsa-with-sha224 ... and
    // id-dsa-with-sha3-* (2.16.840.1.101.3.4.3.1-8).
    Family {
        keys: &[
            &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01],
            &[0x2b, 0x0e, 0x03, 0x02, 0x0c],
        ],
        signatures: &[
            &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03],
            &[0x2b, 0x0e, 0x03, 0x02, 0x0d],
            &[0x2b, 0x0e, 0x03, 0x02, 0x1b],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x01],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x03],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x04],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x05],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x06],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x07],
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x08],
        ],
    },
    // Ed25519 (1.3.101.112): the key's algorithm is its signature's.
    Family {
        keys: &[&[0x2b, 0x65, 0x70]],
        signatures: &[&[0x2b, 0x65, 0x70]],
    },
    // Ed448 (1.3.101.113), likewise.
    Family {
        keys: &[&[0x2b, 0x65, 0x71]],
        signatures: &[&[0x2b, 0x65, 0x71]],
    },
];

/// The index in [`FAMILIES`] of the family whose `of` (its keys or its
/// signatures) holds `oid`; `None` for an OID none of them holds.
fn family(oid: &[u8], of: fn(&Family) -> &[&[u8]]) -> Option<usize> {
    FAMILIES
        .iter()
        .position(|f| of(f).iter().any(|arc| oid.starts_with(arc)))
}

/// [`verifies`], and also by an RSA key of 1024 to 2047 bits with
/// [`LEGACY_RSA`]: whether a CA whose key rustls verifies nothing by
/// signed `signed`, which no handshake checks but a warning about that CA
/// names. A signature of another family than the key's (ECDSA by an RSA
/// or a DSA key, RSA by an Ed448 one) is not its. `None` when none of
/// that tells: a key or signature algorithm of no family known here, a
/// DSA, Ed448 or secp256k1 key's signature of its own family, an RSA key
/// under 1024 bits or over 8192, an RSA signature other than PKCS #1
/// v1.5 with SHA-1, SHA-256 or SHA-512 of the PKCS #1 arc (SHA-384, MD5,
/// SHA-3, PSS, OIW's sha1WithRSASignature).
fn verifies_any(signed: &[u8], spki: &[u8]) -> Option<bool> {
    if let Some(verdict) = verifies(signed, spki) {
        return Some(verdict);
    }
    let p = parts(signed, spki)?;
    let (OID, key_oid, _, _) = element(p.key_alg)? else {
        return None;
    };
    let (OID, oid, _, params) = element(p.signature_alg)? else {
        return None;
    };
    if family(key_oid, |f| f.keys)? != family(oid, |f| f.signatures)? {
        return Some(false);
    }
    if !p.key_alg.starts_with(RSA_ENCRYPTION)
        || !(1024..=8192).contains(&rsa_modulus_bits(p.key)?)
        || !matches!(params, [] | [0x05, 0x00])
    {
        return None;
    }
    let (_, alg) = LEGACY_RSA.iter().find(|(o, _)| *o == oid)?;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(*alg, p.key);
    Some(key.verify(p.tbs, p.signature).is_ok())
}

/// Whether `cert` (its DER `der`) was issued by the CA certificate `ca`:
/// it names `ca`'s subject as its issuer and, told by key rather than by
/// name (a CA re-keyed under the same name, the old key beside the new),
/// its authority key identifier is `ca`'s subject key identifier when both
/// have one, else `ca`'s key verifies its signature ([`verifies_any`]).
/// `None` when only the name tells: no key identifiers to compare, and a
/// key or algorithm whose signature is not checked here.
pub(super) fn issued_by(
    cert: &x509_parser::prelude::X509Certificate<'_>,
    der: &[u8],
    ca: &x509_parser::prelude::X509Certificate<'_>,
) -> Option<bool> {
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Some(false);
    }
    if let ((Some(aki), _), (_, Some(ski))) = (key_ids(cert), key_ids(ca)) {
        return Some(aki == ski);
    }
    verifies_any(der, ca.public_key().raw)
}

/// Whether the leaf `chain[0]` fails to verify against every issuer the
/// chain holds for it, told by key identifier, not by name alone (an
/// intermediate re-keyed under the same name, another cert of the leaf's
/// name): a certificate after it whose subject is the leaf's issuer and
/// whose subject key identifier is the leaf's authority key identifier,
/// or the leaf itself when it says it is self-signed (its issuer its
/// subject, its authority key identifier its own). `false` when the leaf
/// has no authority key identifier, there is no such issuer, or any
/// cannot be told (an algorithm rustls does not verify, an RSA key of a
/// size it does not take).
pub(super) fn leaf_signature_fails(chain: &[rustls_pki_types::CertificateDer<'_>]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Some((leaf_der, rest)) = chain.split_first() else {
        return false;
    };
    let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
        return false;
    };
    let (Some(aki), ski) = key_ids(&leaf) else {
        return false;
    };
    let issuer = leaf.issuer().as_raw();
    let mut spkis: Vec<&[u8]> = rest
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok())
        .filter(|(_, c)| c.subject().as_raw() == issuer && key_ids(c).1 == Some(aki))
        .map(|(_, c)| c.tbs_certificate.subject_pki.raw)
        .collect();
    if leaf.subject().as_raw() == issuer && ski == Some(aki) {
        spkis.push(leaf.public_key().raw);
    }
    fails_under_each(leaf_der, spkis)
}

/// Whether `signed` (a certificate or a CRL) is told not to be signed by
/// any key of `spkis`: there is one, and each verdict is a failure (none
/// that cannot be told: an algorithm rustls does not verify with, an RSA
/// key of a size it does not take).
pub(super) fn fails_under_each<'a>(
    signed: &[u8],
    spkis: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    let verdicts: Vec<Option<bool>> = spkis.into_iter().map(|k| verifies(signed, k)).collect();
    !verdicts.is_empty() && verdicts.iter().all(|v| *v == Some(false))
}

/// A certificate's authority key identifier (its keyIdentifier) and
/// subject key identifier.
pub(super) fn key_ids<'a>(
    cert: &'a x509_parser::prelude::X509Certificate<'_>,
) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
    use x509_parser::prelude::ParsedExtension;
    let (mut aki, mut ski) = (None, None);
    for e in cert.extensions() {
        match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0)
            }
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0),
            _ => {}
        }
    }
    (aki, ski)
}

/// Whether the certificate `der` requires OCSP stapling (Must-Staple): a
/// TLS Feature extension (1.3.6.1.5.5.7.1.24) that asks for
/// `status_request`, as `certbot --must-staple` writes it.
pub(super) fn must_staple(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.24" && asks_status_request(e.value))
}

/// Whether a TLS Feature extension's value (RFC 7633: a SEQUENCE of
/// INTEGERs) asks for `status_request` (5).
fn asks_status_request(value: &[u8]) -> bool {
    let Some((SEQUENCE, mut features, _, _)) = element(value) else {
        return false;
    };
    while let Some((tag, contents, _, rest)) = element(features) {
        if tag == INTEGER && contents == [5] {
            return true;
        }
        features = rest;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_long_and_past_the_end() {
        assert_eq!(
            element(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[0x05][..], &[0x02, 0x01, 0x05][..], &[0xff][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7; 0x80]);
        let (_, contents, _, rest) = element(&long).unwrap();
        assert_eq!((contents.len(), rest.len()), (0x80, 0));
        assert_eq!(element(&[0x04, 0x02, 0x00]), None);
        assert_eq!(element(&[0x04, 0x80]), None);
        assert_eq!(element(&[0x1f, 0x01, 0x00]), None);
    }

    #[test]
    fn an_rsa_modulus_is_counted_in_bits_past_its_sign_byte() {
        // SEQUENCE { INTEGER 0x00 0x80 0x01, INTEGER 3 }: 16 bits.
        let key = [0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key), Some(16));
        let key = [0x30, 0x07, 0x02, 0x02, 0x05, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key), Some(11));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }

    #[test]
    fn status_request_among_the_features() {
        assert!(asks_status_request(&[0x30, 0x03, 0x02, 0x01, 0x05]));
        assert!(asks_status_request(&[
            0x30, 0x06, 0x02, 0x01, 0x11, 0x02, 0x01, 0x05
        ]));
        // status_request_v2 (17) alone is not Must-Staple as browsers read it.
        assert!(!asks_status_request(&[0x30, 0x03, 0x02, 0x01, 0x11]));
        assert!(!asks_status_request(&[0x30, 0x00]));
        assert!(!asks_status_request(&[]));
    }

    #[test]
    fn a_signature_is_checked_against_the_signer_s_key_only() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};
        let ca_key = KeyPair::generate().unwrap();
        let ca_spki = ca_key.subject_public_key_info();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = Issuer::new(ca, ca_key);
        let leaf = CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        let other = KeyPair::generate().unwrap();
        assert!(signed_by(leaf.der(), &ca_spki));
        assert!(!signed_by(leaf.der(), &other.subject_public_key_info()));
        let mut tampered = leaf.der().to_vec();
        let at = tampered.len() / 2;
        tampered[at] ^= 1;
        assert!(!signed_by(&tampered, &ca_spki));
    }
}
