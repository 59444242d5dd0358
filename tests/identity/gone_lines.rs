//! `499` lines of requests whose client went at once: an HTTP/2 stream reset behind its HEADERS, and the line of an HTTP/1.1 request dropped unrouted next to the one `handle` writes.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::h2raw::{frame, post_block, preface};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const CANCEL: u32 = 8;

/// The `499`s counted on the `partners` listener, whatever their upstream.
async fn counted_499(admin: std::net::SocketAddr) -> usize {
    metrics_text(admin)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("hotproxy_http_requests_total{listener=\"partners\"")
                && l.contains("code=\"499\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum()
}

/// An HTTP/2 stream its client resets in the same write as its HEADERS
/// (the reset there before the request's future first runs) is logged and
/// counted once, `499`, as any stream reset while its request is with the
/// upstream: hyper spawns every stream's future and polls it at least
/// once, so the request begun inside it is never lost. So for a request
/// without a body (END_STREAM) and for one whose body was still to come.
#[tokio::test]
async fn h2_stream_reset_behind_its_headers_is_logged_as_499_once() {
    const TRIES: usize = 10;
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let h2 = client_config(&w.edge_ca.cert_pem, None, &[b"h2"]);
    let mut get = post_block("/hang");
    get[0] = 0x82; // :method GET
    let cases = [(get, 0x5u8), (post_block("/hang"), 0x4u8)];
    let mut gone = 0;
    for (block, flags) in &cases {
        for _ in 0..TRIES {
            let mut s = connect(addr, "localhost", h2.clone()).await.unwrap();
            let mut out = preface();
            out.extend(frame(HEADERS, *flags, 1, block));
            out.extend(frame(RST_STREAM, 0, 1, &CANCEL.to_be_bytes()));
            s.write_all(&out).await.unwrap();
            s.flush().await.unwrap();
            gone += 1;
            let all = wait_access_log(&log, gone, WAIT).await;
            assert_eq!(all.len(), gone, "{all:?}");
            let last = &all[gone - 1];
            assert_eq!(last["status"], 499, "{last}");
            assert_eq!(last["path"], "/hang", "{last}");
            assert_eq!(last["protocol"], "HTTP/2.0", "{last}");
            assert!(last["request_id"].is_string(), "{last}");
            wait_until(WAIT, "the 499 counted", || async {
                counted_499(admin).await == gone
            })
            .await;
            drop(s);
        }
    }
    // Exactly one line and one count each: none came twice meanwhile.
    let all = read_access_log(&log);
    assert_eq!(all.len(), gone, "{all:?}");
    assert_eq!(counted_499(admin).await, gone);
    drop(p);
}

/// The `499` line of an HTTP/1.1 request dropped before it was routed (its
/// client's FIN right behind it: `Begun`'s) has the fields of the line of
/// the same request abandoned while with the upstream (`handle`'s), with
/// the same values, but for what routing and time give: `upstream` and
/// `upstream_addr` `null` (nothing went upstream), its own `ts`,
/// `duration_ms` and peer port, and `bytes_in` 0: the body hyper held was
/// never handed over. The request id is the client's, trusted, as
/// `handle`'s line has it. Counted under `upstream=""`, as a request
/// refused before routing.
#[tokio::test]
async fn unrouted_499_line_has_the_fields_of_handles_own() {
    use std::sync::atomic::Ordering::SeqCst;
    const TRIES: usize = 10;
    let w = world().await;
    let (log, extra) = json_access_log(&w);
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let request = |rid: &str| {
        format!(
            "POST /hang HTTP/1.1\r\nhost: localhost\r\nx-request-id: {rid}\r\n\
             content-length: 3\r\n\r\nabc"
        )
    };
    // handle's: the request with the upstream, its client gone.
    let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
    s.write_all(request("rid-handle").as_bytes()).await.unwrap();
    wait_until(WAIT, "the backend answering", || async {
        w.backend.slow_in_flight.load(SeqCst) == 1
    })
    .await;
    drop(s);
    let handled = wait_access_log(&log, 1, WAIT).await.remove(0);
    // Begun's: the FIN right behind the request (a try may be routed first).
    let mut unrouted = None;
    for i in 0..TRIES {
        let rid = format!("rid-begun-{i}");
        let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
        s.write_all(request(&rid).as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let line = wait_access_log(&log, i + 2, WAIT).await.remove(i + 1);
        assert_eq!(line["request_id"], rid.as_str(), "{line}");
        if line["upstream"].is_null() {
            unrouted = Some((line, i));
            break;
        }
    }
    let (unrouted, routed) = unrouted.expect("one request of ten dropped before routing");
    let (a, b) = (handled.as_object().unwrap(), unrouted.as_object().unwrap());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{handled}\n{unrouted}"
    );
    for (k, v) in a {
        let u = &b[k];
        match k.as_str() {
            "ts" => assert!(u.is_string(), "{unrouted}"),
            "duration_ms" => assert!(u.as_f64().is_some_and(|d| d >= 0.0), "{unrouted}"),
            "client_addr" => assert_eq!(u.as_str().unwrap().split(':').next(), Some("127.0.0.1")),
            "request_id" => assert!(u.as_str().unwrap().starts_with("rid-begun-"), "{unrouted}"),
            "upstream" | "upstream_addr" => assert!(u.is_null(), "{k}: {unrouted}"),
            "bytes_in" => assert_eq!((v, u), (&3.into(), &0.into()), "{handled}\n{unrouted}"),
            _ => assert_eq!(v, u, "{k}: {handled}\n{unrouted}"),
        }
    }
    assert_eq!(unrouted["status"], 499);
    assert!(unrouted["upstream_ms"].is_null() && unrouted["upstream_attempts"].is_null());
    // handle's line, and those of the tries routed first; Begun's.
    let counted = |upstream: &str, n: usize| {
        format!(
            "hotproxy_http_requests_total{{listener=\"partners\",upstream=\"{upstream}\",code=\"499\"}} {n}"
        )
    };
    wait_metric(admin, &counted("app", 1 + routed), WAIT).await;
    wait_metric(admin, &counted("", 1), WAIT).await;
    drop(p);
}
