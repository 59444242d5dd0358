//! A name kept across renewals stays with its previous owner's client_auth, not its position: the owner's own renewal dropping it is served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use crate::support::writers::{Certbot, Kubelet};
use crate::support::*;

/// Listener `public`: x (Secret `x/`) and y (`y.crt`), each requiring a
/// client certificate `ca.crt` issued, then z (Secret `z/`), without
/// client_auth.
fn config(s: &Scene) -> PathBuf {
    let strict = "client_auth: { mode: require_and_verify, ca: { ref: ca } }";
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: x, type: server-pair, cert_file: x/tls.crt, key_file: x/tls.key }}
  - {{ id: y, type: server-pair, cert_file: y.crt, key_file: y.key }}
  - {{ id: z, type: server-pair, cert_file: z/tls.crt, key_file: z/tls.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: x, {strict} }}
        - {{ ref: y, {strict} }}
        - {{ ref: z }}
"#
    ))
}

/// The status of a request for `Host: host` on a connection with SNI
/// `sni`, presenting `who` if any.
async fn status(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    ca: &TestCa,
    who: Option<&TestPair>,
) -> u16 {
    let mut open = open_served(addr, sni, &ca.cert_pem, who).await;
    let asked = open.send.send_request(get_to(host));
    let status = within_deadline("a request for the shared name", asked).await;
    status.unwrap().status().as_u16()
}

/// x and y (one client_auth) both name `shared` by their SANs; z's
/// renewal adds it and x keeps it; then x's renewal drops it. y, with
/// x's client_auth, still names it, so the name stays on that side and
/// x's renewal is served, with a warning that y keeps it. The previous
/// owner was matched by position: the conflict found was y against z
/// while x had the name, so the renewal was refused and x's certificate
/// never served.
async fn the_owners_renewal_dropping_it_is_served(shared: &str) {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("y", &ca.server_pair_with_dns_sans(&["y.test", shared]));
    let (x, z) = (Kubelet::new(&s.path("x")), Kubelet::new(&s.path("z")));
    write_secret(&x, &ca.server_pair_with_dns_sans(&["x.test", shared]));
    write_secret(&z, &ca.server_pair(&["z.test"]));
    let (mut p, addr) = serve(&config(&s)).await;
    let client = ca.client_pair("client");

    let z2 = ca.server_pair_with_dns_sans(&["z.test", shared]);
    write_secret(&z, &z2);
    until_served(addr, "z.test", &ca.cert_pem, &z2.fingerprint).await;
    p.wait_log("z's name kept by x", |v| {
        v["level"] == "WARN" && v["name"] == shared && v["entry"] == "z" && v["kept_by"] == "x"
    })
    .await;

    let x2 = ca.server_pair(&["x.test"]);
    write_secret(&x, &x2);
    until_served(addr, "x.test", &ca.cert_pem, &x2.fingerprint).await;
    p.wait_log("z's name kept by y", |v| {
        v["level"] == "WARN" && v["name"] == shared && v["entry"] == "z" && v["kept_by"] == "y"
    })
    .await;
    assert_eq!(
        status(addr, "y.test", shared, &ca, Some(&client)).await,
        404
    );
    assert_eq!(status(addr, "z.test", shared, &ca, None).await, 421);
}

/// [`the_owners_renewal_dropping_it_is_served`] for a name SNI can carry.
#[tokio::test]
async fn an_sni_name_kept_stays_with_its_owners_client_auth_when_the_owner_drops_it() {
    the_owners_renewal_dropping_it_is_served("shared.test").await;
}

/// [`the_owners_renewal_dropping_it_is_served`] for a name SNI cannot
/// carry (per_name::owners_of_left_out).
#[tokio::test]
async fn a_name_sni_cannot_carry_kept_stays_with_its_owners_client_auth_when_the_owner_drops_it() {
    the_owners_renewal_dropping_it_is_served("host.123").await;
}

