//! The README's Troubleshooting table quotes only log lines and metric label
//! values the code actually emits: a renamed message fails here, not in an
//! operator's grep.

mod support;

use support::*;

const README: &str = include_str!("../README.md");

/// Metrics another branch of this session registers (h13-files: CRLs).
const AWAITED: &[&str] = &[];

/// The cells of each row of the table under `## Troubleshooting`.
fn troubleshooting_rows() -> Vec<Vec<String>> {
    let section = README
        .split("\n## Troubleshooting\n")
        .nth(1)
        .expect("README has a Troubleshooting section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| **"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code spans` of a Markdown cell.
fn spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The `label="value"` pairs of a metric selector like `m{a="x",b="y"}`.
fn label_values(selector: &str) -> Vec<(&str, &str)> {
    let Some(inner) = selector
        .split_once('{')
        .and_then(|(_, rest)| rest.strip_suffix('}'))
    else {
        return Vec::new();
    };
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect()
}

#[test]
fn troubleshooting_quotes_what_the_code_emits() {
    let src = sources();
    let rows = troubleshooting_rows();
    // The issue's list of failures, each with a row.
    for failure in [
        "Unknown CA",
        "name mismatch",
        "Expired certificate",
        "Missing client certificate",
        "Key mismatch",
        "subPath",
        "without `ca.crt`",
    ] {
        assert!(
            rows.iter().any(|r| r[0].contains(failure)),
            "no Troubleshooting row for {failure}"
        );
    }
    for row in &rows {
        assert_eq!(row.len(), 4, "row is not failure|log|metric|fix: {row:?}");
        for quoted in spans(&row[1]) {
            assert!(
                src.contains(quoted),
                "log text `{quoted}` (row {:?}) is not in src/",
                row[0]
            );
        }
        for selector in spans(&row[2]) {
            let name = selector.split('{').next().unwrap();
            // Counters are registered without the `_total` the exposition adds.
            let registered = format!("\"{}\"", name.trim_end_matches("_total"));
            // Added by another branch of this session: allowed missing
            // until it lands, flagged once it has (so the list empties).
            if AWAITED.contains(&name) {
                assert!(
                    !src.contains(&registered),
                    "{name} is registered now: take it off AWAITED in tests/docs.rs"
                );
                continue;
            }
            assert!(
                name.starts_with("hotproxy_") && src.contains(&registered),
                "metric {name} (row {:?}) is not registered in src/",
                row[0]
            );
            for (label, value) in label_values(selector) {
                // Entry, listener and upstream values are the example's names;
                // result and reason values are fixed by the code.
                if label == "result" || label == "reason" {
                    assert!(
                        src.contains(&format!("\"{value}\"")),
                        "{label}=\"{value}\" (row {:?}) is never emitted",
                        row[0]
                    );
                }
            }
        }
    }
}

/// The checker above is not vacuous: it finds the table, and a made-up log
/// line or label value would not pass it.
#[test]
fn the_checker_bites() {
    let src = sources();
    assert!(troubleshooting_rows().len() >= 7);
    assert!(!src.contains("certificate reloaded successfully!"));
    assert!(!src.contains("\"unknown-ca\""));
    assert_eq!(
        label_values(r#"m{entry="edge",result="failure"}"#),
        [("entry", "edge"), ("result", "failure")]
    );
}

/// The fenced block (```LANG) that first follows `anchor` in `text`.
fn block_after<'a>(text: &'a str, anchor: &str, lang: &str) -> &'a str {
    let rest = &text[text
        .find(anchor)
        .unwrap_or_else(|| panic!("README has no `{anchor}`"))..];
    let fence = format!("```{lang}\n");
    let start = rest.find(&fence).expect("a fenced block after the anchor") + fence.len();
    let len = rest[start..].find("\n```").expect("the block ends");
    &rest[start..start + len]
}

