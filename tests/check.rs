//! `hotproxy check` on the admin and store sections: it refuses what `run`
//! refuses at startup, and creates nothing.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use hotproxy::config::StoreConfig;
use hotproxy::material::store::Store;
use support::*;

const EDITOR: &str = "editor-token-5d2e9a0c7b4f1e83";
const VIEWER: &str = "viewer-token-c81f0e6a3b9d2754";
/// Set for the valid checks; no test sets the unset one.
const VIEWER_ENV: &str = "HOTPROXY_CHECK_TEST_VIEWER_TOKEN";
const UNSET_ENV: &str = "HOTPROXY_CHECK_TEST_UNSET_TOKEN";

/// A scene with a valid server pair and an editor token file; `admin` and
/// `store` are the YAML of those sections.
fn scene(admin: &str, store: &str) -> (Scene, std::path::PathBuf) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("editor.token"), &format!("{EDITOR}\n"));
    let cfg = s.config(&format!(
        r#"
{admin}
{store}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#
    ));
    (s, cfg)
}

const ADMIN: &str = r#"admin:
  bind: 127.0.0.1:0
  tokens:
    - { role: editor, token_file: editor.token }
    - { role: viewer, token_env: HOTPROXY_CHECK_TEST_VIEWER_TOKEN }"#;

const STORE: &str = "store: { path: data/store.json, key_file: data/store.key }";

/// `hotproxy check --config cfg`: (exit code, stdout, stderr), with the
/// viewer token's variable set and the other one surely unset. Bounded by
/// `timeout(1)`: a check that blocks (on a FIFO) exits 124.
fn check(cfg: &Path) -> (i32, String, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["check", "--config"])
        .arg(cfg)
        .env(VIEWER_ENV, VIEWER)
        .env_remove(UNSET_ENV)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // No token, in any outcome.
    for token in [EDITOR, VIEWER] {
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "token printed:\n{stdout}{stderr}"
        );
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// [`check`], which must refuse `cfg` (exit 1): its stdout and stderr.
#[track_caller]
fn check_fails(cfg: &Path) -> (String, String) {
    let (code, out, err) = check(cfg);
    assert_eq!(code, 1, "{out}{err}");
    (out, err)
}

/// [`check_fails`], its stderr saying each of `wants`: its stdout and stderr.
#[track_caller]
fn check_fails_saying(cfg: &Path, wants: &[&str]) -> (String, String) {
    let (out, err) = check_fails(cfg);
    for want in wants {
        assert!(err.contains(want), "{err}");
    }
    (out, err)
}

/// [`check`], which must pass `cfg` (exit 0): its stdout and stderr.
#[track_caller]
fn check_passes(cfg: &Path) -> (String, String) {
    let (code, out, err) = check(cfg);
    assert_eq!(code, 0, "{out}{err}");
    (out, err)
}

/// `cfg`'s text passed through `change`, written back.
fn edit(cfg: &Path, change: impl FnOnce(&str) -> String) {
    write(cfg, &change(&std::fs::read_to_string(cfg).unwrap()));
}

fn store_config(s: &Scene) -> StoreConfig {
    StoreConfig {
        path: s.path("data/store.json"),
        key_file: s.path("data/store.key"),
        file_roots: None,
    }
}

/// A sealed store holding one stored entry (`stored`, a client pair given
/// inline), under a key created 0600 the way `run` creates it.
fn seal_store(s: &Scene) {
    let client = TestCa::new("clients").client_pair("api-client");
    let def = serde_json::json!({
        "type": "client-pair",
        "source": "inline",
        "cert_pem": client.cert_pem,
        "key_pem": client.key_pem,
    });
    let spec = serde_json::from_value::<hotproxy::material::store::Definition>(def)
        .unwrap()
        .into_spec("stored")
        .unwrap();
    let (store, none) = Store::open(&store_config(s)).unwrap();
    assert!(none.is_empty());
    store.save(&[spec]).unwrap();
}

