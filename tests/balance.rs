//! Issue 16, endpoints: per-request balancing (round robin, least request) over pods on
//! 127.0.0.1/.2/.3, passive health (a killed pod ejected, no client request failing thanks to
//! retries, re-admitted once back), and their metrics.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use support::*;

const WAIT: Duration = Duration::from_secs(20);

struct World {
    _scene: Scene,
    ca: TestCa,
    backend_ca: TestCa,
    proxy: Proxy,
    public: SocketAddr,
    admin: SocketAddr,
    pods: Vec<Backend>,
}

async fn world(upstream_extra: &str) -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("pods CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    scene.pair("proxy-client", &backend_ca.client_pair("hotproxy"));
    write(&scene.path("pods-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["app.prod.svc"]);
    let mut pods = Vec::new();
    for (i, ip) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().enumerate() {
        let at = format!("{ip}:0").parse().unwrap();
        pods.push(
            Backend::start_at(at, &format!("pod{i}"), &pair, Some(&backend_ca.cert_pem)).await,
        );
    }
    let servers: Vec<String> = pods.iter().map(|p| format!("https://{}", p.addr)).collect();
    let upstream = |name: &str, balance: &str| {
        format!(
            r#"
  - name: {name}
    servers: [{servers}]
    balance: {balance}
    tls:
      ca: {{ ca_file: pods-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
      server_name: app.prod.svc
{upstream_extra}"#,
            servers = servers.join(", ")
        )
    };
    let config = scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
    routes:
      - {{ path_prefix: /rr, upstream: rr }}
      - {{ path_prefix: /lr, upstream: lr }}
upstreams:{}{}
"#,
        upstream("rr", "round_robin"),
        upstream("lr", "least_request")
    ));
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let admin = proxy.admin_addr().await;
    World {
        _scene: scene,
        ca,
        backend_ca,
        proxy,
        public,
        admin,
        pods,
    }
}

/// One kept-open HTTP/1.1 connection to the proxy.
async fn client(w: &World) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(w.public, "localhost", cfg).await.unwrap();
    keep_open_h1(tls).await.0
}

/// GET `path` on `send`: status and the answering pod (if any).
async fn get_pod(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, Option<String>) {
    send.ready().await.unwrap();
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let pod = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["backend"].as_str().map(str::to_owned));
    (status, pod)
}

async fn metrics(w: &World) -> String {
    admin(w.admin, "GET", "/metrics", None, None, &[])
        .await
        .body
}

/// Requests spread over every endpoint: round robin exactly, least request
/// (power of two choices) within a few percent; both counted per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_endpoint() {
    let w = world("").await;
    let mut send = client(&w).await;
    for (path, n, low, high) in [("/rr", 300, 100, 100), ("/lr", 600, 160, 240)] {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            let (status, pod) = get_pod(&mut send, path).await;
            assert_eq!(status, 200);
            *counts.entry(pod.unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{path}: {counts:?}");
        for (pod, c) in &counts {
            assert!(
                (low..=high).contains(c),
                "{path}: {pod} got {c} of {n}: {counts:?}"
            );
        }
    }
    let m = metrics(&w).await;
    for pod in &w.pods {
        let line = format!(
            "hotproxy_upstream_requests_total{{upstream=\"rr\",endpoint=\"{}\",code=\"200\"}} 100",
            pod.addr
        );
        assert!(m.contains(&line), "{line} missing:\n{m}");
    }
    assert!(
        m.contains("hotproxy_upstream_endpoints{upstream=\"lr\",state=\"healthy\"} 3"),
        "{m}"
    );
}

/// A killed pod is ejected after the configured failures with no failed
/// client request (idempotent GETs are retried on another endpoint), gets
/// no request while ejected, and is re-admitted when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_endpoint_ejected_retried_and_readmitted() {
    let mut w = world(
        "    health: { passive: { consecutive_failures: 2, eject_for: 1s } }\n    retries: { attempts: 2 }\n",
    )
    .await;
    let mut send = client(&w).await;
    // Warm: every pod has pooled connections, which the kill resets.
    for _ in 0..9 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200);
    }
    let dead = w.pods[1].addr;
    w.pods[1].kill();
    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..60 {
        let (status, pod) = get_pod(&mut send, "/rr").await;
        assert_eq!(status, 200, "request {i} failed after the kill");
        *served.entry(pod.unwrap()).or_default() += 1;
    }
    assert!(!served.contains_key("pod1"), "{served:?}");
    let ejected = w
        .proxy
        .wait_log("ejection", |v| {
            v["message"] == "upstream endpoint ejected" && v["upstream"] == "rr"
        })
        .await;
    assert_eq!(ejected["endpoint"], dead.to_string());
    let m = metrics(&w).await;
    assert!(
        m.contains("hotproxy_upstream_endpoints{upstream=\"rr\",state=\"ejected\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("hotproxy_upstream_retries_total{upstream=\"rr\"}"),
        "{m}"
    );

    // The pod comes back on the same address: re-admitted once its
    // ejection (with back-off) has run out, then served again.
    let pair = w.backend_ca.server_pair(&["app.prod.svc"]);
    let _back = Backend::start_at(dead, "pod1", &pair, Some(&w.backend_ca.cert_pem)).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, pod) = get_pod(&mut send, "/rr").await;
        assert_eq!(status, 200);
        if pod.as_deref() == Some("pod1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod1 never re-admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.proxy
        .wait_log("re-admission", |v| {
            v["message"] == "upstream endpoint back in service" && v["upstream"] == "rr"
        })
        .await;
    let m = metrics(&w).await;
    assert!(
        m.contains("hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"} 3"),
        "{m}"
    );
}
