//! The test PKI, generated at runtime (rcgen): CAs, server and client pairs, CRLs, fingerprints.

use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// SHA-256 of DER as lowercase hex (what the proxy reports as fingerprints).
pub fn fingerprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A test certificate authority, generated at runtime.
pub struct TestCa {
    pub cert_pem: String,
    /// The CA certificate's serial (what a CRL of its issuer revokes).
    pub serial: u64,
    issuer: Issuer<'static, KeyPair>,
    next_serial: Mutex<u64>,
}

/// A certificate with its key.
#[derive(Clone)]
pub struct TestPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub fingerprint: String,
    pub serial: u64,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.key_identifier_method = KeyIdMethod::Sha256;
        // Random, as rcgen's default, but known: a CRL may revoke it.
        let mut bytes = [0u8; 8];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        let serial = u64::from_be_bytes(bytes) >> 1;
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            serial,
            issuer: Issuer::new(p, key),
            next_serial: Mutex::new(1000),
        }
    }

    /// A server pair whose certificate requires OCSP stapling: the TLS
    /// Feature extension (RFC 7633) with `status_request`, as `certbot
    /// --must-staple` asks for.
    pub fn must_staple_server_pair(&self, names: &[&str]) -> TestPair {
        // id-pe-tlsfeature: SEQUENCE { INTEGER 5 }.
        let feature = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        );
        let usage = ExtendedKeyUsagePurpose::ServerAuth;
        self.issue_with(names[0], names, usage, false, &[], vec![feature])
    }

    /// An intermediate CA named `name` issued by this CA (`cert_pem`
    /// holds its certificate alone).
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.key_identifier_method = KeyIdMethod::Sha256;
        let serial = self.take_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            serial,
            issuer: Issuer::new(p, key),
            next_serial: Mutex::new(1000),
        }
    }

    /// This CA's private key, PEM (PKCS#8): for a CRL another tool
    /// (`openssl ca -gencrl`) signs.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn take_serial(&self) -> u64 {
        let mut s = self.next_serial.lock().unwrap();
        *s += 1;
        *s
    }

    fn issue(
        &self,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
        uris: &[&str],
    ) -> TestPair {
        self.issue_with(cn, names, usage, expired, uris, Vec::new())
    }

    fn issue_with(
        &self,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
        uris: &[&str],
        extensions: Vec<rcgen::CustomExtension>,
    ) -> TestPair {
        let key = KeyPair::generate().unwrap();
        self.issue_params(key, cn, names, vec![usage], expired, uris, extensions, &[])
    }

    /// A server pair for `names` whose keyUsage extension holds `usages`
    /// (every other pair has no keyUsage extension at all).
    pub fn server_pair_with_key_usages(
        &self,
        names: &[&str],
        usages: &[KeyUsagePurpose],
    ) -> TestPair {
        let usage = ExtendedKeyUsagePurpose::ServerAuth;
        let key = KeyPair::generate().unwrap();
        self.issue_params(
            key,
            names[0],
            names,
            vec![usage],
            false,
            &[],
            Vec::new(),
            usages,
        )
    }

    /// A pair for `names` whose extendedKeyUsage lists `usages`, in order.
    pub fn server_pair_with_extended_key_usages(
        &self,
        names: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> TestPair {
        let key = KeyPair::generate().unwrap();
        self.issue_params(key, names[0], names, usages, false, &[], Vec::new(), &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_params(
        &self,
        key: KeyPair,
        cn: &str,
        names: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
        expired: bool,
        uris: &[&str],
        extensions: Vec<rcgen::CustomExtension>,
        key_usages: &[KeyUsagePurpose],
    ) -> TestPair {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        for u in uris {
            p.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*u).unwrap(),
            ));
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = usages;
        p.key_usages = key_usages.to_vec();
        p.custom_extensions = extensions;
        // An authority key identifier naming this CA's key, as every CA
        // writes one (`openssl ca`, Let's Encrypt).
        p.use_authority_key_identifier_extension = true;
        let serial = self.take_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        if expired {
            p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TestPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            fingerprint: fingerprint(cert.der()),
            serial,
        }
    }

    /// `pair` renewed for `names` with its key reused: a new serial and
    /// signature (ECDSA: of one length or another, by a byte or two).
    pub fn renewed(&self, pair: &TestPair, names: &[&str]) -> TestPair {
        let key = KeyPair::from_pem(&pair.key_pem).unwrap();
        let usage = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_params(key, names[0], names, usage, false, &[], Vec::new(), &[])
    }

    /// `pair` [`renewed`](Self::renewed) to the same DER length (issued
    /// again until it matches), as a renewal of the same shape. Both are
    /// under 64 KiB (headers of 4 bytes).
    pub fn renewed_same_length(&self, pair: &TestPair, names: &[&str]) -> TestPair {
        for _ in 0..100 {
            let next = self.renewed(pair, names);
            // The signed part of one length too (its header): the two
            // differ in their serial and signature alone, spliced anywhere.
            if next.der.len() == pair.der.len() && next.der[..8] == pair.der[..8] {
                return next;
            }
        }
        panic!("no renewal of the same length in 100 tries");
    }

    pub fn server_pair(&self, names: &[&str]) -> TestPair {
        self.issue(
            names[0],
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
            &[],
        )
    }

    /// `p` with the next serial, signed by this CA for `key`.
    fn signed_with_serial(&self, mut p: CertificateParams, key: KeyPair) -> TestPair {
        let serial = self.take_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TestPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            fingerprint: fingerprint(cert.der()),
            serial,
        }
    }

    /// A server pair whose SANs are `names`, each a DNS name as written
    /// (`server_pair` makes an IP address an IP SAN): `DNS:10.0.0.5`.
    pub fn server_pair_with_dns_sans(&self, names: &[&str]) -> TestPair {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        for n in names {
            let name = rcgen::string::Ia5String::try_from(*n).unwrap();
            p.subject_alt_names.push(rcgen::SanType::DnsName(name));
        }
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        self.signed_with_serial(p, key)
    }

    pub fn expired_server_pair(&self, names: &[&str]) -> TestPair {
        self.issue(
            names[0],
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
            &[],
        )
    }

    /// A server pair named by DNS `names` and, besides, the URI SANs
    /// `uris` (a workload certificate that also carries its SPIFFE ID).
    pub fn server_pair_with_uris(&self, names: &[&str], uris: &[&str]) -> TestPair {
        self.issue(
            names[0],
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
            uris,
        )
    }

    /// A server pair with a 2048-bit RSA key (every other pair's is ECDSA
    /// P-256), named by DNS `names` and URI `uris`: the RSA half of a name
    /// served with an ECDSA and an RSA certificate.
    pub fn rsa_server_pair(&self, names: &[&str], uris: &[&str]) -> TestPair {
        let usage = ExtendedKeyUsagePurpose::ServerAuth;
        self.issue_params(
            rsa_key(),
            names[0],
            names,
            vec![usage],
            false,
            uris,
            Vec::new(),
            &[],
        )
    }

    /// A SPIFFE X.509-SVID: a server pair named only by the URI SAN `id`
    /// (no DNS name, no subject CN), as SPIRE and csi-driver-spiffe issue.
    pub fn svid(&self, id: &str) -> TestPair {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(id).unwrap(),
        )];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.signed_with_serial(p, key)
    }

    /// A pair for `names` whose extendedKeyUsage is clientAuth alone: what
    /// a client certificate issued by mistake for a server's names is.
    pub fn client_auth_pair_for(&self, names: &[&str]) -> TestPair {
        let usage = ExtendedKeyUsagePurpose::ClientAuth;
        self.issue(names[0], names, usage, false, &[])
    }

    /// A pair for `names` whose extendedKeyUsage is anyExtendedKeyUsage
    /// alone.
    pub fn any_purpose_pair_for(&self, names: &[&str]) -> TestPair {
        let usage = ExtendedKeyUsagePurpose::Any;
        self.issue(names[0], names, usage, false, &[])
    }

    pub fn client_pair(&self, cn: &str) -> TestPair {
        self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, false, &[])
    }

    /// A client of this (issuing) CA with its chain: the leaf, then this
    /// CA's certificate.
    pub fn client_with_chain(&self, cn: &str) -> TestPair {
        let mut pair = self.client_pair(cn);
        pair.cert_pem.push_str(&self.cert_pem);
        pair
    }

    /// A CRL from this CA revoking `revoked`.
    pub fn crl(&self, revoked: &[&TestPair]) -> String {
        let now = time::OffsetDateTime::now_utc();
        self.crl_until(revoked, now + time::Duration::days(1))
    }

    /// A CRL revoking `revoked` whose nextUpdate is `next_update` (in the
    /// past for a stale CRL); issued a week before that, or a minute ago.
    pub fn crl_until(&self, revoked: &[&TestPair], next_update: time::OffsetDateTime) -> String {
        let now = time::OffsetDateTime::now_utc();
        let serials: Vec<u64> = revoked.iter().map(|p| p.serial).collect();
        let this_update =
            (next_update - time::Duration::days(7)).min(now - time::Duration::minutes(1));
        self.crl_of(&serials, this_update, next_update, 1)
    }

    /// A CRL revoking the certificates of `serials` (CA certificates too),
    /// issued a minute ago, valid for a day.
    pub fn crl_of_serials(&self, serials: &[u64]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let (this_update, next_update) = (
            now - time::Duration::minutes(1),
            now + time::Duration::days(1),
        );
        self.crl_of(serials, this_update, next_update, 1)
    }

    /// CRL number `number` revoking the certificates of `serials`, issued
    /// at `this_update`, valid until `next_update`.
    pub fn crl_of(
        &self,
        serials: &[u64],
        this_update: time::OffsetDateTime,
        next_update: time::OffsetDateTime,
        number: u64,
    ) -> String {
        self.crl_keyed(
            serials,
            this_update,
            next_update,
            number,
            KeyIdMethod::Sha256,
        )
    }

    /// The same, its authority key identifier made by `key_id` (another
    /// tool's method, or a stand-in for none: rcgen always writes one).
    pub fn crl_keyed(
        &self,
        serials: &[u64],
        this_update: time::OffsetDateTime,
        next_update: time::OffsetDateTime,
        number: u64,
        key_id: KeyIdMethod,
    ) -> String {
        self.crl_params(serials, this_update, next_update, number, key_id, None)
    }

    /// The same as [`TestCa::crl_of`], of one scope: an issuing
    /// distribution point `uri` for end-entity certificates only (a
    /// partitioned CRL, authoritative for a client certificate that names
    /// no distribution point or this one).
    pub fn crl_scoped(
        &self,
        serials: &[u64],
        this_update: time::OffsetDateTime,
        next_update: time::OffsetDateTime,
        number: u64,
        uri: &str,
    ) -> String {
        let users = Some(rcgen::CrlScope::UserCertsOnly);
        self.crl_partition(serials, this_update, next_update, number, uri, users)
    }

    /// The same, its issuing distribution point `uri` for the certificates
    /// of `scope` (`None`: CA and end-entity certificates alike).
    pub fn crl_partition(
        &self,
        serials: &[u64],
        this_update: time::OffsetDateTime,
        next_update: time::OffsetDateTime,
        number: u64,
        uri: &str,
        scope: Option<rcgen::CrlScope>,
    ) -> String {
        let scope = rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: vec![uri.to_owned()],
            },
            scope,
        };
        let key_id = KeyIdMethod::Sha256;
        self.crl_params(
            serials,
            this_update,
            next_update,
            number,
            key_id,
            Some(scope),
        )
    }

    /// A CRL revoking `serial` whose entry's reasonCode is `code`, signed
    /// again after it is set: what a tool writes that takes any value
    /// (x509-parser reads up to 10) where rcgen offers RFC 5280's names
    /// only (7 is unused; webpki refuses it).
    pub fn crl_with_reason(&self, serial: u64, code: u8) -> String {
        use rcgen::SigningKey as _;
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let mut der = params.signed_by(&self.issuer).unwrap().der().to_vec();
        // id-ce-cRLReasons, then its OCTET STRING holding ENUMERATED 1.
        let reason = [0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01];
        let at = der.windows(reason.len()).position(|w| w == reason);
        der[at.unwrap() + reason.len() - 1] = code;
        // CertificateList: SEQUENCE { tbsCertList, signatureAlgorithm,
        // signatureValue }, signed again over the changed tbsCertList.
        let (list, _) = der_element(&der);
        let (tbs, rest) = der_element(&list[header_len(list)..]);
        let (algorithm, _) = der_element(rest);
        let signature = self.issuer.key().sign(tbs).unwrap();
        let bits = der_tlv(0x03, &[&[0][..], &signature].concat());
        let der = der_tlv(0x30, &[tbs, algorithm, &bits].concat());
        pem_of("X509 CRL", &der)
    }

    fn crl_params(
        &self,
        serials: &[u64],
        this_update: time::OffsetDateTime,
        next_update: time::OffsetDateTime,
        number: u64,
        key_id: KeyIdMethod,
        scope: Option<rcgen::CrlIssuingDistributionPoint>,
    ) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: scope,
            revoked_certs: serials
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: key_id,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// The length of the tag and length octets of the DER element at `der`'s start.
fn header_len(der: &[u8]) -> usize {
    match der[1] {
        n if n < 0x80 => 2,
        n => 2 + usize::from(n & 0x7f),
    }
}

