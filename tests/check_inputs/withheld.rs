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

/// A short `${NAME}` value was replaced wherever it stood after a
/// character that is no letter: within the values a message allows
/// (`ca` in `ca-bundle`, `1` in `"1.2"`), which read as garbled. It is
/// replaced where it stands as a token of its own, only.
#[test]
fn a_short_value_from_the_environment_is_withheld_only_as_a_token() {
    const KIND: &str = "HOTPROXY_CHECK_INPUTS_KIND";
    const TLS_MIN: &str = "HOTPROXY_CHECK_INPUTS_TLS_MIN";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(&format!(
        "certs:\n  - {{ id: k, type: \"${{{KIND}}}\", ca_file: edge.crt }}\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
         min_version: \"${{{TLS_MIN}}}\"\n"
    ));
    let env = [(KIND, OsString::from("ca")), (TLS_MIN, OsString::from("1"))];
    let (code, out) = check_with(&cfg, &env);
    assert_eq!(code, 1, "{out}");
    let kind = format!("<withheld: the value of ${{{KIND}}}>");
    assert!(
        out.contains(&format!(
            "certs[0].type: unknown type {kind} (server-pair | client-pair | ca-bundle)\n"
        )),
        "{out}"
    );
    let min = format!("<withheld: the value of ${{{TLS_MIN}}}>");
    let line = out
        .lines()
        .find(|l| l.contains("tls.min_version"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&min), "{out}");
    assert!(line.contains("1.2") && line.contains("1.3"), "{out}");
    assert!(!line.contains(&format!("{min}.")), "{out}");
}

/// A CRL path written in the file, listed twice beside a `${NAME}` one
/// whose value is its last part (`ca.crl`), was shown as
/// `/old/<withheld: ...> is listed twice`: the path as written was
/// labelled as the variable's value. The value is matched against the
/// path it resolved to, shown whole; one listed twice from `${NAME}` is
/// still withheld, relative or not.
#[test]
fn a_path_written_in_the_file_is_not_labelled_as_a_value() {
    const CRL: &str = "HOTPROXY_CHECK_INPUTS_REL_CRL";
    let crl = format!("\"${{{CRL}}}\"");
    for (list, want) in [
        (
            format!("[{crl}, \"/old/ca.crl\", \"/old/ca.crl\"]"),
            "certs[0].crl_files: /old/ca.crl is listed twice\n".to_owned(),
        ),
        (
            format!("[{crl}, {crl}]"),
            format!("certs[0].crl_files: <withheld: the value of ${{{CRL}}}> is listed twice\n"),
        ),
    ] {
        let (_s, cfg) = scene(
            "public",
            &format!(
                "certs:\n  - {{ id: a, type: ca-bundle, ca_file: edge.crt, crl_files: {list} }}\n"
            ),
        );
        let (code, out) = check_with(&cfg, &[(CRL, OsString::from("ca.crl"))]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&want), "{want}: {out}");
        let twice = out.lines().filter(|l| l.contains("listed twice"));
        assert!(twice.clone().count() == 1, "{out}");
        if list.matches(&crl).count() == 2 {
            assert!(twice.clone().all(|l| !l.contains("ca.crl")), "{out}");
        }
    }
}

/// A server URL set by `${NAME}` with credentials in it lost its reason:
/// the message quoted the URL cut (`"http://…@host"`), a piece of the
/// value, and was withheld whole ("not valid here; the reason is
/// withheld"), hiding what was wrong. The quoted piece alone is replaced
/// by the label; the reason stays, and no piece of the value is shown.
#[test]
fn a_server_url_from_the_environment_keeps_its_reason() {
    const URL: &str = "HOTPROXY_CHECK_INPUTS_BACKEND_URL";
    let value = "http://user:pa55w0rd@backend.internal:8080";
    let env = [(URL, OsString::from(value))];
    let (code, out) = check_route("", &format!("[\"${{{URL}}}\"]"), &env);
    assert_eq!(code, 1, "{out}");
    let label = format!("<withheld: the value of ${{{URL}}}>");
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: {label}: credentials in a server URL are not sent \
             upstream and would be logged; remove the part before @\n"
        )),
        "{out}"
    );
    for piece in ["pa55w0rd", "user", "backend.internal", "http://…"] {
        assert!(!out.contains(piece), "{piece}: {out}");
    }
}

