//! How `check` and `run` read an upstream's server URLs: a host or port that is none is refused, a scheme read in any case.

use super::*;

/// `check` of a listener `public` and an upstream `app` with `servers`
/// (a YAML list as written), the variables `env` set.
fn check_servers(servers: &str, env: &[(&str, OsString)]) -> (i32, String) {
    let (_s, cfg) = scene(
        "public",
        &format!("upstreams:\n  - name: app\n    servers: {servers}\n"),
    );
    check_with(&cfg, env)
}

/// A server URL whose port was no port (`:84433`, `:99999`, `:0`,
/// `:abc`, `:` with none after it) or with text between an IPv6
/// address's `]` and its port passed `check`, and the server was dialled
/// at 443 or 80 (`[::1]x:80` at [::1]:80, the `x` dropped). nginx refuses
/// them ("invalid port in upstream"): so does hotproxy, naming the server
/// and quoting its URL; a port of 1 to 65535, or none, is read.
#[test]
fn a_server_url_with_an_invalid_port_is_refused() {
    for url in [
        "https://backend.local:84433",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://127.0.0.1:abc",
        "http://127.0.0.1:",
        "http://127.0.0.1:+80",
        "http://[::1]x:80",
        "http://[::1]:",
    ] {
        let (code, out) = check_servers(&format!("[\"http://127.0.0.1:1\", \"{url}\"]"), &[]);
        assert_eq!(code, 1, "{url}: {out}");
        assert!(
            out.contains(&format!(
                "upstreams[0].servers[1]: \"{url}\" has an invalid port (a port is 1-65535)\n"
            )),
            "{url}: {out}"
        );
        assert!(!out.contains("servers[0]"), "{url}: {out}");
    }
    for url in [
        "https://backend.local:65535",
        "http://127.0.0.1:1",
        "http://[::1]:8080",
        "http://[::1]",
        "https://backend.local/",
    ] {
        let (code, out) = check_servers(&format!("[\"{url}\"]"), &[]);
        assert_eq!(code, 0, "{url}: {out}");
    }
}

/// The URL of a server refused for its port is shown as such URLs are:
/// escaped and cut (`"…"` after 64 bytes), and, set from `${NAME}`,
/// withheld with the reason kept.
#[test]
fn a_server_url_refused_for_its_port_is_shown_as_urls_are() {
    let long = format!("http://{}.local:99999", "b".repeat(80));
    let (code, out) = check_servers(&format!("[\"{long}\"]"), &[]);
    assert_eq!(code, 1, "{out}");
    let cut = format!("\"http://{}…\"", "b".repeat(57));
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: {cut} has an invalid port (a port is 1-65535)\n"
        )),
        "{out}"
    );

    const URL: &str = "HOTPROXY_CHECK_INPUTS_PORT_URL";
    let env = [(URL, OsString::from("http://backend.internal:70000"))];
    let (code, out) = check_servers(&format!("[\"${{{URL}}}\"]"), &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: <withheld: the value of ${{{URL}}}> has an invalid \
             port (a port is 1-65535)\n"
        )),
        "{out}"
    );
    assert!(
        !out.contains("backend.internal") && !out.contains("70000"),
        "{out}"
    );
}

/// The message for server `[1]` of `check_servers`'s upstream, its URL `url`.
fn refusal(url: &str, says: &str) -> String {
    format!("upstreams[0].servers[1]: \"{url}\" {says}\n")
}

/// `check` of the servers `http://127.0.0.1:1` and `url`: refused with
/// `says` about `url` alone.
fn assert_refused(url: &str, says: &str) {
    let (code, out) = check_servers(&format!("[\"http://127.0.0.1:1\", \"{url}\"]"), &[]);
    assert_eq!(code, 1, "{url}: {out}");
    assert!(out.contains(&refusal(url, says)), "{url}: {out}");
    assert!(!out.contains("servers[0]"), "{url}: {out}");
}

const BRACKET: &str = "has an invalid host ([ and ] only around an IPv6 address: [::1])";
const NOT_IPV6: &str = "has an invalid IPv6 address (only one goes between [ and ]: [::1])";

