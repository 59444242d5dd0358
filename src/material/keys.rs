//! What a private key is (algorithm, size), for the error when hotproxy cannot sign with it.

use rustls_pki_types::PrivateKeyDer;

use super::pem::MaterialError;

/// The keys hotproxy signs with (rustls on aws-lc-rs).
pub const SUPPORTED: &str = "RSA 2048-8192 bits, ECDSA P-256/P-384/P-521 or Ed25519";

/// Why `key` (which the signing provider refused with `refused`) cannot be
/// used. A well-formed key of an algorithm or size the provider does not
/// take is named as such (`RSA 1024-bit`, `RSA-PSS`, multi-prime RSA),
/// with what is supported: "failed to parse private key" read as a
/// corrupt file. A whole key of another kind under the label (a PKCS#1
/// RSA key under `PRIVATE KEY`, a PKCS#8 one under `EC PRIVATE KEY`) is
/// said not to be what the label names; a key whose DER reads as no kind
/// (cut short, a byte flipped) is said not to parse, so that neither is
/// taken for the other.
pub fn refusal(key: &PrivateKeyDer<'_>, refused: &str) -> String {
    judged(key, refused).0
}

/// The error for `key`, read from `origin` and refused by the signing
/// provider with `refused`, in [`refusal`]'s words. A key whose DER reads
/// as no kind, or as a kind taken whose values do not hold together, is
/// what a writer that does not truncate (`rsync --inplace`, `dd
/// conv=notrunc`) leaves read half-way over a key: cut short or followed
/// by the old key's tail (another length), the new private key with the
/// old one's public key (the same). It is [`MaterialError::Torn`], waited
/// on. A kind or size not supported, or another kind's whole key under
/// the label, is no writer's step: [`MaterialError::BadKey`], at once.
pub fn refused(origin: &str, key: &PrivateKeyDer<'_>, refused: &str) -> MaterialError {
    let (reason, torn) = judged(key, refused);
    match torn {
        true => MaterialError::Torn {
            origin: origin.into(),
            what: "unusable private key",
            reason,
        },
        false => MaterialError::BadKey {
            origin: origin.into(),
            reason,
        },
    }
}

/// [`refusal`], and whether the key is damaged rather than refused for
/// what it is.
fn judged(key: &PrivateKeyDer<'_>, refused: &str) -> (String, bool) {
    match describe(key) {
        Some((what, false)) => (
            format!("{what} keys are not supported; use {SUPPORTED}"),
            false,
        ),
        // A kind and size the provider takes, refused all the same: its
        // values do not hold together (a flipped byte the DER still reads).
        Some((what, true)) => (
            format!("the key could not be parsed ({what}; damaged or inconsistent): {refused}"),
            true,
        ),
        None => match labelled(key) {
            // Another kind's whole body, the label changed by hand or
            // written so by a tool: what it is named for is not what it
            // holds.
            Some((kind, label, body)) if shape(body).is_some_and(|s| s != label) => (
                format!("its body is not the {kind} key its label ({label}) says: {refused}"),
                false,
            ),
            _ => (
                format!("the key could not be parsed (its DER is damaged or cut short): {refused}"),
                true,
            ),
        },
    }
}

/// The kind a key's label names, the label, and the body under it.
fn labelled<'a>(key: &'a PrivateKeyDer<'_>) -> Option<(&'static str, &'static str, &'a [u8])> {
    match key {
        PrivateKeyDer::Pkcs1(k) => Some(("RSA", RSA_LABEL, k.secret_pkcs1_der())),
        PrivateKeyDer::Pkcs8(k) => Some(("PKCS#8", PKCS8_LABEL, k.secret_pkcs8_der())),
        PrivateKeyDer::Sec1(k) => Some(("EC", SEC1_LABEL, k.secret_sec1_der())),
        _ => None,
    }
}

const RSA_LABEL: &str = "RSA PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

/// The label of the key `der` is whole as (one SEQUENCE, nothing after
/// it), told by its first two fields: an RSAPrivateKey (INTEGER, INTEGER
/// modulus), a PKCS#8 PrivateKeyInfo (INTEGER, SEQUENCE algorithm) or an
/// EC key (INTEGER, OCTET STRING). A damaged key is none of them.
fn shape(der: &[u8]) -> Option<&'static str> {
    let Some((0x30, contents, [])) = tlv(der) else {
        return None;
    };
    match items(contents)?[..] {
        [(INTEGER, _), (INTEGER, _), ..] => Some(RSA_LABEL),
        [(INTEGER, _), (0x30, _), (0x04, _), ..] => Some(PKCS8_LABEL),
        [(INTEGER, _), (0x04, _), ..] => Some(SEC1_LABEL),
        _ => None,
    }
}