/// A `bind` set by `${NAME}` whose address is written otherwise than it
/// is shown (`127.0.0.1:08443`, `[::FFFF:127.0.0.1]:8443`) was printed by
/// the problem of two listeners on one address: it shows the address as
/// parsed (`127.0.0.1:8443`), which is no piece of the value as written,
/// and only that was withheld. The parsed form is withheld as the value
/// is, beside a listener's own field and in another's message naming it.
#[test]
fn a_bind_from_the_environment_is_withheld_as_parsed() {
    const BIND: &str = "HOTPROXY_CHECK_INPUTS_BIND";
    let label = format!("<withheld: the value of ${{{BIND}}}>");
    let from_env = format!("\"${{{BIND}}}\"");
    for (value, binds, want, parsed) in [
        (
            "127.0.0.1:08443",
            [from_env.as_str(), "0.0.0.0:8443"],
            format!(
                "listeners[1].bind: 0.0.0.0:8443 overlaps listeners[0].bind ({label}): 0.0.0.0 \
                 takes every IPv4 address of port 8443; two listening sockets cannot share it\n"
            ),
            "127.0.0.1:8443",
        ),
        (
            "[::FFFF:127.0.0.1]:8443",
            ["127.0.0.1:8443", from_env.as_str()],
            format!(
                "listeners[1].bind: {label} is also listeners[0].bind; two listening sockets \
                 cannot share it\n"
            ),
            "::ffff:127.0.0.1",
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let listener = |i: usize| {
            format!(
                "  - name: l{i}\n    bind: {}\n    \
                 tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n",
                binds[i]
            )
        };
        let cfg = s.config(&format!("listeners:\n{}{}", listener(0), listener(1)));
        let (code, out) = check_with(&cfg, &[(BIND, OsString::from(value))]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&want), "{value}: {want}: {out}");
        assert!(!out.contains(parsed) && !out.contains(value), "{out}");
    }
}

/// A short `${NAME}` value that is also a word of the message (`mode`,
/// `hex`) was labelled where the message's own word stood: `unknown
/// <withheld> <withheld> (none | ...)`, `64 <withheld> digits`, and so in
/// a rule's problem about another field of it. A short value is replaced
/// at its place only: where the message quotes it, or, shown bare, as a
/// token in a problem of its own field (or one naming it).
#[test]
fn a_short_value_from_the_environment_leaves_the_message_s_own_words() {
    const V: &str = "HOTPROXY_CHECK_INPUTS_WORD";
    let label = format!("<withheld: the value of ${{{V}}}>");
    let var = format!("\"${{{V}}}\"");
    let not_hex = "not a SHA-256 fingerprint (64 hex digits; colons and case are ignored)";
    let at = "listeners[0].tls.client_auth";
    for (value, mode, rule, want) in [
        (
            "mode",
            var.as_str(),
            "{ cn: ops }".to_owned(),
            format!(
                "{at}.mode: unknown mode {label} (none | request | require_any | \
                 verify_if_given | require_and_verify)\n"
            ),
        ),
        (
            "hex",
            "require_and_verify",
            format!("{{ fingerprint_sha256: {var} }}"),
            format!("{at}.allow[0]: fingerprint_sha256: {label}: {not_hex}\n"),
        ),
        (
            "hex",
            "require_and_verify",
            format!("{{ cn: {var}, fingerprint_sha256: zz }}"),
            format!("{at}.allow[0]: fingerprint_sha256: \"zz\": {not_hex}\n"),
        ),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        write(&s.path("ca.crt"), &ca.cert_pem);
        let cfg = s.config(&format!(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
             client_auth: {{ mode: {mode}, ca: {{ ca_file: ca.crt }}, allow: [{rule}] }}\n"
        ));
        let (code, out) = check_with(&cfg, &[(V, OsString::from(value))]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&want), "{rule}: {want}: {out}");
    }
}