/// The authority parse took a `[` anywhere in the host (`x[::1]:80` has
/// the host `x[`, `a[b]` the host `a[b`): `check` passed, `run` skipped
/// the server without a word (no endpoint could be addressed by it) and
/// answered every request 502 for an upstream with no servers. A name or
/// IPv4 address between brackets (`[backend.local]`) was dialled as if
/// unbracketed. nginx refuses both ("invalid IPv6 address"); so does
/// hotproxy, `check` and `run` alike, the URL shown as URLs are.
#[test]
fn a_server_host_with_brackets_around_no_ipv6_address_is_refused() {
    for url in ["http://x[::1]:80", "http://a[b]", "https://b[::1]"] {
        assert_refused(url, BRACKET);
    }
    for url in [
        "http://[backend.local]:80",
        "http://[127.0.0.1]:80",
        "https://[::1%25lo]:8443",
        "http://[::1::2]",
    ] {
        assert_refused(url, NOT_IPV6);
    }
    for url in [
        "http://[::1]:8080",
        "https://[2001:db8::1]",
        "http://[::ffff:127.0.0.1]:80",
    ] {
        let (code, out) = check_servers(&format!("[\"{url}\"]"), &[]);
        assert_eq!(code, 0, "{url}: {out}");
    }

    // `run` refuses it too, rather than answering 502 for every request.
    let (_s, cfg) = scene(
        "public",
        "upstreams:\n  - name: app\n    servers: [\"http://x[::1]:80\"]\n",
    );
    let (code, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "upstreams[0].servers[0]: \"http://x[::1]:80\" {BRACKET}"
        )),
        "{err}"
    );

    // From `${NAME}`, the URL is withheld, the reason kept.
    const URL: &str = "HOTPROXY_CHECK_INPUTS_BRACKET_URL";
    let env = [(URL, OsString::from("http://[backend.internal]:80"))];
    let (code, out) = check_servers(&format!("[\"${{{URL}}}\"]"), &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: <withheld: the value of ${{{URL}}}> {NOT_IPV6}\n"
        )),
        "{out}"
    );
    assert!(!out.contains("backend.internal"), "{out}");
}

/// A server URL with no host (`http://:8080`, `http://[]:80`) passed
/// `check`, and the server was dialled at the empty name. nginx refuses
/// it ("no host in upstream"); so does hotproxy, naming the server.
#[test]
fn a_server_url_without_a_host_is_refused() {
    for url in ["http://:8080", "https://:8443", "http://[]:80", "http://[]"] {
        assert_refused(url, "has no host");
    }
}

/// A plain-HTTP backend on loopback answering every request `200 plain`.
async fn plain_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"plain")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A scheme is case-insensitive (RFC 3986 §3.1), and nginx and Traefik
/// read `HTTPS://` as `https://`; `HTTPS://backend:8443` was refused as
/// not starting with `https://`. It is read in any case, and dialled as
/// it says: TLS for `HTTPS://` (the backend takes nothing else), plain
/// for `Http://`.
#[tokio::test]
async fn a_server_url_scheme_is_read_in_any_case() {
    for url in [
        "HTTPS://backend.local:8443",
        "Https://backend.local",
        "HTTP://127.0.0.1:80",
        "hTtP://[::1]:8080",
    ] {
        let (code, out) = check_servers(&format!("[\"{url}\"]"), &[]);
        assert_eq!(code, 0, "{url}: {out}");
    }
    for url in ["HTTPX://127.0.0.1", "ftp://127.0.0.1", "HTTPS:/127.0.0.1"] {
        assert_refused(url, "must start with http:// or https://");
    }

    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let tls = Backend::start("tls", &backend_ca.server_pair(&["backend.local"]), None).await;
    let plain = plain_backend().await;
    let cfg = s.public_config(
        "[{ path_prefix: /plain, upstream: plain }, { upstream: tls }]",
        &format!(
            "\n  - name: tls\n    servers: [\"HTTPS://{}\"]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n  - name: plain\n    servers: [\"Http://{plain}\"]",
            tls.addr
        ),
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "a.example.com", client.clone(), false, "/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["backend"], "tls", "{}", r.body);
    let r = get(addr, "a.example.com", client, false, "/plain", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "plain"));
}

/// What `check` says of an https server whose host TLS cannot name.
const NO_SERVER_NAME: &str = "has a host TLS cannot send as a server name (not a DNS name or \
                              IP address); set tls.server_name to the name its certificate holds";

