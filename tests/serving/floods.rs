//! Timers under a flood: a connection whose socket never runs dry is still closed at its deadlines.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const PRIORITY: u8 = 2;

/// How long a flood goes on at most: far past the 1 s deadline below.
const FLOOD_BOUND: Duration = Duration::from_secs(15);
/// And how much it sends at most.
const FLOOD_BYTES: usize = 1 << 30;

/// Receive buffers of 4 MiB from the start, as the kernel's autotuning
/// gives a connection that keeps them full on a fast path (here it did
/// so only now and then): what the proxy's socket holds at each of its
/// task's polls is more than the 128 reads of 4 KiB (rustls) that tokio's
/// cooperative budget lets one poll make.
const FULL_BUFFERS: &str = "net.ipv4.tcp_rmem=4096 4194304 4194304";

/// Whether the tests run as root (a network namespace needs it).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// A TCP socket made in the network namespace `ns` (a proxy's, through
/// [`Proxy::start_in_netns_at`]).
fn socket_in(ns: &std::fs::File) -> socket2::Socket {
    use std::os::fd::AsRawFd;
    // A socket belongs to the namespace of the thread that makes it.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid descriptor of a network namespace; only
                // this thread, which ends here, moves into it.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()
            })
            .join()
            .unwrap()
    })
}

/// What a flood came to: whether the proxy closed the connection while
/// it went on (a write failed), how long it went on, how much was sent.
#[derive(Debug)]
#[allow(dead_code)] // Read through `Debug`, in the failure message.
struct Flooded {
    closed: bool,
    took: Duration,
    sent: usize,
}

/// An HTTP/2 client on `socket` that, once its TLS handshake is done,
/// sends the preface and then nothing but `PRIORITY` frames, which h2
/// ignores and no limit of hotproxy's counts (SPEC: it caps empty DATA,
/// CONTINUATION and reset floods), about 1,170 to a TLS record, sealed a
/// MiB at a time (far faster than the proxy takes them) and written on a
/// blocking socket, never reading what the proxy sends, until a write
/// fails, [`FLOOD_BOUND`] has passed or [`FLOOD_BYTES`] are sent.
fn flood(socket: socket2::Socket, addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Flooded {
    socket.connect(&addr.into()).unwrap();
    let mut tcp: std::net::TcpStream = socket.into();
    let name = "a.example.com".try_into().unwrap();
    let mut tls = rustls::ClientConnection::new(cfg, name).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).unwrap();
    }
    let frames: Vec<u8> = (0..75_000)
        .flat_map(|_| h2_frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 16]))
        .collect();
    // `plain` as TLS records, in one buffer written at once.
    let mut seal = |plain: &[u8]| {
        let mut out = Vec::with_capacity(plain.len() + plain.len() / 256);
        let mut at = 0;
        while at < plain.len() {
            at += tls.writer().write(&plain[at..]).unwrap();
            while tls.wants_write() {
                tls.write_tls(&mut out).unwrap();
            }
        }
        out
    };
    let mut next = seal(&[PREFACE, EMPTY_SETTINGS].concat());
    let start = Instant::now();
    let mut sent = 0;
    let closed = loop {
        if tcp.write_all(&next).is_err() {
            break true;
        }
        sent += next.len();
        if start.elapsed() >= FLOOD_BOUND || sent >= FLOOD_BYTES {
            break false;
        }
        next = seal(&frames);
    };
    Flooded {
        closed,
        took: start.elapsed(),
        sent,
    }
}

/// An HTTP/2 client that floods the proxy with frames it accepts
/// (`PRIORITY`, ignored) and never sends a request is closed for
/// `header_read_timeout` (1 s) while the flood goes on. The connection's
/// task read its socket before it looked at its timer: with the socket
/// never empty, the reads spent tokio's cooperative budget in every poll,
/// the timer's poll was refused each time, and the flood held the
/// connection open for as long as it lasted (15 s here, about 80 MB). The
/// same timer brings idle_timeout, the forced end of a graceful close,
/// `send_timeout`'s looks and the cut after `shutdown_grace`.
#[tokio::test]
async fn h2_frame_flood_does_not_hold_off_header_read_timeout() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the flood needs root (a network namespace) and CI must run it"
        );
        eprintln!("skipped: a network namespace needs root");
        return;
    }
    let w = world().await;
    let config = config(&w, "", "header_read_timeout: 1s");
    // Not h2's line per frame (debug): a flood as fast as the proxy reads,
    // not as fast as it logs.
    let mut p = Proxy::start_in_netns_at(&config, FULL_BUFFERS, "info,hotproxy=debug");
    let addr = p.listener_addr("public").await;
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", p.pid())).unwrap();
    let socket = socket_in(&ns);
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let flooded = tokio::task::spawn_blocking(move || flood(socket, addr, cfg))
        .await
        .unwrap();
    eprintln!("{flooded:?}");
    assert!(flooded.closed, "still open at the flood's end: {flooded:?}");
    p.wait_log("closed for header_read_timeout", |v| {
        v["message"] == "closing connection" && v["reason"] == "header_read_timeout"
    })
    .await;
}
