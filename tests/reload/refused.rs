//! What a configuration may not say, refused by `check` and by a live reload while the old one serves.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::writers::Kubelet;
use crate::support::*;

/// Listener `public` serving `a.crt`, and `http`, a redirect listener
/// whose `response_headers.set` is `set` (YAML lines, indented 8).
fn with_headers(set: &str) -> String {
    base_config(
        "a.crt",
        "a.key",
        &format!(
            "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: {{}}\n    response_headers:\n      set:\n{set}"
        ),
    )
}

/// The `Strict-Transport-Security` of the redirect listener's 308.
async fn hsts(http: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&read_to_close(&mut tcp).await).into_owned();
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("strict-transport-security: ")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no HSTS: {head}"))
}

/// `Strict-Transport-Security: v` as a line of `with_headers`' `set`.
fn hsts_set(v: &str) -> String {
    format!("        Strict-Transport-Security: \"{v}\"\n")
}

/// A proxy serving [`with_headers`] with HSTS `max-age=31536000`, seen on
/// its redirect listener: the scene, the config's path, the proxy and
/// that listener's address.
async fn serving() -> (Scene, std::path::PathBuf, Proxy, SocketAddr) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    pairs_a_and_b(&s, &ca);
    let cfg = s.config(&with_headers(&hsts_set("max-age=31536000")));
    let (mut p, _) = serve(&cfg).await;
    let http = p.listener_addr("http").await;
    assert_eq!(hsts(http).await, "max-age=31536000");
    (s, cfg, p, http)
}

/// `hotproxy check` on `text`, written as `name` in the scene: its exit
/// code and everything it printed.
fn check(s: &Scene, name: &str, text: &str) -> (i32, String) {
    let path = s.path(name);
    write(&path, text);
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    (code, out + &err)
}

/// `check` on `text` (as `name`) fails, and says each of `problems`
/// (`(on, field, message)`) as `line N: field: message`, N the line of
/// `text` that first holds `on`.
fn refused_by_check(s: &Scene, name: &str, text: &str, problems: &[(&str, &str, &str)]) {
    let (code, out) = check(s, name, text);
    assert_eq!(code, 1, "{out}");
    for (on, field, message) in problems {
        let at = text.lines().position(|l| l.contains(on)).unwrap() + 1;
        assert!(
            out.contains(&format!("line {at}: {field}: {message}")),
            "{out}"
        );
    }
}

/// `text` written over `cfg`, the config `p` serves: the reload is
/// rejected with `why` in its error, and the redirect listener `http`
/// still sends the HSTS it did.
async fn rejected_on_reload(
    p: &mut Proxy,
    cfg: &std::path::Path,
    http: SocketAddr,
    text: &str,
    why: &str,
) {
    write(cfg, text);
    p.wait_log("rejected", rejected(why)).await;
    assert_eq!(hsts(http).await, "max-age=31536000");
}

/// `text` written over `cfg`, the config `p` serves: the error of the
/// reload, rejected (for whatever reason: `check` on the file is not
/// asked).
async fn reload_error(p: &mut Proxy, cfg: &std::path::Path, text: &str) -> String {
    write(cfg, text);
    let event = p.wait_log("rejected", rejected("")).await;
    event["error"].as_str().unwrap().to_owned()
}

/// One header set twice in two spellings: `check` said valid and the
/// lowercase one was always sent (a sorted map put it last), whatever the
/// file's order. Now the later entry is refused, naming the earlier one;
/// a reload to it is rejected and the old header stays.
#[tokio::test]
async fn a_response_header_set_twice_in_two_cases_is_refused() {
    let (s, cfg, mut p, http) = serving().await;

    let twice = with_headers(
        "        strict-transport-security: \"max-age=63072000\"\n        Strict-Transport-Security: \"max-age=0\"\n",
    );
    refused_by_check(
        &s,
        "twice.yaml",
        &twice,
        &[(
            "Strict-Transport-Security: \"max-age=0\"",
            "listeners[1].response_headers.set.Strict-Transport-Security",
            "`Strict-Transport-Security` is the header `strict-transport-security` set above",
        )],
    );

    rejected_on_reload(&mut p, &cfg, http, &twice, "strict-transport-security").await;
}

