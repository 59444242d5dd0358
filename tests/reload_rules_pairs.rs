//! max_connection_lifetime when one pair other than the default is re-issued in place (its names kept).

mod support;

use std::time::Duration;

use bytes::Bytes;
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

/// A kept-open HTTP/1.1 connection with SNI (and `Host`) `host`.
struct Open {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    conn: tokio::task::JoinHandle<hyper::Result<()>>,
    /// Its local address: the `peer` the proxy logs for it.
    peer: String,
    host: String,
}

fn get_to(host: &str) -> http::Request<http_body_util::Empty<Bytes>> {
    http::Request::get("/")
        .header("host", host)
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// Open a connection to `addr` with SNI `sni`, served once (404: no route).
async fn open_to(addr: std::net::SocketAddr, sni: &str, ca_pem: &str) -> Open {
    let tls = connect(addr, sni, client_config(ca_pem, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let peer = tls.get_ref().0.local_addr().unwrap().to_string();
    let (mut send, conn) = keep_open_h1(tls).await;
    let status = send.send_request(get_to(sni)).await.unwrap().status();
    assert_eq!(status, 404, "{peer} served (no route for /)");
    Open {
        send,
        conn,
        peer,
        host: sni.to_owned(),
    }
}

/// Whether the proxy logged connection `peer`'s close for `max_connection_lifetime`.
fn closed_for_lifetime_logged(p: &Proxy, peer: &str) -> bool {
    p.logs().iter().any(|l| {
        l.contains("\"closing connection")
            && l.contains(&format!("\"peer\":\"{peer}\""))
            && l.contains("\"reason\":\"max_connection_lifetime\"")
    })
}

/// Wait until `open` is closed and the close is logged for the lifetime.
async fn closed_for_lifetime(p: &Proxy, open: Open) {
    within_deadline(format!("{} closed", open.peer), open.conn)
        .await
        .unwrap()
        .unwrap();
    wait_until(WAIT, "the close logged with its reason", || {
        let logged = closed_for_lifetime_logged(p, &open.peer);
        async move { logged }
    })
    .await;
}

/// `open` serves another request with no sign of a close coming.
async fn served_on(p: &Proxy, open: &mut Open) {
    let again = open.send.send_request(get_to(&open.host)).await.unwrap();
    assert_eq!(again.status(), http::StatusCode::NOT_FOUND);
    assert!(again.headers().get("connection").is_none(), "{again:?}");
    assert!(!open.conn.is_finished(), "{} closed", open.peer);
    assert!(!closed_for_lifetime_logged(p, &open.peer));
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
    let conn = open_to(addr, "b.example.com", &ca.cert_pem).await;

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
    let conn = open_to(addr, "x.c.example.com", &ca.cert_pem).await;

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
    let mut conn = open_to(addr, "b.example.com", &ca.cert_pem).await;

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
