//! A WebSocket tunnel or a request in flight to a host of another `certs` entry than its connection's: held to that entry's client auth across reloads.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::tunnels::echo;
use crate::common::*;
use crate::support::*;

/// `client_auth` verifying against the clients' CA, with `allow` rules
/// `allow` (a YAML list) if given.
fn verify(allow: Option<&str>) -> String {
    let allow = allow.map_or(String::new(), |a| format!(", allow: {a}"));
    format!("{{ mode: require_and_verify, ca: {{ ref: clients-ca }}{allow} }}")
}

/// Listener `public` serving `app.example` (entry 0, `app_auth`) and
/// `admin.example` (entry 1, `admin_auth`), everything routed to the
/// plain (echoing) backend (a response head awaited for up to 120 s, past
/// any step's deadline: a cut seen is none of its); tunnels idle for up to
/// an hour.
fn config(w: &World, app_auth: &str, admin_auth: &str) -> PathBuf {
    w.scene.config(&format!(
        r#"
runtime: {{ worker_threads: 1, shutdown_grace: 30s }}
admin: {{ bind: "127.0.0.1:0" }}
certs:
  - {{ id: clients-ca, type: ca-bundle, ca_file: clients-ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: app.crt, key_file: app.key, client_auth: {app_auth} }}
        - {{ cert_file: admin.crt, key_file: admin.key, client_auth: {admin_auth} }}
    routes: [{{ upstream: plain }}]
    limits: {{ tunnel_idle_timeout: 1h }}
upstreams:
  - name: plain
    servers: [http://{}]
    request_timeout: 120s
"#,
        w.backend.addr
    ))
}

/// The scene: both entries under one `client_auth` (no `allow`), so a
/// request for `admin.example` on an `app.example` connection is served;
/// the proxy (its `shutdown_grace` `grace`) and alice's connection to
/// `app.example`, offering `alpn`.
async fn alice_on_app(grace: &str, alpn: &[u8]) -> (World, Proxy, Tls) {
    alice_on_app_with(world().await, grace, alpn, |t| t).await
}

/// [`alice_on_app`] in `w`, its config further edited by `edit` first.
async fn alice_on_app_with(
    w: World,
    grace: &str,
    alpn: &[u8],
    edit: impl FnOnce(String) -> String,
) -> (World, Proxy, Tls) {
    w.scene.pair("app", &w.ca.server_pair(&["app.example"]));
    w.scene.pair("admin", &w.ca.server_pair(&["admin.example"]));
    let clients = TestCa::new("clients");
    write(&w.scene.path("clients-ca.crt"), &clients.cert_pem);
    let cfg = config(&w, &verify(None), &verify(None));
    edit_config(&cfg, |t| edit(t.replace("shutdown_grace: 30s", grace)));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let alice = client_config(&w.ca.cert_pem, Some(&clients.client_pair("alice")), &[alpn]);
    let s = connect(addr, "app.example", alice).await.unwrap();
    (w, p, s)
}

/// [`alice_on_app`] over HTTP/1.1, with alice's WebSocket tunnel to
/// `admin.example` opened on it, a byte echoed through it.
async fn alices_tunnel_to_admin() -> (World, Proxy, Tls) {
    let (w, p, mut s) = alice_on_app("shutdown_grace: 30s", b"http/1.1").await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: admin.example\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    echo(&mut s, b"hello").await;
    (w, p, s)
}

/// A reload that takes alice out of `admin.example`'s rules (its entry now
/// lets CN ops in only), `app.example`'s still admitting her; the rest of
/// the config as it was.
fn take_alice_out_of_admin(w: &World, p: &Proxy) {
    let admin = |auth: &str| format!("key_file: admin.key, client_auth: {auth}");
    let (before, after) = (admin(&verify(None)), admin(&verify(Some("[{ cn: ops }]"))));
    let text = edit_config(&w.scene.path("config.yaml"), |t| t.replace(&before, &after));
    assert!(text.contains(&after), "{text}");
    p.signal("HUP");
}

/// Waits (bounded) until the backend holds `n` requests unanswered.
async fn backend_holds(w: &World, n: usize, what: &str) {
    let held = w.backend.held.clone();
    let held = move || std::future::ready(held.load(std::sync::atomic::Ordering::SeqCst) == n);
    wait_until(CLIENT_DEADLINE, what, held).await;
}

/// Waits for the log of a cut whose message starts with `what`, its
/// reason `admission_rules_changed` too where `with_reason`.
async fn wait_cut(p: &mut Proxy, what: &str, with_reason: bool) {
    p.wait_log("the cut", |v| {
        (!with_reason || v["reason"] == "admission_rules_changed")
            && v["message"].as_str().is_some_and(|m| m.starts_with(what))
    })
    .await;
}

/// Alice's tunnel ends with nothing more read, its close logged as the
/// rules' change.
async fn tunnel_ended(p: &mut Proxy, s: &mut Tls) {
    let rest = read_to_close(s).await;
    assert!(rest.is_empty(), "{rest:?}");
    p.wait_log("the tunnel's close", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "admission_rules_changed"
    })
    .await;
}

