//! A configured header value padded with spaces or tabs is refused, naming the field.

use super::*;

/// `response_headers.set` values with SP or HTAB at an end (written so,
/// or from a variable): set on every response, an HTTP/2 client that
/// enforces RFC 9113 §8.2.1 refused the stream. `check` names each field.
#[test]
fn a_padded_response_header_value_is_refused() {
    const VAR: &str = "HOTPROXY_CHECK_PADDED_VALUE";
    let s = edge_scene();
    let cfg = s.config(&format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}
    response_headers:
      set:
        X-Frame-Options: "DENY "
        X-Lead: " nosniff"
        X-From-Env: "${{{VAR}}}"
        X-Inner: "a b"
"#
    ));
    let (code, out) = check_with(&cfg, &[(VAR, OsString::from("max-age=60\t"))]);
    assert_eq!(code, 1, "{out}");
    for name in ["X-Frame-Options", "X-Lead", "X-From-Env"] {
        assert!(
            out.contains(&format!(
                "listeners[0].response_headers.set.{name}: begins or ends with a space or tab"
            )),
            "{name}: {out}"
        );
    }
    assert!(!out.contains("X-Inner"), "{out}");
    assert!(
        out.contains("configuration check failed: 3 problem(s)"),
        "{out}"
    );
}