/// The DER element at `der`'s start, whole, and what follows it.
fn der_element(der: &[u8]) -> (&[u8], &[u8]) {
    let header = header_len(der);
    let len = match der[1] {
        n if n < 0x80 => usize::from(n),
        _ => der[2..header]
            .iter()
            .fold(0, |len, &b| len << 8 | usize::from(b)),
    };
    der.split_at(header + len)
}

/// A DER element of `tag` holding `content`.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len().to_be_bytes();
    let skip = len.iter().take_while(|&&b| b == 0).count();
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        _ => {
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
    }
    out.extend_from_slice(content);
    out
}

/// Every certificate in a PEM text.
/// A fresh 2048-bit RSA key (aws-lc-rs generates it: rcgen's ring
/// backend cannot).
fn rsa_key() -> KeyPair {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).unwrap()
}

/// `der` as a PEM certificate, 64 characters a line (as OpenSSL writes it).
pub fn certificate_pem(der: &[u8]) -> String {
    pem_of("CERTIFICATE", der)
}

/// `der` as PEM of `label`, 64 characters a line.
fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// The private key in a PEM text.
pub fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The body lines of a PEM (without the BEGIN/END markers): what a leak
/// of that PEM anywhere would contain.
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(str::to_owned)
        .collect()
}

/// A CA certificate webpki cannot take as a trust anchor (basicConstraints
/// twice: x509-parser reads it, webpki refuses it), generated at runtime.
pub fn unusable_anchor_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "twice-constrained");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // basicConstraints (2.5.29.19) again: SEQUENCE { cA TRUE }.
    p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 19],
        vec![0x30, 0x03, 0x01, 0x01, 0xff],
    )];
    p.self_signed(&key).unwrap().pem()
}