/// A YAML tag was never looked at: `bind: !custom …` passed `check`, and
/// `!!binary` text was base64-decoded into the address. Now a tag other
/// than the core one of the field's type is refused at its line and
/// field; a reload to such a file is rejected and the old one serves on.
#[tokio::test]
async fn a_yaml_tag_other_than_the_fields_core_one_is_refused() {
    let (s, cfg, mut p, http) = serving().await;
    let set = hsts_set;

    // The core tags of the fields' types are plain YAML: valid.
    let core = with_headers(&set("max-age=31536000")).replace(
        "redirect_https: {}",
        "redirect_https: !!map { port: !!int 443 }\n    access_log: !!bool true",
    );
    let (code, out) = check(&s, "core.yaml", &core);
    assert_eq!(code, 0, "{out}");

    // `127.0.0.1:0`, base64: the address either way, the tag refused.
    let tagged = with_headers(&set("max-age=0"))
        .replacen("bind: 127.0.0.1:0", "bind: !custom 127.0.0.1:0", 1)
        .replace("bind: 127.0.0.1:0", "bind: !!binary MTI3LjAuMC4xOjA=");
    refused_by_check(
        &s,
        "tagged.yaml",
        &tagged,
        &[
            ("!custom", "listeners[0].bind", "YAML tag `!custom` refused"),
            (
                "!!binary",
                "listeners[1].bind",
                "YAML tag `!!binary` refused",
            ),
        ],
    );

    let why = "YAML tag `!!binary` refused";
    rejected_on_reload(&mut p, &cfg, http, &tagged, why).await;
}

/// `!!null` on text (`max_body_bytes: !!null 1048576`) read as unset:
/// `check` passed and the listener had no body limit at all. Now the tag
/// is read only on an empty value (nothing, `~`, `null`); on text it is
/// refused at its line and field, and a reload to it is rejected.
#[tokio::test]
async fn a_null_tag_on_text_is_refused() {
    let (s, cfg, mut p, http) = serving().await;
    let set = hsts_set;

    let limit = |v: &str| {
        with_headers(&set("max-age=0")).replace(
            "redirect_https: {}",
            &format!("redirect_https: {{}}\n    limits: {{ max_body_bytes: {v} }}"),
        )
    };
    for empty in ["!!null", "!!null ~", "!!null null"] {
        let (code, out) = check(&s, "empty.yaml", &limit(empty));
        assert_eq!(code, 0, "{empty}: {out}");
    }

    let text = limit("!!null 1048576");
    let refused = "YAML tag `!!null` on `1048576` refused";
    let field = "listeners[1].limits.max_body_bytes";
    refused_by_check(&s, "null.yaml", &text, &[("!!null", field, refused)]);

    rejected_on_reload(&mut p, &cfg, http, &text, refused).await;
}

/// A core tag whose text is not of its type (`bind: !!int 127.0.0.1:0`,
/// `!!bool yes-please`, `!!timestamp`) stopped the parser: one syntax
/// error for the whole file, no field, the rest unchecked. Now each is a
/// problem at its line and field, all in one run, like any wrong type.
#[tokio::test]
async fn a_core_tag_on_text_not_of_its_type_is_refused_at_its_field() {
    let (s, cfg, mut p, http) = serving().await;
    let set = hsts_set;

    let mut tagged = with_headers(&set("max-age=0"))
        .replace("debounce: 50ms", "debounce: !!timestamp 2001-12-14")
        .replace(
            "redirect_https: {}",
            "redirect_https: { port: !!int abc }\n    access_log: !!bool yes-please",
        );
    // The second listener's `bind:`.
    let at = tagged.rfind("bind: ").unwrap();
    tagged.replace_range(at..at + "bind:".len(), "bind: !!int");
    refused_by_check(
        &s,
        "tagged.yaml",
        &tagged,
        &[
            (
                "!!timestamp",
                "watch.debounce",
                "YAML tag `!!timestamp` refused",
            ),
            ("!!int 127", "listeners[1].bind", "YAML tag `!!int` refused"),
            (
                "!!int abc",
                "listeners[1].redirect_https.port",
                "expected a whole number, found \"abc\"",
            ),
            (
                "yes-please",
                "listeners[1].access_log",
                "expected true or false, found \"yes-please\"",
            ),
        ],
    );

    rejected_on_reload(&mut p, &cfg, http, &tagged, "YAML tag `!!int` refused").await;
}

