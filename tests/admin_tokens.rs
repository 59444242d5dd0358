//! Admin API tokens from files: a rotated token file (a Kubernetes Secret
//! swapped by kubelet) takes effect without a restart, and a broken one
//! keeps the running tokens.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::writers::Kubelet;
use support::*;

const OLD: &str = "editor-token-old-3f9a1c7e5b2d4068";
const NEW: &str = "editor-token-new-8c2e6a0f4d1b9357";

/// A proxy whose editor token comes from a kubelet-written Secret volume
/// (`secret/token`, a link through `..data`), watched by events.
async fn start(s: &Scene, kubelet: &Kubelet) -> (Proxy, SocketAddr) {
    start_watching(s, kubelet, "{ events: true, poll_interval: 1h }").await
}

/// Like `start`, with this `watch:` section.
async fn start_watching(s: &Scene, kubelet: &Kubelet, watch: &str) -> (Proxy, SocketAddr) {
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    kubelet.write(&[("token", OLD)], false);
    let tokens = "[{ role: editor, token_file: secret/token }]";
    let cfg = s.admin_config(watch, tokens, "pki/edge", "");
    let (p, _, api) = start_with_admin(&cfg).await;
    (p, api)
}

/// Wait for the warning that refuses the token file, naming
/// `secret/token` and, in its error, `reason`.
async fn token_file_refused(p: &mut Proxy, reason: &str) {
    p.wait_log("the refused token file's warning", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin token file refused"))
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("secret/token") && e.contains(reason))
    })
    .await;
}

/// Neither token appears anywhere in the proxy's log.
#[track_caller]
fn no_token_in_the_log(p: &Proxy) {
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(OLD) && !logs.contains(NEW),
        "a token in the log"
    );
}

async fn status(api: SocketAddr, token: &str) -> u16 {
    admin(api, "GET", "/api/v1/certs", Some(token), None, &[])
        .await
        .status
}

/// A Secret rotated after a leak: the new token works and the old one is
/// refused, without a restart or a signal.
#[tokio::test]
async fn rotated_token_file_replaces_the_token() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);
    assert_eq!(status(api, NEW).await, 401);

    kubelet.write(&[("token", NEW)], false);
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401, "the leaked token still works");
    no_token_in_the_log(&p);
}

/// A token file that becomes empty keeps the running token, with a warning
/// naming the file; a good one after it is taken.
#[tokio::test]
async fn empty_token_file_keeps_the_running_token() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (mut p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);

    kubelet.write(&[("token", "\n")], false);
    token_file_refused(&mut p, "empty").await;
    assert_eq!(status(api, OLD).await, 200, "the running token was dropped");

    kubelet.write(&[("token", NEW)], false);
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401);
    no_token_in_the_log(&p);
}

/// With nothing watching (no events, no poll), SIGHUP re-reads the token
/// files as it re-reads every certificate file.
#[tokio::test]
async fn sighup_rereads_the_token_file() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start_watching(&s, &kubelet, "{ events: false, poll_interval: 1h }").await;
    assert_eq!(status(api, OLD).await, 200);
    kubelet.write(&[("token", NEW)], false);
    p.signal("HUP");
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401, "the leaked token still works");
}