/// `run` refuses to start when the access log cannot be opened; `check`
/// says so too, naming the file, without creating anything: a log in a
/// directory that does not exist fails it, stdout passes.
#[test]
fn an_access_log_run_cannot_open_fails_the_check() {
    let (s, cfg) = scene(ADMIN, "access_log: { path: logs/access.log }");
    let (_, err) = check_fails(&cfg);
    let dir = s.path("logs");
    assert!(
        err.contains("access_log.path")
            && err.contains(&format!("{} does not exist", dir.display())),
        "{err}"
    );
    assert!(!dir.exists(), "check created the directory");
    let (s, cfg) = scene(ADMIN, "access_log: { path: stdout }");
    check_passes(&cfg);
    drop(s);
}

/// Tokens from a file and from the environment, a loopback admin bind, and
/// a store whose key does not exist yet: valid; the key is reported as to
/// be created, and neither it nor its directory is created by `check`.
#[test]
fn valid_config_passes_and_creates_no_store_key() {
    let (s, cfg) = scene(ADMIN, STORE);
    let (out, _) = check_passes(&cfg);
    assert!(out.contains("is valid"), "{out}");
    let key = s.path("data/store.key");
    assert!(
        out.contains(&format!(
            "note: store.key_file {} does not exist: `hotproxy run` will create it",
            key.display()
        )),
        "{out}"
    );
    assert!(!key.exists(), "check created the store key");
    assert!(
        !s.path("data").exists(),
        "check created the store directory"
    );
}

/// An existing 0600 key that decrypts the store: valid, and the stored
/// entry is listed with the configured ones.
#[test]
fn valid_config_with_a_sealed_store() {
    let (s, cfg) = scene(ADMIN, STORE);
    seal_store(&s);
    let before = std::fs::read(s.path("data/store.json")).unwrap();
    let (out, _) = check_passes(&cfg);
    assert!(
        out.lines()
            .any(|l| l.starts_with("stored ") && l.contains("api-client")),
        "{out}"
    );
    assert!(!out.contains("note:"), "{out}");
    assert_eq!(std::fs::read(s.path("data/store.json")).unwrap(), before);
    // The count covers every row of the table: the stored entry too.
    assert!(
        out.contains("is valid: 2 entries (1 from the store), 1 listeners"),
        "{out}"
    );
}

/// An entry that does not load names who uses it, not just how many.
#[test]
fn a_broken_entry_names_its_users() {
    let (s, cfg) = scene(ADMIN, "");
    write(&s.path("edge.key"), "not a key\n");
    check_fails_saying(
        &cfg,
        &["entry edge (server-pair, used by listener public (tls.certs[0])):"],
    );
}

/// `verify_names: [backend.local:8443]`, a host and port, is refused,
/// naming the entry. It was taken for a URI of scheme `backend.local`:
/// the check passed, and every request to the upstream got 502
/// `name_mismatch`.
#[test]
fn a_verify_name_with_a_port_is_refused() {
    let (_s, cfg) = scene(ADMIN, "");
    edit(&cfg, |text| {
        text.to_owned()
            + "upstreams:\n  - name: app\n    servers: [\"https://127.0.0.1:8443\"]\n    tls: { ca: { system: true }, verify_names: [backend.local:8443] }\n"
    });
    check_fails_saying(
        &cfg,
        &["upstreams[0].tls.verify_names[0]", "remove \":8443\""],
    );
}

/// `token_env` naming an unset variable: the message `run` fails with.
#[test]
fn unset_token_env_fails() {
    let admin = ADMIN.replace(VIEWER_ENV, UNSET_ENV);
    let (_s, cfg) = scene(&admin, "");
    check_fails_saying(
        &cfg,
        &[
            &format!("admin.tokens[1].token_env: environment variable {UNSET_ENV} is not set"),
            "1 problem(s)",
        ],
    );
}

/// A missing `token_file` names the field and the file; with an unset
/// variable too, both are reported (every problem, not the first).
#[test]
fn missing_token_file_fails() {
    let admin = ADMIN
        .replace("editor.token", "nowhere.token")
        .replace(VIEWER_ENV, UNSET_ENV);
    let (s, cfg) = scene(&admin, "");
    check_fails_saying(
        &cfg,
        &[
            &format!(
                "admin.tokens[0].token_file {}: ",
                s.path("nowhere.token").display()
            ),
            "admin.tokens[1].token_env",
            "2 problem(s)",
        ],
    );
}

