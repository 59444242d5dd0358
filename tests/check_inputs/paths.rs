//! How `check` and `certs inspect` show the paths the configuration names: whole, escaped as Rust writes a string.

use super::shown::check_crl_from_env;
use super::*;

/// A material file's path was written raw in its load messages (`entry a
/// (ca-bundle, unused): <path>: file not found`): a path set from
/// `${NAME}` holding a terminal escape reached the terminal as is. The
/// path is shown whole, its control characters escaped as Rust writes a
/// string; an ordinary path as it is.
#[test]
fn a_material_path_is_shown_escaped_in_its_load_messages() {
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_ESC_CRL";
    let more = "  - { id: b, type: ca-bundle, ca_file: plain.crt }\n";
    let (s, _, out) = check_crl_from_env(CRL, 1, more, "/run/a\x1b[2J\tb.pem");
    assert!(!out.contains(['\u{1b}', '\t']), "{out:?}");
    assert!(
        out.contains("/run/a\\u{1b}[2J\\tb.pem: file not found"),
        "{out}"
    );
    let plain = s.path("plain.crt");
    assert!(
        out.contains(&format!("{}: file not found", plain.display())),
        "{out}"
    );
}

/// `certs inspect` headed each certificate with its file's path written
/// raw (`<path> [0]`): a file named with an ESC or a line break wrote a
/// terminal escape, or a line of its own, to the operator's terminal. The
/// header shows the path as its load messages do: whole, escaped as Rust
/// writes a string; an ordinary path as it is.
#[test]
fn certs_inspect_shows_the_file_escaped_in_its_header() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let odd = s.path("a\x1b[2J\nb.crt");
    write(&odd, &ca.cert_pem);
    let plain = s.path("plain.crt");
    write(&plain, &ca.cert_pem);
    let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(["certs", "inspect"])
        .arg(&odd)
        .arg(&plain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let dir = s.path("").display().to_string();
    let shown = format!("{}a\\u{{1b}}[2J\\nb.crt [0]", dir);
    assert_eq!(text.lines().next(), Some(shown.as_str()), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("{} [0]", plain.display())),
        "{text}"
    );
}

/// The store's own paths (`store.path`, `store.key_file`) were written raw
/// in the messages naming them: one set with an ESC (`"\e"` in YAML, or
/// from `${NAME}`) reached the operator's terminal as is. They are shown
/// as a material path is: whole, escaped as Rust writes a string.
#[test]
fn the_store_paths_are_shown_escaped_in_their_messages() {
    let store = "store: { path: \"data/s\\e[2J.json\", key_file: \"keys/k\\e[2J.key\" }\n";
    let (s, cfg) = scene("public", store);
    // No key yet: `run` would create it, and check notes so.
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let key = format!("{}k\\u{{1b}}[2J.key", s.path("keys/").display());
    assert!(
        out.contains(&format!("store.key_file {key} does not exist")),
        "{out}"
    );
    // A key others may read: refused, naming it.
    write(&s.path("keys/k\x1b[2J.key"), &"k".repeat(32));
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(
        out.contains(&format!("store.key_file {key} has mode 0644")),
        "{out}"
    );
}
