//! Pods that refuse, hang or crash on requests: where the retry goes, and ejection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use tokio::io::AsyncReadExt;

use crate::common::*;
use crate::support::*;

/// A TLS pod on 127.0.0.1 serving `pair` and offering `alpn`: each
/// connection it accepts is handed, once through TLS, to `handle` on a task
/// of its own, with a counter `handle` may count on. Its address, and the
/// counter.
async fn tls_pod<F, Fut>(pair: &TestPair, alpn: &[u8], handle: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(PodStream, Arc<AtomicUsize>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, acceptor) = tls_listener(pair, alpn).await;
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (counter, handle) = (count.clone(), Arc::new(handle));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter, handle) = (acceptor.clone(), counter.clone(), handle.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    handle(tls, counter).await;
                }
            });
        }
    });
    (addr, count)
}

/// What a [`tls_pod`] handles: one accepted TLS connection.
type PodStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// How a [`RefusingPod`] treats the streams it is sent.
#[derive(Clone, Copy)]
enum Refusal {
    /// Refuses each (`REFUSED_STREAM`).
    Every,
    /// Accepts each and never answers.
    Hang,
    /// Refuses the first that is not a health check (as a pod on its way
    /// down does with a stream past its `GOAWAY`) and answers the rest
    /// as `{"backend":"restarting"}`.
    First,
}

/// An HTTP/2 pod that refuses or ignores streams (see [`Refusal`]);
/// `refused` counts those it did not answer.
struct RefusingPod {
    addr: SocketAddr,
    refused: Arc<AtomicUsize>,
}

