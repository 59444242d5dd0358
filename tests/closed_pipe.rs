//! Every command ends quietly (no panic, no backtrace) when the reader of
//! its output goes away, as `hotproxy certs inspect … | head` does: with 0,
//! or with 1 when it had already failed (`check … | head` must not pass CI).

mod support;

use std::process::{Command, Stdio};

use support::*;

/// Run hotproxy with `args`; `closed` (stdout or stderr) is a pipe whose
/// read end is closed before the process starts, so its first write there
/// fails with EPIPE: deterministic, unlike racing a real `head`.
fn run_with_closed(args: &[&str], closed: &str) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotproxy"));
    cmd.args(args).env("RUST_BACKTRACE", "1");
    match closed {
        "stdout" => cmd.stdout(writer).stderr(Stdio::piped()),
        _ => cmd.stderr(writer).stdout(Stdio::piped()),
    };
    // Killed with a panic at `CLI_DEADLINE`: a command that blocks instead
    // of exiting fails the test rather than hanging CI.
    let out = output_within_deadline(&mut cmd);
    let other = if closed == "stdout" {
        out.stderr
    } else {
        out.stdout
    };
    (
        out.status.code(),
        String::from_utf8_lossy(&other).into_owned(),
    )
}

#[test]
fn inspect_into_a_closed_pipe_exits_0_quietly() {
    let scene = Scene::new();
    let ca = TestCa::new("pipe CA");
    let pair = ca.server_pair(&["a.example.com"]);
    write(
        &scene.path("a.crt"),
        &format!("{}{}", pair.cert_pem, ca.cert_pem),
    );
    let file = scene.path("a.crt");
    let (code, stderr) = run_with_closed(&["certs", "inspect", file.to_str().unwrap()], "stdout");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "quiet: nothing on stderr either");
}

#[test]
fn check_and_dev_pki_into_a_closed_pipe_exit_0_quietly() {
    let scene = Scene::new();
    let out = scene.path("pki");
    let (code, stderr) = run_with_closed(
        &["certs", "dev-pki", "--out", out.to_str().unwrap()],
        "stdout",
    );
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    // check reports problems on stderr: a closed stderr ends it quietly
    // too, but still failed.
    let config = scene.config("bogus: 1\n");
    let (code, stdout) =
        run_with_closed(&["check", "--config", config.to_str().unwrap()], "stderr");
    assert_eq!(code, Some(1), "stdout: {stdout}");
    // And with the pipe open, the same command still fails loudly.
    let (code, _, stderr) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("bogus"), "{stderr}");
}

/// A command that has failed exits 1 whichever of its pipes is closed:
/// `check` prints its table on stdout before the problems on stderr, and
/// `hotproxy check … | head -3` ended it with 0 at the table, so CI and
/// systemd's `ExecStartPre` saw success.
#[test]
fn a_failing_command_into_a_closed_pipe_still_exits_1() {
    let scene = Scene::new();
    let ca = TestCa::new("pipe CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    // Parses, prints a table, then fails: the second entry's files are
    // missing, and a listener uses it (an unused one is only a warning).
    let config = scene.config(
        r#"
certs:
  - { id: a, type: server-pair, cert_file: a.crt, key_file: a.key }
  - { id: gone, type: server-pair, cert_file: gone.crt, key_file: gone.key }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: a }, { ref: gone }]
"#,
    );
    let config = config.to_str().unwrap();
    for closed in ["stdout", "stderr"] {
        let (code, other) = run_with_closed(&["check", "--config", config], closed);
        assert_eq!(code, Some(1), "check, {closed} closed: {other}");
        assert!(!other.contains("panicked"), "{other}");
    }
    // `run` with a configuration it refuses, and its stderr closed.
    let bogus = scene.config("bogus: 1\n");
    let (code, stdout) = run_with_closed(&["run", "--config", bogus.to_str().unwrap()], "stderr");
    assert_eq!(code, Some(1), "run: {stdout}");
    // `certs inspect` of a good file then a missing one, stdout closed at the first line.
    let (code, stderr) = run_with_closed(
        &[
            "certs",
            "inspect",
            scene.path("a.crt").to_str().unwrap(),
            scene.path("gone.crt").to_str().unwrap(),
        ],
        "stdout",
    );
    assert_eq!(code, Some(1), "inspect: {stderr}");
}

#[test]
fn help_and_version_into_a_closed_pipe_exit_0_quietly() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["certs", "inspect", "--help"],
    ] {
        let (code, stderr) = run_with_closed(args, "stdout");
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{args:?}");
    }
}

/// `certs dev-pki --name` refuses what is not a DNS name or an IP, naming it.
#[test]
fn dev_pki_refuses_a_name_that_is_not_one() {
    let scene = Scene::new();
    let out = scene.path("pki");
    let (code, _, stderr) = run_cli(&[
        "certs",
        "dev-pki",
        "--out",
        out.to_str().unwrap(),
        "--name",
        "my app.example",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("\"my app.example\" is not a DNS name"),
        "{stderr}"
    );
    assert!(!out.join("server.crt").exists(), "nothing issued");
}
