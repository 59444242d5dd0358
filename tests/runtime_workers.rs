//! `runtime.worker_threads: 0` on a process allowed one CPU runs the current-thread runtime, as `1` does.

mod support;

use support::*;

/// Under a 1-CPU limit (here an affinity mask, which tokio's worker count
/// honours as it does a cgroup quota) the default `0` means one worker: the
/// current-thread runtime, measured faster than a one-worker multi-thread
/// one. Before, only a written `1` chose it.
#[tokio::test]
async fn zero_workers_on_one_cpu_is_the_current_thread_runtime() {
    let scene = Scene::new();
    let (mut p, line) = zero_workers_on_one_cpu(&scene).await;
    assert_eq!(line["worker_threads"], 1, "{line}");
    assert_eq!(line["configured"], 0, "{line}");
    p.admin_addr().await;
    // The log's `flavor` is worked out apart from the builder chosen, so
    // the threads say what ran. A multi-thread runtime's workers are
    // `tokio-rt-worker` (tokio 1.54); the reloader and watcher have own names.
    let comms = thread_names(&p);
    assert!(
        !comms.iter().any(|c| c == "tokio-rt-worker"),
        "a multi-thread runtime's worker runs: {comms:?}"
    );
}

/// A scrape is rendered off the current-thread runtime that serves every
/// connection (SPEC §5): on a blocking
/// thread, which tokio names as it names workers, `tokio-rt-worker`, and
/// keeps for 10 s after its work. The runtime itself has no such thread
/// (above), so one after the scrape is the one that rendered it; before,
/// the render (every series, /proc reads) ran on the runtime's own thread
/// and stalled every proxied request meanwhile, and none was there.
#[tokio::test]
async fn a_scrape_renders_off_the_current_thread_runtime() {
    let scene = Scene::new();
    let (mut p, _) = zero_workers_on_one_cpu(&scene).await;
    let api = p.admin_addr().await;
    let before = thread_names(&p);
    assert!(
        !before.iter().any(|c| c == "tokio-rt-worker"),
        "a blocking thread before any scrape: {before:?}"
    );
    let r = admin(api, "GET", "/metrics", None, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("process_open_fds "), "{}", r.body);
    let after = thread_names(&p);
    assert!(
        after.iter().any(|c| c == "tokio-rt-worker"),
        "the scrape was rendered on the runtime's thread: {after:?}"
    );
}

/// A proxy with `worker_threads: 0` started under a 1-CPU limit, and its
/// runtime line, already checked to say the current-thread runtime.
async fn zero_workers_on_one_cpu(scene: &Scene) -> (Proxy, serde_json::Value) {
    let cfg = scene.config(
        r#"
runtime: { worker_threads: 0 }
admin: { bind: "127.0.0.1:0" }
listeners: []
upstreams: []
"#,
    );
    let mut p = Proxy::start_on_one_cpu(&cfg);
    let line = p
        .wait_log("the runtime line", |v| v["message"] == "runtime")
        .await;
    assert_eq!(line["flavor"], "current_thread", "{line}");
    (p, line)
}

/// The names (`comm`) of the proxy's threads.
fn thread_names(p: &Proxy) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{}/task", p.pid()))
        .expect("the proxy's /proc/PID/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect()
}
