//! Criterion benchmarks of the hot paths: SNI resolution, one entry's reload, header rewriting, client-certificate headers, config parse.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hotproxy::material::{CertInfo, Pair};
use hotproxy::proxy::forward::RequestContext;
use hotproxy::proxy::headers::client_ip_value;
use hotproxy::proxy::headers::rewrite_request_headers;
use hotproxy::reload::{self, Handle};
use hotproxy::tls::server::{ServedPair, SniResolver};
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;

/// One real key shared by every pair: SNI lookup cost does not depend on it.
fn pairs(n: usize) -> Vec<Pair> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bench.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let signing = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(der)
        .unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
    (0..n)
        .map(|i| Pair {
            key: certified.clone(),
            leaf: CertInfo {
                subject: String::new(),
                issuer: String::new(),
                sans: vec![],
                dns_names: vec![
                    format!("host{i}.example.com"),
                    format!("*.w{i}.example.com"),
                ],
                dns_left_out: vec![],
                serial: String::new(),
                not_before: 0,
                not_after: 0,
                fingerprint_sha256: String::new(),
                is_ca: false,
            },
            notes: Vec::new(),
        })
        .collect()
}

fn sni(c: &mut Criterion) {
    let mut g = c.benchmark_group("sni_resolution");
    for n in [1usize, 100, 10_000] {
        let pairs = pairs(n);
        let served: Vec<ServedPair> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| ServedPair {
                entry: if i == 0 { "first" } else { "other" },
                pair: p,
                server_names: None,
            })
            .collect();
        let resolver = SniResolver::new(&served).unwrap();
        let exact = format!("host{}.example.com", n - 1);
        let wildcard = format!("a.w{}.example.com", n / 2);
        g.bench_with_input(BenchmarkId::new("exact", n), &exact, |b, name| {
            b.iter(|| black_box(resolver.resolve_name(Some(black_box(name)))))
        });
        g.bench_with_input(BenchmarkId::new("wildcard", n), &wildcard, |b, name| {
            b.iter(|| black_box(resolver.resolve_name(Some(black_box(name)))))
        });
        g.bench_with_input(
            BenchmarkId::new("unknown", n),
            "nope.example.org",
            |b, name| b.iter(|| black_box(resolver.resolve_name(Some(black_box(name))))),
        );
    }
    g.finish();
}

/// PEM of one leaf and its key.
struct PemPair {
    cert: String,
    key: String,
    der: Vec<u8>,
}

/// A CA and one leaf key shared by every certificate: signing 10,000 leaves
/// takes a second, generating 10,000 keys would add nothing to what is
/// measured (each entry still parses, loads and checks its own key).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    leaf_key: rcgen::KeyPair,
    serial: std::cell::Cell<u64>,
}

