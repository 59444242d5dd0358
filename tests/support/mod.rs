//! Shared integration-test support: runtime PKI, file writers as kubelet and certbot do it,
//! an mTLS echo backend, the real proxy process, and real TLS clients.
//!
//! - `pki`: CAs, pairs, CRLs, fingerprints (rcgen, generated at runtime).
//! - `writers`: kubelet, certbot, `mv`, `cp` and a slow writer.
//! - `backend`: the HTTPS echo backend, and a raw TLS backend's listener.
//! - `proxy`: the proxy process, `hotproxy` subcommands, the scene directory.
//! - `client`: TLS clients, one GET, admin API requests.
//! - `admin`: a proxy run through its admin API, its config and start.
//! - `fd_limit`: a proxy at its descriptor limit, the burst that holds them all, admin calls then
//!   (as `support::fd_limit::…`, not re-exported).
//! - `paced`: a slow but steady reader (4 KiB every 100 ms).
//! - `h2raw`: a raw HTTP/2 client's frames (as `support::h2raw::…`, not re-exported).
//!
//! Everything is re-exported here: test files `use support::*`.
#![allow(dead_code)]

mod admin;
mod backend;
mod client;
pub mod fd_limit;
pub mod h2raw;
mod paced;
mod pki;
mod proxy;
pub mod writers;

// Each test binary uses only some of these: unused there is expected.
#[allow(unused_imports)]
pub use {admin::*, backend::*, client::*, paced::*, pki::*, proxy::*};

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Write a file (plain `fs::write`, for initial layouts).
pub fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// How long one client step (a TCP connect and TLS handshake, one request
/// and its whole answer, one write) may take before the test fails: a hung
/// proxy must fail a test, not hang CI.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// `step`'s output, or a panic naming `what` (an address, a path) if it has
/// not finished within `CLIENT_DEADLINE`.
pub async fn within_deadline<T>(what: impl std::fmt::Display, step: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CLIENT_DEADLINE, step).await {
        Ok(out) => out,
        Err(_) => panic!(
            "{what}: hung, not done after {} s",
            CLIENT_DEADLINE.as_secs()
        ),
    }
}

/// Poll `cond` every 20ms until it holds or `timeout` passes; one call of
/// `cond` that never returns (a request to a proxy that accepts and never
/// answers) is cut at the same deadline.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, cond()).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => panic!("timed out waiting for: {what} (a check did not return)"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connections waiting in the kernel's accept queue of the TCP socket
/// listening on `addr` (IPv4): their handshakes are complete, and no
/// `accept()` has taken them. Linux's `/proc/net/tcp` gives a listening
/// socket's accept queue as its `rx_queue`. A proxy enforces
/// `max_connections` by not accepting: this is where a client it holds
/// back is seen waiting.
pub fn accept_queue(addr: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = addr else {
        panic!("accept_queue reads /proc/net/tcp, IPv4 only: {addr}");
    };
    // The kernel prints the address as the native-endian u32 of its
    // network-order bytes, then the port.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    const LISTEN: &str = "0A";
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let queues: Vec<usize> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && f[1] == local && f[3] == LISTEN)
        .map(|f| {
            let rx = f[4].split_once(':').expect("tx_queue:rx_queue").1;
            usize::from_str_radix(rx, 16).unwrap()
        })
        .collect();
    match queues[..] {
        [n] => n,
        _ => panic!(
            "{} listening sockets on {addr} in /proc/net/tcp",
            queues.len()
        ),
    }
}

/// How many requests in turn on another listener stand for "long enough"
/// in [`assert_held_back`].
pub const HELD_BACK_TURNS: usize = 3;

/// `addr`'s listener holds `n` clients back: they wait in its accept queue
/// (seen there, not merely slow), and still do after `elsewhere` has run,
/// work the proxy does on another listener (say [`HELD_BACK_TURNS`]
/// requests in turn), all begun after they arrived. An accept loop that
/// did not hold them back would have taken them long before it finished:
/// their connections were ready before the first of those requests was
/// sent. An absence can only be shown over some span; this one is counted
/// in the proxy's own work, not in wall-clock time, so a slow machine
/// lengthens it rather than letting the check pass without looking.
/// Returns what `elsewhere` gave (a `/metrics` text to check a gauge in).
pub async fn assert_held_back<T>(
    addr: SocketAddr,
    n: usize,
    elsewhere: impl Future<Output = T>,
) -> T {
    let what = format!(
        "{n} client(s) held back in the accept queue of {addr} (not there: accepted at once?)"
    );
    wait_until(CLIENT_DEADLINE, &what, || async { accept_queue(addr) == n }).await;
    let out = elsewhere.await;
    assert_eq!(
        accept_queue(addr),
        n,
        "{addr}: a client held back was accepted (the accept queue changed) while the proxy worked elsewhere"
    );
    out
}

/// `/metrics` from the admin listener at `admin`, read [`HELD_BACK_TURNS`]
/// times in turn (each an accept, a request and an answer): the last text.
pub async fn metrics_in_turns(admin: SocketAddr) -> String {
    let mut text = String::new();
    for _ in 0..HELD_BACK_TURNS {
        text = metrics_text(admin).await;
    }
    text
}

/// The access log at `path` as JSON lines, as it is now (none if the file
/// does not exist yet).
pub fn read_access_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The access log at `path` as JSON lines, once it holds at least `n`
/// (waiting at most `timeout`; the writer thread writes them in order).
pub async fn wait_access_log(path: &Path, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let what = format!("{n} access-log lines in {}", path.display());
    wait_until(timeout, &what, || async {
        read_access_log(path).len() >= n
    })
    .await;
    read_access_log(path)
}

/// A FIFO at `path` (`mkfifo(1)`: the tests use no unsafe to call mkfifo(3)).
pub fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Every Rust source under `src/`, concatenated.
pub fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
                out.push('\n');
            }
        }
    }
    let mut all = String::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    all
}
