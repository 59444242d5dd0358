//! What an operator is told (issue 18): times people read are RFC 3339, a
//! change that is waited for shows as pending at once, every applied
//! configuration and every SIGHUP is logged and counted, and a kubelet swap
//! logs nothing above INFO.

mod support;

use support::*;

/// `unix` as GNU date formats it in UTC: an implementation independent of ours.
fn gnu_date(unix: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Asserts `v[field]` is the RFC 3339 form of `v[field_unix]`.
fn assert_rfc3339(v: &serde_json::Value, field: &str) {
    let unix = v[format!("{field}_unix")]
        .as_i64()
        .unwrap_or_else(|| panic!("{field}_unix is a number: {v}"));
    let text = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {v}"));
    assert_eq!(text, gnu_date(unix), "{field} in {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_rfc3339_times_with_unix_seconds_beside() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let config = s.config(
        r#"
admin: { bind: "127.0.0.1:0" }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: cas, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [ { ref: edge } ] }
"#,
    );
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let edge = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json();
    assert_rfc3339(&edge, "not_before");
    assert_rfc3339(&edge, "not_after");
    assert_rfc3339(&edge["last_reload"], "time");
    let cas = admin(api, "GET", "/api/v1/certs/cas", None, None, &[])
        .await
        .json();
    assert_rfc3339(&cas["ca_certs"][0], "not_after");
    let served = admin(api, "GET", "/api/v1/listeners/public/cert", None, None, &[])
        .await
        .json();
    assert_rfc3339(&served["certs"][0], "not_after");
    assert_rfc3339(&served["certs"][0], "not_before");
}
