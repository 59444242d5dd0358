//! A key or token pasted where a path goes: refused by field, never shown (check, run, reload, admin API).

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// `pem` as a YAML block scalar (`|`) under a key indented `indent` spaces:
/// how an operator pastes a key file's content.
fn block(pem: &str, indent: usize) -> String {
    let pad = " ".repeat(indent + 2);
    let lines: Vec<String> = pem.lines().map(|l| format!("{pad}{l}")).collect();
    format!("|\n{}", lines.join("\n"))
}

/// What a leak of `key_pem` (or of `token`) anywhere in `text` would
/// contain: a PEM marker, a body line of the key, the token. `what` names
/// the text in the panic.
fn assert_nothing_pasted_in(what: &str, text: &str, key_pem: &str, token: &str) {
    assert!(!text.contains("BEGIN"), "{what} shows a PEM marker: {text}");
    for line in pem_body_lines(key_pem) {
        assert!(!text.contains(&line), "{what} shows the key: {text}");
    }
    assert!(!text.contains(token), "{what} shows the token: {text}");
}

/// The entry `spare` (unused) with its key pasted into `key_file`, the
/// admin token pasted into `token_file` (`token: None`: a token file of
/// the scene), a listener `public` serving `a.crt` / `a.key`.
fn config(key_pem: Option<&str>, token: Option<&str>) -> String {
    let key_file = key_pem.map_or("spare.key".to_owned(), |k| block(k, 4));
    let token_file = token.map_or("viewer.token".to_owned(), |t| format!("\"{t}\\n\""));
    base_config(
        "a.crt",
        "a.key",
        &format!(
            r#"admin:
  bind: "127.0.0.1:0"
  tokens:
    - role: viewer
      token_file: {token_file}
certs:
  - id: spare
    type: server-pair
    cert_file: spare.crt
    key_file: {key_file}"#
        ),
    )
}

/// A scene with the pairs `a` (listener `public`'s, for `localhost`) and
/// `spare` written, their CA.
struct Pasted {
    s: Scene,
    ca: TestCa,
    a: TestPair,
    spare: TestPair,
}

fn pasted() -> Pasted {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, spare) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["spare.localhost"]),
    );
    s.pair("a", &a);
    s.pair("spare", &spare);
    Pasted { s, ca, a, spare }
}

/// The viewer's token (unique to `spare`), written to `viewer.token`.
fn viewer_token(s: &Scene, spare: &TestPair) -> String {
    let token = format!("viewer-{}", &spare.fingerprint[..32]);
    write(&s.path("viewer.token"), &format!("{token}\n"));
    token
}

