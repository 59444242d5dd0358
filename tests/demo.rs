//! `hotproxy demo` takes `--log-level` and `--log-format` like `run`, and
//! re-issues its dev PKI's pairs when they expire.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(20);

/// Kills the demo when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo's `./config.yaml`: the shipped one's shape, its listener on
/// an ephemeral port and its echo backend at `echo`.
fn demo_config(scene: &Scene, echo: &str) {
    scene.config(&demo_yaml(echo));
}

/// The demo's configuration, its echo backend at `echo`.
fn demo_yaml(echo: &str) -> String {
    format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: demo-pki/server.crt, key_file: demo-pki/server.key }}
    routes:
      - {{ path_prefix: /, upstream: echo }}
upstreams:
  - name: echo
    servers: [https://{echo}]
    tls:
      ca: {{ ca_file: demo-pki/ca.crt }}
      client_cert: {{ cert_file: demo-pki/client.crt, key_file: demo-pki/client.key }}
"#
    )
}

/// An address for the echo backend: a port the system just handed out,
/// free again.
fn free_echo() -> String {
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    echo.local_addr().unwrap().to_string()
}

/// A running `hotproxy demo` (killed when dropped), with its stdout lines
/// and its JSON log lines as they come.
struct Demo {
    _child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Demo {
    /// `hotproxy demo --log-format json ARGS` in the scene's directory.
    fn start(scene: &Scene, args: &[&str]) -> Demo {
        Demo::start_in(scene.dir.path(), args)
    }

    /// `hotproxy demo --log-format json ARGS` in `dir`.
    fn start_in(dir: &Path, args: &[&str]) -> Demo {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_hotproxy"))
                .args(["demo", "--log-format", "json"])
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let logs = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let sink = logs.clone();
        let stderr = child.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[demo] {line}");
                // --log-format json: every line is a JSON event.
                let v = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap().push(v);
            }
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        let out = child.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("[demo stdout] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Demo {
            _child: child,
            stdout,
            logs,
        }
    }

    fn find(&self, pred: &dyn Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        self.logs.lock().unwrap().iter().find(|v| pred(v)).cloned()
    }