/// Alice's HTTP/2 connection serves on for its own entry: a request for
/// `app.example` on it gets 200.
async fn app_served_on(client: h2::client::SendRequest<bytes::Bytes>) {
    let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
    let mut client = within_deadline("the connection", client.ready())
        .await
        .unwrap();
    let (resp, _) = client
        .send_request(get("https://app.example/"), true)
        .unwrap();
    let resp = within_deadline("a request for app.example", resp).await;
    assert_eq!(resp.unwrap().status(), 200);
}

/// A reload that takes alice out of `admin.example`'s rules (its entry now
/// lets CN ops in only) ends her tunnel to it at once (SPEC §2, §3), as it
/// would have had she connected with SNI `admin.example`. Her connection
/// was made to `app.example`, whose entry still admits her, and only that
/// entry was checked again: the tunnel stayed open up to
/// `tunnel_idle_timeout` (an hour), bytes crossing it to admin's backend.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_its_tunnels_host_entry_ends_the_tunnel() {
    let (w, mut p, mut s) = alices_tunnel_to_admin().await;
    take_alice_out_of_admin(&w, &p);
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    tunnel_ended(&mut p, &mut s).await;
}

/// A reload that gives `admin.example` a `client_auth` of its own, one
/// still letting alice in, ends her tunnel too: its entry no longer shares
/// her connection's `client_auth`, so a new request for it there gets 421
/// (SPEC §2), and what the 421 would refuse is not kept open either.
#[tokio::test]
async fn a_reload_parting_the_tunnels_host_entry_from_its_connections_ends_the_tunnel() {
    let (w, mut p, mut s) = alices_tunnel_to_admin().await;
    config(&w, &verify(None), &verify(Some("[{ cn: alice }]")));
    p.signal("HUP");
    tunnel_ended(&mut p, &mut s).await;
}

/// The control: a reload that changes the rules but keeps `admin.example`
/// under the connection's `client_auth`, still admitting alice (both
/// entries now let alice and ops in), keeps the tunnel: checked again and
/// kept, bytes still cross it.
#[tokio::test]
async fn a_reload_still_admitting_a_client_to_its_tunnels_host_keeps_the_tunnel() {
    let (w, mut p, mut s) = alices_tunnel_to_admin().await;
    let both = verify(Some("[{ cn: alice }, { cn: ops }]"));
    config(&w, &both, &both);
    p.signal("HUP");
    p.wait_log("the tunnel checked again and kept", |v| {
        v["message"] == "tunnel still admitted for its host's entry under the changed rules; kept"
    })
    .await;
    echo(&mut s, b"still here").await;
    assert!(
        !p.logs().iter().any(|l| l.contains("\"tunnel closed\"")),
        "the tunnel was closed"
    );
}

