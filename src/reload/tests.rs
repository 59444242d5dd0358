//! The reloader's state driven by calls on the test's thread, on real files and sockets: a CA bundle's CRLs chosen again, a listener stopped, a refusal counted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, SerialNumber,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::Reloader;
use super::entry::CRL_DUE_LOOK;
use crate::config::{self, Config, EntrySpec};
use crate::material::catalogue::Origin;
use crate::material::pem;
use crate::proxy::drain::Drain;

mod open_mtls;
mod refused_ports;

/// A directory holding a CA (`clients.crt`), a CRL of it issued an hour
/// ago (`now.crl`) and one dated a day ahead (`ahead.crl`), a server pair
/// for `localhost` (`server.crt`, `server.key`), and a runtime for the
/// reloader's watcher and accept loops, which run only while the test
/// drives it (`rt.block_on`).
struct Scene {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    _shutdown: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "clients");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("clients.crt"), cert.pem()).unwrap();
        let issuer = Issuer::new(p, key);
        let now = OffsetDateTime::now_utc();
        for (file, this_update, number) in [
            ("now.crl", now - time::Duration::hours(1), 1u64),
            ("ahead.crl", now + time::Duration::days(1), 2),
        ] {
            let crl = CertificateRevocationListParams {
                this_update,
                next_update: this_update + time::Duration::days(30),
                crl_number: SerialNumber::from(number),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            let pem = crl.signed_by(&issuer).unwrap().pem().unwrap();
            std::fs::write(dir.path().join(file), pem).unwrap();
        }
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), server.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("server.key"),
            server.signing_key.serialize_pem(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, shutdown) = watch::channel(false);
        Scene {
            dir,
            rt,
            _shutdown: tx,
            shutdown,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A configuration of the ca-bundle entry `clients` with `crl_files`
    /// (a YAML list's items).
    fn config(&self, crl_files: &str) -> Config {
        let yaml = format!(
            "certs:\n  - {{ id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: [{crl_files}] }}\nlisteners: []\n"
        );
        config::parse(&yaml, &self.path().join("config.yaml")).unwrap()
    }

    /// A configuration of TLS listeners named `names`, each on a port of
    /// its own on 127.0.0.1, with no routes (a request gets 404).
    fn listeners(&self, names: &[&str]) -> Config {
        let mut yaml = String::from("listeners:\n");
        for name in names {
            yaml.push_str(&format!(
                "  - {{ name: {name}, bind: 127.0.0.1:0, routes: [], tls: {{ certs: [{{ cert_file: server.crt, key_file: server.key }}] }} }}\n"
            ));
        }
        config::parse(&yaml, &self.path().join("config.yaml")).unwrap()
    }

    /// The status line of the answer to `GET /` over TLS on `tcp`, a
    /// connection to one of [`Scene::listeners`].
    async fn get(&self, tcp: tokio::net::TcpStream) -> std::io::Result<String> {
        use rustls_pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(self.path().join("server.crt")).unwrap();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider::get())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        let answer = String::from_utf8_lossy(&answer);
        Ok(answer.lines().next().unwrap_or_default().to_owned())
    }

    /// A reloader serving `config`, its thread not started: the test calls
    /// what the thread would.
    fn reloader(&self, config: Config) -> Reloader {
        let drain = Arc::new(Drain::new(Duration::from_secs(1), self.shutdown.clone()));
        let (mut r, _events) = Reloader::new(
            &config,
            self.rt.handle().clone(),
            self.shutdown.clone(),
            drain,
        );
        r.apply_config(config, true).unwrap();
        r
    }
}

/// A time gone by.
fn gone_by() -> Instant {
    Instant::now().checked_sub(Duration::from_secs(1)).unwrap()
}

/// Whether the reloader's next choice of CRLs is yet to come: it waits for
/// it. At a time gone by it would not wait at all (`recv_timeout(0)`).
fn waits(r: &Reloader) -> bool {
    r.next_crl_choice().is_some_and(|at| at > Instant::now())
}