    /// The proxy's listening address, once it logs it.
    async fn listening(&self) -> std::net::SocketAddr {
        let listening = |v: &serde_json::Value| v["message"] == "listening";
        wait_until(WAIT, "the demo listening", || async {
            self.find(&listening).is_some()
        })
        .await;
        let listening = self.find(&listening).unwrap();
        listening["addr"].as_str().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn demo_logs_at_the_level_it_is_given() {
    let scene = Scene::new();
    // An ephemeral listener; the echo backend on a port the system just
    // handed out, free again (port 0 is no server's port: refused).
    demo_config(&scene, &free_echo());
    let demo = Demo::start(&scene, &["--log-level", "debug"]);
    let addr = demo.listening().await;
    // A handshake failure is logged at debug only: seen because of
    // --log-level debug. The line of this connection, by its port (startup
    // logs debug lines of its own, which would prove nothing).
    let dropped = tokio::net::TcpStream::connect(addr).await.unwrap();
    let peer = dropped.local_addr().unwrap().to_string();
    drop(dropped);
    wait_until(WAIT, "a debug line at --log-level debug", || async {
        demo.find(&|v| v["level"] == "DEBUG" && v["peer"] == peer.as_str())
            .is_some()
    })
    .await;
    assert!(
        demo.logs.lock().unwrap().iter().all(|v| !v.is_null()),
        "every line is JSON"
    );
}

/// A leaf signed by the dev CA in `pki` for `names` (a server's; none
/// for a client), valid until `not_after`, written over `STEM.crt` /
/// `STEM.key`.
fn reissue_until(pki: &Path, stem: &str, names: &[&str], not_after: time::OffsetDateTime) {
    let server = !names.is_empty();
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt"), ca_key).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = rcgen::CertificateParams::new(names).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("old demo {stem}"));
    p.extended_key_usages = vec![if server {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.not_before = not_after - time::Duration::days(90);
    p.not_after = not_after;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    write(&pki.join(format!("{stem}.key")), &key.serialize_pem());
    write(&pki.join(format!("{stem}.crt")), &cert.pem());
}

/// The fingerprint of the certificate in `path`.
fn file_fingerprint(path: &Path) -> String {
    fingerprint(certs(&std::fs::read_to_string(path).unwrap())[0].as_ref())
}

/// The demo's dev PKI is made once; its pairs last 90 days. It made them
/// again only when one was missing, so 90 days after the first run the
/// demo served an expired certificate and its echo backend refused the
/// proxy's expired client certificate. Now a pair that expired, or
/// expires within 7 days, is issued again from the same CA, and the demo
/// says why; the request the demo suggests goes through.
#[tokio::test]
async fn demo_reissues_pairs_that_expired_or_are_about_to() {
    let scene = Scene::new();
    let (_, out, err) = run_cli(&[
        "certs",
        "dev-pki",
        "--out",
        scene.path("demo-pki").to_str().unwrap(),
    ]);
    assert!(scene.path("demo-pki/ca.crt").exists(), "{out}{err}");
    let pki = scene.path("demo-pki");
    let now = time::OffsetDateTime::now_utc();
    reissue_until(
        &pki,
        "server",
        &["localhost", "127.0.0.1"],
        now - time::Duration::days(1),
    );
    reissue_until(&pki, "client", &[], now + time::Duration::days(2));
    let (old_server, old_client) = (
        file_fingerprint(&pki.join("server.crt")),
        file_fingerprint(&pki.join("client.crt")),
    );
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    // The echo backend's port must be known for the proxy to reach it:
    // one the system just handed out, free again.
    let echo = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    demo_config(&scene, &echo.to_string());
    let demo = Demo::start(&scene, &[]);
    let addr = demo.listening().await;
    let reply = get(
        addr,
        "localhost",
        client_config(&ca, None, &[b"http/1.1"]),
        false,
        "/hello",
        &[],
    )
    .await
    .expect("the demo's request over TLS, verified against the demo CA");
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Served: the new server pair; the backend saw the new client pair.
    let (server, client) = (
        file_fingerprint(&pki.join("server.crt")),
        file_fingerprint(&pki.join("client.crt")),
    );
    assert_ne!(server, old_server, "server pair not re-issued");
    assert_ne!(client, old_client, "client pair not re-issued");
    assert_eq!(reply.leaf, server);
    assert_eq!(
        reply.json()["proxy_client_certificate"]["fingerprint_sha256"],
        client.as_str()
    );
    assert_eq!(
        std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        ca,
        "the demo CA was replaced"
    );
    // And it said why, naming both files.
    let stdout = demo.stdout.lock().unwrap().join("\n");
    let said = stdout
        .lines()
        .find(|l| l.contains("re-issued"))
        .unwrap_or_else(|| panic!("no re-issue line in:\n{stdout}"));
    assert!(
        said.contains("server.crt expired on") && said.contains("client.crt expires on"),
        "{said}"
    );
}

/// The SANs of the certificate in `path`.
fn file_sans(path: &Path) -> Vec<String> {
    let der = certs(&std::fs::read_to_string(path).unwrap())[0].clone();
    hotproxy::material::info::inspect(der.as_ref())
        .unwrap()
        .sans
}

/// The demo re-issued an expiring server pair for `localhost` and
/// `127.0.0.1` whatever names it carried: after a rotation with the
/// demo's own hint and `--name myhost.test`, the next start near expiry
/// silently served a certificate `myhost.test` no longer verified
/// against. Now the new pair carries the names of the one it replaces,
/// and the demo says which.
#[tokio::test]
async fn demo_reissues_an_expiring_server_pair_for_the_names_it_carried() {
    let scene = Scene::new();
    let pki = scene.path("demo-pki");
    let (_, out, err) = run_cli(&[
        "certs",
        "dev-pki",
        "--out",
        pki.to_str().unwrap(),
        "--name",
        "myhost.test",
        "--name",
        "127.0.0.1",
    ]);
    assert!(pki.join("ca.crt").exists(), "{out}{err}");
    let now = time::OffsetDateTime::now_utc();
    reissue_until(
        &pki,
        "server",
        &["myhost.test", "127.0.0.1"],
        now + time::Duration::days(3),
    );
    let old_server = file_fingerprint(&pki.join("server.crt"));
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let echo = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    demo_config(&scene, &echo.to_string());
    // (127.0.0.1 too: the demo's proxy verifies its echo backend, which
    // serves `server.crt`, as the upstream URL's host.)
    let demo = Demo::start(&scene, &[]);
    let addr = demo.listening().await;
    let server = file_fingerprint(&pki.join("server.crt"));
    assert_ne!(server, old_server, "server pair not re-issued");
    assert_eq!(
        file_sans(&pki.join("server.crt")),
        ["myhost.test", "127.0.0.1"],
        "the new server pair lost the names of the one it replaced"
    );
    // Served, and verified for the name it was issued for.
    let reply = get(
        addr,
        "myhost.test",
        client_config(&ca, None, &[b"http/1.1"]),
        false,
        "/hello",
        &[],
    )
    .await
    .expect("a request to myhost.test, verified against the demo CA");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.leaf, server);
    let reissued = || {
        let lines = demo.stdout.lock().unwrap();
        lines.iter().find(|l| l.contains("re-issued")).cloned()
    };
    wait_until(WAIT, "the demo's re-issue line", || async {
        reissued().is_some()
    })
    .await;
    let said = reissued().unwrap();
    assert!(
        said.contains("server.crt expires on") && said.contains("myhost.test, 127.0.0.1"),
        "{said}"
    );
}

/// The words `sh` reads in `line` (a command, no pipe), as `printf`
/// prints them back one a line.
fn sh_words(line: &str) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {line}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "sh refused {line}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The demo's printed command that rotates its dev PKI (leading spaces cut).
fn rotate_line(demo: &Demo) -> Option<String> {
    let lines = demo.stdout.lock().unwrap();
    lines
        .iter()
        .find(|l| l.contains(" certs dev-pki "))
        .map(|l| l.trim_start().to_owned())
}

/// The binary the tests run, as the process itself names it.
fn running_binary() -> std::path::PathBuf {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_hotproxy")).unwrap()
}

/// The rotate command the demo printed was `cargo run --release -- certs
/// dev-pki --out DIR`: pasted anywhere but the source tree (an installed
/// binary, the image) it failed (`could not find Cargo.toml`), and it
/// named no `--name`, so a PKI issued for `myhost.test` was rotated to
/// `localhost`. It names the running binary and the server pair's names:
/// pasted in another directory, it rotates the pair, its names kept.
#[tokio::test]
async fn demo_rotate_command_works_where_it_is_pasted() {
    let scene = Scene::new();
    let pki = scene.path("demo-pki");
    let (code, out, err) = run_cli(&[
        "certs",
        "dev-pki",
        "--out",
        pki.to_str().unwrap(),
        "--name",
        "myhost.test",
        "--name",
        "127.0.0.1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    demo_config(&scene, &free_echo());
    let demo = Demo::start(&scene, &[]);
    demo.listening().await;
    wait_until(WAIT, "the demo's rotate command", || async {
        rotate_line(&demo).is_some()
    })
    .await;
    let line = rotate_line(&demo).unwrap();
    let before = file_fingerprint(&pki.join("server.crt"));
    // Pasted in a directory that is not the source tree.
    let elsewhere = tempfile::tempdir().unwrap();
    let pasted = output_within_deadline(
        Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(elsewhere.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(pasted.status.success(), "`{line}`: {pasted:?}");
    assert_ne!(
        file_fingerprint(&pki.join("server.crt")),
        before,
        "`{line}` rotated nothing"
    );
    assert_eq!(
        file_sans(&pki.join("server.crt")),
        ["myhost.test", "127.0.0.1"],
        "`{line}` lost the server pair's names"
    );
}

/// The commands the demo prints for the operator to paste name its dev
/// PKI as a shell reads it back, each path one word. A directory named
/// `it's a "$HOME" `id` dir` was printed as it is: pasted, the quote
/// left the command unfinished, or the words split at its spaces, `$HOME`
/// expanded and `id` ran.
#[tokio::test]
async fn demo_commands_paste_as_the_paths_they_name() {
    let scene = Scene::new();
    let dir = scene.path("it's a \"$HOME\" `id` dir");
    std::fs::create_dir(&dir).unwrap();
    write(&dir.join("config.yaml"), &demo_yaml(&free_echo()));
    let demo = Demo::start_in(&dir, &[]);
    demo.listening().await;
    // As the demo names it: the configuration's directory, absolute.
    let pki = std::fs::canonicalize(&dir).unwrap().join("demo-pki");
    let file = |name: &str| pki.join(name).to_str().unwrap().to_owned();
    // The lines printed that start with `start` (leading spaces cut).
    let printed = |start: &str| {
        let lines = demo.stdout.lock().unwrap();
        let lines = lines.iter().map(|l| l.trim_start());
        lines
            .filter(|l| l.starts_with(start))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "the demo's commands", || async {
        rotate_line(&demo).is_some()
    })
    .await;
    let curls = printed("curl --cacert");
    assert_eq!(curls.len(), 2, "{curls:?}");
    let curl = sh_words(&curls[0]);
    assert_eq!(curl.len(), 4, "{curl:?}");
    assert_eq!(curl[..3], ["curl", "--cacert", &file("ca.crt")]);
    assert!(curl[3].starts_with("https://localhost:"), "{curl:?}");
    let with_cert = sh_words(&curls[1]);
    assert_eq!(with_cert.len(), 8, "{with_cert:?}");
    assert_eq!(
        with_cert[..7],
        [
            "curl",
            "--cacert",
            &file("ca.crt"),
            "--cert",
            &file("client.crt"),
            "--key",
            &file("client.key")
        ]
    );
    assert_eq!(
        sh_words(&rotate_line(&demo).unwrap()),
        [
            running_binary().to_str().unwrap(),
            "certs",
            "dev-pki",
            "--out",
            pki.to_str().unwrap(),
            "--name",
            "localhost",
            "--name",
            "127.0.0.1"
        ]
    );
    // And the files it names are the demo's.
    assert!(Path::new(&file("ca.crt")).is_file());
}

/// A demo whose listener cannot bind (another process holds the port)
/// exits saying so, and tells the operator nothing to try. It printed
/// "try it: curl ... https://localhost:8443/hello" and "Ctrl-C stops it"
/// before it bound anything, then the bind error after them: the commands
/// it suggested reached whatever held the port, or nothing.
#[tokio::test]
async fn demo_that_cannot_bind_suggests_no_commands() {
    let scene = Scene::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml =
        demo_yaml(&free_echo()).replace("bind: 127.0.0.1:0", &format!("bind: 127.0.0.1:{port}"));
    write(&scene.path("config.yaml"), &yaml);
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .arg("demo")
        .current_dir(scene.dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("the demo exits")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !stdout.contains("curl") && !stdout.contains("Ctrl-C"),
        "commands suggested for a demo that did not start:\n{stdout}"
    );
    drop(taken);
}

/// `demo` run where `./config.yaml` is another configuration wrote its dev
/// PKI (a CA private key among it) into `demo-pki/` beside that file, and
/// only then found no `echo` upstream and exited 1. It is refused before
/// any file is written, naming the file and what it looked for: the `echo`
/// upstream, or a certificate file in `demo-pki/`.
#[test]
fn demo_beside_another_configuration_writes_nothing() {
    let echo = free_echo();
    let others = [
        (
            // A proxy of its own: no `echo` upstream.
            r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { cert_file: /etc/ssl/mine.crt, key_file: /etc/ssl/mine.key }
    routes:
      - { path_prefix: /, upstream: app }
upstreams:
  - name: app
    servers: [http://127.0.0.1:9]
"#
            .to_owned(),
            "upstream named `echo`",
        ),
        (
            // An `echo` upstream, but its certificates are elsewhere.
            demo_yaml(&echo).replace("demo-pki/", "/etc/ssl/"),
            "demo-pki",
        ),
    ];
    for (yaml, looked_for) in others {
        let scene = Scene::new();
        let cfg = scene.config(&yaml);
        let out = output_within_deadline(
            Command::new(env!("CARGO_BIN_EXE_hotproxy"))
                .arg("demo")
                .current_dir(scene.dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            !scene.path("demo-pki").exists(),
            "demo-pki/ written beside another configuration:\n{stderr}"
        );
        let entries: Vec<_> = std::fs::read_dir(scene.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["config.yaml"], "files written: {entries:?}");
        assert!(
            stderr.contains(&cfg.display().to_string()) && stderr.contains(looked_for),
            "the refusal names the file and {looked_for}:\n{stderr}"
        );
    }
}
