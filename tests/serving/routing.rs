//! Hosts and targets that could slip past a route, and the request-target forms.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;

use crate::common::*;
use crate::support::*;

/// A fully qualified host (`a.example.com.`) is the same host: it takes
/// that host's route (it cannot slip past a host route and its `allow` to a
/// catch-all) and the upstream gets the one spelling, as nginx strips the
/// dot. An empty label (`a..example.com`) is not a host name: 400.
#[tokio::test]
async fn a_trailing_dot_names_the_same_host() {
    let w = world().await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ host: a.example.com, upstream: plain }]",
        &plain_upstream(&w),
    ));
    let addr = p.listener_addr("public").await;
    for (host, status, seen) in [
        ("a.example.com.", "200", Some("a.example.com")),
        ("A.Example.Com.:443", "200", Some("A.Example.Com:443")),
        ("a..example.com", "400", None),
        ("b.example.com.", "404", None),
    ] {
        let (got, body) = get_status(&w, addr, host, "/x").await;
        assert_eq!(got, status, "{host}");
        if let Some(seen) = seen {
            assert_eq!(body.unwrap()["headers"]["host"], seen, "{host}");
        }
    }
}

/// A proxy whose first route (`guarded`: `host: …` or `path_prefix: …`)
/// admits only 10.0.0.0/8, so a test client gets its 403, and whose second
/// takes the rest: a request that slips past the guarded route gets 200.
async fn guarded_and_catch_all(w: &World, guarded: &str) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(&w.scene.public_config(
        &format!(
            "[{{ {guarded}, upstream: plain, allow_from: [10.0.0.0/8] }}, {{ upstream: plain }}]"
        ),
        &plain_upstream(w),
    ));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// `GET target` with `Host: host` on its own HTTP/1.1 connection: the
