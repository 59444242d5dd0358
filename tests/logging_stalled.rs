//! A stderr whose reader stalled: the proxy keeps serving, drops log lines and counts them, and exits on SIGTERM.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;

/// Failing requests sent at most, in rounds: far more WARN lines (and
/// debug ones) than a 64 KiB pipe and the log queue hold together.
const MAX_REQUESTS: usize = 20_000;
const ROUND: usize = 200;

/// A docker or journald pipe that stopped being read: once the 64 KiB
/// pipe filled with the WARN of each failed upstream request, every
/// runtime worker blocked in its next log line, so healthy routes and
/// admin `/healthz` stopped answering and SIGTERM's drain blocked on its
/// own log line. Now lines beyond the queue are dropped and counted in
/// `hotproxy_log_lines_dropped_total`, and everything keeps answering.
#[tokio::test]
async fn a_stalled_stderr_reader_does_not_stop_the_proxy() {
    let (s, ca, backend) = scene_with_backend("echo").await;
    // An upstream whose address refuses connections: bound, then closed.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = refused.local_addr().unwrap();
    drop(refused);
    let tls = "tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }";
    let cfg = s.public_config(
        "[{ path_prefix: /dead, upstream: dead }, { upstream: echo }]",
        &format!(
            "\n  - name: dead\n    servers: [https://{dead}]\n    {tls}\n  - name: echo\n    servers: [https://{}]\n    {tls}",
            backend.addr
        ),
    );
    let (mut p, addr, api) = start_with_admin(&cfg).await;
    p.stall_stderr();

    let client_cfg = client_config(&ca.cert_pem, None, &[b"h2"]);
    let h2 = h2_client(connect(addr, "localhost", client_cfg).await.unwrap()).await;
    let mut sent = 0;
    loop {
        for _ in 0..ROUND {
            let status = failing_request(&h2).await;
            assert!(status.is_server_error(), "{status}");
        }
        sent += ROUND;
        if dropped(api).await > 0 {
            break;
        }
        assert!(
            sent < MAX_REQUESTS,
            "no log line dropped after {sent} requests"
        );
    }

    let healthy = get_h1(addr, "localhost", &ca.cert_pem).await;
    assert_eq!(healthy.unwrap().status, 200);
    let health = admin(api, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(health.status, 200);

    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(30)).await.success());
}

/// One GET to the refused upstream on `h2`: its status (`502`, `503`).
async fn failing_request(h2: &h2::client::SendRequest<Bytes>) -> http::StatusCode {
    within_deadline("a request to the refused upstream", async {
        let req = http::Request::get("https://localhost/dead")
            .body(())
            .unwrap();
        let (resp, _) = h2
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req, true)
            .unwrap();
        resp.await.unwrap().status()
    })
    .await
}

/// `hotproxy_log_lines_dropped_total` on the admin API at `api`.
async fn dropped(api: std::net::SocketAddr) -> u64 {
    let text = metrics_text(api).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("hotproxy_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped-lines counter in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
