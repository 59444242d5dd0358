//! What operators monitor: the shipped alerts and dashboard query only
//! metrics the code exports, every alert has a promtool test and a runbook
//! in the README, and the signals added for them (`process_*`, SNI misses,
//! clients leaving before a request) show up in `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);
const RULES: &str = include_str!("../examples/kubernetes/prometheus-rules.yaml");
const RULE_TESTS: &str = include_str!("promtool/prometheus-rules.test.yaml");
const DASHBOARD: &str = include_str!("../examples/grafana/hotproxy.json");
const README: &str = include_str!("../README.md");

/// Metrics another branch of this session adds: allowed to be missing
/// from `src/` until it lands, and flagged once it has (so this list
/// empties itself instead of hiding a typo).
const AWAITED: &[&str] = &[];

/// The metric names a PromQL expression reads: identifiers that start
/// like ours (`hotproxy_`, `process_`), as registered (without the
/// `_total` / `_bucket` / `_sum` / `_count` the exposition adds).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_ident = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts_ident {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        if word.starts_with("hotproxy_") || word.starts_with("process_") {
            let mut name = word;
            for suffix in ["_total", "_bucket", "_sum", "_count"] {
                name = name.strip_suffix(suffix).unwrap_or(name);
            }
            names.insert(name.to_owned());
        }
    }
    names
}

/// `result="x"`, `reason!="y"`: the values of the labels whose values
/// the code fixes.
fn fixed_label_values(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for label in ["result", "reason"] {
        for (at, _) in expr.match_indices(label) {
            let rest = expr[at + label.len()..].trim_start_matches(['!', '=', '~']);
            if let Some(v) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                out.push(v.to_owned());
            }
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets and template queries.
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let mut out = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("target expr").to_owned());
        }
    }
    for var in d["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

/// `(alert name, expr, runbook_url)` of every alert of the PrometheusRule.
fn alerts() -> Vec<(String, String, String)> {
    let doc: serde_json::Value = serde_saphyr::from_str(RULES).expect("rules are YAML");
    assert_eq!(doc["kind"], "PrometheusRule");
    let mut out = Vec::new();
    for group in doc["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            out.push((
                rule["alert"].as_str().expect("alert rules only").to_owned(),
                rule["expr"].as_str().expect("expr").to_owned(),
                rule["annotations"]["runbook_url"]
                    .as_str()
                    .expect("runbook_url")
                    .to_owned(),
            ));
        }
    }
    out
}

fn check_queries(what: &str, exprs: &[String], src: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for expr in exprs {
        for name in metric_names(expr) {
            let registered = src.contains(&format!("\"{name}\""));
            if AWAITED.contains(&name.as_str()) {
                assert!(
                    !registered,
                    "{name} is registered now: take it off AWAITED in tests/monitoring.rs"
                );
            } else {
                assert!(
                    registered,
                    "{what} queries {name}, which src/ does not register: `{expr}`"
                );
            }
            seen.insert(name);
        }
        for value in fixed_label_values(expr) {
            assert!(
                src.contains(&format!("\"{value}\"")),
                "{what}: label value \"{value}\" is never emitted: `{expr}`"
            );
        }
    }
    seen
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let src = sources();
    let seen = check_queries("the dashboard", &dashboard_exprs(), &src);
    // What the issue asks the dashboard to show.
    for needed in [
        "hotproxy_cert_not_after_timestamp_seconds",
        "hotproxy_cert_reloads",
        "hotproxy_tls_handshakes",
        "hotproxy_http_requests",
        "hotproxy_http_request_duration_seconds",
        "hotproxy_connections_active",
        "hotproxy_upstream_errors",
    ] {
        assert!(
            seen.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn every_alert_queries_exported_metrics_has_a_test_and_a_runbook() {
    let src = sources();
    let alerts = alerts();
    assert!(alerts.len() >= 8, "the issue's eight alerts");
    let exprs: Vec<String> = alerts.iter().map(|(_, e, _)| e.clone()).collect();
    check_queries("the alerts", &exprs, &src);
    let tests: serde_json::Value = serde_saphyr::from_str(RULE_TESTS).expect("test is YAML");
    for (alert, _, runbook) in &alerts {
        // A promtool test that expects it to fire, with exact labels.
        let fires = tests["tests"].as_array().unwrap().iter().any(|t| {
            t["alert_rule_test"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["alertname"] == alert.as_str()
                        && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())
                })
        });
        assert!(fires, "no promtool test makes {alert} fire");
        let anchor = runbook
            .split_once("README.md#")
            .unwrap_or_else(|| panic!("{alert}: runbook_url is not a README anchor: {runbook}"))
            .1;
        assert!(
            README.contains(&format!("<a id=\"{anchor}\"></a>")),
            "{alert}: README has no anchor {anchor}"
        );
        assert!(
            README.contains(&format!("`{alert}`")),
            "{alert} is not listed in the README's Monitoring section"
        );
    }
}

/// The value of `label` in a series selector (`name{a="x",label="v"}`).
fn series_label<'a>(series: &'a str, label: &str) -> Option<&'a str> {
    let inside = series.split_once('{')?.1;
    inside.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == label).then(|| v.trim().trim_end_matches('}').trim_matches('"'))
    })
}