/// The key's algorithm and size as text, and whether hotproxy supports
/// that kind; `None` when the DER does not even say, or is not the shape
/// its label names.
fn describe(key: &PrivateKeyDer<'_>) -> Option<(String, bool)> {
    match key {
        PrivateKeyDer::Pkcs1(k) => rsa("RSA", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => {
            // ECPrivateKey: version, privateKey, [0] parameters (the curve).
            let fields = items(seq(k.secret_sec1_der())?)?;
            let [(INTEGER, _), (0x04, _), ..] = fields[..] else {
                return None;
            };
            let curve = fields.iter().find(|(tag, _)| *tag == 0xa0)?;
            let (tag, oid, _) = tlv(curve.1)?;
            (tag == OID).then(|| ec(oid))
        }
        PrivateKeyDer::Pkcs8(k) => {
            // PrivateKeyInfo: version, AlgorithmIdentifier, privateKey.
            // Checked by tag: an RSAPrivateKey's modulus was read as the
            // algorithm.
            let fields = items(seq(k.secret_pkcs8_der())?)?;
            let [(INTEGER, _), (0x30, algorithm), (0x04, key), ..] = fields[..] else {
                return None;
            };
            let id = items(algorithm)?;
            let (_, oid) = *id.first()?;
            match oid {
                RSA_ENCRYPTION => rsa("RSA", key),
                RSASSA_PSS => rsa("RSA-PSS", key).map(|(what, _)| (what, false)),
                EC_PUBLIC_KEY => Some(ec(id.get(1)?.1)),
                ED25519 => Some(("Ed25519".into(), true)),
                ED448 => Some(("Ed448".into(), false)),
                X25519 => Some(("X25519 (key agreement, not signing)".into(), false)),
                DSA => Some(("DSA".into(), false)),
                _ => Some(("unknown-algorithm".into(), false)),
            }
        }
        _ => None,
    }
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const ED448: &[u8] = &[0x2b, 0x65, 0x71];
const X25519: &[u8] = &[0x2b, 0x65, 0x6e];

/// An RSAPrivateKey (version, modulus, ...) as `RSA 1024-bit`; supported
/// from 2048 to 8192 bits, two primes (version 0). `None` unless the
/// version and the modulus are INTEGERs: another body under an RSA label
/// (a PKCS#8 or an EC key) was read as an `RSA 99-bit` key, its second
/// field taken as the modulus.
fn rsa(name: &str, der: &[u8]) -> Option<(String, bool)> {
    let fields = items(seq(der)?)?;
    let [(INTEGER, version), (INTEGER, modulus), ..] = fields[..] else {
        return None;
    };
    // Version 1 is a multi-prime key (`openssl genrsa -primes 3`), whole
    // and valid, which aws-lc refuses (RSA_R_BAD_VERSION): it was called
    // damaged or inconsistent.
    if version == [1] {
        return Some((format!("multi-prime {name}"), false));
    }
    let skip = modulus.iter().take_while(|&&b| b == 0).count();
    let modulus = &modulus[skip..];
    let bits = modulus.len() * 8 - modulus.first()?.leading_zeros() as usize;
    Some((format!("{name} {bits}-bit"), (2048..=8192).contains(&bits)))
}

/// An EC key by its curve's OID.
fn ec(curve: &[u8]) -> (String, bool) {
    match curve {
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => ("ECDSA P-256".into(), true),
        [0x2b, 0x81, 0x04, 0x00, 0x22] => ("ECDSA P-384".into(), true),
        [0x2b, 0x81, 0x04, 0x00, 0x23] => ("ECDSA P-521".into(), true),
        [0x2b, 0x81, 0x04, 0x00, 0x0a] => ("ECDSA secp256k1".into(), false),
        _ => ("ECDSA (an unknown curve)".into(), false),
    }
}

/// One DER value at the start of `b`: its tag, its contents, what follows.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        n => {
            let k = usize::from(n & 0x7f);
            if k == 0 || k > 4 || rest.len() < k {
                return None;
            }
            let len = rest[..k]
                .iter()
                .fold(0usize, |a, &x| a << 8 | usize::from(x));
            (len, &rest[k..])
        }
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The contents of the SEQUENCE at the start of `b`.
fn seq(b: &[u8]) -> Option<&[u8]> {
    let (tag, contents, _) = tlv(b)?;
    (tag == 0x30).then_some(contents)
}

/// Every value in `contents`, as (tag, contents).
fn items(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, value, rest) = tlv(contents)?;
        out.push((tag, value));
        contents = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