/// A tag on a merge value (`<<: !custom { ... }`) was dropped as the
/// mapping was merged in: `check` passed. Now it is refused like any
/// other tag but `!!map`, at its line and `<<` field.
#[tokio::test]
async fn a_tag_on_a_merge_value_is_refused() {
    let (s, cfg, mut p, http) = serving().await;
    let set = hsts_set;

    let merged = |tag: &str| {
        with_headers(&set("max-age=0")).replace(
            "redirect_https: {}",
            &format!("redirect_https:\n      <<: {tag} {{ port: 443 }}"),
        )
    };
    let (code, out) = check(&s, "map.yaml", &merged("!!map"));
    assert_eq!(code, 0, "{out}");

    let text = merged("!custom");
    let refused = "YAML tag `!custom` refused";
    let field = "listeners[1].redirect_https.<<";
    refused_by_check(&s, "merge.yaml", &text, &[("!custom", field, refused)]);

    rejected_on_reload(&mut p, &cfg, http, &text, refused).await;
}

/// One 3 MB scalar through 50,000 aliases (a 3 MB file that reads as
/// 150 GB of text): the reload is rejected, in words naming the limit,
/// and the running configuration serves on.
#[tokio::test]
async fn text_repeated_by_aliases_past_the_limit_is_rejected() {
    let (_s, cfg, mut p, http) = serving().await;
    let uses = vec!["*big"; 50_000].join(", ");
    let bomb = format!(
        "x-big: &big {}\nx-uses: [{uses}]\n{}",
        "a".repeat(3_000_000),
        with_headers(&hsts_set("max-age=0"))
    );
    let why = "its text, with what its aliases repeat, is more than 16777216 bytes";
    rejected_on_reload(&mut p, &cfg, http, &bomb, why).await;
}