/// Point the symlink `link` at `target`, atomically (a new link renamed
/// over it, as `ln -sfn` through a temporary name does).
fn relink(link: &std::path::Path, target: &str) {
    let tmp = link.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// A directory no filesystem watch can be placed on: a symlink to itself
/// (ELOOP). It degrades the watcher of whatever path runs through it.
fn looped(s: &Scene, name: &str) {
    std::os::unix::fs::symlink(name, s.path(name)).unwrap();
}

/// A proxy whose editor token is `tok/token`, `tok` a link to `tok-a`
/// (OLD; `tok-b` holds NEW), watched by events, with an unused entry
/// `later` whose files are under `certloop`, a directory no watch can be
/// placed on: the certificate watch is degraded from the start.
async fn start_with_stuck_certificate_watch(s: &Scene) -> (Proxy, SocketAddr) {
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    write(&s.path("tok-a/token"), OLD);
    write(&s.path("tok-b/token"), NEW);
    std::os::unix::fs::symlink("tok-a", s.path("tok")).unwrap();
    looped(s, "certloop");
    looped(s, "tokloop");
    let cfg = s.admin_config(
        "{ events: true, poll_interval: 1h }",
        "[{ role: editor, token_file: tok/token }]",
        "pki/edge",
        "  - { id: later, type: server-pair, cert_file: certloop/later.crt, key_file: certloop/later.key }",
    );
    let (p, _, api) = start_with_admin(&cfg).await;
    (p, api)
}

/// `hotproxy_watch_degraded` is the state of every watch in the process:
/// the token file's watch recovering does not clear it while a
/// certificate directory still cannot be watched. With a watcher of its
/// own for the token files, that watcher's recovery wrote 0 over the
/// certificate watcher's 1: the operator saw 0 while nothing but a 1 h
/// poll looked at the certificate files.
#[tokio::test]
async fn a_token_watch_recovering_leaves_a_stuck_certificate_watch_degraded() {
    let s = Scene::new();
    let (mut p, api) = start_with_stuck_certificate_watch(&s).await;
    wait_metric(api, "hotproxy_watch_degraded 1", Duration::from_secs(10)).await;
    assert_eq!(status(api, OLD).await, 200);

    // The token file's watch fails too, then recovers, with NEW in the file.
    relink(&s.path("tok"), "tokloop");
    p.wait_log("the token directory's failed watch", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot watch directory"))
            && v["path"].as_str().is_some_and(|d| d.ends_with("tokloop"))
    })
    .await;
    relink(&s.path("tok"), "tok-b");
    // The token is re-read after its watch is placed again.
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    let metrics = metrics_text(api).await;
    assert!(
        metrics.lines().any(|l| l == "hotproxy_watch_degraded 1"),
        "certloop is still not watched, yet the gauge says otherwise:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("watch_degraded"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The certificate directory mended: now every watch is placed.
    std::fs::remove_file(s.path("certloop")).unwrap();
    std::fs::create_dir(s.path("certloop")).unwrap();
    wait_metric(api, "hotproxy_watch_degraded 0", Duration::from_secs(10)).await;
}

/// The token files are watched by the one watcher the process has: one
/// inotify instance and one watch thread, not one each for the
/// certificates and the tokens.
#[tokio::test]
async fn token_files_share_the_one_watcher() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);
    let pid = p.pid();
    let inotify = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("inotify"))
        .count();
    let watch_threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "hotproxy-watch")
        .count();
    assert_eq!(
        (inotify, watch_threads),
        (1, 1),
        "(inotify instances, watch threads)"
    );
}

/// A FIFO put where the token file was is refused without waiting for a
/// writer (the running token stays), and the reloader, which the watch
/// reports to, goes on: a certificate reload through the API is answered.
#[tokio::test]
async fn a_fifo_in_place_of_the_token_file_is_refused() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (mut p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);
    mkfifo(&s.path("secret/fifo"));
    relink(&s.path("secret/token"), "fifo");
    p.wait_log("the FIFO's refusal", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin token file refused"))
            && v["error"].as_str().is_some_and(|e| e.contains("FIFO"))
    })
    .await;
    assert_eq!(status(api, OLD).await, 200, "the running token was dropped");
    let r = admin(
        api,
        "POST",
        "/api/v1/certs/edge/reload",
        Some(OLD),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A Secret edited by appending the new token under the old one: the file
/// holds two lines, a value no `Authorization` header can carry. Taken,
/// it replaced the running token and every admin client got 401; it is
/// refused instead, with a warning naming the file and the reason, and
/// the running token stays.
#[tokio::test]
async fn a_two_line_token_file_keeps_the_running_token() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (mut p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);

    kubelet.write(&[("token", &format!("{OLD}\n{NEW}\n"))], false);
    token_file_refused(&mut p, "line break").await;
    assert_eq!(status(api, OLD).await, 200, "the running token was dropped");
    no_token_in_the_log(&p);
}

