//! `hotproxy demo` takes `--log-level` and `--log-format` like `run`.

mod support;

use std::io::{BufRead, BufReader};
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

#[tokio::test]
async fn demo_logs_at_the_level_it_is_given() {
    let scene = Scene::new();
    // The demo reads ./config.yaml: a copy of the shipped one's shape on
    // ephemeral ports (the echo backend too, so nothing collides).
    scene.config(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { cert_file: demo-pki/server.crt, key_file: demo-pki/server.key }
    routes:
      - { path_prefix: /, upstream: echo }
upstreams:
  - name: echo
    servers: [https://127.0.0.1:0]
    tls:
      ca: { ca_file: demo-pki/ca.crt }
      client_cert: { cert_file: demo-pki/client.crt, key_file: demo-pki/client.key }
"#,
    );
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["demo", "--log-format", "json", "--log-level", "debug"])
            .current_dir(scene.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = lines.clone();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[demo] {line}");
            // --log-format json: every line is a JSON event.
            let v = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            sink.lock().unwrap().push(v);
        }
    });
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines.lock().unwrap().iter().find(|v| pred(v)).cloned()
    };
    let listening = |v: &serde_json::Value| v["message"] == "listening";
    wait_until(WAIT, "the demo listening", || async {
        find(&listening).is_some()
    })
    .await;
    let listening = find(&listening).unwrap();
    let addr: std::net::SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    // A handshake failure is logged at debug only: seen because of
    // --log-level debug. The line of this connection, by its port (startup
    // logs debug lines of its own, which would prove nothing).
    let dropped = tokio::net::TcpStream::connect(addr).await.unwrap();
    let peer = dropped.local_addr().unwrap().to_string();
    drop(dropped);
    wait_until(WAIT, "a debug line at --log-level debug", || async {
        find(&|v| v["level"] == "DEBUG" && v["peer"] == peer.as_str()).is_some()
    })
    .await;
    assert!(
        lines.lock().unwrap().iter().all(|v| !v.is_null()),
        "every line is JSON"
    );
}
