//! Scale run of the real binary: 10,000 server pairs on one listener, and 10,000 idle TLS connections.
//!
//! `cargo bench --bench scale` runs `hotproxy run` (release) twice:
//!
//! 1. 10,000 server-pair entries, each on its own files with its own key
//!    and SNI name, all on one listener (default watch settings: events +
//!    a 2s stat poll), laid out flat (`certs/eN.crt`, rotated by `mv`) and
//!    then as certbot lineages (rotated by a renewal, which moves the
//!    entry's symlink chain). Measures the time until the listener is up
//!    and until the last name is served, RSS, idle CPU (the stat poll), and
//!    rotations of one pair: its files rewritten -> the new leaf served for
//!    its name, the `reload_ms` the proxy logs, and the CPU the proxy spent
//!    (whole process from `/proc/PID/stat` utime+stime, in 10 ms ticks, and
//!    the reloader and watch threads alone from their `schedstat`).
//! 2. 10,000 idle TLS connections (HTTP/1.1, then HTTP/2 on a fresh
//!    process) to a one-pair listener: RSS before and after, per connection.
//!    The client keeps only the TCP socket (its TLS state is dropped after
//!    the handshake) and is a separate process, so only the proxy is counted.
//!
//! Needs `ulimit -n` above 11,000 (the soft limit is raised to the hard one
//! with `prlimit` when it is lower; else run `ulimit -n 65536` first).
//! `SCALE_ONLY=flat`, `certbot` or `idle` runs one part.
//! `cargo test --benches` runs it once with `--bench` absent: tiny sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::writers::{Certbot, mv_over};
use support::{Proxy, Scene, TestCa, admin, served_leaf};