/// A token file an editor saved with a byte-order mark: `check` and `run`
/// refuse it (exit 1), naming the file and the reason, never the token.
#[test]
fn a_token_with_a_byte_order_mark_is_refused_at_startup() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    write(&s.path("secret/token"), &format!("\u{feff}{OLD}\n"));
    let cfg = s.admin_config(
        "{ events: true, poll_interval: 1h }",
        "[{ role: editor, token_file: secret/token }]",
        "pki/edge",
        "",
    );
    for command in ["check", "run"] {
        let (code, out, err) = run_cli(&[command, "--config", cfg.to_str().unwrap()]);
        assert_eq!(code, 1, "{command}: {out}{err}");
        assert!(
            err.contains("admin.tokens[0].token_file")
                && err.contains("secret/token")
                && err.contains("byte-order mark"),
            "{command}: {err}"
        );
        assert!(
            !err.contains(OLD) && !out.contains(OLD),
            "{command}: the token in {err}"
        );
    }
}

/// A wrong or missing token left no trace: a brute force of the admin API
/// went unseen. Each refusal (401) is counted by reason; the first of a
/// client address in a minute is a warning with the address and the path,
/// never the token, and the rest of that minute's are counted only, so a
/// brute force cannot flood the log. Another address gets its own line.
#[tokio::test]
async fn refused_tokens_are_logged_once_a_minute_per_address_and_counted() {
    const GUESS: &str = "guessed-token-0f3a9c2e7b5d1486";
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start(&s, &kubelet).await;
    let before = metrics_text(api).await;
    let zero = "hotproxy_admin_auth_failures_total{reason=\"invalid_token\"} 0";
    assert!(before.lines().any(|l| l == zero), "{zero} in:\n{before}");
    for _ in 0..5 {
        assert_eq!(status(api, GUESS).await, 401);
    }
    let r = admin(api, "GET", "/api/v1/listeners", None, None, &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // From 127.0.0.2, another client: its own line, written after the
    // refusals above were answered (the log is written in order).
    let mut other = tcp_from("127.0.0.2", api).await;
    let req = format!(
        "GET /api/v1/certs/edge HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {GUESS}\r\nConnection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut other, req.as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut other).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");

    let refused = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin API request refused"))
    };
    let mut p = p;
    p.wait_log("the other client's line", |v| {
        refused(v)
            && v["client_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.2:"))
    })
    .await;
    let lines: Vec<serde_json::Value> = p
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v| refused(v))
        .collect();
    assert_eq!(lines.len(), 2, "one line per address: {lines:?}");
    let first = &lines[0];
    assert_eq!(first["level"], "WARN", "{first}");
    assert_eq!(first["path"], "/api/v1/certs", "{first}");
    assert_eq!(first["reason"], "invalid_token", "{first}");
    assert!(
        first["client_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{first}"
    );
    assert_eq!(lines[1]["path"], "/api/v1/certs/edge", "{}", lines[1]);
    let logs = p.logs().join("\n");
    assert!(!logs.contains(GUESS), "the presented token in the log");
    no_token_in_the_log(&p);

    let metrics = metrics_text(api).await;
    for line in [
        "hotproxy_admin_auth_failures_total{reason=\"invalid_token\"} 6",
        "hotproxy_admin_auth_failures_total{reason=\"missing_token\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// The refused-token warning wrote the request's path whole: up to 64 KiB
/// in one log line, one per address a minute. It shows the first 256
/// bytes now, and the length of the whole in `path_bytes`.
#[tokio::test]
async fn a_refused_tokens_long_path_is_cut_in_its_warning() {
    const GUESS: &str = "guessed-token-7c1e0a9d3f5b2864";
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (mut p, api) = start(&s, &kubelet).await;
    let path = format!("/api/v1/certs/{}", "a".repeat(60 * 1024));
    let mut conn = tcp_from("127.0.0.3", api).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {GUESS}\r\nConnection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, req.as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut conn).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let line = p
        .wait_line("the refusal's warning", |l| {
            l.contains("admin API request refused") && l.contains("\"127.0.0.3:")
        })
        .await;
    assert!(line.len() < 1024, "{} bytes: {line}", line.len());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"].as_str().unwrap(), &path[..256], "{line}");
    assert_eq!(v["path_bytes"], path.len(), "{line}");
    assert!(!line.contains(GUESS), "{line}");
}

/// `run` checked the admin section only once the listeners were serving:
/// a token file still holding the manifests' placeholder left them
/// accepting until the exit, and beside a missing certificate it took two
/// failed starts to learn both. Refused now before any listener is bound,
/// in the one ERROR event that names every problem.
#[test]
fn a_refused_admin_section_is_refused_with_the_rest_before_any_listener() {
    let s = Scene::new();
    write(
        &s.path("secret/token"),
        "replace-me-with-openssl-rand-hex-32\n",
    );
    // A port of its own, probed while the refused process runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = s.config(&format!(
        "admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: editor, token_file: secret/token }}]\n\
         listeners:\n{}\n",
        listener_yaml("public", &format!("127.0.0.1:{port}"), "[]")
    ));
    let run = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(&cfg)
            .current_dir(s.path(""))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Until it exits (its start refused), the listener's port refuses
        // every connection: nothing was ever listening on it.
        let mut accepted = 0;
        while child.try_wait().unwrap().is_none() {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                accepted += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr, accepted)
    };
    let errors = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "ERROR")
            .map(|v| v["error"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    // The certificate missing too: one refusal names both.
    let (code, stderr, accepted) = run();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(accepted, 0, "the listener accepted:\n{stderr}");
    let errors_seen = errors(&stderr);
    assert_eq!(errors_seen.len(), 1, "one ERROR event:\n{stderr}");
    assert!(
        errors_seen[0].contains("listeners.public.tls.certs[0]")
            && errors_seen[0].contains("secret/token"),
        "the certificate and the token file in one ERROR:\n{stderr}"
    );

    // The certificate there: refused for the token before any listener.
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let (code, stderr, accepted) = run();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(accepted, 0, "the listener accepted:\n{stderr}");
    let errors_seen = errors(&stderr);
    assert_eq!(errors_seen.len(), 1, "one ERROR event:\n{stderr}");
    assert!(errors_seen[0].contains("secret/token"), "{stderr}");
    assert!(
        !stderr.contains("\"listening\""),
        "a listener was listening before the refusal:\n{stderr}"
    );
    assert!(
        !stderr.contains("openssl-rand-hex"),
        "the token in {stderr}"
    );
}

/// A refused start logged each short token's warning twice: `run` read
/// the tokens once to load them (stopping at the missing file) and again
/// to name every problem, and each read warned. Now once.
#[test]
fn a_refused_start_warns_once_per_short_token() {
    const VAR: &str = "HOTPROXY_ADMIN_TOKENS_SHORT_ONCE";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    let cfg = s.admin_config(
        "{ events: true, poll_interval: 1h }",
        &format!("[{{ role: viewer, token_env: {VAR} }}, {{ role: editor, token_file: missing }}]"),
        "pki/edge",
        "",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["run", "--log-format", "json", "--config"])
        .arg(&cfg)
        .env(VAR, "short123")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let short = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("admin token is shorter than 16"))
        })
        .count();
    assert_eq!(short, 1, "one warning for the one short token:\n{stderr}");
    assert!(!stderr.contains("short123"), "the token in {stderr}");
}