/// A number set by `${NAME}` and written otherwise than it reads
/// (`0003001`, `+8888888888`) was printed by its field's bound check,
/// which shows the number as read (`3001 is more than 1024`), no piece of
/// the value as written, which alone was withheld; and by the type's own
/// check (`integer `99999`, expected u16`). The number as read is
/// withheld as the value is, for every numeric field alike.
#[test]
fn a_number_from_the_environment_is_withheld_as_read() {
    let var = |name: &str| format!("\"${{HOTPROXY_CHECK_INPUTS_{name}}}\"");
    let label = |name: &str| format!("<withheld: the value of ${{HOTPROXY_CHECK_INPUTS_{name}}}>");
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, OsString)> {
        let pairs = pairs.iter();
        pairs
            .map(|(n, v)| (format!("HOTPROXY_CHECK_INPUTS_{n}"), OsString::from(v)))
            .collect()
    };
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(&format!(
        "runtime: {{ worker_threads: {} }}\n\
         upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n    \
         retries: {{ budget_percent: {} }}\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         limits: {{ max_connections: {}, max_header_bytes: {}, body_buffer_bytes: {} }}\n    \
         tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n    \
         routes: [{{ upstream: app }}]\n",
        var("W"),
        var("BP"),
        var("MC"),
        var("MH"),
        var("BB"),
    ));
    let set = env(&[
        ("W", "0003001"),
        ("BP", "+000417"),
        ("MC", "+8888888888"),
        ("MH", "0000777"),
        ("BB", "077777777777"),
    ]);
    let set: Vec<(&str, OsString)> = set.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let (code, out) = check_with(&cfg, &set);
    assert_eq!(code, 1, "{out}");
    let lat = "listeners[0].limits";
    for want in [
        format!(
            "runtime.worker_threads: {} is more than 1024 (0 = one per CPU core)\n",
            label("W")
        ),
        format!(
            "upstreams[0].retries.budget_percent: {} is over 100 (a percentage of the \
             requests in flight)\n",
            label("BP")
        ),
        format!(
            "{lat}.max_connections: {} is more than the 1073741824 a listener can hold\n",
            label("MC")
        ),
        format!(
            "{lat}.max_header_bytes: {} is less than the 1024 bytes of an ordinary request \
             head (every request would get 431)\n",
            label("MH")
        ),
        format!(
            "{lat}.body_buffer_bytes: {} is more than 67108864: every request in flight may \
             hold this much memory (larger bodies are streamed)\n",
            label("BB")
        ),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    for read in ["3001", "417", "8888888888", "777", "77777777777"] {
        let problems = out
            .lines()
            .filter(|l| l.contains(" problem") || l.contains(": line "));
        assert!(problems.clone().all(|l| !l.contains(read)), "{read}: {out}");
    }

    // Past the field's type: the type's own message shows the number read.
    let s = Scene::new();
    let cfg = s.config(&format!(
        "listeners:\n  - name: plain\n    bind: 127.0.0.1:0\n    \
         redirect_https: {{ port: {} }}\n",
        var("PORT")
    ));
    let set = env(&[("PORT", "099999")]);
    let set: Vec<(&str, OsString)> = set.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let (code, out) = check_with(&cfg, &set);
    assert_eq!(code, 1, "{out}");
    let want = format!(
        "listeners[0].redirect_https.port: invalid value: integer {}, expected u16\n",
        label("PORT")
    );
    assert!(out.contains(&want), "{want}: {out}");
    assert!(!out.contains("99999"), "{out}");
}