fn host(i: usize) -> String {
    format!("host{i}.scale.test")
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of the whole process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`, which may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after comm.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Nanoseconds on CPU of the thread of `pid` named `comm` (schedstat).
fn thread_cpu_ns(pid: u32, comm: &str) -> Option<u64> {
    threads_cpu_ns(pid).get(comm).copied()
}

/// CPU time of every thread of `pid` by name (threads sharing a name summed), in ns.
fn threads_cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let Ok(task) = task else { continue };
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        *out.entry(comm.trim().to_string()).or_default() += ns;
    }
    out
}

/// Raise the soft open-files limit to the hard one when it is below `need`.
fn raise_nofile(need: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (nums[0], nums[1]);
    if soft >= need {
        return;
    }
    let _ = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status();
    assert!(
        hard >= need,
        "open-files limit {soft}/{hard} is below {need}: run `ulimit -n 65536` first"
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Median and max.
fn spread(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() - 1])
}

struct Row(String, String);

/// How the pairs sit on disk.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `certs/eN.crt` + `certs/eN.key` in one directory, rotated by `mv`.
    Flat,
    /// One certbot lineage per pair (`live/hN/*.pem` links into
    /// `archive/hN/`), rotated by a renewal: each rotation moves the
    /// entry's symlink chain, so the watcher re-indexes it.
    Certbot,
}

/// `n` server pairs on one listener: startup, memory, idle CPU, rotations.
async fn many_pairs(layout: Layout, n: usize, rotations: usize, idle: Duration) -> Vec<Row> {
    let s = Scene::new();
    let ca = TestCa::new("scale-ca");
    let generated = Instant::now();
    let mut yaml = String::from("admin: { bind: 127.0.0.1:0 }\ncerts:\n");
    let mut refs = String::new();
    let k = n / 2;
    let mut rotated = None;
    for i in 0..n {
        let pair = ca.server_pair(&[&host(i)]);
        let (cert, key) = match layout {
            Layout::Flat => {
                s.pair(&format!("certs/e{i}"), &pair);
                (format!("certs/e{i}.crt"), format!("certs/e{i}.key"))
            }
            Layout::Certbot => {
                let mut lineage = Certbot::new(&s.path("le"), &format!("h{i}"));
                lineage.renew(&pair.cert_pem, &pair.key_pem, &ca.cert_pem, Duration::ZERO);
                let paths = (
                    format!("le/live/h{i}/fullchain.pem"),
                    format!("le/live/h{i}/privkey.pem"),
                );
                if i == k {
                    rotated = Some(lineage);
                }
                paths
            }
        };
        yaml.push_str(&format!(
            "  - {{ id: e{i}, type: server-pair, cert_file: {cert}, key_file: {key} }}\n"
        ));
        refs.push_str(&format!("        - ref: e{i}\n"));
    }
    let label = match layout {
        Layout::Flat => format!("{n} pairs (flat)"),
        Layout::Certbot => format!("{n} pairs (certbot)"),
    };
    yaml.push_str("listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n");
    yaml.push_str(&refs);
    let config = s.config(&yaml);
    eprintln!(
        "{label}: generated and written in {}",
        ms(generated.elapsed())
    );

    let start = Instant::now();
    let mut proxy = Proxy::start(&config);
    let pid = proxy.pid();
    let addr = proxy.listener_addr("public").await;
    let listening = start.elapsed();
    let last = host(n - 1);
    while served_leaf(addr, &last, &ca.cert_pem).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(300), "never served");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let serving = start.elapsed();
    let (rss_ready, _) = memory(pid);
    // The watcher reports every subject once after start (the reloader
    // re-reads and finds them unchanged): let that pass before measuring.
    let mut last = thread_cpu_ns(pid, "hotproxy-reload");
    let (mut quiet, mut settled) = (0, start.elapsed());
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = thread_cpu_ns(pid, "hotproxy-reload");
        if now == last {
            quiet += 1;
        } else {
            quiet = 0;
            settled = start.elapsed();
        }
        if quiet == 5 {
            break;
        }
        last = now;
    }
    let (rss_settled, hwm) = memory(pid);

    let tck = clock_ticks_per_sec();
    let idle_before = cpu_ticks(pid);
    let watch_before = thread_cpu_ns(pid, "hotproxy-watch").unwrap_or(0);
    let threads_before = threads_cpu_ns(pid);
    tokio::time::sleep(idle).await;
    for (name, ns) in threads_cpu_ns(pid) {
        let busy = (ns - threads_before.get(&name).copied().unwrap_or(0)) as f64 / 1e9;
        if busy / idle.as_secs_f64() >= 0.005 {
            eprintln!(
                "{label}: idle CPU of thread {name}: {:.1}% of a core",
                busy / idle.as_secs_f64() * 100.0
            );
        }
    }
    let idle_cpu = (cpu_ticks(pid) - idle_before) as f64 / tck / idle.as_secs_f64();
    let watch_cpu = (thread_cpu_ns(pid, "hotproxy-watch").unwrap_or(0) - watch_before) as f64
        / 1e9
        / idle.as_secs_f64();

    let name = host(k);
    let cert = s.path(&format!("certs/e{k}.crt"));
    let key = s.path(&format!("certs/e{k}.key"));
    let mut latency = Vec::new();
    let mut reload_thread = Vec::new();
    let mut watch_thread = Vec::new();
    let mut process = Vec::new();
    for _ in 0..rotations {
        // Key generation is not part of the rotation.
        let next = ca.server_pair(&[&name]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ticks = cpu_ticks(pid);
        let thread = thread_cpu_ns(pid, "hotproxy-reload").unwrap_or(0);
        let watch = thread_cpu_ns(pid, "hotproxy-watch").unwrap_or(0);
        let t = Instant::now();
        match (layout, rotated.as_mut()) {
            (Layout::Certbot, Some(lineage)) => {
                lineage.renew(&next.cert_pem, &next.key_pem, &ca.cert_pem, Duration::ZERO)
            }
            _ => {
                // The key first: until the cert follows, the pair is
                // inconsistent and the old one keeps serving.
                mv_over(&key, &next.key_pem);
                mv_over(&cert, &next.cert_pem);
            }
        }
        loop {
            if served_leaf(addr, &name, &ca.cert_pem).await.ok() == Some(next.fingerprint.clone()) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "rotation never served"
            );
        }
        latency.push(t.elapsed().as_secs_f64() * 1e3);
        reload_thread
            .push((thread_cpu_ns(pid, "hotproxy-reload").unwrap_or(0) - thread) as f64 / 1e6);
        watch_thread.push((thread_cpu_ns(pid, "hotproxy-watch").unwrap_or(0) - watch) as f64 / 1e6);
        process.push((cpu_ticks(pid) - ticks) as f64 / tck * 1e3);
    }
    let entry = format!("e{k}");
    let logged: Vec<f64> = proxy
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "certificate reloaded" && v["entry"] == entry.as_str())
        .filter_map(|v| v["reload_ms"].as_f64())
        .collect();
    let mut warnings: std::collections::BTreeMap<String, usize> = Default::default();
    for v in proxy
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
    {
        *warnings
            .entry(v["message"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    for (message, count) in warnings {
        eprintln!("{label}: logged {count}x: {message}");
    }
    let (rss_after, hwm_after) = memory(pid);
    drop(proxy);

    let (lat50, latmax) = spread(latency);
    let (thr50, thrmax) = spread(reload_thread);
    let (proc50, procmax) = spread(process);
    let (watch50, watchmax) = spread(watch_thread);
    let mut rows = vec![
        Row(format!("{label}: startup to `listening`"), ms(listening)),
        Row(format!("{label}: startup to last name served"), ms(serving)),
        Row(format!("{label}: RSS when serving"), mib(rss_ready)),
        Row(
            format!("{label}: startup to reloader idle (start-up re-check done, ±1 s)"),
            ms(settled),
        ),
        Row(
            format!("{label}: RSS settled / VmHWM"),
            format!("{} / {}", mib(rss_settled), mib(hwm)),
        ),
        Row(
            format!("{label}: idle CPU (process / watch thread)"),
            format!(
                "{:.1}% / {:.1}% of a core",
                idle_cpu * 100.0,
                watch_cpu * 100.0
            ),
        ),
        Row(
            format!("{label}: rotation, files -> served (p50 / max of {rotations})"),
            format!("{lat50:.1} ms / {latmax:.1} ms"),
        ),
    ];
    if logged.is_empty() {
        rows.push(Row(
            format!("{label}: rotation, reload_ms logged"),
            "(not logged)".into(),
        ));
    } else {
        let (l50, lmax) = spread(logged);
        rows.push(Row(
            format!("{label}: rotation, reload_ms logged (p50 / max)"),
            format!("{l50:.2} ms / {lmax:.2} ms"),
        ));
    }
    rows.push(Row(
        format!("{label}: rotation, reloader thread CPU (p50 / max)"),
        format!("{thr50:.2} ms / {thrmax:.2} ms"),
    ));
    rows.push(Row(
        format!("{label}: rotation, watch thread CPU (p50 / max)"),
        format!("{watch50:.2} ms / {watchmax:.2} ms"),
    ));
    rows.push(Row(
        format!("{label}: rotation, process CPU incl. probe handshakes (p50 / max)"),
        format!("{proc50:.0} ms / {procmax:.0} ms"),
    ));
    rows.push(Row(
        format!("{label}: RSS / VmHWM after rotations"),
        format!("{} / {}", mib(rss_after), mib(hwm_after)),
    ));
    rows
}

/// The `hotproxy_tls_handshakes_total{listener="public",result="success"}` count.
async fn handshakes(admin_addr: SocketAddr) -> u64 {
    let m = admin(admin_addr, "GET", "/metrics", None, None, &[]).await;
    m.body
        .lines()
        .find(|l| {
            l.starts_with("hotproxy_tls_handshakes_total{")
                && l.contains("listener=\"public\"")
                && l.contains("result=\"success\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// `n` idle connections (ALPN `alpn`) to a one-pair listener.
async fn idle_connections(n: usize, alpn: &'static [u8]) -> Vec<Row> {
    let s = Scene::new();
    let ca = TestCa::new("conn-ca");
    s.pair("server", &ca.server_pair(&["localhost"]));
    // Timeouts long enough that idle connections stay for the measurement.
    let config = s.config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs: [{{ cert_file: server.crt, key_file: server.key }}]\n    limits: {{ max_connections: {}, header_read_timeout: 10m, idle_timeout: 10m }}\n",
        n + 1000
    ));
    let mut proxy = Proxy::start(&config);
    let pid = proxy.pid();
    let addr = proxy.listener_addr("public").await;
    let admin_addr = proxy.admin_addr().await;
    let cfg = support::client_config(&ca.cert_pem, None, &[alpn]);
    // One connection made and closed, so lazily built state is not counted
    // as per-connection memory.
    drop(
        support::connect(addr, "localhost", cfg.clone())
            .await
            .unwrap(),
    );
    let _ = handshakes(admin_addr).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = memory(pid);
    let warm = handshakes(admin_addr).await;

    let t = Instant::now();
    let mut open = Vec::with_capacity(n);
    let batch = 100;
    while open.len() < n {
        let size = batch.min(n - open.len());
        let conns = futures_util::future::join_all(
            (0..size).map(|_| support::connect(addr, "localhost", cfg.clone())),
        )
        .await;
        for c in conns {
            let mut tls = c.unwrap();
            if alpn == b"h2" {
                // An h2 client's opening: the preface and an empty SETTINGS
                // frame, so the proxy holds an established h2 connection.
                use tokio::io::AsyncWriteExt;
                tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                    .await
                    .unwrap();
                tls.flush().await.unwrap();
            }
            // Keep the socket, drop the client's TLS state.
            open.push(tls.into_inner().0);
        }
    }
    while handshakes(admin_addr).await < warm + n as u64 {
        assert!(t.elapsed() < Duration::from_secs(300), "handshakes missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, hwm) = memory(pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    drop(open);
    drop(proxy);
    let proto = String::from_utf8_lossy(alpn).into_owned();
    vec![
        Row(
            format!("{n} idle {proto} connections: opened in"),
            ms(opened),
        ),
        Row(
            format!("{n} idle {proto} connections: RSS before / after / VmHWM"),
            format!("{} / {} / {}", mib(before), mib(after), mib(hwm)),
        ),
        Row(
            format!("{n} idle {proto} connections: RSS per connection"),
            format!("{:.1} KiB", per / 1024.0),
        ),
    ]
}

fn main() {
    // `cargo test --benches` runs this once with --bench absent: keep it short.
    let full = std::env::args().any(|a| a == "--bench");
    // Idle CPU is measured over 30 s: several stat-poll passes, which a
    // slow poll (10,000 certbot lineages) spreads out to ~7 s apart.
    let (pairs, rotations, idle, conns) = if full {
        (10_000, 10, Duration::from_secs(30), 10_000)
    } else {
        (20, 2, Duration::from_millis(500), 50)
    };
    raise_nofile(conns as u64 + 1000);
    support::QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `SCALE_ONLY=flat|certbot|idle` runs one part (when chasing one figure).
    let only = std::env::var("SCALE_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        if run("flat") {
            rows.extend(many_pairs(Layout::Flat, pairs, rotations, idle).await);
        }
        if run("certbot") {
            rows.extend(many_pairs(Layout::Certbot, pairs, rotations, idle).await);
        }
        if run("idle") {
            rows.extend(idle_connections(conns, b"http/1.1").await);
            rows.extend(idle_connections(conns, b"h2").await);
        }
        rows
    });
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("\n{:<width$}  result", "scale run (real binary, 127.0.0.1)");
    println!("{}", "-".repeat(width + 30));
    for Row(what, value) in rows {
        println!("{what:<width$}  {value}");
    }
}
