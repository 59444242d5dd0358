//! What `run` warns about at startup, `check` prints as a warning too, passing.

use super::*;

/// [`check_with`] on `cfg`, which passes (exit 0): what it printed.
#[track_caller]
fn passes(cfg: &Path, env: &[(&str, OsString)]) -> String {
    let (code, out) = check_with(cfg, env);
    assert_eq!(code, 0, "{out}");
    out
}

/// An admin token shorter than 16 characters: `run` warns (a `warn!`
/// logged), `check` said nothing (no log subscriber). It prints the
/// warning, naming the token's source, never the token.
#[test]
fn a_short_admin_token_is_a_warning() {
    const TOKEN: &str = "HOTPROXY_CHECK_INPUTS_SHORT_TOKEN";
    let admin =
        format!("admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, token_env: {TOKEN} }}]");
    let (_s, cfg) = scene("public", &admin);
    let out = passes(&cfg, &[(TOKEN, OsString::from("v1ew3r-k3y"))]);
    assert!(
        out.contains(&format!(
            "warning: admin.tokens[0].token_env {TOKEN}: admin token is shorter than 16 \
             characters; use a long random one"
        )),
        "{out}"
    );
    assert!(!out.contains("v1ew3r-k3y"), "{out}");
}

/// An upstream trusting the system's CAs where the system has none (here
/// `SSL_CERT_FILE`, an empty file, and `SSL_CERT_DIR`, an empty
/// directory): `run` warns, `check` said nothing. It prints the warning.
#[test]
fn no_system_ca_certificates_is_a_warning() {
    let upstream = "upstreams:\n  - name: app\n    servers: [\"https://127.0.0.1:8443\"]\n    tls: { ca: { system: true } }";
    let (s, cfg) = scene("public", upstream);
    write(&s.path("empty.pem"), "");
    std::fs::create_dir(s.path("no-certs")).unwrap();
    let env = [
        ("SSL_CERT_FILE", s.path("empty.pem").into_os_string()),
        ("SSL_CERT_DIR", s.path("no-certs").into_os_string()),
    ];
    let out = passes(&cfg, &env);
    assert!(
        out.contains(
            "warning: no system CA certificates found: https upstreams with \
             `ca: { system: true }` will fail verification"
        ),
        "{out}"
    );
}

/// A server pair whose certificate is valid from tomorrow: `run` warns
/// "certificate is not valid yet", `check` warned only of an expired one.
/// It prints the warning with the date.
#[test]
fn a_certificate_not_valid_yet_is_a_warning() {
    let (s, cfg) = scene("public", "");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let from = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    p.not_before = from;
    p.not_after = from + time::Duration::days(30);
    let cert = p.self_signed(&key).unwrap();
    write(&s.path("edge.crt"), &cert.pem());
    write(&s.path("edge.key"), &key.serialize_pem());
    let out = passes(&cfg, &[]);
    let date = from
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        out.contains(&format!(
            "warning: entry listeners.public.tls.certs[0]: certificate CN=localhost is not \
             valid until {date} (loaded anyway)"
        )),
        "{out}"
    );
}

/// A stored entry (created through the admin API) naming files outside
/// `store.file_roots`: `run` warns that it is kept and served, `check`
/// said nothing. It prints the warning, naming the files.
#[test]
fn a_stored_entry_outside_the_file_roots_is_a_warning() {
    let store = "store: { path: data/store.json, key_file: data/store.key, file_roots: [allowed] }";
    let (s, cfg) = scene("public", store);
    std::fs::create_dir(s.path("allowed")).unwrap();
    std::fs::create_dir(s.path("other")).unwrap();
    s.pair(
        "other/stored",
        &TestCa::new("ca").server_pair(&["stored.localhost"]),
    );
    let (crt, key) = (s.path("other/stored.crt"), s.path("other/stored.key"));
    let def = serde_json::json!({
        "type": "server-pair",
        "source": "file",
        "cert_file": crt,
        "key_file": key,
    });
    let spec = serde_json::from_value::<hotproxy::material::store::Definition>(def)
        .unwrap()
        .into_spec("stored")
        .unwrap();
    let store = hotproxy::config::StoreConfig {
        path: s.path("data/store.json"),
        key_file: s.path("data/store.key"),
        file_roots: None,
    };
    let (store, none) = hotproxy::material::store::Store::open(&store).unwrap();
    assert!(none.is_empty());
    store.save(&[spec]).unwrap();
    let out = passes(&cfg, &[]);
    assert!(
        out.contains(&format!(
            "warning: stored entry stored names files outside store.file_roots ({}, {}): it \
             is kept and served, a PUT to it is refused, DELETE it to drop it",
            crt.display(),
            key.display()
        )),
        "{out}"
    );
}