/// A `${NAME}` value holding one of the values a message allows
/// (`TLSv1.2` holds `1.2`, `*.*.example.com` the hint's `*.example.com`)
/// had that allowed value replaced by its label, as a piece of it: the
/// list read `(<withheld…> | "1.3")`, and which one was replaced told
/// what the value held. What a message allows is shown as is.
#[test]
fn the_values_a_message_allows_are_shown_as_they_are() {
    const MIN: &str = "HOTPROXY_CHECK_INPUTS_ALLOWED_MIN";
    const HOST: &str = "HOTPROXY_CHECK_INPUTS_ALLOWED_HOST";
    let (min, host) = (
        format!("<withheld: the value of ${{{MIN}}}>"),
        format!("<withheld: the value of ${{{HOST}}}>"),
    );
    for (tls_min, host_value) in [
        ("TLSv1.2", "*.*.example.com"),
        (" 1.3", "*.example.com.*"),
        ("1.3.", "a*.example.com"),
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        let cfg = s.config(&format!(
            "upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n\
             listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
             min_version: \"${{{MIN}}}\"\n    \
             routes: [{{ upstream: app, host: \"${{{HOST}}}\" }}]\n"
        ));
        let env = [
            (MIN, OsString::from(tls_min)),
            (HOST, OsString::from(host_value)),
        ];
        let (code, out) = check_with(&cfg, &env);
        assert_eq!(code, 1, "{out}");
        for want in [
            format!(
                "listeners[0].tls.min_version: unsupported version {min} (\"1.2\" | \"1.3\")\n"
            ),
            format!(
                "listeners[0].routes[0].host: {host}: `*` only as the whole first label \
                 (\"*.example.com\", one label)\n"
            ),
        ] {
            assert!(
                out.contains(&want),
                "{tls_min:?} {host_value:?}: {want}: {out}"
            );
        }
    }
}

/// A long `${NAME}` value (8 bytes or more) that is a piece of a word the
/// message allows (`require_and_verif` of `require_and_verify`), or is one
/// once trimmed (` ingress_nginx`), was replaced there too: the list read
/// `(none | … | <withheld…>y)`, spelling the value out beside its label.
/// Every list of allowed values (a mode's, a type's, a balance's, serde's
/// `expected one of …`) is shown as is.
#[test]
fn a_long_value_is_not_replaced_within_the_values_a_message_allows() {
    let var = |name: &str| format!("\"${{HOTPROXY_CHECK_INPUTS_LIST_{name}}}\"");
    let label =
        |name: &str| format!("<withheld: the value of ${{HOTPROXY_CHECK_INPUTS_LIST_{name}}}>");
    let at = "listeners[0]";
    let wants = [
        format!(
            "{at}.tls.client_auth.mode: unknown mode {} (none | request | require_any | \
             verify_if_given | require_and_verify)\n",
            label("MODE")
        ),
        format!(
            "{at}.forward_client_cert: unknown variant {}, expected one of `none`, `headers`, \
             `rfc9440`, `xfcc`, `ingress_nginx`\n",
            label("FCC")
        ),
        format!(
            "certs[0].type: unknown type {} (server-pair | client-pair | ca-bundle)\n",
            label("TYPE")
        ),
        format!(
            "upstreams[0].balance: unknown balance {} (least_request | round_robin)\n",
            label("BAL")
        ),
    ];
    for values in [
        [
            "require_and_verif",
            "ingress_ngin",
            "server-pai",
            "least_reques",
        ],
        [
            " verify_if_given",
            " ingress_nginx",
            "client-pair ",
            " round_robin",
        ],
    ] {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("edge", &ca.server_pair(&["localhost"]));
        write(&s.path("ca.crt"), &ca.cert_pem);
        let cfg = s.config(&format!(
            "certs:\n  - {{ id: k, type: {}, ca_file: ca.crt }}\n\
             upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n    \
             balance: {}\n\
             listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
             forward_client_cert: {}\n    \
             tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n      \
             client_auth: {{ mode: {}, ca: {{ ca_file: ca.crt }} }}\n    \
             routes: [{{ upstream: app }}]\n",
            var("TYPE"),
            var("BAL"),
            var("FCC"),
            var("MODE"),
        ));
        let names = ["MODE", "FCC", "TYPE", "BAL"];
        let env: Vec<(String, OsString)> = names
            .iter()
            .zip(values)
            .map(|(n, v)| (format!("HOTPROXY_CHECK_INPUTS_LIST_{n}"), OsString::from(v)))
            .collect();
        let env: Vec<(&str, OsString)> = env.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let (code, out) = check_with(&cfg, &env);
        assert_eq!(code, 1, "{out}");
        for want in &wants {
            assert!(out.contains(want.as_str()), "{values:?}: {want}: {out}");
        }
    }
}