/// The same for an HTTP/2 stream to `admin.example` coalesced onto alice's
/// `app.example` connection (a long response: server-sent events, gRPC):
/// a reload taking alice out of `admin.example`'s rules cuts it
/// `shutdown_grace` later, as a revoked connection's streams in flight are
/// (SPEC §3), while her connection, still admitted for `app.example`,
/// serves on. The stream went on for as long as its upstream did.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_a_streams_host_entry_cuts_the_stream() {
    let (w, mut p, tls) = alice_on_app("shutdown_grace: 1s", b"h2").await;
    let mut client = h2_client(tls).await;
    let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
    let (resp, _) = client
        .send_request(get("https://admin.example/stall"), true)
        .unwrap();
    let resp = within_deadline("the stream's head", resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within_deadline("the first chunk", body.data()).await;
    assert_eq!(&first.unwrap().unwrap()[..], b"first");

    take_alice_out_of_admin(&w, &p);
    let cut = within_deadline("the stream's cut", body.data()).await;
    assert!(cut.as_ref().is_some_and(Result::is_err), "{cut:?}");
    wait_cut(&mut p, "response in flight cut", true).await;
    // Her connection serves on for its own entry.
    app_served_on(client).await;
}

/// A stream to `admin.example` still waiting for its response head (a long
/// poll, an upload: the backend holds `/hold` unanswered) is cut as one
/// with a head is: `shutdown_grace` after the reload, its stream reset, her
/// connection serving on. Its watch began with the head: it went on to
/// admin's backend until `request_timeout` (here 120 s).
#[tokio::test]
async fn a_reload_taking_a_client_out_of_a_waiting_streams_host_entry_cuts_it() {
    let (w, mut p, tls) = alice_on_app("shutdown_grace: 1s", b"h2").await;
    let mut client = h2_client(tls).await;
    let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
    let (resp, _) = client
        .send_request(get("https://admin.example/hold"), true)
        .unwrap();
    backend_holds(&w, 1, "the request held at the backend").await;

    take_alice_out_of_admin(&w, &p);
    let cut = within_deadline("the waiting stream's cut", resp).await;
    assert!(cut.is_err(), "{cut:?}");
    wait_cut(&mut p, "request in flight cut", true).await;
    // The upstream request went with it.
    backend_holds(&w, 0, "the backend's request released").await;
    app_served_on(client).await;
}

/// The same over HTTP/1.1 for a response in flight (`/stall`: its head
/// and a first chunk, then nothing): the reload closes her connection, the
/// one way to cut an HTTP/1.1 response, with no chunked end sent.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_an_http1_responses_host_entry_closes_it() {
    let (w, mut p, mut s) = alice_on_app("shutdown_grace: 1s", b"http/1.1").await;
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: admin.example\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut first = [0u8; 64];
    let n = within_deadline(
        "the first chunk",
        tokio::io::AsyncReadExt::read(&mut s, &mut first),
    );
    assert!(n.await.unwrap() > 0);

    take_alice_out_of_admin(&w, &p);
    let rest = read_to_close(&mut s).await;
    assert!(!rest.ends_with(b"0\r\n\r\n"), "{rest:?}");
    wait_cut(&mut p, "response in flight cut", false).await;
}

/// And an HTTP/1.1 request still waiting for its head (`/hold`): the
/// reload closes her connection with nothing sent, as a revoked
/// connection's would be, and the backend's request is released.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_a_waiting_http1_requests_host_entry_closes_it() {
    let (w, mut p, mut s) = alice_on_app("shutdown_grace: 1s", b"http/1.1").await;
    s.write_all(b"GET /hold HTTP/1.1\r\nhost: admin.example\r\n\r\n")
        .await
        .unwrap();
    backend_holds(&w, 1, "the request held at the backend").await;
    take_alice_out_of_admin(&w, &p);
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    wait_cut(&mut p, "request in flight cut", false).await;
    backend_holds(&w, 0, "the backend's request released").await;
}

/// What [`early_h2`] saw of a request body after answering its request.
#[derive(Debug, PartialEq)]
enum Seen {
    Data(Bytes),
    /// Its end, as the client ended it.
    End,
    /// Reset, or its connection gone.
    Cut,
}