/// The `hotproxy check` output the README's Troubleshooting section quotes
/// is what `check` prints for a file with those three problems, at the
/// path the quoted command names.
#[test]
fn readme_check_output_is_what_check_prints() {
    const POD_PATH: &str = "/etc/hotproxy/config/config.yaml";
    let command = format!("hotproxy check --config {POD_PATH}`");
    let quoted = block_after(README, &command, "");
    let s = Scene::new();
    s.pair("edge", &TestCa::new("ca").server_pair(&["localhost"]));
    // Line 3: the misspelt key; line 16: the word for a number; entry
    // `other` at tls.certs[0] of listener `public`, its file missing.
    let cfg = s.config(
        "watch:
  debounce: 100ms
  pol_interval: 2s
certs:
  - { id: other, type: server-pair, cert_file: /etc/hotproxy/tls/missing.crt, key_file: edge.key }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - ref: other
    routes:
      - upstream: app
    limits:
      idle_timeout: 60s
      max_connections: lots
upstreams:
  - { name: app, servers: [\"http://127.0.0.1:1\"] }
",
    );
    let (code, _, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let printed = stderr.replace(cfg.to_str().unwrap(), POD_PATH);
    assert_eq!(
        printed.trim_end(),
        quoted,
        "the README's quoted `hotproxy check` output differs from what it prints"
    );

    // The indentation slip it quotes, up to its `...`.
    let after = README
        .split("A YAML indentation slip says which line is off")
        .nth(1)
        .expect("the README explains an indentation slip");
    let from = after
        .find("indentation problem:")
        .expect("the quoted indentation message");
    let slip = &after[from..from + after[from..].find(" ...").expect("it is cut with ...")];
    let cfg = s.config(
        "listeners: []
upstreams: []
admin:
  bind: 127.0.0.1:0


watch:
  debounce: 100ms
      events: true
",
    );
    // Line 9 deeper than `debounce:` on line 8.
    let (_, _, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(
        stderr.contains(slip),
        "check does not say `{slip}`:\n{stderr}"
    );
}

/// The `certificate reloaded` JSON line the README's Kubernetes section
/// quotes has the fields hotproxy writes, no more and no fewer, and is
/// a line a renewal could write (logged before the leaf expires).
#[tokio::test]
async fn readme_reload_log_line_has_the_fields_logged() {
    let quoted: serde_json::Value = serde_json::from_str(block_after(
        README,
        "grep '\"certificate reloaded\"'\n```\n",
        "json",
    ))
    .expect("the quoted line is JSON");
    assert_eq!(quoted["message"], "certificate reloaded");
    assert!(
        quoted["timestamp"].as_str().unwrap() < quoted["not_after"].as_str().unwrap(),
        "the quoted line logs a renewal whose certificate expired before it: {quoted}"
    );

    let s = Scene::new();
    let ca = TestCa::new("ca");
    let tls = writers::Kubelet::new(&s.path("tls"));
    let write =
        |p: &TestPair| tls.write(&[("tls.crt", &p.cert_pem), ("tls.key", &p.key_pem)], false);
    write(&ca.server_pair(&["hotproxy"]));
    let cfg = s.config(
        "certs:
  - { id: edge, type: server-pair, cert_file: tls/tls.crt, key_file: tls/tls.key }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [{ ref: edge }] }
",
    );
    let mut p = Proxy::start(&cfg);
    p.listener_addr("public").await;
    let renewed = ca.server_pair(&["hotproxy"]);
    write(&renewed);
    let logged = p
        .wait_log("the renewal's log line", |v| {
            v["message"] == "certificate reloaded"
                && v["fingerprint"] == renewed.fingerprint.as_str()
        })
        .await;
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&quoted),
        keys(&logged),
        "the README's line:\n{quoted}\nwhat hotproxy logs:\n{logged}"
    );
}

const SPEC: &str = include_str!("../docs/SPEC.md");

/// Each subcommand's `--help` offers what SPEC §1's synopsis gives it:
/// its flags, and for `--log-level` every level §1 names.
#[test]
fn help_offers_what_spec_section_1_names() {
    let section = SPEC
        .split("\n## 1. Command line\n")
        .nth(1)
        .expect("SPEC has §1")
        .split("\n## ")
        .next()
        .unwrap();
    let synopsis = block_after(section, "", "");
    for line in synopsis.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "hotproxy", "{line}");
        // `hotproxy run [...]`, `hotproxy certs inspect FILE...`.
        let sub: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| {
                !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
            .copied()
            .collect();
        let mut args = sub.clone();
        args.push("--help");
        let (code, help, _) = run_cli(&args);
        assert_eq!(code, 0, "hotproxy {args:?}");
        for flag in words.iter().flat_map(|w| {
            w.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|f| f.starts_with("--"))
        }) {
            assert!(
                help.contains(flag),
                "`hotproxy {sub:?} --help` lacks {flag}:\n{help}"
            );
        }
        if line.contains("--log-level") {
            let levels = section
                .split("- `--log-level` is ")
                .nth(1)
                .and_then(|t| t.split(", or tracing directives").next())
                .expect("§1 lists the levels");
            let levels = spans(levels);
            assert!(levels.len() >= 6, "{levels:?}");
            let described = help
                .split("--log-level")
                .nth(1)
                .and_then(|t| t.split("\n  -").next())
                .expect("the flag's own line");
            for level in levels {
                assert!(
                    described.contains(level),
                    "`hotproxy {sub:?} --help` does not offer --log-level {level}:\n{help}"
                );
            }
        }
    }
}