/// A retry of a choice of CRLs refused (a listener or an upstream would
/// not build on them) is of the material it was refused for: once it is
/// made, or that material is replaced (an entry of the store put through
/// the API, an entry redefined by a configuration reload), the CRLs are
/// next chosen at their `crl_due`. The retry stayed: its time gone by
/// over material whose `crl_due` had not come, the choice was made again
/// and again with no wait, the reloader's thread busy until `crl_due`.
#[test]
fn a_crl_retry_goes_with_the_material_it_was_for() {
    let s = Scene::new();
    let mut r = s.reloader(s.config("now.crl, ahead.crl"));
    assert!(waits(&r), "a CRL dated a day ahead is waited on");
    // Its time come, over material whose crl_due has not.
    r.crl_retries.insert("clients".into(), gone_by());
    r.choose_crls_again();
    assert!(waits(&r), "a retry made is still waited on");
    // An entry of the store put again through the API.
    let mut spec = r.entry_spec("clients").unwrap().0.clone();
    spec.id = "stored".into();
    let load = |spec: &EntrySpec| pem::load(spec.kind, &spec.source).unwrap();
    r.put_entry(spec.clone(), Origin::Store, load(&spec))
        .unwrap();
    r.crl_retries.insert("stored".into(), gone_by());
    r.put_entry(spec.clone(), Origin::Store, load(&spec))
        .unwrap();
    assert!(
        waits(&r),
        "a retry of material the API replaced is waited on"
    );
    // The entry redefined by a configuration reload.
    r.crl_retries.insert("clients".into(), gone_by());
    r.apply_config(s.config("ahead.crl, now.crl"), false)
        .unwrap();
    assert!(
        waits(&r),
        "a retry of a redefined entry's material is waited on"
    );
}

/// A CRL dated a day ahead is waited on a minute at most, and the wall
/// clock read again then: once it says the CRL's thisUpdate has come
/// (stepped there, by NTP at boot or a VM resumed), the choice is due. The
/// whole wait was taken at once on the monotonic clock, which a step of
/// the wall clock does not move: the choice came as late as the step.
#[test]
fn a_crl_dated_ahead_is_waited_on_a_minute_at_most() {
    let s = Scene::new();
    let r = s.reloader(s.config("now.crl, ahead.crl"));
    let before = Instant::now();
    let at = r.next_crl_choice().expect("a CRL dated a day ahead");
    assert!(
        at <= Instant::now() + CRL_DUE_LOOK,
        "waits {:?} for a CRL dated a day ahead",
        at - before
    );
    // Read again, the wall clock says its thisUpdate has come: due now.
    let entry = &r.entries["clients"];
    let due = entry
        .current
        .as_ref()
        .unwrap()
        .ca()
        .unwrap()
        .crl_due
        .unwrap();
    let stepped = UNIX_EPOCH + Duration::from_secs(u64::try_from(due).unwrap());
    let now = Instant::now();
    assert_eq!(r.crl_choice_at("clients", entry, now, stepped), Some(now));
}

/// A listener whose socket the reloader holds no descriptor of (its
/// duplicate refused at the descriptor limit as the listener was added),
/// removed by a reload, answers the client queued on it. Its accept loop was
/// told the socket was handed over, as if a new listener served on it, and
/// closed it: the kernel reset the client.
#[test]
fn a_removed_listener_the_reloader_holds_no_descriptor_of_answers_its_queue() {
    let s = Scene::new();
    let mut r = s.reloader(s.listeners(&["public"]));
    let addr = r.listeners["public"].bound;
    // What `spawn_listener` keeps when `try_clone` fails.
    r.listeners.get_mut("public").unwrap().socket = None;
    // The runtime is not driven yet, so nothing accepts: the kernel queues
    // the client once its handshake is done, which `connect` waits for.
    let queued = std::net::TcpStream::connect(addr).unwrap();
    queued.set_nonblocking(true).unwrap();
    r.apply_config(s.listeners(&["other"]), false).unwrap();
    let answer = s.rt.block_on(async {
        s.get(tokio::net::TcpStream::from_std(queued).unwrap())
            .await
    });
    let answer = answer.expect("the queued client answered, not reset");
    assert_eq!(answer, "HTTP/1.1 404 Not Found");
}

/// The reloader gone (its thread panicked, dropping it and every listener's
/// stop sender with it), a listener goes on accepting: each of two clients
/// in turn is answered, and an ERROR says once that reloads are no longer
/// applied. Its accept loop took the closed channel for an order to stop
/// and closed its socket: the process stayed up serving nothing, with no
/// line saying why.
#[test]
fn a_listener_serves_on_once_the_reloader_is_gone() {
    let s = Scene::new();
    let r = s.reloader(s.listeners(&["public"]));
    let addr = r.listeners["public"].bound;
    drop(r);
    // The runtime's one thread is this one: its tasks log here.
    let ((), text) = crate::logging::test_support::logged(tracing::Level::ERROR, || {
        s.rt.block_on(async {
            for client in ["first", "second"] {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .unwrap_or_else(|e| panic!("{client} client connecting: {e}"));
                let answer = s.get(tcp).await;
                let answer = answer.unwrap_or_else(|e| panic!("{client} client: {e}"));
                assert_eq!(answer, "HTTP/1.1 404 Not Found", "{client} client");
            }
        });
    });
    assert_eq!(
        text.matches("the reloader has stopped").count(),
        1,
        "{text}"
    );
}