/// Listener `public` in order x (certbot's `live/x/`, requiring a client
/// certificate `ca.crt` issued), z (certbot's `live/z/`, no client_auth),
/// y (`y.crt`, x's client_auth): z sits between the two strict entries.
fn config_between(s: &Scene) -> PathBuf {
    let strict = "client_auth: { mode: require_and_verify, ca: { ref: ca } }";
    let live =
        |n: &str| format!("cert_file: live/{n}/fullchain.pem, key_file: live/{n}/privkey.pem");
    s.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: x, type: server-pair, {x} }}
  - {{ id: z, type: server-pair, {z} }}
  - {{ id: y, type: server-pair, cert_file: y.crt, key_file: y.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: x, {strict} }}
        - {{ ref: z }}
        - {{ ref: y, {strict} }}
"#,
        x = live("x"),
        z = live("z"),
    ))
}

/// certbot renews `bot`'s certificate to `pair` (issued by `ca`).
fn renew(bot: &mut Certbot, pair: &TestPair, ca: &TestCa) {
    bot.renew(&pair.cert_pem, &pair.key_pem, &ca.cert_pem, Duration::ZERO);
}

/// [`the_owners_renewal_dropping_it_is_served`] with z between x and y,
/// each renewed as certbot swaps its live links: x's renewal drops
/// `shared`, which z (another client_auth) and y (x's) still name. The
/// name goes to y, whose certificate names it, with the warning that y
/// keeps it from z. x kept it, the entry first naming it (z) having
/// another client_auth than x, though y has x's: `shared.test` was served
/// x's renewed certificate, which does not name it (for host.123, the
/// warning named x as keeping it, instead z).
async fn the_owners_renewal_dropping_it_leaves_it_to_its_lister(shared: &str, sni: bool) {
    let ca = TestCa::new("ca");
    let s = Scene::new();
    write(&s.path("ca.crt"), &ca.cert_pem);
    let y = ca.server_pair_with_dns_sans(&["y.test", shared]);
    s.pair("y", &y);
    let mut x = Certbot::new(s.dir.path(), "x");
    let mut z = Certbot::new(s.dir.path(), "z");
    renew(
        &mut x,
        &ca.server_pair_with_dns_sans(&["x.test", shared]),
        &ca,
    );
    renew(&mut z, &ca.server_pair(&["z.test"]), &ca);
    let (mut p, addr) = serve(&config_between(&s)).await;
    let client = ca.client_pair("client");

    let z2 = ca.server_pair_with_dns_sans(&["z.test", shared]);
    renew(&mut z, &z2, &ca);
    until_served(addr, "z.test", &ca.cert_pem, &z2.fingerprint).await;
    p.wait_log("z's name kept by x", |v| {
        v["level"] == "WARN" && v["name"] == shared && v["entry"] == "z" && v["kept_by"] == "x"
    })
    .await;

    let x2 = ca.server_pair(&["x.test"]);
    renew(&mut x, &x2, &ca);
    until_served(addr, "x.test", &ca.cert_pem, &x2.fingerprint).await;
    if sni {
        assert_serves(addr, shared, &ca.cert_pem, &y.fingerprint).await;
    }
    p.wait_log("z's name kept by y", |v| {
        v["level"] == "WARN" && v["name"] == shared && v["entry"] == "z" && v["kept_by"] == "y"
    })
    .await;
    assert_eq!(
        status(addr, "y.test", shared, &ca, Some(&client)).await,
        404
    );
    assert_eq!(status(addr, "z.test", shared, &ca, None).await, 421);
}

/// [`the_owners_renewal_dropping_it_leaves_it_to_its_lister`] for a name
/// SNI can carry: a client asking for it is served y's certificate.
#[tokio::test]
async fn an_sni_name_an_owner_drops_goes_to_its_client_auths_lister_past_another() {
    the_owners_renewal_dropping_it_leaves_it_to_its_lister("shared.test", true).await;
}

/// [`the_owners_renewal_dropping_it_leaves_it_to_its_lister`] for a name
/// SNI cannot carry.
#[tokio::test]
async fn a_name_sni_cannot_carry_an_owner_drops_goes_to_its_client_auths_lister_past_another() {
    the_owners_renewal_dropping_it_leaves_it_to_its_lister("host.123", false).await;
}
