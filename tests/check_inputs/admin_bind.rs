//! An address set by `${NAME}` in `check`'s and `run`'s refusals, warnings and listening lines: withheld.

use super::*;

/// The variable each test sets `admin.bind` from.
const ADMIN: &str = "HOTPROXY_CHECK_INPUTS_ADMIN_BIND";

/// What a message says in the address's place.
fn label() -> String {
    format!("<withheld: the value of ${{{ADMIN}}}>")
}

/// The scene's listener with `admin: { bind: "${ADMIN}" }`, no tokens.
fn admin_from_env() -> (Scene, std::path::PathBuf) {
    scene("public", &format!("admin: {{ bind: \"${{{ADMIN}}}\" }}"))
}

/// `hotproxy run --config cfg` with `admin.bind`'s variable set to
/// `value`, run until it exits: (exit code, stdout and stderr together).
fn run_until_exit(cfg: &Path, value: &str) -> (i32, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--log-level", "info", "--config"])
            .arg(cfg)
            .env_remove("RUST_LOG")
            .env(ADMIN, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `admin.bind` from `${NAME}` on a port another process holds (here the
/// test): `run` refused it with the address as it parsed (`admin.bind
/// 127.0.0.3:PORT: Address already in use`), which every problem of the
/// file withholds (SPEC §2: the value may be a secret the file only
/// names). It says the variable in the address's place; neither the
/// value as written (`127.0.0.3:0PORT`) nor as parsed is shown.
#[test]
fn an_admin_bind_the_system_refuses_withholds_an_address_from_the_environment() {
    // On 127.0.0.3, where nothing else of the scene listens: no other
    // address in the output can hold it.
    let held = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (_s, cfg) = admin_from_env();
    let (code, out) = run_until_exit(&cfg, &format!("127.0.0.3:0{port}"));
    assert_eq!(code, 1, "{out}");
    let said = format!("admin.bind {}: ", label());
    let refused: Vec<&str> = out.lines().filter(|l| l.contains("in use")).collect();
    assert!(!refused.is_empty(), "{out}");
    for line in refused {
        assert!(line.contains(&said), "{out}");
    }
    assert!(!out.contains("127.0.0.3"), "{out}");
    drop(held);
}

/// A non-loopback `admin.bind` from `${NAME}` with no `admin.tokens`:
/// `check` and `run` both refused it with the address (`admin.bind
/// 10.1.2.3:9901 is not a loopback address ...`). Each says the variable
/// in its place, the reason whole; the value is shown in neither form.
#[test]
fn a_non_loopback_admin_bind_from_the_environment_is_refused_withheld() {
    let (_s, cfg) = admin_from_env();
    let said = format!(
        "admin.bind {} is not a loopback address and admin.tokens is empty",
        label()
    );
    let value = "10.1.2.3:09901";
    let (code, out) = check_with(&cfg, &[(ADMIN, OsString::from(value))]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&said), "{out}");
    assert!(!out.contains("10.1.2.3"), "{out}");

    let (code, out) = run_until_exit(&cfg, value);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&said), "{out}");
    assert!(!out.contains("10.1.2.3"), "{out}");
}

/// A loopback `admin.bind` from `${NAME}` with no `admin.tokens`:
/// `check`'s warning (`admin.bind 127.0.0.3:9901: admin API has no
/// tokens ...`) and the one `run` logs showed the address. Both say the
/// variable in its place (as `admin listening` does: below).
#[tokio::test]
async fn the_admin_warning_without_tokens_withholds_an_address_from_the_environment() {
    let (_s, cfg) = admin_from_env();
    let (code, out) = check_with(&cfg, &[(ADMIN, OsString::from("127.0.0.3:09901"))]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "warning: admin.bind {}: admin API has no tokens",
            label()
        )),
        "{out}"
    );
    assert!(!out.contains("127.0.0.3"), "{out}");

    // A port of the system's choosing, let go for the proxy to bind.
    let port = std::net::TcpListener::bind("127.0.0.3:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let value = format!("127.0.0.3:0{port}");
    let mut p = Proxy::start_logging(&cfg, "info", &[(ADMIN, &value)]);
    let warned = p
        .wait_log("the warning", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin API has no tokens"))
        })
        .await;
    assert_eq!(warned["addr"], label(), "{warned}");
    assert!(!warned.to_string().contains("127.0.0.3"), "{warned}");
}

