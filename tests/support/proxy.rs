//! The real proxy binary as a child process (JSON logs read back), its CLI, and the scene directory it runs in.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{TestPair, write};

/// Benchmarks print their own table; tests echo the proxy's log (shown on failure).
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The real proxy binary, run with JSON logs so tests can read addresses and events.
pub struct Proxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Set: stderr is read no further (a stalled log collector).
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(config: &Path) -> Proxy {
        Proxy::spawn(Command::new(env!("CARGO_BIN_EXE_hotproxy")), config)
    }

    /// Start with `--log-level level` and `env` set (and `RUST_LOG`
    /// removed unless `env` sets it), for the logging tests.
    pub fn start_logging(config: &Path, level: &str, env: &[(&str, &str)]) -> Proxy {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotproxy"));
        command.env_remove("RUST_LOG").envs(env.iter().copied());
        Proxy::spawn_at(command, config, level)
    }

    /// Start with at most `nofile` open file descriptors (`ulimit -n`), for
    /// fault tests; `sh` execs the proxy, so `pid()` is the proxy's.
    pub fn start_with_fd_limit(config: &Path, nofile: u32) -> Proxy {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn(sh, config)
    }

    /// Start allowed to run on one CPU only (`taskset -c N`, which the
    /// process's available parallelism honours as it does a 1-CPU cgroup
    /// quota); `taskset` execs the proxy, so `pid()` is the proxy's. `N`
    /// is the first CPU this process may run on: a fixed `0` fails
    /// ("Invalid argument") where a container is given other CPUs.
    pub fn start_on_one_cpu(config: &Path) -> Proxy {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in /proc/self/status");
        let first = allowed
            .trim()
            .split([',', '-'])
            .next()
            .expect("a CPU in Cpus_allowed_list")
            .to_owned();
        let mut taskset = Command::new("taskset");
        taskset
            .args(["-c", &first])
            .arg(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn(taskset, config)
    }

    /// Start with a soft open-file limit of `soft` under a hard one of
    /// `hard` (as systemd starts a service: 1024 under 524288); `sh` execs
    /// the proxy, so `pid()` is the proxy's.
    pub fn start_with_nofile(config: &Path, soft: u64, hard: u64) -> Proxy {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""),
        ])
        .arg(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn(sh, config)
    }

    /// Start in a mount namespace of its own where `resolv_conf` is
    /// `/etc/resolv.conf`: its DNS lookups of names not in `/etc/hosts` go
    /// to the name server that file names (a test's, on loopback), and no
    /// other process's do. `unshare` and `sh` exec the proxy, so `pid()` is
    /// the proxy's. Needs root, as the /etc/hosts tests do.
    pub fn start_with_resolv_conf(config: &Path, resolv_conf: &Path) -> Proxy {
        let mut unshare = Command::new("unshare");
        unshare
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"")
            .arg(resolv_conf)
            .arg(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn(unshare, config)
    }

    /// Start in a network namespace of its own (loopback up) where `sysctl`
    /// (`net.ipv4.tcp_wmem=4096 16384 65536`) is set first: kernel
    /// buffers of a network's size rather than loopback's, for no other
    /// process. Clients reach it through sockets made in its namespace
    /// (`/proc/PID/ns/net`); `unshare` and `sh` exec the proxy, so `pid()`
    /// is the proxy's. Needs root.
    pub fn start_in_netns(config: &Path, sysctl: &str) -> Proxy {
        Proxy::start_in_netns_at(config, sysctl, "debug")
    }

    /// [`Proxy::start_in_netns`] with `--log-level level`.
    pub fn start_in_netns_at(config: &Path, sysctl: &str, level: &str) -> Proxy {
        let mut unshare = Command::new("unshare");
        unshare
            .args(["--net", "sh", "-c"])
            .arg("ip link set lo up && sysctl -q -w \"$0\" && exec \"$@\"")
            .arg(sysctl)
            .arg(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn_at(unshare, config, level)
    }

    /// Start as the unprivileged user `uid` (group `gid`, no supplementary
    /// groups), as the proxy is deployed, from a copy of the binary in
    /// `dir` and with `dir` as the working directory: the build's own
    /// directories may be closed to that user. The test itself keeps its
    /// user (root, which reads any file) to write files as root does.
    pub fn start_as(config: &Path, dir: &Path, uid: u32, gid: u32) -> Proxy {
        use std::os::unix::process::CommandExt;
        let bin = dir.join("hotproxy");
        if std::fs::hard_link(env!("CARGO_BIN_EXE_hotproxy"), &bin).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_hotproxy"), &bin).unwrap();
        }
        let mut command = Command::new(bin);
        command.current_dir(dir).uid(uid).gid(gid);
        Proxy::spawn(command, config)
    }

    /// Start with `--log-format text` at debug: [`Proxy::logs`] and
    /// [`Proxy::wait_line`] read its lines, [`Proxy::wait_log`] none.
    pub fn start_text(config: &Path) -> Proxy {
        let command = Command::new(env!("CARGO_BIN_EXE_hotproxy"));
        Proxy::spawn_as(command, config, "text", "debug")
    }

    fn spawn(command: Command, config: &Path) -> Proxy {
        Proxy::spawn_at(command, config, "debug")
    }

    fn spawn_at(command: Command, config: &Path, level: &str) -> Proxy {
        Proxy::spawn_as(command, config, "json", level)
    }

    fn spawn_as(mut command: Command, config: &Path, format: &str, level: &str) -> Proxy {
        let mut child = command
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-format", format, "--log-level", level])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hotproxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        let echo = !QUIET.load(std::sync::atomic::Ordering::Relaxed);
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stall = stalled.clone();
        std::thread::spawn(move || {
            let mut stderr = BufReader::new(stderr).lines();
            while let Some(Ok(line)) = stderr.next() {
                if echo {
                    eprintln!("[hotproxy] {line}");
                }
                sink.lock().unwrap().push(line);
                while stall.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::park();
                }
            }
        });
        Proxy {
            child,
            lines,
            stalled,
        }
    }

    /// Stop reading the proxy's stderr (after at most one more line), the
    /// pipe left open: a log collector that stalled.
    pub fn stall_stderr(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The process id, for reading `/proc/PID/*` (memory, CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn find(&self, pred: &dyn Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| pred(v))
    }

    /// Wait (bounded) for a log event matching `pred`.
    pub async fn wait_log(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        // An upper bound, not an expectation: a debug build opening a
        // 63 MB store (admin_hardening's store tests) on a loaded machine
        // took over 20 s to log `admin listening`.
        self.wait_until(what, Duration::from_secs(60), |p| p.find(&pred))
            .await
    }

    /// Wait (bounded) for `n` log events matching `pred`.
    pub async fn wait_logs(
        &mut self,
        what: &str,
        n: usize,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) {
        self.wait_until(what, Duration::from_secs(60), |p| {
            let lines = p.lines.lock().unwrap();
            let parsed = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
            (parsed.filter(|v| pred(v)).count() >= n).then_some(())
        })
        .await
    }

    /// Wait (bounded) for a log line, as written, matching `pred`.
    pub async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, Duration::from_secs(20), |p| {
            p.lines.lock().unwrap().iter().find(|l| pred(l)).cloned()
        })
        .await
    }

    /// The one bounded wait for the log: polls `found` until it yields,
    /// panicking if hotproxy exits first or `limit` passes.
    async fn wait_until<T>(
        &mut self,
        what: &str,
        limit: Duration,
        found: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = found(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hotproxy exited ({status}) while waiting for: {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for log: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address a listener bound (configs use port 0).
    pub async fn listener_addr(&mut self, name: &str) -> SocketAddr {
        let v = self
            .wait_log("listening", |v| {
                v["message"] == "listening" && v["listener"] == name
            })
            .await;
        v["addr"].as_str().unwrap().parse().unwrap()
    }

    pub async fn admin_addr(&mut self) -> SocketAddr {
        let v = self
            .wait_log("admin listening", |v| v["message"] == "admin listening")
            .await;
        v["addr"].as_str().unwrap().parse().unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "hotproxy did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one `hotproxy` command may run before a test kills it: a
/// command meant to exit (a refusal, `check`, `certs …`) that starts
/// serving instead must fail the test, not hang CI.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// `command`'s output, as `Command::output` gives it, but killed at
/// `CLI_DEADLINE` with a panic naming the command line. Stdin is null;
/// stdout and stderr are what the caller set (`Stdio::piped()` to capture:
/// a pipe's bytes are read back, anything else gives none).
pub fn output_within_deadline(command: &mut Command) -> std::process::Output {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| {
            let a = Path::new(a);
            // The binary by its name, not the target directory's path.
            if a == Path::new(env!("CARGO_BIN_EXE_hotproxy")) {
                "hotproxy".to_owned()
            } else {
                a.display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {line}: {e}"));
    // Drained on threads, so a child that fills a pipe is not blocked by us.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{line} still running after {} s", CLI_DEADLINE.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `hotproxy check` / any subcommand: (exit code, stdout, stderr), killed
/// with a panic if it runs past `CLI_DEADLINE`.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A temp directory that holds a test's config and PKI.
pub struct Scene {
    pub dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Scene {
        Scene {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn pair(&self, stem: &str, p: &TestPair) {
        write(&self.path(&format!("{stem}.crt")), &p.cert_pem);
        write(&self.path(&format!("{stem}.key")), &p.key_pem);
    }

    pub fn config(&self, yaml: &str) -> PathBuf {
        let p = self.path("config.yaml");
        write(&p, yaml);
        p
    }

    /// The admin API and listener `public` (`a.crt`, `a.key`) with
    /// `routes` (a YAML value), then `upstreams` (list items, each starting
    /// on a new line indented two spaces).
    pub fn public_config(&self, routes: &str, upstreams: &str) -> PathBuf {
        self.config(&format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
{}
upstreams:{upstreams}
"#,
            listener_yaml("public", "127.0.0.1:0", routes)
        ))
    }
}

/// One list item of `listeners:`, serving `a.crt` / `a.key` on `bind`
/// with `routes` (a YAML value).
pub fn listener_yaml(name: &str, bind: &str, routes: &str) -> String {
    format!(
        "  - name: {name}
    bind: {bind}
    tls:
      certs:
        - {{ cert_file: a.crt, key_file: a.key }}
    routes: {routes}"
    )
}

impl Scene {
    /// The config most upstream tests need: listener `public` routing
    /// everything to upstream `name`, one https server at `server`
    /// (`backend-ca.crt`, name `backend.local`), and `extra` lines of
    /// upstream settings (one per line, e.g. `connect_timeout: 1s`).
    pub fn one_upstream_config(
        &self,
        name: &str,
        server: std::net::SocketAddr,
        extra: &[&str],
    ) -> PathBuf {
        let extra: String = extra.iter().map(|l| format!("\n    {l}")).collect();
        self.public_config(
            &format!("[{{ upstream: {name} }}]"),
            &format!(
                "\n  - name: {name}\n    servers: [https://{server}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}{extra}"
            ),
        )
    }
}

/// The most resident memory a process had, in KiB, sampled every 100 ms
/// for 2 s (while something pours in that it should not keep).
pub async fn peak_rss_kib(pid: u32) -> u64 {
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(rss_kib(pid));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    most
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A process's peak resident memory so far (VmHWM), in KiB: what a pod's
/// memory limit is measured against, however briefly it was reached.
pub fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

/// `cfg` with 8 workers and a 1 s `shutdown_grace` (the runtime that
/// drops its tasks on two workers at once), and `more` settings, put
/// before the rest.
pub fn cut_in_a_second(cfg: &std::path::Path, more: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let runtime = "runtime: { worker_threads: 8, shutdown_grace: 1s }\n";
    write(cfg, &format!("{runtime}{more}{text}"));
}

/// The proxy's log lines that contain any of `texts`.
pub fn logged_with(p: &Proxy, texts: &[&str]) -> Vec<String> {
    let lines = p.logs().into_iter();
    lines
        .filter(|l| texts.iter().any(|t| l.contains(t)))
        .collect()
}