/// The token shipped in examples/kubernetes is public: a token file that
/// still holds it is refused, naming the file and how to make a token.
#[test]
fn the_example_placeholder_token_fails() {
    let placeholder = "replace-me-with-openssl-rand-hex-32";
    let (s, cfg) = scene(ADMIN, "");
    write(&s.path("editor.token"), &format!("{placeholder}\n"));
    let (out, err) = check_fails(&cfg);
    assert!(
        err.contains(&format!(
            "admin.tokens[0].token_file {}: ",
            s.path("editor.token").display()
        )) && err.contains("openssl rand -hex 32"),
        "{err}"
    );
    assert!(
        !err.contains(placeholder) && !out.contains(placeholder),
        "{out}{err}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");
}

/// A non-loopback admin bind without tokens is refused, as at startup.
#[test]
fn public_admin_without_tokens_fails() {
    let (_s, cfg) = scene("admin: { bind: \"0.0.0.0:9901\" }", "");
    check_fails_saying(
        &cfg,
        &["admin.bind 0.0.0.0:9901 is not a loopback address and admin.tokens is empty"],
    );
    // On loopback the same section passes, with the warning `run` logs.
    let (_s, cfg) = scene("admin: { bind: \"127.0.0.1:9901\" }", "");
    let (out, _) = check_passes(&cfg);
    assert!(out.contains("warning: admin.bind 127.0.0.1:9901: admin API has no tokens"));
}

/// A store key readable by others names the file and its mode.
#[test]
fn loose_store_key_fails() {
    let (s, cfg) = scene(ADMIN, STORE);
    seal_store(&s);
    let key = s.path("data/store.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    check_fails_saying(
        &cfg,
        &[&format!(
            "store.key_file {} has mode 0644: it must be readable by its owner only",
            key.display()
        )],
    );
    // Reported, not repaired.
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

/// A store sealed under another key: an error naming the store, never an
/// empty store.
#[test]
fn wrong_store_key_fails() {
    let (s, cfg) = scene(ADMIN, STORE);
    seal_store(&s);
    let key = s.path("data/store.key");
    let mut other = std::fs::read(&key).unwrap();
    other[0] ^= 1;
    std::fs::write(&key, &other).unwrap();
    check_fails_saying(
        &cfg,
        &[&format!(
            "store {} cannot be decrypted: wrong store.key_file",
            s.path("data/store.json").display()
        )],
    );
}

/// A stored entry whose id the configuration file also defines: `run`
/// refuses to start, so `check` fails.
#[test]
fn stored_id_clash_fails() {
    let (s, cfg) = scene(ADMIN, STORE);
    seal_store(&s);
    edit(&cfg, |yaml| {
        yaml.replace(
            "listeners:",
            "  - { id: stored, type: server-pair, cert_file: edge.crt, key_file: edge.key }\nlisteners:",
        )
    });
    check_fails_saying(&cfg, &["entry stored is defined both in", "store.json"]);
}

/// A copy broken four ways (two key typos, a value of the wrong type, a
/// missing certificate file): one run of `check` lists all four, each
/// with its line and field. Before, it showed the first typo only, and
/// config problems hid file problems: three fix-and-rerun rounds.
#[test]
fn a_config_broken_four_ways_lists_all_four() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        r#"watch:
  debounce: 100ms
  pol_interval: 2s
certs:
  - id: edge
    type: server-pair
    cert_file: edge.crt
    key_file: edge.key
  - id: other
    type: server-pair
    cert_file: missing.crt
    key_file: edge.key
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }, { ref: other }]
      min_verison: "1.3"
    limits:
      max_connections: lots
"#,
    );
    let (out, err) = check_fails(&cfg);
    let file = cfg.display().to_string();
    for want in [
        format!(
            "{file}: line 3: watch.pol_interval: unknown key `pol_interval` (did you mean `poll_interval`?"
        ),
        format!(
            "{file}: line 18: listeners[0].tls.min_verison: unknown key `min_verison` (did you mean `min_version`?"
        ),
        format!(
            "{file}: line 20: listeners[0].limits.max_connections: expected a whole number, found \"lots\""
        ),
        "entry other (server-pair, used by listener public (tls.certs[1])):".to_owned(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("missing.crt"), "{err}");
    assert!(
        err.contains("configuration check failed: 4 problem(s)"),
        "{err}"
    );
    // The entry that resolved and loads is still listed.
    assert!(out.lines().any(|l| l.starts_with("edge ")), "{out}");
}