/// `hotproxy COMMAND --config cfg` exits 1: its stderr, and all it wrote.
fn refused_by(command: &str, cfg: &std::path::Path) -> (String, String) {
    let (code, out, err) = run_cli(&[command, "--config", cfg.to_str().unwrap()]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    (err, all)
}

/// `check` and `run` refuse a key pasted into `key_file` and a token into
/// `token_file`, each named by its field (and entry), neither shown; so
/// does a paste YAML cannot read at all (its lines indented as nothing
/// above), whose indentation hint named the first body line by its text.
#[test]
fn check_and_run_refuse_a_pasted_key_or_token_without_showing_it() {
    let Pasted { s, spare, .. } = pasted();
    let token = viewer_token(&s, &spare);
    let cfg = s.config(&config(None, None));
    let (code, out, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "the files are valid: {out}{err}");

    s.config(&config(Some(&spare.key_pem), Some(&token)));
    let (err, all) = refused_by("check", &cfg);
    assert!(
        err.contains(
            "certs[0].key_file: entry \"spare\": looks like PEM content (a pasted certificate or key), not a path"
        ),
        "{all}"
    );
    assert!(
        err.contains("admin.tokens[0].token_file: holds a line break or NUL"),
        "{all}"
    );
    assert_nothing_pasted_in("check", &all, &spare.key_pem, &token);
    let (_, all) = refused_by("run", &cfg);
    assert!(all.contains("certs[0].key_file: entry \"spare\""), "{all}");
    assert_nothing_pasted_in("run", &all, &spare.key_pem, &token);

    // Pasted on the line of `key_file:`, the rest indented by three: not
    // YAML. The hint names the line, not its text.
    let first = spare.key_pem.lines().next().unwrap();
    let rest: Vec<String> = spare
        .key_pem
        .lines()
        .skip(1)
        .map(|l| format!("   {l}"))
        .collect();
    let broken = config(None, None).replace(
        "key_file: spare.key",
        &format!("key_file: {first}\n{}", rest.join("\n")),
    );
    s.config(&broken);
    let (_, all) = refused_by("check", &cfg);
    assert!(all.contains("a line without `key:` at column 4"), "{all}");
    assert_nothing_pasted_in("the YAML hint", &all, &spare.key_pem, &token);
}

/// A live edit pasting a key into an unused entry's `key_file` is rejected
/// whole, naming the field and entry: before, it applied (an unused entry
/// that does not load is only a warning), and the key was in that warning,
/// in the entry's `paths` and `last_reload.error` on the admin API.
#[tokio::test]
async fn a_reload_with_a_pasted_key_is_rejected_without_showing_it() {
    let Pasted { s, ca, a, spare } = pasted();
    let token = viewer_token(&s, &spare);
    let cfg = s.config(&config(None, None));
    let (mut p, addr) = serve(&cfg).await;
    let api = p.admin_addr().await;

    write(&cfg, &config(Some(&spare.key_pem), None));
    let outcome = p
        .wait_log("the edit rejected or applied", |v| {
            v["message"] == "configuration reloaded"
                || v["message"] == "configuration rejected; the running configuration stays"
        })
        .await;
    assert!(
        rejected("certs[0].key_file: entry \"spare\": looks like PEM content")(&outcome),
        "{outcome}"
    );
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    for path in ["/api/v1/certs", "/api/v1/certs/spare"] {
        let r = admin(api, "GET", path, Some(&token), None, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_nothing_pasted_in(path, &r.body, &spare.key_pem, &token);
    }
    let spare_entry = admin(api, "GET", "/api/v1/certs/spare", Some(&token), None, &[])
        .await
        .json();
    assert_eq!(
        spare_entry["paths"][1],
        s.path("spare.key").display().to_string(),
        "the running definition stays"
    );
    assert_nothing_pasted_in("the log", &p.logs().join("\n"), &spare.key_pem, &token);
}

/// Configurations with `key_pem` pasted (as a block scalar) into fields
/// that take a mapping, a number, a choice or a duration, or a duration set
/// from `${HOTPROXY_TEST_DIR}` (cargo sets it to `/srv/pki`), each with the
/// fields it fills wrongly: the reader's wrong types, an unknown choice
/// (which stops the reader) and the resolver's invalid durations apart.
fn pasted_in_typed_fields(key_pem: &str) -> Vec<(String, Vec<&'static str>)> {
    let yaml = |certs: &str, limits: &str, forward: &str, timeout: &str, tls: &str| {
        format!(
            r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
  - name: pasted
    bind: 127.0.0.1:0
    tls:
      certs:
        - {certs}
    limits:
      max_connections: {limits}
    forward_client_cert: {forward}
upstreams:
  - name: app
    servers: ["http://127.0.0.1:1"]
    connect_timeout: {timeout}
    tls:
      client_cert: {tls}
  - name: env
    servers: ["http://127.0.0.1:1"]
    connect_timeout: "${{HOTPROXY_TEST_DIR}}"
"#
        )
    };
    let ok = (
        "{ cert_file: a.crt, key_file: a.key }",
        "10",
        "headers",
        "5s",
    );
    let tls = "{ cert_file: a.crt, key_file: a.key }";
    let (in_list, in_limits) = (block(key_pem, 8), block(key_pem, 6));
    let in_map = block(key_pem, 4);
    vec![
        (
            yaml(&in_list, &in_limits, ok.2, ok.3, &block(key_pem, 6)),
            vec![
                "listeners[1].tls.certs[0]",
                "listeners[1].limits.max_connections",
                "upstreams[0].tls.client_cert",
            ],
        ),
        (
            yaml(ok.0, ok.1, &in_map, ok.3, tls),
            vec!["listeners[1].forward_client_cert"],
        ),
        (
            yaml(ok.0, ok.1, ok.2, &in_map, tls),
            vec![
                "upstreams[0].connect_timeout",
                "upstreams[1].connect_timeout",
            ],
        ),
    ]
}

/// `check` refuses a key pasted into a field of another type, and a
/// duration from an environment variable that is not one, naming each
/// field and never the value: the wrong-type, unknown-choice and
/// invalid-duration messages quoted it, line breaks and all.
#[test]
fn check_refuses_a_key_pasted_into_a_typed_field_without_showing_it() {
    assert_eq!(
        std::env::var("HOTPROXY_TEST_DIR").as_deref(),
        Ok("/srv/pki")
    );
    let Pasted { s, spare, .. } = pasted();
    for (yaml, fields) in pasted_in_typed_fields(&spare.key_pem) {
        let cfg = s.config(&yaml);
        let (err, all) = refused_by("check", &cfg);
        for field in fields {
            assert!(err.contains(&format!("{field}:")), "{field}: {all}");
        }
        assert!(all.contains("<withheld: "), "{all}");
        assert_nothing_pasted_in("check", &all, &spare.key_pem, "/srv/pki");
    }
}

/// The same edits made live are rejected by field, and neither the key nor
/// the variable's value is in the log line saying so.
#[tokio::test]
async fn a_reload_with_a_key_pasted_into_a_typed_field_does_not_show_it() {
    let Pasted { s, ca, a, spare } = pasted();
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;

    for (yaml, fields) in pasted_in_typed_fields(&spare.key_pem) {
        let before = p.logs().len();
        write(&cfg, &yaml);
        p.wait_log(&format!("the edit rejected naming {fields:?}"), |v| {
            fields.iter().all(|f| rejected(f)(v))
        })
        .await;
        let logs = p.logs()[before..].join("\n");
        assert_nothing_pasted_in("the log", &logs, &spare.key_pem, "/srv/pki");
    }
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    assert_nothing_pasted_in("the log", &p.logs().join("\n"), &spare.key_pem, "/srv/pki");
}

/// A token pasted as a one-line block scalar (`|`, `>`, `|-`) into a
/// number or duration field, each with that field: only text of several
/// lines was withheld, and a block of one line reads as that line (and a
/// line break, or none), so `found "hp_...\n"` showed it.
fn one_line_blocks(token: &str) -> Vec<(String, &'static str)> {
    [
        (
            format!("runtime:\n  worker_threads: |\n    {token}"),
            "runtime.worker_threads",
        ),
        (
            format!("runtime:\n  shutdown_grace: >\n    {token}"),
            "runtime.shutdown_grace",
        ),
        (
            format!(
                "upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n    \
                 connect_timeout: |-\n      {token}"
            ),
            "upstreams[0].connect_timeout",
        ),
    ]
    .into_iter()
    .map(|(extra, field)| (base_config("a.crt", "a.key", &extra), field))
    .collect()
}

/// `check` and a live edit refuse a token pasted as a one-line block
/// scalar, naming the field, never the token.
#[tokio::test]
async fn a_one_line_block_scalar_is_withheld() {
    let Pasted { s, ca, a, .. } = pasted();
    let token = "hp_7c1d9e0b3a5f42e8b6d0c9a1f3e5b7d9";
    for (yaml, field) in one_line_blocks(token) {
        let cfg = s.config(&yaml);
        let (err, all) = refused_by("check", &cfg);
        assert!(err.contains(&format!("{field}: ")), "{field}: {all}");
        assert!(all.contains("<withheld: "), "{all}");
        assert!(!all.contains(&token[3..]), "check shows the token: {all}");
    }

    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    for (yaml, field) in one_line_blocks(token) {
        write(&cfg, &yaml);
        p.wait_log(
            &format!("the edit rejected naming {field}"),
            rejected(field),
        )
        .await;
    }
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(&token[3..]),
        "the log shows the token: {logs}"
    );
}

/// The same with CR-only line ends (old Mac files; the YAML parser takes a
/// lone `\r` as a line break): the block's header was looked for back to
/// a `\n` only, so the token read as a plain value and `check` quoted it.
#[test]
fn a_one_line_block_scalar_with_cr_line_ends_is_withheld() {
    let Pasted { s, .. } = pasted();
    let token = "hp_7c1d9e0b3a5f42e8b6d0c9a1f3e5b7d9";
    for (yaml, field) in one_line_blocks(token) {
        let cfg = s.config(&yaml.replace("\r\n", "\n").replace('\n', "\r"));
        let (err, all) = refused_by("check", &cfg);
        assert!(err.contains(&format!("{field}: ")), "{field}: {all}");
        assert!(all.contains("<withheld: text of 1 line>"), "{all}");
        assert!(!all.contains(&token[3..]), "check shows the token: {all}");
    }
}

/// The configuration of [`config`] with the key's first two body lines
/// folded into `key_file` (`>-`: YAML reads them as one line) and the
/// token below `token_file: |-`: block scalars of one line, no line break
/// in either value.
fn folded_into_paths(key_pem: &str, token: &str) -> String {
    let body = pem_body_lines(key_pem);
    config(None, None)
        .replace(
            "key_file: spare.key",
            &format!("key_file: >-\n      {}\n      {}", body[0], body[1]),
        )
        .replace(
            "token_file: viewer.token",
            &format!("token_file: |-\n        {token}"),
        )
}

/// A key folded onto one line, or a token below `|-`, in a path field held
/// no line break and was taken for a path: `run` and a reload said
/// "<path>: file not found" with the key in the path (an unused entry's
/// failure only a warning: the edit applied). Both refuse it as pasted
/// content, naming the fields, never the value; the running
/// configuration stays.
#[tokio::test]
async fn run_and_a_reload_refuse_a_path_written_as_a_block_scalar() {
    let Pasted { s, ca, a, spare } = pasted();
    let token = viewer_token(&s, &spare);
    let cfg = s.config(&folded_into_paths(&spare.key_pem, &token));
    let said = [
        "certs[0].key_file: entry \"spare\": written as a block scalar (| or >): pasted content",
        "admin.tokens[0].token_file: written as a block scalar (| or >): pasted content",
    ];
    let (err, all) = refused_by("run", &cfg);
    for said in said {
        assert!(err.contains(said), "{said}: {all}");
    }
    assert_nothing_pasted_in("run", &all, &spare.key_pem, &token);

    s.config(&config(None, None));
    let (mut p, addr) = serve(&cfg).await;
    // Renamed over: the first outcome is this edit's, never a half-written file's.
    mv_over(&cfg, &folded_into_paths(&spare.key_pem, &token));
    let outcome = p
        .wait_log("the edit rejected or applied", |v| {
            v["message"] == "configuration reloaded"
                || v["message"] == "configuration rejected; the running configuration stays"
        })
        .await;
    for said in said {
        assert!(rejected(said)(&outcome), "{said}: {outcome}");
    }
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    assert_nothing_pasted_in("the log", &p.logs().join("\n"), &spare.key_pem, &token);
}