/// Addresses from `${NAME}` were withheld from every refusal, and logged
/// on success: `listening` (`addr=127.0.0.3:PORT`), `listener ready`,
/// `admin listening`. Each says the address as the refusals do, and the
/// port the system chose apart (`port`) when the file said port 0, which
/// the value does not say; none shows the value.
#[tokio::test]
async fn a_listening_address_from_the_environment_is_logged_withheld() {
    const FIXED: &str = "HOTPROXY_CHECK_INPUTS_LISTEN_FIXED";
    const ZERO: &str = "HOTPROXY_CHECK_INPUTS_LISTEN_ZERO";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let listener = |name: &str, var: &str| {
        format!(
            "  - name: {name}\n    bind: \"${{{var}}}\"\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n"
        )
    };
    let cfg = s.config(&format!(
        "admin: {{ bind: \"${{{ADMIN}}}\" }}\nlisteners:\n{}{}",
        listener("fixed", FIXED),
        listener("zero", ZERO)
    ));
    // A port of the system's choosing, let go for the proxy to bind.
    let port = std::net::TcpListener::bind("127.0.0.3:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let fixed = format!("127.0.0.3:0{port}");
    let env = [
        (ADMIN, "127.0.0.3:0"),
        (FIXED, &fixed),
        (ZERO, "127.0.0.3:00"),
    ];
    let mut p = Proxy::start_logging(&cfg, "debug", &env);
    let withheld = |var: &str| format!("<withheld: the value of ${{{var}}}>");
    let admin = p
        .wait_log("admin listening", |v| v["message"] == "admin listening")
        .await;
    assert_eq!(admin["addr"], label(), "{admin}");
    let admin_port = admin["port"].as_u64().unwrap_or_else(|| panic!("{admin}"));
    for (name, var) in [("fixed", FIXED), ("zero", ZERO)] {
        for message in ["listening", "listener ready"] {
            let v = p
                .wait_log(message, |v| {
                    v["message"] == message && v["listener"] == name
                })
                .await;
            assert_eq!(v["addr"], withheld(var), "{v}");
            // The port apart only where the system chose it.
            assert_eq!(v["port"].is_u64(), name == "zero", "{v}");
        }
    }
    let logs = p.logs().join("\n");
    assert!(!logs.contains("127.0.0.3"), "{logs}");
    // The ports said are the ones bound.
    let zero = p
        .wait_log("zero", |v| {
            v["message"] == "listening" && v["listener"] == "zero"
        })
        .await;
    for port in [admin_port, zero["port"].as_u64().unwrap(), u64::from(port)] {
        std::net::TcpStream::connect(("127.0.0.3", port as u16)).unwrap();
    }
}

/// `admin.bind: "[::ffff:127.0.0.1]:0"` (loopback, IPv4-mapped) with no
/// `admin.tokens` was refused by `check` and `run` as "not a loopback
/// address" (an IPv6 address is loopback only as `::1`). It is taken as
/// the IPv4 address it maps, warned about as loopback, and served.
#[tokio::test]
async fn an_ipv4_mapped_loopback_admin_bind_is_loopback() {
    use tokio::io::AsyncWriteExt;
    let (_s, cfg) = scene("public", "admin: { bind: \"[::ffff:127.0.0.1]:0\" }");
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: admin.bind [::ffff:127.0.0.1]:0: admin API has no tokens"),
        "{out}"
    );

    let mut p = Proxy::start(&cfg);
    let admin = p.admin_addr().await;
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let host = format!("127.0.0.1:{}", admin.port());
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut tcp).await).into_owned();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
