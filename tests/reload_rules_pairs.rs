//! max_connection_lifetime when one pair other than the default is re-issued in place (its names kept).

mod support;

use std::time::Duration;

use support::writers::mv_over;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Listener `three`: pairs `a` (a.example.com, the default), `b`
/// (b.example.com) and `c` (*.c.example.com), each named by
/// `server_names`, and `max_connection_lifetime: 1ms` (a connection is
/// older than that before any reload can come: the debounce alone is 50ms).
const CONFIG: &str = r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
listeners:
  - name: three
    bind: 127.0.0.1:0
    limits: { idle_timeout: 1h, max_connection_lifetime: 1ms }
    tls:
      certs:
        - { cert_file: a.crt, key_file: a.key, server_names: [a.example.com] }
        - { cert_file: b.crt, key_file: b.key, server_names: [b.example.com] }
        - { cert_file: c.crt, key_file: c.key, server_names: ["*.c.example.com"] }
    routes: []
upstreams:
  - name: nowhere
    servers: [http://127.0.0.1:9]
"#;

/// The scene's pairs' names, by stem.
const NAMES: [(&str, &str); 3] = [
    ("a", "a.example.com"),
    ("b", "b.example.com"),
    ("c", "*.c.example.com"),
];

/// A proxy serving [`CONFIG`], pairs from `ca`.
fn three_pairs() -> (Scene, TestCa, Proxy) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    for (stem, name) in NAMES {
        s.pair(stem, &ca.server_pair(&[name]));
    }
    let p = Proxy::start(&s.config(CONFIG));
    (s, ca, p)
}

/// A pair's new files put in place as certbot and most tools do: each
/// written beside, then renamed over the one served.
fn renew(s: &Scene, stem: &str, cert_pem: &str, key_pem: &str) {
    mv_over(&s.path(&format!("{stem}.crt")), cert_pem);
    mv_over(&s.path(&format!("{stem}.key")), key_pem);
}

/// How many log lines contain `what`.
fn count(p: &Proxy, what: &str) -> usize {
    p.logs().iter().filter(|l| l.contains(what)).count()
}

/// Wait until more than `before` log lines contain `what`.
async fn logged_more(p: &Proxy, what: &str, before: usize) {
    wait_until(WAIT, &format!("{what:?} logged again"), || {
        let done = count(p, what) > before;
        async move { done }
    })
    .await;
}

const REPLACED: &str = "listener TLS snapshot replaced";

/// Pair `b` (not the default) re-issued in place, its names kept: a
/// connection made to b.example.com, older than the limit, closes for the
/// lifetime.
#[tokio::test]
async fn a_second_pair_renewed_closes_its_connections_for_max_connection_lifetime() {
    let (s, ca, mut p) = three_pairs();
    let addr = p.listener_addr("three").await;
    let conn = open_served(addr, "b.example.com", &ca.cert_pem, None).await;

    let next = ca.server_pair(&["b.example.com"]);
    renew(&s, "b", &next.cert_pem, &next.key_pem);
    closed_for_lifetime(&p, conn).await;
}

/// The wildcard pair `c` re-issued in place: a connection made to
/// x.c.example.com, older than the limit, closes for the lifetime.
#[tokio::test]
async fn a_wildcard_pair_renewed_closes_its_connections_for_max_connection_lifetime() {
    let (s, ca, mut p) = three_pairs();
    let addr = p.listener_addr("three").await;
    let conn = open_served(addr, "x.c.example.com", &ca.cert_pem, None).await;

    let next = ca.server_pair(&["*.c.example.com"]);
    renew(&s, "c", &next.cert_pem, &next.key_pem);
    closed_for_lifetime(&p, conn).await;
}

/// Pair `b` rewritten with the very same certificate is no rotation:
/// the same bytes (nothing re-read), then the same certificate in other
/// bytes (the listener's TLS rebuilt) leave a connection to b.example.com,
/// older than the limit, serving; a real renewal of `b` then closes it.
#[tokio::test]
async fn a_second_pair_rewritten_with_its_certificate_is_no_rotation_for_max_connection_lifetime() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let mut b = None;
    for (stem, name) in NAMES {
        let pair = ca.server_pair(&[name]);
        s.pair(stem, &pair);
        if stem == "b" {
            b = Some(pair);
        }
    }
    let b = b.unwrap();
    let mut p = Proxy::start(&s.config(CONFIG));
    let addr = p.listener_addr("three").await;
    let mut conn = open_served(addr, "b.example.com", &ca.cert_pem, None).await;

    let unchanged = "certificate files re-read: unchanged";
    let before = count(&p, unchanged);
    renew(&s, "b", &b.cert_pem, &b.key_pem);
    logged_more(&p, unchanged, before).await;
    served_on(&p, &mut conn).await;

    let before = count(&p, REPLACED);
    let reencoded = format!("{}\n", b.cert_pem);
    renew(&s, "b", &reencoded, &b.key_pem);
    logged_more(&p, REPLACED, before).await;
    served_on(&p, &mut conn).await;

    let next = ca.server_pair(&["b.example.com"]);
    renew(&s, "b", &next.cert_pem, &next.key_pem);
    closed_for_lifetime(&p, conn).await;
}