/// An upstream's CA bundle holding an RSA-1024 root (`openssl req
/// -x509`) beside a P-256 one: it loaded silently and `check` passed,
/// then every upstream certificate that root issued was refused in the
/// handshake (`unknown_ca`), nothing naming the CA. `check` warns,
/// naming the file, the certificate and its key; the P-256 root and a
/// bundle of it alone draw no such warning.
#[test]
fn a_ca_whose_key_rustls_verifies_nothing_by_is_a_warning() {
    let upstream = "certs:\n  - { id: ca, type: ca-bundle, ca_file: ca.pem }\nupstreams:\n  - name: api\n    servers: [https://127.0.0.1:9443]\n    tls: { ca: { ref: ca } }";
    let (s, cfg) = scene("public", upstream);
    let good = TestCa::new("good root").cert_pem;
    write(&s.path("ca.pem"), &good);
    let out = passes(&cfg, &[]);
    assert!(!out.contains("verifies no signature"), "{out}");

    let (weak_key, weak_cert) = (s.path("weak.key"), s.path("weak.crt"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=weak root", "-keyout"])
        .arg(&weak_key)
        .arg("-out")
        .arg(&weak_cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl on PATH");
    assert!(status.success());
    let weak = std::fs::read_to_string(&weak_cert).unwrap();
    write(&s.path("ca.pem"), &format!("{weak}{good}"));
    let out = passes(&cfg, &[]);
    assert!(
        out.contains(&format!(
            "warning: entry ca: {}: certificate 1 (CN=weak root): RSA 1024-bit key; rustls \
             verifies no signature by it: every certificate it issued is refused",
            s.path("ca.pem").display()
        )),
        "{out}"
    );
    assert!(!out.contains("certificate 2 (CN=good root)"), "{out}");
}

/// The RSA-1024 root beside a P-256 intermediate it issued, both in the
/// bundle: the intermediate is a trust anchor itself, so what it issues
/// is accepted without the root's key, and "every certificate it issued
/// is refused" was not true (the intermediate's were served). The
/// warning names the CAs the bundle holds under it as accepted and says
/// any other certificate the root issued is refused.
#[test]
fn a_weak_ca_over_an_anchor_of_the_bundle_is_worded_so() {
    let upstream = "certs:\n  - { id: ca, type: ca-bundle, ca_file: ca.pem }\nupstreams:\n  - name: api\n    servers: [https://127.0.0.1:9443]\n    tls: { ca: { ref: ca } }";
    let (s, cfg) = scene("public", upstream);
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(s.dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl on PATH");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=weak root",
        "-keyout",
        "weak.key",
        "-out",
        "weak.crt",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=strong intermediate",
        "-keyout",
        "mid.key",
        "-out",
        "mid.csr",
    ]);
    write(
        &s.path("mid.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "mid.csr",
        "-CA",
        "weak.crt",
        "-CAkey",
        "weak.key",
        "-set_serial",
        "2",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "mid.ext",
        "-out",
        "mid.crt",
    ]);
    let read = |f: &str| std::fs::read_to_string(s.path(f)).unwrap();
    write(&s.path("ca.pem"), &(read("weak.crt") + &read("mid.crt")));
    let out = passes(&cfg, &[]);
    assert!(
        out.contains(&format!(
            "warning: entry ca: {}: certificate 1 (CN=weak root): RSA 1024-bit key; rustls \
             verifies no signature by it: the CAs it issued that this bundle holds \
             (certificate 2 (CN=strong intermediate)) are trust anchors themselves, what \
             they issue is accepted; any other certificate it issued is refused",
            s.path("ca.pem").display()
        )),
        "{out}"
    );
    assert!(!out.contains("every certificate it issued"), "{out}");
}

/// A root re-keyed under its name, the old RSA-1024 `CN=root` kept beside
/// its P-256 successor `CN=root`, and an intermediate the new key issued
/// (with key identifiers, as `openssl x509 -req` writes them): the
/// warning named the intermediate as issued by the weak root, whose name
/// is its issuer's ("the CAs it issued that this bundle holds
/// (certificate 3 (CN=issuing CA))"), though the old key never signed
/// it. What issued it is told by key: the warning says every certificate
/// the weak root issued is refused, and names no CA of the new key.
#[test]
fn a_weak_ca_does_not_name_what_its_re_keyed_successor_issued() {
    let upstream = "certs:\n  - { id: ca, type: ca-bundle, ca_file: ca.pem }\nupstreams:\n  - name: api\n    servers: [https://127.0.0.1:9443]\n    tls: { ca: { ref: ca } }";
    let (s, cfg) = scene("public", upstream);
    let openssl = |args: &str| {
        let status = Command::new("openssl")
            .current_dir(s.dir.path())
            .args(args.split(' '))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl on PATH");
        assert!(status.success(), "openssl {args}");
    };
    openssl(
        "req -x509 -newkey rsa:1024 -nodes -days 30 -subj /CN=root -keyout old.key -out old.crt",
    );
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {p256} -days 30 -subj /CN=root -keyout new.key -out new.crt"
    ));
    openssl(&format!(
        "req -new {p256} -subj /CN=issuing-CA -keyout mid.key -out mid.csr"
    ));
    write(
        &s.path("mid.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    openssl(
        "x509 -req -in mid.csr -CA new.crt -CAkey new.key -set_serial 2 -days 30 -sha256 \
         -extfile mid.ext -out mid.crt",
    );
    let read = |f: &str| std::fs::read_to_string(s.path(f)).unwrap();
    let bundle = read("old.crt") + &read("new.crt") + &read("mid.crt");
    write(&s.path("ca.pem"), &bundle);
    let out = passes(&cfg, &[]);
    assert!(
        out.contains(&format!(
            "warning: entry ca: {}: certificate 1 (CN=root): RSA 1024-bit key; rustls \
             verifies no signature by it: every certificate it issued is refused",
            s.path("ca.pem").display()
        )),
        "{out}"
    );
    assert!(!out.contains("certificate 3 (CN=issuing-CA)"), "{out}");
}