/// A start that fails once its listeners are up (the store does not open:
/// its file is corrupt) stops them before it returns: the port refuses
/// connections, and no listener says the reloader has stopped. Returning
/// dropped the reloader and every stop sender with it: each accept loop
/// took that for a reloader thread gone, said so at ERROR ("restart the
/// process") and served on until the runtime ended.
#[test]
fn a_start_failing_at_the_store_stops_its_listeners() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scene::new();
    let port = free_port();
    let key = s.path().join("store.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = s.path().join("store.json");
    std::fs::write(&store, "not a store").unwrap();
    let yaml = format!(
        "store: {{ path: {}, key_file: {} }}\nlisteners:\n  - {{ name: public, bind: 127.0.0.1:{port}, routes: [], tls: {{ certs: [{{ cert_file: server.crt, key_file: server.key }}] }} }}\n",
        store.display(),
        key.display()
    );
    let config = config::parse(&yaml, &s.path().join("config.yaml")).unwrap();
    let drain = Arc::new(Drain::new(Duration::from_secs(1), s.shutdown.clone()));
    // The runtime's one thread is this one: its tasks log here.
    let ((), text) = crate::logging::test_support::logged(tracing::Level::ERROR, || {
        let started = super::start(config, s.rt.handle().clone(), s.shutdown.clone(), drain);
        let problem = started.err().expect("a corrupt store fails the start");
        assert!(problem.contains("store"), "{problem}");
        s.rt.block_on(async {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let closed = async {
                // Polled: a socket closing has nothing to wait on.
                while tokio::net::TcpStream::connect(addr).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), closed)
                .await
                .expect("the listener's port closed once the start failed");
        });
    });
    assert!(!text.contains("the reloader has stopped"), "{text}");
}

/// A configuration of listeners, each `(name, bind)`, with no routes:
/// TLS ones, but those named `plainN`, plain-HTTP redirects. `top`: more
/// of the file (YAML lines).
fn listeners_at(s: &Scene, top: &str, binds: &[(String, String)]) -> Config {
    let mut yaml = format!("{top}listeners:\n");
    for (name, bind) in binds {
        let serves = if name.starts_with("plain") {
            "redirect_https: {}"
        } else {
            "routes: [], tls: { certs: [{ cert_file: server.crt, key_file: server.key }] }"
        };
        yaml.push_str(&format!(
            "  - {{ name: {name}, bind: \"{bind}\", {serves} }}\n"
        ));
    }
    config::parse(&yaml, &s.path().join("config.yaml")).unwrap()
}

/// A free port on 127.0.0.1 (and so on the wildcard).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Clients connecting to `here` while `refuse` refuses a reload, again
/// and again (three times at least), fewer than a backlog holds. The
/// runtime is not driven, so nothing accepts: the kernel queues each
/// client once its handshake is done, which `connect` waits for. None of
/// them is reset, and nothing was bound beside a running listener (a
/// refused reload's socket beside, dropped, reset the clients the kernel
/// had queued on it). The clients, still queued.
fn queued_through_refusals(
    here: std::net::SocketAddr,
    mut refuse: impl FnMut(),
) -> Vec<std::net::TcpStream> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = Arc::new(AtomicBool::new(false));
    let clients = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut queued = Vec::new();
            while queued.len() < 900 && !done.load(Ordering::Relaxed) {
                queued.push(std::net::TcpStream::connect(here).expect("a client connecting"));
            }
            queued
        }
    });
    let (attempts, text) = crate::logging::test_support::logged(tracing::Level::INFO, || {
        let mut attempts = 0;
        while !clients.is_finished() || attempts < 3 {
            refuse();
            attempts += 1;
        }
        attempts
    });
    done.store(true, Ordering::Relaxed);
    let queued = clients.join().unwrap();
    for (i, tcp) in queued.iter().enumerate() {
        tcp.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match tcp.peek(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!(
                "client {i} of {}, queued during {attempts} refused reloads: {other:?}",
                queued.len()
            ),
        }
    }
    assert!(
        !text.contains("bound beside"),
        "a refused reload bound a socket beside: {text}"
    );
    queued
}

