//! Shared integration-test support: runtime PKI, file writers as kubelet and certbot do it,
//! an mTLS echo backend, the real proxy process, and real TLS clients.
//!
//! - `pki`: CAs, pairs, CRLs, fingerprints (rcgen, generated at runtime).
//! - `writers`: kubelet, certbot, `mv`, `cp` and a slow writer.
//! - `backend`: the HTTPS echo backend.
//! - `proxy`: the proxy process, `hotproxy` subcommands, the scene directory.
//! - `client`: TLS clients, one GET, admin API requests.
//!
//! Everything is re-exported here: test files `use support::*`.
#![allow(dead_code)]

mod backend;
mod client;
mod pki;
mod proxy;
pub mod writers;

// Each test binary uses only some of these: unused there is expected.
#[allow(unused_imports)]
pub use {backend::*, client::*, pki::*, proxy::*};

use std::path::Path;
use std::time::{Duration, Instant};

/// Write a file (plain `fs::write`, for initial layouts).
pub fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Poll `cond` every 20ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
