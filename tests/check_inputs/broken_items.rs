//! A file with hundreds of broken list items: every one is reported, and the problems after them too.

use super::*;

/// `check` on listener `public` with `routes` (its items, indented as
/// such) and a typo in `watch`: refused, with 301 problems (300 routes
/// and the typo); the output, for what each test adds.
#[track_caller]
fn check_routes(routes: &str) -> String {
    let s = edge_scene();
    let cfg = s.config(&format!(
        r#"
watch: {{ pol_interval: 1s }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]
    routes:
{routes}"#
    ));
    let (code, out) = check_with(&cfg, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("configuration check failed: 301 problem(s)"),
        "{out}"
    );
    out
}

/// 300 routes each missing its `upstream`, and a typo in `watch`: one
/// problem each, 301, the typo among them. Each broken item took a
/// re-read of the whole file, and the reader gave up after 256: "256
/// problem(s)", the last 44 routes and the typo unreported (and the
/// operator, fixing those, met them only on the next check).
#[test]
fn every_broken_item_of_a_long_list_is_reported() {
    let routes: String = (0..300)
        .map(|n| format!("      - {{ path_prefix: /r{n}/ }}\n"))
        .collect();
    let out = check_routes(&routes);
    assert!(
        out.contains(
            "watch.pol_interval: unknown key `pol_interval` (did you mean `poll_interval`?"
        ),
        "{out}"
    );
}

/// 300 routes each a scalar (`- api`, a mapping expected), and a typo in
/// `watch`: one problem each, 301. Each such item stopped the read of the
/// list and took a re-read of the whole file: the reader gave up after
/// 256, and its note ("more problems not read") came last, past the 100
/// problems listed, never seen.
#[test]
fn every_item_of_a_long_list_that_is_not_a_mapping_is_reported() {
    let routes: String = (0..300).map(|n| format!("      - api{n}\n")).collect();
    let out = check_routes(&routes);
    assert!(
        out.contains("listeners[0].routes[0]: expected a mapping"),
        "{out}"
    );
    assert!(out.contains("watch.pol_interval: unknown key"), "{out}");
    assert!(!out.contains("more problems not read"), "{out}");
}