/// A reload refused (by `refused`, given the scene and the listeners
/// it is to have, and saying `problem`) that also moves listener `public`
/// from `0.0.0.0:P` to `127.0.0.1:P` binds nothing beside `public`'s
/// socket: the clients connecting to `127.0.0.1:P` meanwhile, attempt
/// after attempt, wait in `public`'s queue and are answered once the move
/// applies; none is reset. Each attempt bound `127.0.0.1:P` beside the
/// wildcard while it planned the listeners after it (Linux sends that
/// address's new connections to the more specific socket), then dropped
/// it as the reload was refused, and the kernel reset every client queued
/// there.
fn a_refused_reload_binds_nothing_beside(
    refused: impl Fn(&Scene, &mut Vec<(String, String)>) -> Config,
    problem: &str,
) {
    let s = Scene::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let here = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let public = |bind: &str| ("public".to_owned(), bind.to_owned());
    let mut r = s.reloader(listeners_at(&s, "", &[public(&format!("0.0.0.0:{port}"))]));
    // `public` moved, then listeners planned after it (the time a socket
    // beside the wildcard lived).
    let mut binds = vec![public(&here.to_string())];
    binds.extend((0..100).map(|n| (format!("plain{n}"), "127.0.0.1:0".to_owned())));
    let moved = listeners_at(&s, "", &binds);
    let refused = refused(&s, &mut binds);

    let queued = queued_through_refusals(here, || {
        let e = r.apply_config(refused.clone(), false).unwrap_err();
        assert!(e.contains(problem), "{e}");
    });

    // The file fixed, the move applies: the clients queued on the
    // wildcard are answered.
    r.apply_config(moved, false).unwrap();
    let last = queued.into_iter().last().expect("a client queued");
    let answer =
        s.rt.block_on(async { s.get(tokio::net::TcpStream::from_std(last).unwrap()).await });
    assert_eq!(
        answer.expect("the last client queued answered, not reset"),
        "HTTP/1.1 404 Not Found"
    );
}

/// [`a_refused_reload_binds_nothing_beside`], refused by a listener
/// planned after the moved one: its address is another process's.
#[test]
fn a_reload_refused_by_a_bind_binds_nothing_beside_a_moving_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    a_refused_reload_binds_nothing_beside(
        |s, binds| {
            binds.push(("held".to_owned(), at.clone()));
            listeners_at(s, "", binds)
        },
        "listener held: cannot bind",
    );
}

/// [`a_refused_reload_binds_nothing_beside`], refused by an access log
/// that cannot be opened (its directory does not exist).
#[test]
fn a_reload_refused_by_its_access_log_binds_nothing_beside_a_moving_listener() {
    a_refused_reload_binds_nothing_beside(
        |s, binds| {
            let log = s.path().join("missing").join("access.log");
            let top = format!(
                "access_log: {{ path: \"{}\", format: json }}\n",
                log.display()
            );
            listeners_at(s, &top, binds)
        },
        "access_log.path",
    )
}

/// One reload moves `public` from `0.0.0.0:P` to `127.0.0.1:P` and
/// `other` from `0.0.0.0:Q` to `127.0.0.1:Q`, and the kernel refuses the
/// second bind beside: `other`'s running socket is another user's (made
/// so here with `fchown`: `SO_REUSEPORT` joins only a socket of the same
/// user). The clients connecting to `127.0.0.1:P` meanwhile, attempt
/// after attempt, wait in `public`'s queue; none is reset. Once `other`'s
/// socket is the proxy's user's again, both move, and the queued clients
/// and one to `127.0.0.1:Q` are answered. `public`'s socket beside was
/// bound and listening when `other`'s was refused, then dropped with the
/// reload, and the kernel reset every client queued on it, on each retry
/// of the refused file.
#[test]
fn a_refused_bind_beside_drops_no_socket_beside_another_listener() {
    let s = Scene::new();
    let (p, q) = (free_port(), free_port());
    let bind = |name: &str, ip: &str, port: u16| (name.to_owned(), format!("{ip}:{port}"));
    let mut r = s.reloader(listeners_at(
        &s,
        "",
        &[bind("public", "0.0.0.0", p), bind("other", "0.0.0.0", q)],
    ));
    let moved = listeners_at(
        &s,
        "",
        &[
            bind("public", "127.0.0.1", p),
            bind("other", "127.0.0.1", q),
        ],
    );
    let other = r.listeners["other"]
        .socket
        .as_ref()
        .unwrap()
        .try_clone()
        .unwrap();
    let owner = |uid: u32| std::os::unix::fs::fchown(&other, Some(uid), None);
    if let Err(e) = owner(65534) {
        // CI runs as root: there, a skipped case would be a test that
        // cannot fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "giving a socket to another user needs root, and CI must run this: {e}"
        );
        eprintln!("a refused bind beside: skipped, {e}");
        return;
    }
    let here = std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let queued = queued_through_refusals(here, || {
        let e = r.apply_config(moved.clone(), false).unwrap_err();
        assert!(e.contains("listener other: cannot bind"), "{e}");
    });

    owner(0).unwrap();
    r.apply_config(moved, false).unwrap();
    let last = queued.into_iter().last().expect("a client queued");
    let to_q = std::net::TcpStream::connect(("127.0.0.1", q)).unwrap();
    to_q.set_nonblocking(true).unwrap();
    for tcp in [last, to_q] {
        let answer =
            s.rt.block_on(async { s.get(tokio::net::TcpStream::from_std(tcp).unwrap()).await });
        assert_eq!(
            answer.expect("answered, not reset"),
            "HTTP/1.1 404 Not Found"
        );
    }
}