/// A wildcard `bind` set by `${NAME}` (`0.0.0.0:8443`, `[::]:8443`,
/// `[::ffff:0.0.0.0]:8443`) beside another listener on its port: the
/// problem withheld the value whole but said `0.0.0.0 takes every IPv4
/// address of port 8443`, the value again in two pieces. The address and
/// the port a message names apart are withheld as the value is, whether
/// the listener from `${NAME}` is the earlier or the later one.
#[test]
fn a_wildcard_bind_from_the_environment_is_not_rebuilt_from_its_pieces() {
    const BIND: &str = "HOTPROXY_CHECK_INPUTS_WILD_BIND";
    let label = format!("<withheld: the value of ${{{BIND}}}>");
    let from_env = format!("\"${{{BIND}}}\"");
    for (value, other, ip) in [
        ("0.0.0.0:8443", "127.0.0.1:8443", "0.0.0.0"),
        ("[::ffff:0.0.0.0]:8443", "127.0.0.1:8443", "::ffff:0.0.0.0"),
        ("[::]:8443", "\"[::1]:8443\"", "::"),
    ] {
        for env_first in [true, false] {
            let binds = match env_first {
                true => [from_env.as_str(), other],
                false => [other, from_env.as_str()],
            };
            let s = Scene::new();
            let ca = TestCa::new("ca");
            s.pair("edge", &ca.server_pair(&["localhost"]));
            let listener = |i: usize| {
                format!(
                    "  - name: l{i}\n    bind: {}\n    \
                     tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n",
                    binds[i]
                )
            };
            let cfg = s.config(&format!("listeners:\n{}{}", listener(0), listener(1)));
            let (code, out) = check_with(&cfg, &[(BIND, OsString::from(value))]);
            assert_eq!(code, 1, "{out}");
            let line = out
                .lines()
                .find(|l| l.contains("listeners[1].bind: "))
                .unwrap_or_else(|| panic!("{value} {env_first}: {out}"));
            let other = other.trim_matches('"');
            let (first, second) = match env_first {
                true => (label.as_str(), other),
                false => (other, label.as_str()),
            };
            let head =
                format!("listeners[1].bind: {second} overlaps listeners[0].bind ({first}): ");
            assert!(line.contains(&head), "{value} {env_first}: {out}");
            assert!(
                line.contains(&format!("): {label} takes every IPv")),
                "{value} {env_first}: {out}"
            );
            // Three labels of a long name: the message is cut after them.
            assert!(
                line.contains(&format!(" of port {label}")),
                "{value} {env_first}: {out}"
            );
            assert!(
                !line.contains(&format!(" {ip} ")),
                "{value} {env_first}: {out}"
            );
        }
    }
}

/// A short number written as a block scalar (`worker_threads: |-` and
/// `5000` below it, a value pasted) was shown bare by its field's bound
/// check (`5000 is more than 1024`): only a value from `${NAME}` was
/// withheld bare when short. A block scalar's value is withheld alike in
/// its own field's problems.
#[test]
fn a_short_number_written_as_a_block_scalar_is_withheld() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        "runtime:\n  worker_threads: |-\n    5000\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         limits:\n      max_header_bytes: >-\n        777\n    \
         tls:\n      certs: [{ cert_file: edge.crt, key_file: edge.key }]\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 1, "{out}");
    let label = "<withheld: text of 1 line>";
    for want in [
        format!("runtime.worker_threads: {label} is more than 1024 (0 = one per CPU core)\n"),
        format!(
            "listeners[0].limits.max_header_bytes: {label} is less than the 1024 bytes of an \
             ordinary request head (every request would get 431)\n"
        ),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    // As a word: the catalogue's random fingerprints may hold the digits.
    let shown = out
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "5000" || word == "777");
    assert!(!shown, "{out}");
}