/// An HTTP/2 backend (over TLS, `backend.local` of the edge CA, written as
/// `backend-ca.crt`) that answers each `/upload` `413` at once, as one
/// refusing an upload by its head, and then reads its body on as it
/// comes, telling what it saw of it; any other request `200`.
async fn early_h2(w: &World) -> (SocketAddr, UnboundedReceiver<Seen>) {
    write(&w.scene.path("backend-ca.crt"), &w.ca.cert_pem);
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let pair = w.ca.server_pair(&["backend.local"]);
    let addr = h2_backend(&pair, move |req, mut respond| {
        let status = if req.uri().path() == "/upload" {
            413
        } else {
            200
        };
        let head = http::Response::builder()
            .status(status)
            .header("content-length", "10")
            .body(())
            .unwrap();
        let Ok(mut answer) = respond.send_response(head, false) else {
            return;
        };
        let _ = answer.send_data(Bytes::from_static(b"too large\n"), true);
        let (mut body, tx) = (req.into_body(), tx.clone());
        tokio::spawn(async move {
            loop {
                let seen = match body.data().await {
                    Some(Ok(data)) => {
                        let _ = body.flow_control().release_capacity(data.len());
                        Seen::Data(data)
                    }
                    Some(Err(_)) => Seen::Cut,
                    None => Seen::End,
                };
                let more = matches!(seen, Seen::Data(_));
                if tx.send(seen).is_err() || !more {
                    return;
                }
            }
        });
    })
    .await;
    (addr, seen)
}

/// [`alice_on_app`] (`shutdown_grace: 1s`) with everything routed to an
/// [`early_h2`] backend: what it sees of request bodies too.
async fn alice_on_app_to_early(alpn: &[u8]) -> (World, Proxy, Tls, UnboundedReceiver<Seen>) {
    let w = world().await;
    let (early, seen) = early_h2(&w).await;
    let plain = format!("servers: [http://{}]", w.backend.addr);
    let to_early = format!(
        "servers: [https://{early}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}"
    );
    let (w, p, s) = alice_on_app_with(w, "shutdown_grace: 1s", alpn, |t| {
        t.replace(&plain, &to_early)
    })
    .await;
    (w, p, s, seen)
}

/// What the backend sees next of the body, within the deadline.
async fn next_seen(seen: &mut UnboundedReceiver<Seen>) -> Seen {
    within_deadline("the backend's next sight of the body", seen.recv())
        .await
        .expect("the backend reads on")
}

/// An upload over HTTP/2 to `admin.example` that its backend answers
/// early (`413` by its head) and reads on: alice still sends, and her
/// body still reaches that backend after the answer. A reload taking her
/// out of `admin.example`'s rules cuts that body `shutdown_grace` later,
/// as it cuts a response in flight (SPEC §3): the backend sees it reset,
/// her connection serves on for its own entry. The answer over, nothing
/// watched the body: it went on to admin's backend for as long as she
/// sent it.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_an_uploads_host_entry_cuts_the_body_after_an_early_answer()
{
    let (w, mut p, tls, mut seen) = alice_on_app_to_early(b"h2").await;
    let mut client = h2_client(tls).await;
    let post = http::Request::post("https://admin.example/upload")
        .body(())
        .unwrap();
    let (resp, mut upload) = client.send_request(post, false).unwrap();
    upload
        .send_data(Bytes::from_static(b"first"), false)
        .unwrap();
    let resp = within_deadline("the early answer", resp).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(h2_body(&mut resp.into_body()).await, b"too large\n");
    assert_eq!(next_seen(&mut seen).await, Seen::Data(Bytes::from("first")));
    upload
        .send_data(Bytes::from_static(b"second"), false)
        .unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Data(Bytes::from("second"))
    );

    take_alice_out_of_admin(&w, &p);
    assert_eq!(next_seen(&mut seen).await, Seen::Cut);
    wait_cut(&mut p, "request body in flight cut", true).await;
    app_served_on(client).await;
}

/// The same over HTTP/1.1: the reload cuts the body after the early
/// answer and closes her connection, the one way to end an HTTP/1.1
/// request body. Her connection stayed busy with it, the body forwarded.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_an_http1_uploads_host_entry_cuts_the_body() {
    let (w, mut p, mut s, mut seen) = alice_on_app_to_early(b"http/1.1").await;
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: admin.example\r\ncontent-length: 1000000\r\n\r\nfirst",
    )
    .await
    .unwrap();
    let head = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(next_seen(&mut seen).await, Seen::Data(Bytes::from("first")));
    s.write_all(b"second").await.unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Data(Bytes::from("second"))
    );

    take_alice_out_of_admin(&w, &p);
    assert_eq!(next_seen(&mut seen).await, Seen::Cut);
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    wait_cut(&mut p, "request body in flight cut", false).await;
}