/// An https server's host is the server name the dial gives TLS (SNI and
/// the name verified) unless `tls.server_name` says another. A host the
/// URL and the resolver take but TLS does not (`127.1`, which the
/// resolver reads as 127.0.0.1, `0x7f.1`, `a!b`) passed `check`, and
/// every dial failed before its handshake: each request a 502. It is
/// refused, naming the server, as an explicit `tls.server_name` TLS
/// cannot send is; addresses and names TLS takes stay accepted, as does
/// such a host for plain http (no TLS) or with `tls.server_name` set.
#[test]
fn an_https_server_host_tls_cannot_name_is_refused_without_server_name() {
    for url in [
        "https://127.1:8443",
        "https://0x7f.1",
        "https://2130706433:8443",
        "https://a!b:8443",
        "https://backend..local",
        "HTTPS://-backend.local",
    ] {
        assert_refused(url, NO_SERVER_NAME);
    }
    for url in [
        "https://127.0.0.1:8443",
        "https://[::1]:8443",
        "https://[2001:db8::1]",
        "https://[::ffff:127.0.0.1]:8443",
        "https://backend.local:8443",
        "https://Backend.Local.",
        "https://my_backend:8443",
        "https://localhost",
        "http://127.1:8080",
        "http://a!b",
    ] {
        let (code, out) = check_servers(&format!("[\"{url}\"]"), &[]);
        assert_eq!(code, 0, "{url}: {out}");
    }
    let (_s, cfg) = scene(
        "public",
        "upstreams:\n  - name: app\n    servers: [\"https://127.1:8443\"]\n    \
         tls: { server_name: backend.local }\n",
    );
    let (code, out) = check_with(&cfg, &[]);
    assert_eq!(code, 0, "{out}");

    // From `${NAME}`, the URL is withheld, the reason kept.
    const URL: &str = "HOTPROXY_CHECK_INPUTS_SERVER_NAME_URL";
    let env = [(URL, OsString::from("https://0x7f.1:8443"))];
    let (code, out) = check_servers(&format!("[\"${{{URL}}}\"]"), &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "upstreams[0].servers[0]: <withheld: the value of ${{{URL}}}> {NO_SERVER_NAME}\n"
        )),
        "{out}"
    );
    assert!(!out.contains("0x7f"), "{out}");
}

/// `https://127.1:<port>` (dialled at 127.0.0.1) with `tls.server_name`
/// set is served through a real TLS backend, verified by that name; with
/// none set, `run` refuses it as `check` does, rather than answering 502
/// for every request.
#[tokio::test]
async fn an_https_server_tls_cannot_name_is_served_by_its_server_name() {
    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("tls", &backend_ca.server_pair(&["backend.local"]), None).await;
    let port = backend.addr.port();
    let upstream = |tls: &str| {
        format!(
            "\n  - name: tls\n    servers: [\"https://127.1:{port}\"]\n    \
             tls: {{ ca: {{ ca_file: backend-ca.crt }}{tls} }}"
        )
    };

    let cfg = s.public_config("[{ upstream: tls }]", &upstream(""));
    let (code, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let says = format!("upstreams[0].servers[0]: \"https://127.1:{port}\" {NO_SERVER_NAME}");
    assert!(err.contains(&says), "{err}");

    let cfg = s.public_config(
        "[{ upstream: tls }]",
        &upstream(", server_name: backend.local"),
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "a.example.com", client, false, "/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["backend"], "tls", "{}", r.body);
}

/// A `healthy_after` or `unhealthy_after` past 1000 is refused naming
/// the field. Any u32 was taken, and compared as an i32: 4294967295 read
/// as -1 (one failed check took the endpoint out, one passed brought it
/// back), 2147483648 overflowed the negation. 1000 is read.
#[test]
fn an_active_check_count_past_1000_is_refused_naming_the_field() {
    let with = |field: &str, n: &str| {
        let (_s, cfg) = scene(
            "public",
            &format!(
                "upstreams:\n  - name: app\n    servers: [\"http://127.0.0.1:1\"]\n    \
                 health: {{ active: {{ path: /healthz, {field}: {n} }} }}\n"
            ),
        );
        check_with(&cfg, &[])
    };
    for field in ["healthy_after", "unhealthy_after"] {
        for n in ["1001", "2147483648", "4294967295"] {
            let (code, out) = with(field, n);
            assert_eq!(code, 1, "{field}: {n}: {out}");
            assert!(
                out.contains(&format!(
                    "upstreams[0].health.active.{field}: {n} is more than 1000\n"
                )),
                "{field}: {n}: {out}"
            );
        }
        let (code, out) = with(field, "1000");
        assert_eq!(code, 0, "{field}: 1000: {out}");
    }
}