/// Whether `value` is one the code gives `label`: an entry's `type` is
/// its configuration spelling (`server-pair`); `result` and `reason`
/// values are string literals of src/.
fn emitted(label: &str, value: &str, src: &str) -> bool {
    match label {
        "type" => hotproxy::config::EntryKind::parse(value).is_some(),
        _ => src.contains(&format!("\"{value}\"")),
    }
}

/// The promtool tests feed series labelled as `/metrics` labels them, and
/// expect alerts with those labels: a test with made-up values (`type`
/// `server_pair` for `server-pair`) passes while proving nothing about
/// the series the alerts will see.
#[test]
fn the_promtool_tests_use_the_label_values_the_code_emits() {
    let src = sources();
    let tests: serde_json::Value = serde_saphyr::from_str(RULE_TESTS).expect("test is YAML");
    let mut checked = 0;
    for t in tests["tests"].as_array().unwrap() {
        for input in t["input_series"].as_array().into_iter().flatten() {
            let series = input["series"].as_str().expect("series");
            for label in ["type", "result", "reason"] {
                if let Some(value) = series_label(series, label) {
                    assert!(
                        emitted(label, value, &src),
                        "{label}=\"{value}\" is never emitted: {series}"
                    );
                    checked += 1;
                }
            }
        }
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            for alert in case["exp_alerts"].as_array().into_iter().flatten() {
                for label in ["type", "result", "reason"] {
                    if let Some(value) = alert["exp_labels"][label].as_str() {
                        assert!(
                            emitted(label, value, &src),
                            "expected alert label {label}: {value} is never emitted"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 4, "the checker found the series' labels");
    assert_eq!(
        series_label(r#"m{entry="e",type="server-pair",pod="p"}"#, "type"),
        Some("server-pair")
    );
    assert!(!emitted("type", "server_pair", &src));
}

/// The checkers above are not vacuous.
#[test]
fn the_query_checker_bites() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(hotproxy_http_request_duration_seconds_bucket{instance=~"$instance"}[5m]))) + process_cpu_seconds_total"#
        ),
        BTreeSet::from([
            "hotproxy_http_request_duration_seconds".to_owned(),
            "process_cpu_seconds".to_owned()
        ])
    );
    assert_eq!(
        fixed_label_values(r#"x{result!="success",reason="timeout"}"#),
        ["success", "timeout"]
    );
    let src = sources();
    let typo = std::panic::catch_unwind(|| {
        check_queries(
            "a typo",
            &["rate(hotproxy_tls_handshake_total[5m])".into()],
            &src,
        )
    });
    assert!(typo.is_err(), "a misspelt metric must be refused");
}

// ---------------------------------------------------------------------------
// The signals themselves, from the real binary.

async fn metric(admin_addr: std::net::SocketAddr, series: &str) -> Option<f64> {
    let body = admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body;
    body.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn wait_metric(admin_addr: std::net::SocketAddr, series: &str, want: f64) {
    wait_until(WAIT, &format!("{series} = {want}"), || async move {
        metric(admin_addr, series).await == Some(want)
    })
    .await;
}

/// Listener `public` serving a.example.com for an upstream that is down,
/// and the admin API.
const PUBLIC: &str = r#"
admin: { bind: "127.0.0.1:0" }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { cert_file: a.crt, key_file: a.key }
    routes:
      - { path_prefix: /, upstream: nowhere }
upstreams:
  - name: nowhere
    servers: [http://127.0.0.1:9]
"#;

const SNI_DEFAULT: &str = r#"hotproxy_tls_sni_default_total{listener="public"}"#;
const CLOSED_BEFORE_REQUEST: &str =
    r#"hotproxy_connections_closed_before_request_total{listener="public"}"#;
const HANDSHAKES_OK: &str = r#"hotproxy_tls_handshakes_total{listener="public",result="success"}"#;

/// The proxy running a configuration of [`PUBLIC`]'s listener, its edge
/// CA (a.example.com's issuer), and the listener's and admin API's addresses.
struct Public {
    _scene: Scene,
    config: std::path::PathBuf,
    ca: TestCa,
    p: Proxy,
    addr: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
}

/// [`Public`] with the configuration `text`.
async fn public(text: &str) -> Public {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    let config = scene.config(text);
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    Public {
        _scene: scene,
        config,
        ca,
        p,
        addr,
        admin_addr,
    }
}

/// The README's name-mismatch row: a TLS 1.3 client that refuses the name
/// after the handshake shows as a successful handshake, an SNI that got
/// the default certificate (counted and logged with the name), and a
/// connection closed before its first request. A client that asks for a
/// name the listener has, and sends a request, moves neither counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_mismatch_shows_as_sni_default_and_a_close_before_any_request() {
    let mut w = public(&format!("{PUBLIC}    connect_timeout: 1s\n")).await;

    // A good client first: it asks, so it is neither an SNI miss nor an early close.
    let reply = get_h1(w.addr, "a.example.com", &w.ca.cert_pem)
        .await
        .unwrap();
    assert!(reply.status >= 400, "an answer (the upstream is down)");

    // curl https://wrong.example.com: handshake done, then the name is
    // judged wrong and the connection closed without a request.
    let tls = connect(w.addr, "wrong.example.com", checks_name_later())
        .await
        .expect("the server completes its side of the handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(tls);

    // What the server cannot see: the refusal itself. Both handshakes succeeded.
    for (series, want) in [
        (CLOSED_BEFORE_REQUEST, 1.0),
        (SNI_DEFAULT, 1.0),
        (HANDSHAKES_OK, 2.0),
    ] {
        wait_metric(w.admin_addr, series, want).await;
    }
    let line =
        w.p.wait_log("SNI miss logged", |v| {
            v["message"] == "SNI matched no certificate; served the listener's default certificate"
        })
        .await;
    assert_eq!(line["sni"], "wrong.example.com", "{line}");
    assert_eq!(line["listener"], "public", "{line}");
    assert_eq!(
        line["level"], "INFO",
        "any client can cause it: not a warning"
    );
}

/// A handshake with a HelloRetryRequest is one SNI miss, not two. The
/// client's first key share is for ML-KEM-1024, a group the listener does
/// not offer, and its next group is secp384r1: the listener asks for a
/// secp384r1 share and the client sends a second ClientHello. rustls asks
/// the certificate resolver once per ClientHello, and the count was taken
/// there: 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_retry_is_one_sni_miss() {
    use rustls::crypto::aws_lc_rs::kx_group;
    let w = public(PUBLIC).await;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![kx_group::MLKEM1024, kx_group::SECP384R1];
    let tls = connect(
        w.addr,
        "wrong.example.com",
        checks_name_later_with(provider, None),
    )
    .await
    .expect("the handshake completes after the retry");
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.handshake_kind(),
        Some(rustls::HandshakeKind::FullWithHelloRetryRequest),
        "the client's first share was taken: no retry to count"
    );
    drop(tls);
    // Counted when the server's side is done, after both ClientHellos.
    wait_metric(w.admin_addr, HANDSHAKES_OK, 1.0).await;
    assert_eq!(
        metric(w.admin_addr, SNI_DEFAULT).await,
        Some(1.0),
        "one handshake, one SNI miss"
    );
}

/// A listener renamed (or removed) by a reload takes its own series out
/// of `/metrics` once its connections are gone, as a removed entry's go:
/// they stayed for the life of the process, a dashboard showing a
/// listener that no longer exists. (The request series, per listener and
/// upstream, stay as those of a removed upstream do.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_listener_takes_its_series_out_of_metrics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = format!("watch: {{ debounce: 50ms, poll_interval: 300ms }}{PUBLIC}");
    let mut w = public(&text).await;
    let (addr, admin_addr) = (w.addr, w.admin_addr);
    get_h1(addr, "a.example.com", &w.ca.cert_pem).await.unwrap();
    drop(connect(addr, "wrong.example.com", checks_name_later()).await);
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    // Its 400 begins: the refusal is counted (the close lingers).
    assert!(plain.read(&mut [0; 16]).await.unwrap() > 0);
    drop(plain);
    for (series, want) in [
        (SNI_DEFAULT, 1.0),
        (CLOSED_BEFORE_REQUEST, 1.0),
        (HANDSHAKES_OK, 2.0),
        (
            r#"hotproxy_tls_handshakes_total{listener="public",result="plain_http"}"#,
            1.0,
        ),
        (r#"hotproxy_connections_active{listener="public"}"#, 0.0),
    ] {
        wait_metric(admin_addr, series, want).await;
    }
    write(&w.config, &text.replace("name: public", "name: renamed"));
    w.p.wait_log("the rename applied", |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    wait_until(WAIT, "listener public's series gone", || async {
        let body = admin(admin_addr, "GET", "/metrics", None, None, &[])
            .await
            .body;
        !body
            .lines()
            .any(|l| l.contains(r#"listener="public""#) && !l.starts_with("hotproxy_http_request"))
    })
    .await;
    wait_metric(
        admin_addr,
        r#"hotproxy_connections_active{listener="renamed"}"#,
        0.0,
    )
    .await;
}

/// `process_*` as every Prometheus exporter has them, read per scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_has_the_process_family() {
    let scene = Scene::new();
    let config = scene.config("admin: { bind: \"127.0.0.1:0\" }\n");
    let spawned = unix_now();
    let mut p = Proxy::start(&config);
    let admin_addr = p.admin_addr().await;
    // Some CPU time used, so a CPU figure stuck at 0 shows (scrapes cost some).
    wait_until(WAIT, "the proxy has used CPU time", || async {
        metrics_text(admin_addr).await;
        proc_stat(p.pid()).cpu_ticks > 0
    })
    .await;
    // CPU time only grows: read before and after the scrape, it brackets
    // what the scrape read.
    let before = proc_stat(p.pid());
    let body = admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body;
    let after = proc_stat(p.pid());
    let scraped = unix_now();
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(body.contains("# TYPE process_cpu_seconds counter"));
    let hz = clk_tck();
    let cpu = value("process_cpu_seconds_total");
    let (low, high) = (before.cpu_ticks as f64 / hz, after.cpu_ticks as f64 / hz);
    assert!(
        low <= cpu && cpu <= high,
        "process_cpu_seconds_total {cpu}, /proc/PID/stat {low}..{high} s"
    );
    assert!(value("process_resident_memory_bytes") > 0.0);
    let open = value("process_open_fds");
    assert!(open >= 3.0 && open <= value("process_max_fds"));
    // The proxy's start as /proc tells it (boot time, whole seconds, plus
    // the start in clock ticks since boot); btime is rounded to a second.
    let start = value("process_start_time_seconds");
    let proc_start = boot_time() as f64 + before.start_ticks as f64 / hz;
    assert!(
        (start - proc_start).abs() <= 1.0,
        "process_start_time_seconds {start}, /proc {proc_start}"
    );
    // And by the test's own clock: between the spawn and the scrape,
    // give or take btime's rounding.
    assert!(
        spawned - 2.0 <= start && start <= scraped + 2.0,
        "process_start_time_seconds {start}, spawned at {spawned}, scraped at {scraped}"
    );
    // It is this process: the fd count matches /proc/PID/fd give or take the scrape's own.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .unwrap()
        .count() as f64;
    assert!((open - fds).abs() <= 8.0, "open_fds {open} vs /proc {fds}");
}

/// Seconds since the epoch now, by the test's clock.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The figures of `/proc/PID/stat` a test compares with: utime + stime
/// (fields 14, 15) and starttime (field 22), in clock ticks.
struct ProcStat {
    cpu_ticks: u64,
    start_ticks: u64,
}

fn proc_stat(pid: u32) -> ProcStat {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name, which may hold spaces:
    // the first of them is field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields[n - 3].parse().unwrap() };
    ProcStat {
        cpu_ticks: field(14) + field(15),
        start_ticks: field(22),
    }
}

/// Clock ticks per second of `/proc` times, as `getconf CLK_TCK` says.
fn clk_tck() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf is installed");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `btime` of `/proc/stat`: the boot, in seconds since the epoch.
fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .expect("btime in /proc/stat")
        .trim()
        .parse()
        .unwrap()
}

/// The SNI-miss log limit is each listener's: a miss on listener `other`
/// right after one on `public` is logged under `other`. The limit was
/// one for the whole process, so `other`'s miss was suppressed and counted
/// in the next line, which named whichever listener it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_logs_its_own_sni_misses() {
    let other = "  - name: other\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n        \
                 - { cert_file: a.crt, key_file: a.key }\n    routes:\n      \
                 - { path_prefix: /, upstream: nowhere }\nupstreams:";
    let mut w = public(&PUBLIC.replacen("upstreams:", other, 1)).await;
    let other_addr = w.p.listener_addr("other").await;
    for (addr, listener) in [(w.addr, "public"), (other_addr, "other")] {
        let tls = connect(addr, "wrong.example.com", checks_name_later()).await;
        drop(tls.expect("the handshake completes"));
        let line =
            w.p.wait_log("the listener's SNI miss logged", |v| {
                v["message"]
                    == "SNI matched no certificate; served the listener's default certificate"
                    && v["listener"] == listener
            })
            .await;
        assert_eq!(line["suppressed"], 0, "{line}");
    }
}