/// A bad write counted (B1), then other bad bytes failing the same way
/// (B2) read first by a back-off retry, then by the watcher's read of the
/// change: B2 is a bad write of its own, counted once. The retry did not
/// count it (its problem the last counted) but recorded it as refused, so
/// the watcher's read of it, finding what was refused, did not either: B2
/// was never counted.
#[test]
fn other_bad_bytes_a_retry_reads_first_count_once() {
    use super::Cause;
    let s = Scene::new();
    let yaml = "certs:\n  - { id: retried-first, type: server-pair, cert_file: server.crt, key_file: server.key }\nlisteners: []\n";
    let mut r = s.reloader(config::parse(yaml, &s.path().join("config.yaml")).unwrap());
    let failures = || {
        crate::metrics::METRICS
            .cert_reloads
            .get_or_create(&crate::metrics::EntryResultLabels {
                entry: "retried-first".into(),
                result: "failure".into(),
            })
            .get()
    };
    let garbage = |seed: u8| -> Vec<u8> { (0u8..=255).map(|i| i ^ seed).collect() };
    let crt = s.path().join("server.crt");
    let mut read = |cause: Cause| {
        r.reading = cause;
        let error = r.reload_entry("retried-first", false).unwrap_err();
        r.reading = Cause::Asked;
        error
    };
    std::fs::write(&crt, garbage(0)).unwrap();
    let first = read(Cause::Watcher);
    assert_eq!(failures(), 1, "{first}");
    std::fs::write(&crt, garbage(1)).unwrap();
    let second = read(Cause::Retry);
    assert_eq!(second, first, "the two bad writes fail alike");
    read(Cause::Watcher);
    assert_eq!(failures(), 2, "the second bad write is counted once");
    read(Cause::Retry);
    read(Cause::Watcher);
    assert_eq!(failures(), 2, "the second bad write is counted once");
}

/// A configuration file there but not readable yet (`install -m 0600`
/// before its `chown`) is waited on as a missing one is, not rejected at
/// once. The tests run as root, whom no mode refuses, so the state is
/// checked from the error a look meets.
#[test]
fn a_config_file_not_readable_yet_is_waited_on() {
    use super::config_file::unsettled_state;
    use std::io::{Error, ErrorKind};
    let state = |kind| unsettled_state(&Error::from(kind));
    assert_eq!(state(ErrorKind::PermissionDenied), Some("not readable"));
    assert_eq!(state(ErrorKind::NotFound), Some("missing"));
    assert_eq!(state(ErrorKind::InvalidData), None);
}

/// The configuration file's readability probe, given the metadata of a
/// regular file when a FIFO has since been renamed over the path (the
/// race between the reloader's look and its open, put in place here):
/// it answers for the FIFO at once. Its blocking open held the reloader
/// thread until a writer came: no reload, admin change or shutdown after.
#[test]
fn the_config_probe_does_not_block_on_a_fifo_swapped_in_after_the_look() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "listeners: []\n").unwrap();
    let looked = std::fs::metadata(&path).unwrap();
    let fifo = dir.path().join("config.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo");
    std::fs::rename(&fifo, &path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let probed = path.clone();
    std::thread::spawn(move || {
        let answer = super::config_file::readable(&probed, looked);
        let _ = tx.send(answer.map(|m| m.file_type().is_fifo()));
    });
    // A bound on a hang, not on speed: the probe does no waiting at all.
    let Ok(answer) = rx.recv_timeout(Duration::from_secs(20)) else {
        // A writer's open lets the probe's go; the test fails either way.
        let _ = std::fs::OpenOptions::new().write(true).open(&path);
        panic!("the probe blocked opening the FIFO at {}", path.display());
    };
    assert!(answer.unwrap(), "the probe describes what it opened");
}