/// A tag written through a `%TAG` handle is the tag it names (YAML 1.2
/// §6.8.2). `!e!int`, `!e!` naming the core prefix `tag:yaml.org,2002:`,
/// is `!!int` exactly: on a port it applies, on `abc` it is the same
/// wrong type `!!int abc` is (it was also refused as an unknown tag
/// `!e!int`). With `!e!` naming another prefix it is an application tag,
/// refused at its line and field; a reload to it is rejected.
#[tokio::test]
async fn a_tag_through_a_tag_directive_is_the_tag_it_names() {
    let (s, cfg, mut p, http) = serving().await;
    let file = |prefix: &str, port: &str, hsts: &str| {
        let body = with_headers(&hsts_set(hsts)).replace(
            "redirect_https: {}",
            &format!("redirect_https: {{ port: {port} }}"),
        );
        format!("%TAG !e! {prefix}\n---\n{body}")
    };
    let core = "tag:yaml.org,2002:";
    let checked = |name: &str, text: &str| {
        let (code, out) = check(&s, name, text);
        (
            code,
            out.replace(&s.path(name).display().to_string(), "FILE"),
        )
    };
    let (code, out) = checked("abc.yaml", &file(core, "!e!int abc", "max-age=0"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        (code, out),
        checked("core.yaml", &file(core, "!!int abc", "max-age=0"))
    );

    let other = file("tag:example.com,2000:", "!e!int 8443", "max-age=0");
    let at = other.lines().position(|l| l.contains("!e!int")).unwrap() + 1;
    let (code, out) = checked("other.yaml", &other);
    assert_eq!(code, 1, "{out}");
    let refused = "YAML tag `!<tag:example.com,2000:int>` refused";
    assert!(
        out.contains(&format!(
            "FILE: line {at}: listeners[1].redirect_https.port: {refused}"
        )),
        "{out}"
    );
    rejected_on_reload(&mut p, &cfg, http, &other, refused).await;

    let applies = file(core, "!e!int 8443", "max-age=5");
    let (code, out) = checked("applies.yaml", &applies);
    assert_eq!(code, 0, "{out}");
    write(&cfg, &applies);
    p.wait_log("reloaded", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(hsts(http).await, "max-age=5");
}

/// A value of two lines under an explicit key (`? "..."`) of 128 KiB,
/// repeated 2,000 times through an alias: the reloader kept a 128 KiB
/// field path per item to withhold the value, a quarter of a GiB (at 1 MiB
/// and 49,000 items, 49 GiB: the proxy aborted on the edit). A reload to
/// it is rejected, naming the key's line, within a few MiB, and the old
/// configuration serves on.
#[tokio::test]
async fn a_reload_to_a_huge_key_over_many_items_is_rejected_in_bounded_memory() {
    let (_s, cfg, mut p, http) = serving().await;
    let before = peak_kib(p.pid());

    let items = vec!["*x"; 2_000].join(", ");
    let text = format!(
        "x: &x \"a\\nb\"\n? \"{}\"\n: [{items}]\n{}",
        "a".repeat(128 << 10),
        with_headers(&hsts_set("max-age=0"))
    );
    let error = reload_error(&mut p, &cfg, &text).await;
    let grown = peak_kib(p.pid()).saturating_sub(before);
    assert!(grown < 64 << 10, "the reload took {grown} KiB more");
    assert!(
        error.contains(
            "line 2: a key of 131072 bytes, more than the 256 a key may have: refused, its value not read"
        ),
        "{}",
        &error[..error.len().min(2_000)]
    );
    assert!(error.len() < 2_000, "{}", &error[..2_000]);
    assert_eq!(hsts(http).await, "max-age=31536000");
}

/// An unknown key with a terminal escape, or holding a pasted key, was in
/// the rejected reload's error as written: a log viewer printed the
/// escape, and the key was in the log. The key is shown escaped, or
/// withheld, and the old configuration serves on.
#[tokio::test]
async fn a_reload_names_an_unknown_key_escaped_or_withheld() {
    let (_s, cfg, mut p, http) = serving().await;
    let label = "PRIVATE KEY"; // spelt apart: no key-shaped text in the source
    let text = format!(
        "\"evil\\e[2J\": 1\n\"-----BEGIN {label}-----\\nMIGHAgEAslow\\n-----END {label}-----\": 1\n{}",
        with_headers(&hsts_set("max-age=0"))
    );
    let error = reload_error(&mut p, &cfg, &text).await;
    assert!(
        error.contains("line 1: evil\\u{1b}[2J: unknown key `evil\\u{1b}[2J`"),
        "{error}"
    );
    assert!(
        error.contains("line 2: <withheld key: a PEM block>: unknown key"),
        "{error}"
    );
    assert!(!error.contains('\u{1b}'), "{error:?}");
    assert!(
        !error.contains("BEGIN") && !error.contains("MIGH"),
        "{error}"
    );
    assert_eq!(hsts(http).await, "max-age=31536000");
}

/// `admin.bind` applies at restart, and `check` compares listeners with
/// the file's: moving it (here from the port it bound to port 0) and
/// adding a listener on the port it still listens on passed `check`, then
/// every reload failed with a bare "Address already in use". The reload
/// is refused naming the running admin listener's address; the admin
/// listener and the old configuration serve on.
#[tokio::test]
async fn a_listener_on_the_running_admin_address_is_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let admin_at = |bind: &str| format!("\nadmin: {{ bind: \"{bind}\" }}");
    let cfg = s.config(&base_config("a.crt", "a.key", &admin_at("127.0.0.1:0")));
    let (mut p, public) = serve(&cfg).await;
    let admin = p.admin_addr().await;

    let moved = base_config(
        "a.crt",
        "a.key",
        &format!(
            "  - name: two\n    bind: {admin}\n    tls:\n      \
             certs: [{{ cert_file: b.crt, key_file: b.key }}]\n{}",
            admin_at("127.0.0.2:0")
        ),
    );
    let (code, out) = check(&s, "moved.yaml", &moved);
    assert_eq!(code, 0, "{out}");

    write(&cfg, &moved);
    let said = format!(
        "listener two: listeners[1].bind: {admin} is the admin listener's address \
         (admin.bind changes apply at restart)"
    );
    let v = p.wait_log("rejected", rejected(&said)).await;
    assert!(!v["error"].as_str().unwrap().contains("in use"), "{v}");
    assert!(metrics_text(admin).await.contains("hotproxy_"));
    assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// The same refusal for a listener whose `bind` is set from `${NAME}`:
/// the problem showed the address, which every other problem withholds
/// (SPEC §2: a value set by `${NAME}` may be a secret the file only
/// names). The reload's check against the running admin listener ran
/// after the file's problems were withheld, and was not. It names the
/// variable in the value's place, as the others do.
#[tokio::test]
async fn a_listener_bind_from_the_environment_on_the_admin_address_is_withheld() {
    const B: &str = "HOTPROXY_TEST_LISTENER_BIND";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    // A port of the system's choosing, let go for the admin listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let admin_at = |bind: &str| format!("\nadmin: {{ bind: \"{bind}\" }}");
    let cfg = s.config(&base_config("a.crt", "a.key", &admin_at(&admin)));
    let mut p = Proxy::start_logging(&cfg, "info", &[(B, &admin)]);
    let public = p.listener_addr("public").await;
    assert_eq!(p.admin_addr().await.to_string(), admin);

    let moved = base_config(
        "a.crt",
        "a.key",
        &format!(
            "  - name: two\n    bind: \"${{{B}}}\"\n    tls:\n      \
             certs: [{{ cert_file: b.crt, key_file: b.key }}]\n{}",
            admin_at("127.0.0.2:0")
        ),
    );
    write(&cfg, &moved);
    let said = format!(
        "listener two: listeners[1].bind: <withheld: the value of ${{{B}}}> is the admin \
         listener's address (admin.bind changes apply at restart)"
    );
    let v = p.wait_log("rejected", rejected(&said)).await;
    assert!(!v["error"].as_str().unwrap().contains(&admin), "{v}");
    assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// A reload written as kubelet writes a ConfigMap (`..data` swapped)
/// refused for a listener's `bind` set from `${NAME}` and written
/// otherwise than it is shown (`127.0.0.1:0PORT`): beside another
/// listener on its port, then on the running admin listener's address.
/// Each refusal is logged with the variable named in the address's place
/// (as parsed, `127.0.0.1:PORT`, it was shown), and the running
/// configuration serves on, its admin listener too.
#[tokio::test]
async fn a_reload_refused_for_a_bind_from_the_environment_withholds_it_as_parsed() {
    const PUBLIC: &str = "HOTPROXY_TEST_PUBLIC_BIND";
    const TWO: &str = "HOTPROXY_TEST_TWO_BIND";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    // Ports of the system's choosing, let go for the proxy to bind.
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (port, admin_port) = (free(), free());
    let (bound, admin) = (
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{admin_port}"),
    );
    let file = |stem: &str| s.path(stem).display().to_string();
    // Listener `public` on `${PUBLIC}`, `more` listeners, admin on `admin`.
    let config = |more: &str, admin: &str| {
        let public = format!("bind: \"${{{PUBLIC}}}\"");
        let text = base_config(&file("a.crt"), &file("a.key"), more);
        let text = text.replacen("bind: 127.0.0.1:0", &public, 1);
        format!("{text}admin: {{ bind: \"{admin}\" }}\n")
    };
    let two = |bind: &str| {
        format!(
            "  - name: two\n    bind: \"{bind}\"\n    tls:\n      \
             certs: [{{ cert_file: {}, key_file: {} }}]\n",
            file("b.crt"),
            file("b.key")
        )
    };
    let kube = Kubelet::new(&s.path("configmap"));
    kube.write(&[("config.yaml", &config("", &admin))], false);
    let cfg = s.path("configmap/config.yaml");
    let env = [
        (PUBLIC, format!("127.0.0.1:0{port}")),
        (TWO, format!("127.0.0.1:0{admin_port}")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = Proxy::start_logging(&cfg, "info", &env);
    // Its `listening` line withholds the address from the environment.
    let v = p
        .wait_log("listening", |v| {
            v["message"] == "listening" && v["listener"] == "public"
        })
        .await;
    assert_eq!(v["addr"], format!("<withheld: the value of ${{{PUBLIC}}}>"));
    let public: SocketAddr = bound.parse().unwrap();
    assert_eq!(p.admin_addr().await.to_string(), admin);

    let label = |name: &str| format!("<withheld: the value of ${{{name}}}>");
    kube.write(
        &[(
            "config.yaml",
            &config(&two(&format!("0.0.0.0:{port}")), &admin),
        )],
        false,
    );
    let said = format!(
        "listeners[1].bind: 0.0.0.0:{port} overlaps listeners[0].bind ({}): 0.0.0.0 takes \
         every IPv4 address of port {port}; two listening sockets cannot share it",
        label(PUBLIC)
    );
    let v = p.wait_log("rejected beside public", rejected(&said)).await;
    assert!(!v["error"].as_str().unwrap().contains(&bound), "{v}");
    assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;

    // The file's admin.bind moved away: the running one stays until a restart.
    let moved = config(&two(&format!("${{{TWO}}}")), "127.0.0.2:0");
    kube.write(&[("config.yaml", &moved)], false);
    let said = format!(
        "listener two: listeners[1].bind: {} is the admin listener's address",
        label(TWO)
    );
    let v = p
        .wait_log("rejected on the admin address", rejected(&said))
        .await;
    assert!(!v["error"].as_str().unwrap().contains(&admin), "{v}");
    assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;
    let admin: SocketAddr = admin.parse().unwrap();
    assert!(metrics_text(admin).await.contains("hotproxy_"));
    let reloaded = p
        .logs()
        .iter()
        .any(|l| l.contains("\"configuration reloaded"));
    assert!(!reloaded, "{:?}", p.logs());
}

/// A listener's `bind` set from `${NAME}`, on a port another process
/// holds (here the test): the system's refusal was said with the address
/// as it parsed (`listener two: cannot bind 127.0.0.1:PORT: Address
/// already in use`), which every problem of the file withholds (SPEC §2:
/// the value may be a secret the file only names). It says the variable
/// in the address's place, in a reload (the running configuration serving
/// on) and at startup.
#[tokio::test]
async fn a_bind_the_system_refuses_withholds_an_address_from_the_environment() {
    const B: &str = "HOTPROXY_TEST_HELD_BIND";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    // Written otherwise than it parses: neither form may be said.
    let (value, addr) = (format!("127.0.0.1:0{port}"), format!("127.0.0.1:{port}"));
    let two = format!(
        "  - name: two\n    bind: \"${{{B}}}\"\n    tls:\n      \
         certs: [{{ cert_file: b.crt, key_file: b.key }}]\n"
    );
    let said = format!("listener two: cannot bind <withheld: the value of ${{{B}}}>: ");
    let shows_it = |text: &str| text.contains(&addr) || text.contains(&value);

    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let mut p = Proxy::start_logging(&cfg, "info", &[(B, &value)]);
    let public = p.listener_addr("public").await;
    write(&cfg, &base_config("a.crt", "a.key", &two));
    let v = p.wait_log("rejected", rejected(&said)).await;
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("in use") && !shows_it(error), "{v}");
    assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;
    drop(p);

    let out = output_within_deadline(
        std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--log-level", "info", "--config"])
            .arg(&cfg)
            .env(B, &value)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let refused: Vec<&str> = err.lines().filter(|l| l.contains("cannot bind")).collect();
    assert!(!refused.is_empty(), "{err}");
    for line in refused {
        assert!(line.contains(&said) && !shows_it(line), "{err}");
    }
    drop(held);
}

/// A listener on a wildcard overlapping the running admin listener's
/// address, in a reload that moves `admin.bind` (which applies at
/// restart): the refusal named the running address as it bound, though
/// the file it started from set it by `${NAME}` (SPEC §2), and the new
/// file, with nothing from the environment, withheld nothing. It names
/// the variable of the file the admin listener started from in its
/// place; an `admin.bind` written in that file is shown as it bound. A
/// listener on that very address was refused with the address itself
/// (`127.0.0.3:P is the admin listener's address`), the variable's value
/// shown all the same: it says the withheld form in the address's place.
#[tokio::test]
async fn the_running_admin_address_from_the_environment_is_withheld_in_a_refusal() {
    const ADMIN: &str = "HOTPROXY_TEST_RUNNING_ADMIN_BIND";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let admin_at = |bind: &str| format!("\nadmin: {{ bind: \"{bind}\" }}");
    for (from_env, on_it) in [(true, false), (false, false), (true, true), (false, true)] {
        // A port of the system's choosing, let go for the admin listener,
        // on 127.0.0.3, where nothing else of the scene listens.
        let port = std::net::TcpListener::bind("127.0.0.3:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let (bind, shown) = match from_env {
            true => (
                format!("${{{ADMIN}}}"),
                format!("<withheld: the value of ${{{ADMIN}}}>"),
            ),
            false => (format!("127.0.0.3:{port}"), format!("127.0.0.3:{port}")),
        };
        let cfg = s.config(&base_config("a.crt", "a.key", &admin_at(&bind)));
        let value = format!("127.0.0.3:0{port}");
        let mut p = Proxy::start_logging(&cfg, "info", &[(ADMIN, &value)]);
        let public = p.listener_addr("public").await;
        let v = p
            .wait_log("admin listening", |v| v["message"] == "admin listening")
            .await;
        assert_eq!(v["addr"], shown.as_str(), "{v}");

        // On a wildcard that overlaps it, or on the admin address itself.
        let (two, said) = match on_it {
            false => (
                format!("0.0.0.0:{port}"),
                format!("0.0.0.0:{port} overlaps {shown}, the admin listener's address"),
            ),
            true => (
                format!("127.0.0.3:{port}"),
                format!("{shown} is the admin listener's address"),
            ),
        };
        let moved = base_config(
            "a.crt",
            "a.key",
            &format!(
                "  - name: two\n    bind: \"{two}\"\n    tls:\n      \
                 certs: [{{ cert_file: b.crt, key_file: b.key }}]\n{}",
                admin_at("127.0.0.2:0")
            ),
        );
        write(&cfg, &moved);
        let said = format!(
            "listener two: listeners[1].bind: {said} (admin.bind changes apply at restart)"
        );
        let v = p.wait_log("rejected", rejected(&said)).await;
        let error = v["error"].as_str().unwrap();
        assert_eq!(error.contains("127.0.0.3"), !from_env, "{v}");
        assert_serves(public, "localhost", &ca.cert_pem, &a.fingerprint).await;
    }
}