/// status code, and what the backend saw when it answered.
async fn get_status(
    w: &World,
    addr: SocketAddr,
    host: &str,
    target: &str,
) -> (String, Option<serde_json::Value>) {
    let reply = h1_exchange(
        w,
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let status = reply.get(9..12).unwrap_or_default().to_owned();
    let seen = (status == "200").then(|| body_json(&reply));
    (status, seen)
}

/// `GET /x` with each `(host, status)`'s host gets its status.
async fn assert_statuses_by_host(w: &World, addr: SocketAddr, statuses: &[(&str, &str)]) {
    for (host, status) in statuses {
        let (got, _) = get_status(w, addr, host, "/x").await;
        assert_eq!(got, *status, "{host}");
    }
}

/// A host's port is digits alone, after one `:`. `a.example.com:443:1` or
/// `a.example.com:x` missed the route for `a.example.com` (and its
/// `allow_from`) and took the catch-all, while a backend that cuts the host
/// at its first `:` (Express's `req.hostname`, nginx's `$host`) read
/// `a.example.com`: a way around a host route's rules. Now 400, before
/// routing, as is a bracket out of place or an empty host with a port.
#[tokio::test]
async fn a_host_with_a_malformed_port_is_refused() {
    let w = world().await;
    let (_p, addr) = guarded_and_catch_all(&w, "host: a.example.com").await;
    let statuses = [
        ("a.example.com", "403"),
        ("a.example.com:443", "403"),
        ("a.example.com:", "403"),
        ("b.example.com:443", "200"),
        ("[::1]:443", "200"),
        ("a.example.com:443:1", "400"),
        ("a.example.com:x", "400"),
        ("a.example.com:443]", "400"),
        (":443", "400"),
        ("[::1]x", "400"),
        ("a[b]", "400"),
    ];
    assert_statuses_by_host(&w, addr, &statuses).await;
    // Only the two catch-all requests reached the backend.
    assert_eq!(w.backend.requests.load(SeqCst), 2);
}

/// An empty `Host` names no host (RFC 9110 §4.2.1: an http URI's host is
/// not empty): it took the catch-all route and reached the backend as
/// `Host:` with nothing after it (an HTTP/2 upstream got a `host` that
/// disagreed with its `:authority`). 400, as nginx answers, on HTTP/1.0 too.
#[tokio::test]
async fn an_empty_host_is_refused() {
    let w = world().await;
    let (_p, addr) = guarded_and_catch_all(&w, "host: a.example.com").await;
    assert_statuses_by_host(&w, addr, &[("", "400"), ("b.example.com", "200")]).await;
    let reply = h1_exchange(&w, addr, b"GET /x HTTP/1.0\r\nhost:\r\n\r\n").await;
    assert_eq!(reply.get(9..12), Some("400"), "HTTP/1.0: {reply}");
    // Only the catch-all request with a host reached the backend.
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// A host is a host name: `a.example.com,` missed the route for
/// `a.example.com` (and its `allow_from`) and took the catch-all, while the
/// backend read `a.example.com` out of `Host` and `X-Forwarded-Host`, where
/// a comma makes a list (Express and Spring take its first element). Now
/// 400 before routing, with the other characters RFC 3986 allows in a
/// reg-name and DNS does not.
#[tokio::test]
async fn a_host_that_is_not_a_host_name_is_refused() {
    let w = world().await;
    let (_p, addr) = guarded_and_catch_all(&w, "host: a.example.com").await;
    let statuses = [
        ("a.example.com", "403"),
        ("b_1.example.com", "200"),
        ("a.example.com,", "400"),
        ("a.example.com,b.example.com", "400"),
        ("a.example.com;x", "400"),
        ("a.example.com%2c", "400"),
        ("a.example.com!", "400"),
        ("a.example.com&x=1", "400"),
    ];
    assert_statuses_by_host(&w, addr, &statuses).await;
    // Only the catch-all request reached the backend.
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// A run of `/` is one `/`, before dot segments, as nginx, Tomcat and
/// Traefik read it: `//admin/secret` took the catch-all route past the
/// `/admin/` route's rules, and a Tomcat or nginx backend served it as
/// `/admin/secret`. Now it is routed and forwarded as `/admin/secret`.
#[tokio::test]
async fn a_run_of_slashes_takes_the_route_it_names() {
    let w = world().await;
    let (_p, addr) = guarded_and_catch_all(&w, "path_prefix: /admin/").await;
    for (path, status, seen) in [
        ("/admin/secret", "403", None),
        ("//admin/secret", "403", None),
        ("/admin//secret", "403", None),
        ("/pub//../admin/secret", "403", None),
        ("///x//y/", "200", Some(("/x/y/", None))),
        // The query is not a path: left as sent.
        ("/x//y?next=//z", "200", Some(("/x/y", Some("next=//z")))),
    ] {
        let (got, body) = get_status(&w, addr, "a.example.com", path).await;
        assert_eq!(got, status, "{path}");
        if let Some((seen, query)) = seen {
            let body = body.unwrap();
            assert_eq!(body["path"], seen, "{path}");
            assert_eq!(body["query"].as_str(), query, "{path}");
        }
    }
    assert_eq!(w.backend.requests.load(SeqCst), 2);
}

/// Tomcat and Jetty drop a segment's `;` parameters: `/admin;x/secret` is
/// their `/admin/secret`. It took the catch-all route past the `/admin/`
/// route's rules; now a path whose parameters decide the route is refused
/// with 400, and one whose parameters change nothing
/// (`;jsessionid=`) is forwarded as sent.
#[tokio::test]
async fn path_parameters_cannot_pick_the_route() {
    let w = world().await;
    let (_p, addr) = guarded_and_catch_all(&w, "path_prefix: /admin/").await;
    for (path, status) in [
        ("/admin;x/secret", "400"),
        ("/admin;/secret", "400"),
        ("/admin/x;v=1", "403"),
        ("/app/page;jsessionid=1", "200"),
    ] {
        let (got, body) = get_status(&w, addr, "a.example.com", path).await;
        assert_eq!(got, status, "{path}");
        if let Some(body) = body {
            assert_eq!(body["path"], path);
        }
    }
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// `GET host:port` (authority-form) is CONNECT's alone (RFC 9112 §3.2.3):
/// with no path to route on, it is refused with 400, as nginx does, and the
/// backend never sees it.
#[tokio::test]
async fn authority_form_without_connect_is_refused() {
    let (w, _p, addr) = serve("").await;
    let reply = h1_exchange(
        &w,
        addr,
        b"GET a.example.com:443 HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    assert!(reply.contains("authority-form"), "{reply:?}");
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// `*` (asterisk-form) is OPTIONS's alone (RFC 9112 §3.2.4): `GET *` is
/// refused with 400 and never reaches the backend; `OPTIONS *` is
/// forwarded as it came.
#[tokio::test]
async fn asterisk_form_is_for_options_alone() {
    let (w, _p, addr) = serve("").await;
    for method in ["GET", "POST", "DELETE"] {
        let request =
            format!("{method} * HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n");
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 400 "), "{method}: {reply:?}");
        assert!(reply.contains("asterisk-form"), "{reply:?}");
    }
    assert_eq!(w.backend.requests.load(SeqCst), 0);
    let reply = h1_exchange(
        &w,
        addr,
        b"OPTIONS * HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert!(reply.contains(r#""path":"*""#), "{reply:?}");
}

/// A request path is absolute (`/...`) or, for OPTIONS, `*` (RFC 9112
/// §3.2, RFC 9113 §8.3.1). A relative `:path admin/secret` would match no
/// `path_prefix: /admin` route (and so skip its `allow`) and reach an
/// HTTP/1.1 backend as `GET admin/secret`, which Werkzeug routes as
/// `/admin/secret`. The h2 crate checks only that `:path` is not empty;
/// what refuses the rest is the `http` crate, which builds no URI of a
/// scheme, an authority and a relative path: the stream is reset
/// (`PROTOCOL_ERROR`, RFC 9113 §8.1.1). This test keeps it so across
/// upgrades. HTTP/1.1's parser refuses them with 400. Nothing reaches the
/// backend. (`:path ?q=1` is read as `/?q=1` by both the router and the
/// backend.)
#[tokio::test]
async fn a_path_without_a_leading_slash_is_refused() {
    let (w, _p, addr) = serve("").await;
    for path in ["admin/secret", "x", "*/admin"] {
        let mut s = h2_raw_request(&w, addr, &hpack_get(path)).await;
        // Frames until the answer on stream 1: a response or a reset.
        let answer = loop {
            let (kind, _, stream, payload) = next_frame(&mut s).await;
            if stream == 1 && (kind == HEADERS || kind == RST_STREAM) {
                break (kind, payload);
            }
        };
        // RST_STREAM with PROTOCOL_ERROR (1).
        assert_eq!(answer, (RST_STREAM, vec![0, 0, 0, 1]), "{path}");
    }
    for target in ["admin/secret", "x"] {
        let request =
            format!("GET {target} HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n");
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 400 "), "{target}: {reply:?}");
    }
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// `OPTIONS *` asks about the server of its host (RFC 9110 §9.3.7): it
/// takes the route its host's `/` takes (that host's `path_prefix: /`
/// route, not one with a longer prefix), under that route's rules, and
/// reaches the upstream as `*`. It matched no `path_prefix` route, so it
/// took a route set for other hosts (or got 404 when there was none):
/// another upstream answered for the host, past its route's `allow_from`.
#[tokio::test]
async fn options_asterisk_takes_the_route_of_its_hosts_root() {
    let w = world().await;
    // Another upstream, which nothing here should reach but `b`'s request.
    let (other, other_conns) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        if read_raw_head(&mut tcp, &mut buf).await.is_some() {
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nother";
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, answer.as_bytes()).await;
        }
    })
    .await;
    let upstreams = format!(
        "{}\n  - name: other\n    servers: [http://{other}]",
        plain_upstream(&w)
    );
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ host: a.example.com, path_prefix: /api, upstream: other },
          { host: a.example.com, path_prefix: /, upstream: plain },
          { host: g.example.com, path_prefix: /, upstream: plain, allow_from: [10.0.0.0/8] },
          { upstream: other }]",
        &upstreams,
    ));
    let addr = p.listener_addr("public").await;
    let options = |host: &str| {
        format!("OPTIONS * HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").into_bytes()
    };
    let reply = h1_exchange(&w, addr, &options("a.example.com")).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    let seen = body_json(&reply);
    assert_eq!(seen["path"], "*", "{reply:?}");
    assert_eq!(seen["headers"]["host"], "a.example.com", "{reply:?}");
    let reply = h1_exchange(&w, addr, &options("g.example.com")).await;
    assert!(reply.starts_with("HTTP/1.1 403 "), "{reply:?}");
    assert_eq!(w.backend.requests.load(SeqCst), 1);
    assert_eq!(other_conns.load(SeqCst), 0, "another upstream answered");
    // A host with no route of its own takes the catch-all, as its `/` would.
    let reply = h1_exchange(&w, addr, &options("b.example.com")).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    assert!(reply.ends_with("other"), "{reply:?}");
}

/// The access log's `path` is the path as the client sent it (nginx's
/// `$request_uri`), not the normalised one the upstream gets: over
/// HTTP/1.1 and HTTP/2, in `json` and `combined` alike, and a path
/// refused before it was normalised.
#[tokio::test]
async fn the_access_log_holds_the_path_as_sent() {
    /// An HTTP/1.1 `GET /raw/./x?q=1` and an HTTP/2 `GET /raw/%2e/y`: the
    /// upstream gets `/raw/x` and `/raw/y`.
    async fn send_both(w: &World, addr: SocketAddr) {
        let reply = h1_exchange(
            w,
            addr,
            b"GET /raw/./x?q=1 HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
        assert_eq!(body_json(&reply)["path"], "/raw/x", "{reply}");
        let mut client = h2_client(tls(w, addr, &[b"h2"]).await).await;
        let req = http::Request::get("https://a.example.com/raw/%2e/y")
            .body(())
            .unwrap();
        let resp = h2_request(&mut client, req).await;
        assert_eq!(resp.status(), 200);
        let body = h2_body(&mut resp.into_body()).await;
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["path"], "/raw/y", "{seen}");
    }

    let (w, _p, addr, log) = serve_logged("").await;
    send_both(&w, addr).await;
    // A path refused before it is normalised is logged as sent too.
    let reply = h1_exchange(
        &w,
        addr,
        b"GET /a%2fb HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    let lines = wait_access_log(&log, 3, WAIT).await;
    let refused = lines.iter().find(|l| l["status"] == 400);
    assert_eq!(refused.expect("a 400 line")["path"], "/a%2fb", "{lines:?}");
    let path_of = |protocol: &str| {
        let line = lines
            .iter()
            .find(|l| l["protocol"] == protocol && l["status"] == 200);
        line.unwrap_or_else(|| panic!("no {protocol} line: {lines:?}"))["path"].clone()
    };
    assert_eq!(path_of("HTTP/1.1"), "/raw/./x");
    assert_eq!(path_of("HTTP/2.0"), "/raw/%2e/y");

    let w = world().await;
    let (config, log) = logged_config(&w, "");
    edit_config(&config, |text| {
        text.replace("format: json", "format: combined")
    });
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    send_both(&w, addr).await;
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(WAIT, "2 combined lines", || async {
        read().lines().count() >= 2
    })
    .await;
    let text = read();
    assert!(text.contains(r#""GET /raw/./x HTTP/1.1" 200 "#), "{text}");
    assert!(text.contains(r#""GET /raw/%2e/y HTTP/2.0" 200 "#), "{text}");
    assert_eq!(w.backend.requests.load(SeqCst), 2);
}

/// A route every request of which an earlier route of the same host takes
/// (here a guarded `/admin/` route listed after the catch-all) never
/// applies its `allow_from`: `check` passed it and a reload applied it,
/// opening `/admin/` to everyone. Now `check` refuses it, naming both
/// routes, and a reload to it is rejected while the old routes serve.
#[tokio::test]
async fn a_route_an_earlier_one_takes_every_request_of_is_refused() {
    let w = world().await;
    let guard = "{ path_prefix: /admin/, upstream: plain, allow_from: [10.0.0.0/8] }";
    let config = |routes: &str| watched_config(&w, routes);
    let cfg = w
        .scene
        .config(&config(&format!("[{guard}, {{ upstream: plain }}]")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    assert_eq!(
        get_status(&w, addr, "a.example.com", "/admin/x").await.0,
        "403"
    );

    let shadowed = config(&format!("[{{ upstream: plain }}, {guard}]"));
    let want = "listeners[0].routes[1]: listeners[0].routes[0], listed before it, \
                takes every request it matches";
    let file = w.scene.path("shadowed.yaml");
    write(&file, &shadowed);
    let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(want), "{err}");

    write(&cfg, &shadowed);
    p.wait_log("rejected", |v| {
        v["message"] == "configuration rejected; the running configuration stays"
            && v["error"].as_str().is_some_and(|e| e.contains(want))
    })
    .await;
    assert_eq!(
        get_status(&w, addr, "a.example.com", "/admin/x").await.0,
        "403"
    );
    assert_eq!(get_status(&w, addr, "a.example.com", "/x").await.0, "200");
}

/// First match wins, in list order, whatever the hosts: a guarded
/// `/admin/` route without a host, listed before a route for
/// `a.example.com`, keeps that host's `/admin/` requests (403). Chosen by
/// host specificity (f929e53), they took the later route unguarded (200),
/// with nothing said by `check` or a reload.
#[tokio::test]
async fn an_earlier_route_keeps_its_guard_over_a_later_exact_host() {
    let w = world().await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ path_prefix: /admin/, upstream: plain, allow_from: [10.0.0.0/8] }, \
         { host: a.example.com, upstream: plain }]",
        &plain_upstream(&w),
    ));
    let addr = p.listener_addr("public").await;
    for (host, path, status) in [
        ("a.example.com", "/admin/x", "403"),
        ("b.example.com", "/admin/x", "403"),
        ("a.example.com", "/x", "200"),
        ("b.example.com", "/x", "404"),
    ] {
        assert_eq!(
            get_status(&w, addr, host, path).await.0,
            status,
            "{host}{path}"
        );
    }
}

/// A route an earlier one of a less specific host takes every request of
/// is dead under first match: here `a.example.com`'s guarded `/admin/`
/// after a `*.example.com` catch-all. `check` passed it (only routes of
/// the very same host were compared); now it refuses it, naming both.
#[tokio::test]
async fn a_route_an_earlier_wildcard_takes_every_request_of_is_refused() {
    let w = world().await;
    let file = w.scene.public_config(
        "[{ host: \"*.example.com\", upstream: plain }, \
         { host: a.example.com, path_prefix: /admin/, upstream: plain, allow_from: [10.0.0.0/8] }]",
        &plain_upstream(&w),
    );
    let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "listeners[0].routes[1]: listeners[0].routes[0], listed before it, \
             takes every request it matches"
        ) && err.contains("list it before listeners[0].routes[0]"),
        "{err}"
    );
}

/// A 1 MB `path_prefix` (a `${NAME}` value gone wrong) is checked at once:
/// each of its own prefixes was looked up by hashing it, some 500 GB for
/// one route, and `check` (and a reload) did not finish.
#[tokio::test]
async fn a_long_path_prefix_is_checked_at_once() {
    let w = world().await;
    let long = format!("/{}", "a".repeat(1 << 20));
    let file = w.scene.public_config(
        &format!("[{{ path_prefix: {long}, upstream: plain }}, {{ path_prefix: {long}/b, upstream: plain }}, {{ upstream: plain }}]"),
        &plain_upstream(&w),
    );
    let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("listeners[0].routes[1]: listeners[0].routes[0], listed before it"),
        "{err}"
    );
}

