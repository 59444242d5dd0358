//! Fault: out of file descriptors. With `ulimit -n 64` both listeners are flooded with more
//! connections than the process has descriptors; hotproxy backs off instead of spinning and
//! answers on both again once the flood is gone.

mod support;

use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(30);
/// One connect attempt to the admin listener in `answers` (retried: not a bound the test can fail on).
const CONNECT_TRY: Duration = Duration::from_secs(5);

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `hotproxy_accept_errors_total{listener=NAME}` from the admin listener.
async fn accept_errors(admin_addr: std::net::SocketAddr, name: &str) -> u64 {
    let prefix = format!("hotproxy_accept_errors_total{{listener=\"{name}\"}} ");
    admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn flood_beyond_the_fd_limit_backs_off_and_recovers() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    // Flood connections never send a byte: keep them for the whole test.
    let cfg = scene.config(
        r#"
runtime: { worker_threads: 1 }
admin: { bind: "127.0.0.1:0" }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }
    routes: []
    limits: { header_read_timeout: 120s }
upstreams: []
"#,
    );
    let mut p = Proxy::start_with_fd_limit(&cfg, 64);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let answers = || async {
        let data = get_h1(addr, "a.example.com", &ca.cert_pem)
            .await
            .is_ok_and(|r| r.status == 404);
        // A connect the backlog drops is retried by the next round of
        // `wait_until`, not waited on for minutes of SYN retries.
        let tcp =
            tokio::time::timeout(CONNECT_TRY, tokio::net::TcpStream::connect(admin_addr)).await;
        data && matches!(tcp, Ok(Ok(_)))
            && admin(admin_addr, "GET", "/healthz", None, None, &[])
                .await
                .status
                == 200
    };
    assert!(answers().await, "not serving before the flood");

    let started = Instant::now();
    let cpu_before = cpu_ticks(p.pid());
    let mut flood = Vec::new();
    // The admin flood from another address: one address holds at most 16
    // admin connections, and the test's own admin calls come from
    // 127.0.0.1 (the public flood exhausts the descriptors either way).
    for _ in 0..150 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        flood.push(tcp_from("127.0.0.2", admin_addr).await);
    }
    // Both accept loops run out of descriptors and back off to the
    // longest pause: they keep failing, but slowly.
    for name in ["public", "admin"] {
        p.wait_log(&format!("{name} backed off to 1s"), |v| {
            v["message"] == "accept failed; backing off"
                && v["listener"] == name
                && v["retry_in_ms"] == 1000
        })
        .await;
    }
    let cpu_during = cpu_ticks(p.pid()) - cpu_before;
    drop(flood);
    wait_until(WAIT, "both listeners answer after the flood", answers).await;
    // No spin: every failed accept sleeps at least 10 ms (MIN_BACKOFF)
    // before the next attempt, so a listener cannot have failed more than
    // once per 10 ms since the flood began. Not a timing threshold: the
    // span is measured after the counts are read, so it holds every
    // failure, and a slow machine only lengthens it. A spinning loop fails
    // thousands of times a second; one backing off fails about once a
    // second at the longest pause, far below the bound.
    let mut errors = Vec::new();
    for name in ["public", "admin"] {
        errors.push((name, accept_errors(admin_addr, name).await));
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    for (name, errors) in errors {
        assert!(errors > 0, "{name}: the flood never exhausted descriptors");
        assert!(
            errors <= elapsed_ms / 10 + 1,
            "{name}: {errors} failed accepts in {elapsed_ms} ms: the accept loop spun"
        );
        eprintln!("{name}: {errors} failed accepts in {elapsed_ms} ms");
    }
    eprintln!("CPU while flooded: {cpu_during} ticks");
}