impl Pki {
    fn new() -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = p.self_signed(&key).unwrap().pem();
        Pki {
            ca_pem,
            issuer: rcgen::Issuer::new(p, key),
            leaf_key: rcgen::KeyPair::generate().unwrap(),
            serial: std::cell::Cell::new(1),
        }
    }

    fn leaf(&self, name: &str) -> PemPair {
        let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        self.serial.set(self.serial.get() + 1);
        p.serial_number = Some(rcgen::SerialNumber::from(self.serial.get()));
        let cert = p.signed_by(&self.leaf_key, &self.issuer).unwrap();
        PemPair {
            cert: cert.pem(),
            key: self.leaf_key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn host(i: usize) -> String {
    format!("host{i}.example.com")
}

fn write_pair(dir: &Path, i: usize, p: &PemPair) {
    std::fs::write(dir.join(format!("e{i}.crt")), &p.cert).unwrap();
    std::fs::write(dir.join(format!("e{i}.key")), &p.key).unwrap();
}

/// The real reloader (`reload::start`) serving `n` server-pair entries,
/// each on its own files, all on one listener. No watcher activity: the
/// bench drives the reload itself, through the call the watcher's
/// `Changed(entry)` makes.
struct Catalogue {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    handle: Handle,
    addr: std::net::SocketAddr,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn catalogue(rt: &tokio::runtime::Runtime, pki: &Pki, n: usize) -> Catalogue {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut yaml = String::from("watch: { events: false, poll_interval: 1h }\ncerts:\n");
    let mut refs = String::new();
    for i in 0..n {
        write_pair(&dir, i, &pki.leaf(&host(i)));
        yaml.push_str(&format!(
            "  - {{ id: e{i}, type: server-pair, cert_file: e{i}.crt, key_file: e{i}.key }}\n"
        ));
        refs.push_str(&format!("        - ref: e{i}\n"));
    }
    yaml.push_str("listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n");
    yaml.push_str(&refs);
    let file = dir.join("config.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let config = hotproxy::config::parse(&yaml, &file).unwrap();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    // Listeners bind through tokio: start from inside the runtime, as `run` does.
    let _enter = rt.enter();
    let handle = reload::start(
        config,
        rt.handle().clone(),
        shutdown_rx.clone(),
        Arc::new(hotproxy::proxy::drain::Drain::new(
            std::time::Duration::from_secs(30),
            shutdown_rx,
        )),
    )
    .unwrap();
    // The watcher reports every new subject once after start; let it and
    // the reloader go through those (unchanged) before measuring, or one
    // of them could apply a measured write first.
    quiesce(&["hotproxy-watch", "hotproxy-reload"]);
    rt.block_on(handle.call(|_| ())).unwrap();
    let addr = handle.shared.listeners.load()["public"].bind;
    Catalogue {
        _dir: tmp,
        dir,
        handle,
        addr,
        _shutdown: shutdown,
    }
}

/// Wait until this process's threads named `names` stop using CPU (none
/// ran for 300ms), bounded.
fn quiesce(names: &[&str]) {
    let busy = || -> u64 {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(|t| {
                let dir = t.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                if !names.contains(&comm.trim()) {
                    return None;
                }
                let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut last = busy();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = busy();
        if now == last {
            return;
        }
        last = now;
    }
}

/// The leaf a real handshake to `addr` with SNI `name` is served.
fn served(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    name: &str,
    ca: &str,
) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    })
}

/// One rotation among `n` entries: rewrite one pair's files, then the
/// reload the watcher triggers (read twice, parse, key check, snapshot
/// rebuild, publish), until the listener snapshot the next handshake takes
/// holds the new pair.
fn entry_reload(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pki = Pki::new();
    let mut g = c.benchmark_group("entry_reload");
    g.sample_size(30);
    for n in [10usize, 10_000] {
        let cat = catalogue(&rt, &pki, n);
        let k = n / 2;
        let id = format!("e{k}");
        // Two generations of the same entry, alternated: every write is a change.
        let gens = [pki.leaf(&host(k)), pki.leaf(&host(k))];
        let mut turn = 0;
        let rotate = |turn: usize| {
            write_pair(&cat.dir, k, &gens[turn % 2]);
            let id = id.clone();
            let changed = rt
                .block_on(cat.handle.call(move |r| r.reload_entry(&id, false)))
                .unwrap();
            assert_eq!(changed, Ok(true), "every rotation is a change");
        };
        rotate(turn);
        assert_eq!(
            served(&rt, cat.addr, &host(k), &pki.ca_pem),
            gens[0].der,
            "the next handshake is served the rotated pair"
        );
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                turn += 1;
                rotate(turn)
            })
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let ctx = RequestContext {
        listener: "public".into(),
        client_addr: "10.0.0.1:5555".parse().unwrap(),
        client_cert: None,
        tls_sni: None,
        served_from: std::sync::Arc::new(hotproxy::tls::server::SniResolver::none()),
        served: None,
        trusted_proxy: false,
        tls_version: None,
        resumed: false,
        entry: None,
        body_read_timeout: std::time::Duration::from_secs(60),
        body_buffer_bytes: 16_384,
        max_body_bytes: 0,
        client_ip: client_ip_value("10.0.0.1:5555".parse().unwrap()),
        hosts: Default::default(),
    };
    let mut base = http::HeaderMap::new();
    base.insert("host", "app.example.com".parse().unwrap());
    base.insert("user-agent", "bench/1.0".parse().unwrap());
    base.insert("accept", "*/*".parse().unwrap());
    base.insert("connection", "keep-alive".parse().unwrap());
    c.bench_function("rewrite_request_headers", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                rewrite_request_headers(&mut h, &ctx, false, false);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn config(c: &mut Criterion) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml")).unwrap();
    let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"));
    c.bench_function("config_parse", |b| {
        b.iter(|| hotproxy::config::parse(black_box(&text), file).unwrap())
    });
}

/// What the backend is told about a verified client, per request on a
/// keep-alive connection: each `forward_client_cert` mode on a leaf with
/// an intermediate, a SPIFFE ID and a DNS SAN.
fn forward_client_cert(c: &mut Criterion) {
    use hotproxy::identity::Identity;
    use hotproxy::proxy::client_cert::{ForwardClientCert, apply};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bench issuing CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["billing.partners.example".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "billing");
    leaf.distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "payments");
    leaf.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://cluster.local/ns/prod/sa/billing"
            .try_into()
            .unwrap(),
    ));
    let leaf = leaf
        .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    let id = Identity::from_chain(&[leaf.der().clone(), ca_cert.der().clone()]).unwrap();
    let mut g = c.benchmark_group("forward_client_cert");
    for mode in [
        ForwardClientCert::Headers,
        ForwardClientCert::Rfc9440,
        ForwardClientCert::Xfcc,
        ForwardClientCert::IngressNginx,
    ] {
        g.bench_function(mode.as_str(), |b| {
            b.iter(|| {
                let mut h = http::HeaderMap::new();
                apply(&mut h, mode, Some(black_box(&id)), &|| {
                    std::sync::Arc::from([])
                });
                h
            })
        });
    }
    g.finish();
}

/// Counting one proxied request (the request counter and duration histogram).
fn request_metrics(c: &mut Criterion) {
    let elapsed = std::time::Duration::from_micros(180);
    c.bench_function("request_metrics", |b| {
        b.iter(|| hotproxy::metrics::request(black_box("public"), black_box("api"), 200, elapsed))
    });
}

criterion_group!(
    benches,
    sni,
    entry_reload,
    headers,
    forward_client_cert,
    config,
    request_metrics
);
criterion_main!(benches);
