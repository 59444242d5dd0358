//! Latency from a kubelet Secret swap to the first handshake serving the new
//! certificate, with filesystem events and with polling only.
//!
//! Runs the real binary (as the integration tests do), rotates its server
//! pair with kubelet's AtomicWriter sequence, and handshakes in a tight loop
//! until the new leaf is served. Reported as min / p50 / p90 / p99 / max:
//! the max is what an operator's worst rotation looks like, and it takes
//! hundreds of swaps to see the rare ones (a poll pass landing next to an
//! event, ~0.5 % of swaps before issue 18's fix). The third scenario polls
//! every 250 ms with swaps spread over the poll phase, so that interaction
//! happens on most swaps instead of a few.
//! `cargo bench --bench reload_latency` (`SWAPS=N` scales every scenario)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::writers::Kubelet;
use support::{Proxy, Scene, TestCa, served_leaf};

/// One scenario: `rotations` swaps under `watch`, returning each latency.
/// Each swap waits a pseudo-random part of `spread` first, so that swaps
/// land at every phase of the poll instead of just after a poll tick.
async fn measure(watch: &str, rotations: usize, spread: Duration) -> Vec<Duration> {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let kube = Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    kube.write(
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
        false,
    );
    let config = s.config(&format!(
        "watch: {watch}\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs: [{{ cert_file: secret/tls.crt, key_file: secret/tls.key }}]\n"
    ));
    let mut proxy = Proxy::start(&config);
    let addr = proxy.listener_addr("public").await;
    let mut out = Vec::new();
    for _ in 0..rotations {
        // Key generation is not part of the rotation.
        let next = ca.server_pair(&["localhost"]);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        tokio::time::sleep(spread.mul_f64(f64::from(nanos % 1000) / 1000.0)).await;
        let start = Instant::now();
        kube.write(
            &[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)],
            false,
        );
        loop {
            if served_leaf(addr, "localhost", &ca.cert_pem).await.ok()
                == Some(next.fingerprint.clone())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rotation never served under {watch}"
            );
        }
        out.push(start.elapsed());
    }
    out
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "{name:<52} n={:<4} min {:>9}  p50 {:>9}  p90 {:>9}  p99 {:>9}  max {:>9}",
        v.len(),
        ms(v[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(v[v.len() - 1])
    );
}

fn main() {
    // `cargo test --benches` runs this once with --bench absent: keep it short.
    let full = std::env::args().any(|a| a == "--bench");
    let scale: f64 = std::env::var("SWAPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1.0, |n| n / 300.0);
    let n = |full_n: usize| {
        if full {
            ((full_n as f64 * scale).round() as usize).max(2)
        } else {
            2
        }
    };
    support::QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("kubelet swap -> first handshake serving the new leaf");
        report(
            "inotify, defaults (debounce 100ms, poll 2s)",
            measure(
                "{ debounce: 100ms, poll_interval: 2s }",
                n(300),
                Duration::ZERO,
            )
            .await,
        );
        report(
            "inotify + poll every 250ms, swaps at every poll phase",
            measure(
                "{ debounce: 100ms, poll_interval: 250ms }",
                n(300),
                Duration::from_millis(250),
            )
            .await,
        );
        report(
            "polling only (events: false, poll 1s)",
            measure(
                "{ events: false, debounce: 100ms, poll_interval: 1s }",
                n(40),
                Duration::from_secs(1),
            )
            .await,
        );
    });
}
