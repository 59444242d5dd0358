//! The README's Troubleshooting table quotes only log lines and metric label
//! values the code actually emits: a renamed message fails here, not in an
//! operator's grep.

mod support;

use support::sources;

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
