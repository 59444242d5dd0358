//! Reloads refused after their new addresses were planned: no new port listens meanwhile, and no access log file is created.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Scene, free_port, listeners_at};

/// A reload adding listener `added` on a free port, then listeners
/// planned after it, then `held` on an address another socket holds, is
/// refused, again and again; meanwhile a client connecting to `added`'s
/// port is refused every time (ECONNREFUSED), and the running listener
/// serves on. `added`'s socket listened from its bind in the planning
/// loop until the refusal dropped it: a client queued meanwhile was
/// reset, and a load balancer's TCP probe saw the port flap, on every
/// retry of the refused file.
#[test]
fn a_refused_reload_opens_no_port() {
    let s = Scene::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let added = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bind = |name: &str, at: String| (name.to_owned(), at);
    let running = vec![bind("public", "127.0.0.1:0".to_owned())];
    let mut r = s.reloader(listeners_at(&s, "", &running));
    let public = r.listeners["public"].bound;
    let mut binds = running;
    binds.push(bind("added", added.to_string()));
    binds.extend((0..100).map(|n| bind(&format!("plain{n}"), "127.0.0.1:0".to_owned())));
    binds.push(bind("held", held.local_addr().unwrap().to_string()));
    let refused = listeners_at(&s, "", &binds);

    let done = Arc::new(AtomicBool::new(false));
    let probes = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut tries = 0;
            while tries < 3000 && !done.load(Ordering::Relaxed) {
                tries += 1;
                match TcpStream::connect(added) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    other => return Err(format!("connect {tries}: {other:?}")),
                }
            }
            Ok(tries)
        }
    });
    let mut attempts = 0;
    while !probes.is_finished() || attempts < 3 {
        let e = r.apply_config(refused.clone(), false).unwrap_err();
        assert!(e.contains("listener held: cannot bind"), "{e}");
        attempts += 1;
    }
    done.store(true, Ordering::Relaxed);
    let probed = probes.join().unwrap();
    probed.unwrap_or_else(|e| panic!("{added} open during {attempts} refused reloads: {e}"));

    let tcp = TcpStream::connect(public).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let answer =
        s.rt.block_on(async { s.get(tokio::net::TcpStream::from_std(tcp).unwrap()).await });
    assert_eq!(answer.unwrap(), "HTTP/1.1 404 Not Found");
}

/// A reload setting a new access log, refused by a bind beside (listener
/// `public` moves from `0.0.0.0:P` to `127.0.0.1:P`, and the kernel will
/// not bind beside its socket: it is another user's, made so with
/// `fchown`), creates no access log file. The log was opened before the
/// binds beside, and its file left behind by every refused retry.
#[test]
fn a_reload_refused_by_a_bind_beside_creates_no_access_log() {
    let s = Scene::new();
    let p = free_port();
    let public = |ip: &str| ("public".to_owned(), format!("{ip}:{p}"));
    let mut r = s.reloader(listeners_at(&s, "", &[public("0.0.0.0")]));
    let log = s.path().join("access.log");
    let top = format!(
        "access_log: {{ path: \"{}\", format: json }}\n",
        log.display()
    );
    let moved = listeners_at(&s, &top, &[public("127.0.0.1")]);
    let socket = r.listeners["public"].socket.as_ref().unwrap();
    let socket = socket.try_clone().unwrap();
    let owner = |uid: u32| std::os::unix::fs::fchown(&socket, Some(uid), None);
    if let Err(e) = owner(65534) {
        // As in `a_refused_bind_beside_drops_no_socket_beside_another_listener`.
        assert!(
            std::env::var_os("CI").is_none(),
            "giving a socket to another user needs root, and CI must run this: {e}"
        );
        eprintln!("an access log refused with a bind beside: skipped, {e}");
        return;
    }
    let e = r.apply_config(moved, false).unwrap_err();
    assert!(e.contains("listener public: cannot bind"), "{e}");
    let created = log.exists();
    owner(0).unwrap();
    assert!(!created, "a refused reload created {}", log.display());
}