/// A `certs` entry's path field holding pasted content was refused as
/// `entry "ID": written as a block scalar ...`, the id as read: one set
/// by `${NAME}`, or written as a block scalar (§2: never printed as
/// written), was shown in a problem of another field, which its
/// withholding does not look at; one refused as invalid was shown there
/// too. Such an entry is named by its place (`entry certs[0]: ...`); one
/// with a valid id written plainly keeps its id.
#[test]
fn an_entry_whose_id_is_withheld_or_invalid_is_named_by_its_place() {
    const ID: &str = "HOTPROXY_CHECK_INPUTS_ENTRY_ID";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let pasted = "|-\n      MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
    let item = "|-\n          MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
    let cfg = s.config(&format!(
        "certs:\n  - id: \"${{{ID}}}\"\n    type: server-pair\n    cert_file: edge.crt\n    \
         key_file: {pasted}\n  - id: |-\n      blockedentryid\n    type: ca-bundle\n    \
         ca_file: {pasted}\n  - id: BadEntryId\n    type: ca-bundle\n    ca_file: edge.crt\n    \
         crl_files:\n      - {item}\n  - id: plain\n    type: server-pair\n    \
         cert_file: {pasted}\n    key_file: edge.key\n\
         listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    \
         tls:\n      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]\n"
    ));
    let env = [(ID, OsString::from("envsecretid"))];
    let (code, out) = check_with(&cfg, &env);
    assert_eq!(code, 1, "{out}");
    let why = "written as a block scalar (| or >): pasted content";
    for (field, entry) in [
        ("certs[0].key_file", "certs[0]"),
        ("certs[1].ca_file", "certs[1]"),
        ("certs[2].crl_files[0]", "certs[2]"),
        ("certs[3].cert_file", "\"plain\""),
    ] {
        assert!(
            out.contains(&format!("{field}: entry {entry}: {why}")),
            "{field}: {out}"
        );
    }
    assert!(!out.contains("envsecretid"), "{out}");
    assert!(!out.contains("blockedentryid"), "{out}");
    // The invalid id is shown in its own field's problem alone.
    assert_eq!(out.matches("BadEntryId").count(), 1, "{out}");
}

/// `token_env: "${ADMIN_TOKEN}"` (or `token_file:`) with the variable set
/// to the token itself, not to a variable's name or a path: `check` said
/// "environment variable CorrectHorseBatteryStaple is not set", `run`
/// logged it at ERROR, and the token file's path showed it in "No such
/// file". A token of words, or of short groups, passed the shape checks
/// for a pasted token. A field set by `${NAME}` is never repeated: the
/// message names the field and the variable reference, and asks whether
/// the token itself was put there.
#[test]
fn a_token_source_set_by_a_variable_is_named_by_the_variable() {
    const VAR: &str = "HOTPROXY_CHECK_INPUTS_ADMIN_TOKEN";
    let label = format!("the value of ${{{VAR}}}");
    for (field, token) in [
        ("token_env", "CorrectHorseBatteryStaple"),
        ("token_file", "abcd1-efgh2-ijkl3-mnop4"),
    ] {
        let admin = format!(
            "admin:\n  bind: 127.0.0.1:0\n  tokens: [{{ role: viewer, {field}: \"${{{VAR}}}\" }}]"
        );
        let (_s, cfg) = scene("public", &admin);
        for command in ["check", "run"] {
            let (code, out) = cli_with(command, &cfg, &[(VAR, OsString::from(token))]);
            assert_eq!(code, 1, "{command} {field}: {out}");
            let line = out
                .lines()
                .find(|l| l.contains(&format!("admin.tokens[0].{field}")))
                .unwrap_or_else(|| panic!("{command} {field}: {out}"));
            assert!(line.contains(&label), "{command} {field}: {out}");
            assert!(
                line.contains(&format!(
                    "did you put the token itself there? name the variable: token_env: {VAR}"
                )),
                "{command} {field}: {out}"
            );
            for piece in [token, &token[..10], &token[token.len() - 10..]] {
                assert!(!out.contains(piece), "{command} {field}: {out}");
            }
        }
    }
    // Set to what the field takes (a variable's name, a file's path), it works.
    const NAMED: &str = "HOTPROXY_CHECK_INPUTS_NAMED_TOKEN";
    let (s, cfg) = scene(
        "public",
        &format!(
            "admin:\n  bind: 127.0.0.1:0\n  tokens:\n    \
             - {{ role: viewer, token_env: \"${{{VAR}}}\" }}\n    \
             - {{ role: editor, token_file: \"${{{NAMED}}}\" }}"
        ),
    );
    write(&s.path("editor.token"), "editor-token-5e8a1f3c7b9d2046\n");
    let env = [
        (VAR, OsString::from(NAMED)),
        (NAMED, s.path("editor.token").into_os_string()),
    ];
    let (code, out) = check_with(&cfg, &env);
    assert_eq!(code, 0, "{out}");
}
