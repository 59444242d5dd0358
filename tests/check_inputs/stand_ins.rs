//! A refused value is one problem: `check` builds nothing more on what the reader put in its place.

use super::*;

/// `check` on a file of listener `public` (`tls` its TLS section) and
/// `more` (top-level sections): exit 1, and exactly the one problem
/// `want`, as `run` refuses the file with.
#[track_caller]
fn one_problem(tls: &str, more: &str, want: &str) {
    let s = edge_scene();
    let cfg = s.config(&format!(
        r#"
{more}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {tls}
"#
    ));
    file_has_one_problem(&cfg, want);
}

/// `check` on `cfg`: exit 1 and exactly the one problem `want`, as `run`
/// refuses the file with.
#[track_caller]
fn file_has_one_problem(cfg: &std::path::Path, want: &str) {
    let (code, out) = check_with(cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(want), "{out}");
    assert!(
        out.contains("configuration check failed: 1 problem(s)"),
        "{out}"
    );
    let (code, run) = cli_with("run", cfg, &[]);
    assert_eq!(code, 1, "{run}");
    assert!(run.contains(want), "{run}");
}

const PAIR: &str = "{ certs: [{ cert_file: edge.crt, key_file: edge.key }] }";

/// An admin address that does not parse: read as `0.0.0.0:0`, it was
/// also said to expose the admin API unauthenticated on a non-loopback
/// address.
#[test]
fn a_bad_admin_address_is_not_said_to_expose_the_api() {
    one_problem(
        PAIR,
        "admin: { bind: bogus }",
        "admin.bind: \"bogus\" is not an address like 0.0.0.0:8443 or [::]:8443",
    );
}

/// An empty `cert_file`: read as the configuration's directory, which
/// was then loaded as a certificate ("not a regular file (a directory)").
#[test]
fn an_empty_path_is_not_loaded() {
    one_problem(
        "{ certs: [{ cert_file: \"\", key_file: edge.key }] }",
        "",
        "listeners[0].tls.certs[0].cert_file: empty path",
    );
}

/// A listener whose every certificate is refused (a reference to no
/// entry): its TLS was built without one, "no server certificate".
#[test]
fn a_listener_whose_certificates_are_refused_is_not_built() {
    one_problem(
        "{ certs: [{ ref: nothere }] }",
        "",
        "listeners[0].tls.certs[0].ref: no entry \"nothere\" in certs",
    );
}

/// An `admin` section that is a scalar (an address where a mapping is
/// expected): its stand-in's address `0.0.0.0:0` was also said to expose
/// the admin API unauthenticated, a second problem `run` never reports.
#[test]
fn a_scalar_admin_section_is_not_said_to_expose_the_api() {
    one_problem(PAIR, "admin: 127.0.0.1:9000", "admin: ");
}

/// A listener item that is not a mapping (a bare name, an empty `-`):
/// its stand-in was also built, "listener : no server certificate".
#[test]
fn a_listener_item_that_is_not_a_mapping_is_not_built() {
    for item in ["public", ""] {
        let s = edge_scene();
        let cfg = s.config(&format!(
            r#"
listeners:
  - name: good
    bind: 127.0.0.1:0
    tls: {PAIR}
  - {item}
"#
        ));
        file_has_one_problem(&cfg, "listeners[1]: ");
    }
}
