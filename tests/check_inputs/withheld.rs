//! How `check` withholds a `${NAME}` value: in the forms the resolver shows it in, and only there.

use super::*;

/// `check` on a listener `public` with one route to upstream `app`
/// (`servers`: `servers`), `route` its further fields, and the variables
/// `env` set: the exit code and the output.
fn check_route(route: &str, servers: &str, env: &[(&str, OsString)]) -> (i32, String) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(&format!(
        "upstreams:\n  - name: app\n    servers: {servers}\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n    \
         routes: [{{ upstream: app{route} }}]\n"
    ));
    check_with(&cfg, env)
}

/// A `path_prefix` set by `${NAME}` that normalisation changes
/// (`/hooks//s3cr3t`, `/hooks/%733cr3t`) had its value withheld, but
/// "so write ..." showed the normalised form, which is no piece of the
/// value as written: the secret was printed. The normalised form is
/// withheld as the value is; the reason stays.
#[test]
fn a_normalised_path_prefix_from_the_environment_is_withheld() {
    const HOOK: &str = "HOTPROXY_CHECK_INPUTS_HOOK";
    for value in ["/hooks//s3cr3t", "/hooks/%733cr3t"] {
        let env = [(HOOK, OsString::from(value))];
        let (code, out) = check_route(
            ", path_prefix: \"${HOTPROXY_CHECK_INPUTS_HOOK}\"",
            "[\"http://127.0.0.1:1\"]",
            &env,
        );
        assert_eq!(code, 1, "{out}");
        let label = format!("<withheld: the value of ${{{HOOK}}}>");
        assert!(
            out.contains(&format!(
                "listeners[0].routes[0].path_prefix: {label}: requests are routed on their \
                 normalised path, so write {label}\n"
            )),
            "{value}: {out}"
        );
        assert!(!out.contains("s3cr3t") && !out.contains("3cr3t"), "{out}");
    }
}