/// A YAML indentation slip is explained in an operator's words: which
/// line is deeper than which key, and the column that would fit.
#[test]
fn an_indentation_slip_is_explained() {
    let (_s, cfg) = scene("", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // `bind` one level too deep under a commented `name`.
    let broken = text.replace(
        "  - name: public\n    bind: 127.0.0.1:0\n",
        "  - name: public   # the public side\n      bind: 127.0.0.1:0\n",
    );
    assert_ne!(broken, text);
    std::fs::write(&cfg, broken).unwrap();
    check_fails_saying(
        &cfg,
        &[
            "indentation problem: line",
            "indented deeper than `name:`",
            "indent it like `name`",
            "(YAML parser: comment intercepting the multiline text)",
        ],
    );
}

/// What the YAML parser refuses for its own limits is said in words, at
/// the file and line: a second document (a `---` line, as concatenated or
/// generated files carry), nesting past its depth, a file of more values
/// than it reads. They came out as its internals: "multiple YAML documents
/// detected; use from_str_multiple or from_str_multiple_with_options" (a
/// Rust function), "budget breached: Depth { depth: 65 }".
#[test]
fn the_yaml_parsers_limits_are_explained() {
    let (_s, cfg) = scene("", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let lines = text.lines().count();
    let block: String = (0..70)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect();
    let flow = format!("x: {}{}\n", "[".repeat(300), "]".repeat(300));
    let values = format!("x: [{}0]\n", "0, ".repeat(250_000));
    let cases = [
        (
            format!("{text}---\n"),
            lines + 1,
            "a second YAML document starts here",
        ),
        (
            format!("{block}{text}"),
            65,
            "nested more than 64 levels deep",
        ),
        (
            format!("{flow}{text}"),
            1,
            "nested more than 64 levels deep",
        ),
        (
            format!("{values}{text}"),
            1,
            "holds more than 250000 YAML values",
        ),
    ];
    for (broken, line, want) in cases {
        std::fs::write(&cfg, broken).unwrap();
        let (_, err) = check_fails(&cfg);
        let at = format!("{}: line {line} ", cfg.display());
        assert!(err.contains(&at) && err.contains(want), "{want}: {err}");
        for internal in ["budget", "from_str", "{ ", "recursion limit"] {
            assert!(!err.contains(internal), "{internal}: {err}");
        }
    }
}

/// Text repeated by aliases is bounded: one 3 MB scalar through 50,000
/// aliases (a 3 MB file) was refused as "budget breached: ScalarBytes {
/// total_scalar_bytes: 69000002 }", and a 1 MiB one through twenty (21 MiB
/// of text) was read whole, taking 270 MB of memory for a 3 MB file. Both
/// are refused at the file and line, in words naming the limit (16 MiB,
/// four times the largest file); a file of a few anchors, aliases and
/// merge keys still checks.
#[test]
fn text_repeated_by_aliases_is_bounded() {
    let (_s, cfg) = scene("", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let bomb = |size: usize, uses: usize| {
        let uses = vec!["*big"; uses].join(", ");
        format!(
            "x-big: &big {}
x-uses: [{uses}]
{text}",
            "a".repeat(size)
        )
    };
    for broken in [bomb(3_000_000, 50_000), bomb(1 << 20, 20)] {
        std::fs::write(&cfg, broken).unwrap();
        let (_, err) = check_fails(&cfg);
        let at = format!("{}: line 2 ", cfg.display());
        assert!(err.contains(&at), "{err}");
        assert!(
            err.contains("its text, with what its aliases repeat, is more than 16777216 bytes"),
            "{err}"
        );
        assert!(err.contains("1 problem(s)"), "{err}");
        for internal in ["budget", "Bytes {"] {
            assert!(!err.contains(internal), "{internal}: {err}");
        }
    }
    // A second listener made of the first's parts.
    let second = "  - { name: second, <<: *at, tls: { certs: [*edge] } }\n";
    let merged = text
        .replace("bind: 127.0.0.1:0", "<<: &at { bind: 127.0.0.1:0 }")
        .replace("certs: [{ ref: edge }]", "certs: [&edge { ref: edge }]")
        + second;
    assert_ne!(merged, text);
    std::fs::write(&cfg, &merged).unwrap();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{merged}{out}{err}");
}

/// A FIFO where the configuration, a token file or the store key should
/// be: refused at once with the file and why, never blocking `check` (nor
/// `run`'s startup, which reads them the same way).
#[test]
fn fifos_are_refused_without_blocking() {
    let (s, cfg) = scene(ADMIN, STORE);
    let fifo = s.path("fifo.yaml");
    mkfifo(&fifo);
    check_fails_saying(&fifo, &["not a regular file (a FIFO)"]);
    // A device of endless bytes: refused unread, never read to its end.
    check_fails_saying(
        Path::new("/dev/zero"),
        &["/dev/zero: file: cannot read: not a regular file (a character device)"],
    );

    let token = s.path("editor.token");
    std::fs::remove_file(&token).unwrap();
    mkfifo(&token);
    check_fails_saying(
        &cfg,
        &[&format!(
            "admin.tokens[0].token_file {}: not a regular file (a FIFO)",
            token.display()
        )],
    );
    std::fs::remove_file(&token).unwrap();
    write(&token, &format!("{EDITOR}\n"));

    // The kind first: a FIFO or a directory with a mode open to others
    // (mkfifo's and mkdir's usual 0644, 0755) was told to chmod 600, and
    // only the run after that learnt it was no file at all.
    let key = s.path("data/store.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    mkfifo(&key);
    for (mode, kind) in [(0o644, "a FIFO"), (0o600, "a FIFO"), (0o755, "a directory")] {
        if kind == "a directory" {
            std::fs::remove_file(&key).unwrap();
            std::fs::create_dir(&key).unwrap();
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, out, err) = check(&cfg);
        assert_eq!(code, 1, "{mode:o} {kind}: {out}{err}");
        assert!(
            err.contains(&format!(
                "store.key_file {}: not a regular file ({kind})",
                key.display()
            )),
            "{mode:o} {kind}: {err}"
        );
        assert!(!err.contains("chmod"), "{mode:o} {kind}: {err}");
    }
}

/// A later pair whose names the first pair's certificate already answers
/// would never be chosen for them: its client_auth would never apply, so a
/// client would get in without a certificate. Refused, naming both entries.
#[test]
fn a_shadowed_pair_with_its_own_client_auth_fails() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.pair("x", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let cfg = s.config(
        r#"
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: ca, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { ref: edge }
        - cert_file: x.crt
          key_file: x.key
          server_names: [localhost]
          client_auth: { mode: require_and_verify, ca: { ref: ca } }
"#,
    );
    check_fails_saying(&cfg, &["tls.certs[1]", "\"edge\"", "\"localhost\""]);
}

/// `hotproxy SUBCOMMAND` in `dir` with `HOTPROXY_CONFIG` set to `value`:
/// (exit code, stdout, stderr).
fn with_config_env(dir: &Path, value: &str, subcommand: &str) -> (i32, String, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .arg(subcommand)
            .current_dir(dir)
            .env("HOTPROXY_CONFIG", value)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `HOTPROXY_CONFIG=` (set but empty, as a template that rendered nothing
/// leaves it) got clap's "a value is required for '--config <CONFIG>' but
/// none was supplied", though no `--config` was given. Empty is unset, as
/// `${HOTPROXY_CONFIG:-config.yaml}` and kubectl's `KUBECONFIG` have it:
/// `./config.yaml` is read, and a missing one is named.
#[test]
fn an_empty_hotproxy_config_means_config_yaml() {
    let (s, _cfg) = scene("", "");
    let (code, out, err) = with_config_env(s.dir.path(), "", "check");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("edge"), "{out}");
    // A set one is still the file read.
    let (code, out, err) = with_config_env(s.dir.path(), "elsewhere.yaml", "check");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("elsewhere.yaml"), "{err}");
    // `run` alike: in a directory without config.yaml, that file is named.
    let empty = tempfile::tempdir().unwrap();
    let (code, out, err) = with_config_env(empty.path(), "", "run");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("config.yaml") && !err.contains("a value is required"),
        "{err}"
    );
}

/// How a CA file holding [`unusable_anchor_pem`] alone is refused.
const ANCHOR_REFUSED: &str =
    "bad-ca.crt: certificate 1 (CN=twice-constrained) is not usable as a trust anchor";

/// A `certs` entry's own client_auth (crt-list style) is built by the proxy
/// at start, one verifier per entry; a CA the verifier cannot use fails the
/// check — as the CA entry is read, naming the file, the certificate and
/// who uses it (it failed only when the verifier was built) — and `run`
/// refuses the same configuration, naming the entry.
#[test]
fn a_certs_entry_client_auth_the_proxy_refuses_fails_the_check() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.pair("admin", &ca.server_pair(&["admin.localhost"]));
    write(&s.path("bad-ca.crt"), &unusable_anchor_pem());
    let cfg = s.config(
        r#"
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: admin-pair, type: server-pair, cert_file: admin.crt, key_file: admin.key }
  - { id: bad-ca, type: ca-bundle, ca_file: bad-ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { ref: edge }
        - ref: admin-pair
          client_auth: { mode: require_and_verify, ca: { ref: bad-ca } }
"#,
    );
    let refused = |err: &str| err.contains("entry bad-ca") && err.contains(ANCHOR_REFUSED);
    let (_, err) = check_fails(&cfg);
    assert!(refused(&err), "{err}");
    assert!(
        err.contains("used by listener public (tls.certs[1].client_auth.ca)"),
        "{err}"
    );
    // The proxy agrees: it refuses to start, with the same words.
    let (code, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(refused(&err), "{err}");
}

/// An upstream's TLS is built by `run` at start (its CA bundle as trust
/// anchors, its CRLs in the verifier); a CA webpki cannot take as a trust
/// anchor fails the check as the CA entry is read, naming the file, the
/// certificate and the upstream — and `run` refuses it, naming the entry.
#[test]
fn an_upstream_ca_the_proxy_refuses_fails_the_check() {
    let (s, _) = scene("", "");
    write(&s.path("bad-ca.crt"), &unusable_anchor_pem());
    let cfg = s.config(
        r#"
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: bad-ca, type: ca-bundle, ca_file: bad-ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
upstreams:
  - name: api
    servers: [https://127.0.0.1:9443]
    tls: { ca: { ref: bad-ca } }
"#,
    );
    let refused = |err: &str| err.contains("entry bad-ca") && err.contains(ANCHOR_REFUSED);
    let (_, err) = check_fails(&cfg);
    assert!(refused(&err), "{err}");
    assert!(err.contains("used by upstream api (tls.ca)"), "{err}");
    // The proxy agrees: it refuses to start, with the same words.
    let (code, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(refused(&err), "{err}");
}

/// `run` starts with a spare entry nothing references whose files do not
/// load, warning "unused entry has no usable material"; `check` agrees:
/// a warning naming the entry, exit 0. Before, it was a problem (exit 1),
/// so `check` failed a configuration `run` starts. A referenced entry
/// that does not load still fails it.
#[test]
fn an_unused_entry_that_does_not_load_is_a_warning() {
    let (s, cfg) = scene(ADMIN, "");
    edit(&cfg, |text| {
        text.replace(
            "certs:\n",
            "certs:\n  - { id: spare, type: ca-bundle, ca_file: missing.crt }\n",
        )
    });
    let (out, _) = check_passes(&cfg);
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning: entry spare (ca-bundle, unused)"))
        .unwrap_or_else(|| panic!("no warning naming spare in:\n{out}"));
    assert!(warning.contains("missing.crt"), "{warning}");
    assert!(out.contains("is valid"), "{out}");
    // Referenced (as the listener's client CA), the same entry fails it.
    edit(&cfg, |text| {
        text.replace(
            "      certs: [{ ref: edge }]\n",
            "      certs: [{ ref: edge }]\n      client_auth: { mode: require_and_verify, ca: { ref: spare } }\n",
        )
    });
    check_fails_saying(&cfg, &["entry spare (ca-bundle, used by listener public"]);
    drop(s);
}