impl RefusingPod {
    async fn start_as(pair: &TestPair, how: Refusal) -> RefusingPod {
        let refused = Arc::new(AtomicUsize::new(0));
        // Streams a `Hang` pod accepted: kept, never answered.
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let count = refused.clone();
        let addr = h2_backend(pair, move |req, mut respond| {
            let refuse = match how {
                Refusal::Every | Refusal::Hang => {
                    count.fetch_add(1, SeqCst);
                    true
                }
                Refusal::First => {
                    req.uri().path() != "/healthz"
                        && count.compare_exchange(0, 1, SeqCst, SeqCst).is_ok()
                }
            };
            match (how, refuse) {
                (Refusal::Hang, _) => held.lock().unwrap().push(respond),
                (_, true) => respond.send_reset(h2::Reason::REFUSED_STREAM),
                (_, false) => {
                    let body = Bytes::from_static(br#"{"backend":"restarting"}"#);
                    let resp = http::Response::new(());
                    if let Ok(mut stream) = respond.send_response(resp, false) {
                        let _ = stream.send_data(body, true);
                    }
                }
            }
        })
        .await;
        RefusingPod { addr, refused }
    }
}

/// A misbehaving HTTP/2 pod (`hang`: it never answers; else it refuses
/// every stream) beside a good pod at 127.0.0.2, both in upstream `two`
/// (round robin, the misbehaving one first) with `settings` lines; the
/// proxy and one kept-open HTTP/1.1 client connection to it.
struct BadAndGood {
    bad: RefusingPod,
    good: Backend,
    _scene: Scene,
    ca: TestCa,
    proxy: Proxy,
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

async fn bad_and_good(hang: bool, settings: &str) -> BadAndGood {
    let pods = Pods::new();
    let how = if hang { Refusal::Hang } else { Refusal::Every };
    let bad = RefusingPod::start_as(&pods.pair, how).await;
    let good = pods.pod_at("127.0.0.2", "good").await;
    let two = two(bad.addr, good.addr, settings);
    let w = pods.serve("[{ upstream: two }]", &two, Vec::new()).await;
    let send = client(&w).await;
    let World {
        scene, ca, proxy, ..
    } = w;
    BadAndGood {
        bad,
        good,
        _scene: scene,
        ca,
        proxy,
        send,
    }
}

/// Upstream `two`: round robin over `first` and `second`, with `settings`
/// lines.
fn two(first: SocketAddr, second: SocketAddr, settings: &str) -> String {
    let servers = format!("https://{first}, https://{second}");
    upstream(
        "two",
        &servers,
        &format!("    balance: round_robin\n{settings}"),
    )
}

/// RFC 9113 §8.7: a stream refused with `REFUSED_STREAM` was not processed,
/// so the request is safe to send again: an HTTP/2 pod refusing every
/// stream costs no client a failed request, its GETs go to the other pod,
/// and the retries are counted. So do POSTs with a small body (read whole
/// before forwarding, so it can be sent twice), body and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_are_sent_to_another_endpoint() {
    let mut w = bad_and_good(false, "    retries: { attempts: 1 }\n").await;
    let admin_addr = w.proxy.admin_addr().await;
    let (refusing, send) = (&w.bad, &mut w.send);
    for i in 0..8 {
        let (status, pod) = get_pod(send, "/").await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(pod.as_deref(), Some("good"), "request {i}");
    }
    assert!(
        refusing.refused.load(SeqCst) > 0,
        "the refusing pod was never tried"
    );
    let m = admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body;
    let retries = m
        .lines()
        .find_map(|l| l.strip_prefix("hotproxy_upstream_retries_total{upstream=\"two\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "no retry counted:\n{m}");
    // A stream left unprocessed is no upstream error, sent to another
    // endpoint as when resent to its own (SPEC: hotproxy_upstream_errors_total).
    assert!(!m.contains("hotproxy_upstream_errors_total{"), "{m}");

    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(w.proxy.listener_addr("public").await, "localhost", cfg)
        .await
        .unwrap();
    let (mut post, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..4 {
        post.ready().await.unwrap();
        let req = http::Request::post("/upload")
            .header("host", "localhost")
            .body(http_body_util::Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        let resp = post.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "POST {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["backend"], "good", "POST {i}");
        assert_eq!(v["body_bytes"], 10, "POST {i}");
    }
}

/// SPEC: an endpoint out of service receives no request, and panic mode
/// is for when fewer than half are in service (one of two is half). So
/// when the one endpoint in service
/// fails, the request is not retried on the one out of service (nginx's
/// "no live upstreams"): the client gets the failure, and the unhealthy
/// pod sees nothing but its check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_goes_to_an_endpoint_out_of_service() {
    // One check per endpoint (the first tick), then none for an hour: the
    // good pod stays in service after it is killed.
    let mut w = bad_and_good(
        false,
        "    retries: { attempts: 1 }\n    health:\n      passive: { consecutive_failures: 0 }\n      \
         active: { path: /healthz, interval: 1h, unhealthy_after: 1, healthy_after: 1 }\n",
    )
    .await;
    let out = w
        .proxy
        .wait_log("the refusing pod's check", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
        })
        .await;
    assert_eq!(out["endpoint"], w.bad.addr.to_string());
    // The good pod's first check runs alongside: killed before it is
    // answered, the pod would fail it and go out of service too.
    let good = w.good.addr.to_string();
    w.proxy
        .wait_log("the good pod's check", |v| {
            v["message"] == "active check" && v["endpoint"] == good.as_str() && v["passed"] == true
        })
        .await;
    let checked = w.bad.refused.load(SeqCst);
    w.good.kill();
    let (status, _) = get_pod(&mut w.send, "/").await;
    assert_eq!(status, 502);
    assert_eq!(
        w.bad.refused.load(SeqCst),
        checked,
        "the request was retried on the pod out of service"
    );
}

/// A pod that takes requests and never answers fails each by
/// request_timeout (504), and those failures count for passive health as
/// connect errors do (nginx's max_fails counts timeouts; Envoy's gateway
/// failures include them): after consecutive_failures in a row it is
/// ejected, and clients stop waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_endpoint_is_ejected_after_request_timeouts() {
    let mut w = bad_and_good(
        true,
        "    request_timeout: 300ms\n    retries: { attempts: 0 }\n    \
         health: { passive: { consecutive_failures: 2, eject_for: 1m } }\n",
    )
    .await;
    let send = &mut w.send;
    let mut timeouts = 0;
    for _ in 0..4 {
        match get_pod(send, "/").await {
            (504, _) => timeouts += 1,
            (200, pod) => assert_eq!(pod.as_deref(), Some("good")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(timeouts, 2, "round robin sent half to the hung pod");
    let ejected = w
        .proxy
        .wait_log("the hung pod ejected", |v| {
            v["message"] == "upstream endpoint ejected" && v["upstream"] == "two"
        })
        .await;
    assert_eq!(ejected["endpoint"], w.bad.addr.to_string());
    for i in 0..6 {
        let (status, pod) = get_pod(send, "/").await;
        assert_eq!((status, pod.as_deref()), (200, Some("good")), "request {i}");
    }
}

/// A request an HTTP/2 endpoint left unprocessed is sent again on a new
/// connection to the same endpoint when no other endpoint would take it:
/// here the other is out of service. It used to get a 502: whether a retry
/// could go elsewhere was judged from the endpoints configured, not from
/// those in service, so the same-endpoint resend was skipped and the retry
/// then found nowhere to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprocessed_request_is_resent_when_no_other_endpoint_is_in_service() {
    let pods = Pods::new();
    let pod = RefusingPod::start_as(&pods.pair, Refusal::First).await;
    // Nothing listens at the other endpoint: its first check fails.
    let gone = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let two = two(
        pod.addr,
        gone,
        "    retries: { attempts: 1 }\n    health:\n      \
         active: { path: /healthz, interval: 1h, unhealthy_after: 1, healthy_after: 1 }\n",
    );
    let mut w = pods.serve("[{ upstream: two }]", &two, Vec::new()).await;
    let out = w
        .proxy
        .wait_log("the other endpoint out of service", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
        })
        .await;
    assert_eq!(out["endpoint"], gone.to_string());
    let mut send = client(&w).await;
    let (status, served_by) = get_pod(&mut send, "/").await;
    assert_eq!((status, served_by.as_deref()), (200, Some("restarting")));
    assert_eq!(pod.refused.load(SeqCst), 1, "refused once, then served");
}

/// An HTTP/1.1 pod that reads each request head and closes the connection
/// without an answer (a process that crashes on the request); counts them.
async fn closing_pod(pair: &TestPair) -> (SocketAddr, Arc<AtomicUsize>) {
    tls_pod(pair, b"http/1.1", |mut tls, count| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        count.fetch_add(1, SeqCst);
    })
    .await
}

/// SPEC: a request is sent once more to the same endpoint only when a
/// *reused* connection closed before answering (an idle keep-alive
/// connection the upstream closed as it was reused). A new connection
/// that closes on a request says the endpoint failed on that request: the
/// retry goes to another endpoint, as nginx's `proxy_next_upstream error`
/// does. It used to be sent to the same endpoint again first, on another
/// new connection (with three endpoints and two attempts, five sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_closed_on_a_request_is_not_retried_on_its_endpoint() {
    let pods = Pods::new();
    let (crashing, heads) = closing_pod(&pods.pair).await;
    let good = pods.pod_at("127.0.0.2", "good").await;
    let two = two(crashing, good.addr, "    retries: { attempts: 1 }\n");
    let w = pods.serve("[{ upstream: two }]", &two, vec![good]).await;
    let mut send = client(&w).await;
    let (status, served_by) = get_pod(&mut send, "/").await;
    assert_eq!((status, served_by.as_deref()), (200, Some("good")));
    assert_eq!(
        heads.load(SeqCst),
        1,
        "the crashing pod got the request again"
    );
}

/// A stream an HTTP/2 endpoint refuses (`REFUSED_STREAM`, as one past a
/// graceful `GOAWAY`'s last stream id) was not processed (RFC 9113 §8.7):
/// sent to the other endpoint, it says nothing against the refusing one's
/// health, as the same request resent on a new connection to it does not.
/// Each used to count as a failure: five of them (the default
/// `consecutive_failures`) ejected an endpoint that processed nothing
/// wrongly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_h2_endpoint_left_unprocessed_do_not_eject_it() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut w = bad_and_good(false, "    retries: { attempts: 1 }\n").await;
    let admin_addr = w.proxy.admin_addr().await;
    // Round robin: every other request's first attempt is refused.
    for i in 0..12 {
        let (status, pod) = get_pod(&mut w.send, "/").await;
        assert_eq!((status, pod.as_deref()), (200, Some("good")), "request {i}");
    }
    // Passive health is counted before a request is retried, so before
    // its client is answered.
    let m = admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body;
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"two\",state=\"healthy\"} 2",
    );
    assert_eq!(w.bad.refused.load(SeqCst), 6);
    // Still in service: its turns still come.
    for _ in 0..2 {
        get_pod(&mut w.send, "/").await;
    }
    assert_eq!(
        w.bad.refused.load(SeqCst),
        7,
        "the refusing pod was ejected"
    );
}