/// An earlier route of a less specific host that takes part of a later
/// route's requests (the original finding: `*.internal.example` `/api/`
/// before `status.internal.example`, whose `/api/` requests then take the
/// first, perhaps under another certificate entry's `client_auth`) is
/// served as listed, first match, and said: a `warning:` of `check`, and a
/// WARN log when a reload applies it. Nothing was said before.
#[tokio::test]
async fn a_route_an_earlier_one_takes_part_of_is_warned_about() {
    let w = world().await;
    let overlap = "listeners[0].routes[1]: listeners[0].routes[0], listed before it, \
                   takes this route's requests whose path starts with \
                   listeners[0].routes[0]'s path_prefix";
    let routes = "[{ host: \"*.internal.example\", path_prefix: /api/, upstream: plain, \
                  allow_from: [10.0.0.0/8] }, { host: status.internal.example, upstream: plain }]";
    let config = |routes: &str| watched_config(&w, routes);
    let file = w.scene.path("overlap.yaml");
    write(&file, &config(routes));
    let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("warning: {overlap}"))
            && out.contains("list listeners[0].routes[1] first if its requests should go to it"),
        "{out}"
    );

    let cfg = w.scene.config(&config(
        "[{ host: status.internal.example, upstream: plain }]",
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let host = "status.internal.example";
    assert_eq!(get_status(&w, addr, host, "/api/x").await.0, "200");
    write(&cfg, &config(routes));
    p.wait_log("the overlap warned about", |v| {
        v["level"] == "WARN"
            && v["listener"] == "public"
            && v["overlap"]
                .as_str()
                .is_some_and(|o| o.starts_with(overlap))
    })
    .await;
    p.wait_log("reloaded", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(get_status(&w, addr, host, "/api/x").await.0, "403");
    assert_eq!(get_status(&w, addr, host, "/x").await.0, "200");
}

/// A watched configuration (50 ms debounce) with the admin API and one
/// listener `public` on `routes`, every route's upstream `plain`.
fn watched_config(w: &World, routes: &str) -> String {
    format!(
        "watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}\n\
         admin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{}\nupstreams:{}\n",
        listener_yaml("public", "127.0.0.1:0", routes),
        plain_upstream(w)
    )
}
