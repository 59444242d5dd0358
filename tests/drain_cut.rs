//! The end of `shutdown_grace` on the real process: response bodies still streaming when the runtime drops its tasks.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A response body of 100 GiB: still streaming whenever the grace ends.
const ENDLESS: &str = "/mebibytes/102400";

/// Response bodies still streaming from an HTTP/2 upstream when
/// `shutdown_grace` ends, to HTTP/1.1 and HTTP/2 clients reading them as
/// fast as they come, on a multi-worker runtime: their cut is the
/// shutdown's, not the upstream's. No "upstream response body failed"
/// warning (with it `hotproxy_upstream_errors_total`, counted where it is
/// logged: the process has exited by then), no other failure blamed on
/// the endpoint. A worker dropping the upstream connection's task while
/// another still polled a body the client was being sent left that body
/// with the connection's failure ("connection closed", a broken pipe),
/// logged and counted as the upstream's.
#[tokio::test]
async fn response_bodies_cut_when_shutdown_grace_ends_blame_no_upstream() {
    const N: usize = 32;
    let (s, ca, backend) = scene_with_backend("b").await;
    let cfg = s.one_upstream_config("b", backend.addr, &[]);
    cut_in_a_second(&cfg, "");
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // Each client on a connection of its own; half of them HTTP/2.
    let got = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for n in 0..N {
        let alpn: &[u8] = if n % 2 == 0 { b"http/1.1" } else { b"h2" };
        let tls = connect(
            addr,
            "localhost",
            client_config(&ca.cert_pem, None, &[alpn]),
        )
        .await
        .unwrap();
        readers.push(if n % 2 == 0 {
            tokio::spawn(read_h1(tls, got.clone()))
        } else {
            tokio::spawn(read_h2(tls, got.clone()))
        });
    }
    wait_until(WAIT, "every body is streaming", || async {
        got.load(SeqCst) == N
    })
    .await;
    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());
    for r in readers {
        within_deadline("a reader", r).await.unwrap();
    }
    let blamed = logged_with(
        &p,
        &[
            "upstream response body failed",
            "upstream request failed",
            "ejected",
        ],
    );
    assert!(
        blamed.is_empty(),
        "a body cut by the shutdown blamed its upstream: {blamed:#?}"
    );
}

/// `GET ENDLESS` over HTTP/1.1 on `tls`, its response read and dropped
/// until the proxy closes the connection; `got` counted once when its
/// first bytes came.
async fn read_h1(mut tls: Tls, got: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!("GET {ENDLESS} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    while let Ok(n @ 1..) = tls.read(&mut buf).await {
        if std::mem::take(&mut first) {
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{n} bytes");
            got.fetch_add(1, SeqCst);
        }
    }
}

/// [`read_h1`] over HTTP/2: its stream's data taken as it comes, until
/// the stream or the connection ends.
async fn read_h2(tls: Tls, got: Arc<AtomicUsize>) {
    let mut client = h2_client(tls).await;
    let uri = format!("https://localhost{ENDLESS}");
    let req = http::Request::get(uri).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let Ok(resp) = resp.await else { return };
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut first = true;
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
        if std::mem::take(&mut first) {
            got.fetch_add(1, SeqCst);
        }
    }
}