/// A request an HTTP/2 pod refused goes to the other pod, here HTTP/1.1
/// only, with the `Host` an HTTP/1.1 request needs, though over HTTP/2 the
/// authority went as `:authority` alone: the client's `Host`, or (an
/// HTTP/1.0 request without one) the address of the endpoint it goes to,
/// not the refusing one's. POST bodies are read whole, so it can be sent
/// twice too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_from_an_h2_endpoint_to_an_h1_one_carries_host() {
    use tokio::io::AsyncWriteExt;
    let pods = Pods::new();
    let bad = RefusingPod::start_as(&pods.pair, Refusal::Every).await;
    let good = Backend::start_h1_at(
        "127.0.0.2:0".parse().unwrap(),
        "good",
        &pods.pair,
        Some(&pods.backend_ca.cert_pem),
    )
    .await;
    let two = two(bad.addr, good.addr, "    retries: { attempts: 1 }\n");
    let w = pods.serve("[{ upstream: two }]", &two, Vec::new()).await;
    let good_addr = good.addr.to_string();
    let cases: [(&[u8], &str); 3] = [
        (
            b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "localhost",
        ),
        (
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\
              Connection: close\r\n\r\nhi",
            "localhost",
        ),
        (b"GET /x HTTP/1.0\r\n\r\n", &good_addr),
    ];
    // Round robin over the two: of each pair of requests, one goes to
    // the refusing pod first.
    for (request, host) in cases.iter().flat_map(|c| [c, c]) {
        let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
        let mut tls = connect(w.public, "localhost", cfg).await.unwrap();
        tls.write_all(request).await.unwrap();
        let reply = String::from_utf8_lossy(&read_to_close(&mut tls).await).into_owned();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        assert!(head.contains(" 200 "), "{reply}");
        let seen: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
        assert_eq!(seen["backend"], "good", "{seen}");
        assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
        assert_eq!(seen["headers"]["host"], *host, "{seen}");
    }
    assert_eq!(bad.refused.load(SeqCst), cases.len(), "refused once a pair");
}
