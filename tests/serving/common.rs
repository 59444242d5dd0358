//! Shared by every test here: the counting plain backend, the world, TLS clients, raw framing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(20);

type BackendBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A plain-HTTP/1.1 backend: answers `101` to *any* `Upgrade` (as a naive
/// backend would, so the proxy alone decides what is tunnelled), with the
/// `Sec-WebSocket-Accept` of the request's `Sec-WebSocket-Key` if it has
/// one, and then echoes bytes; streams an endless body on `/big`; n KiB on `/kib/n`; a KiB and trailers
/// (`grpc-status`) on `/trailers`; sends one chunk and
/// then nothing on `/stall`; a head of about N bytes on `/fat-head/N`;
/// reads the whole request body on `/upload` and
/// answers its length (and any `Expect`); never answers `/hold` (an
/// expensive request, held until the proxy gives it up); otherwise echoes
/// the request head as JSON.
/// Counts requests, ended `/big` and `/stall` streams, and `/hold`
/// requests still held.
pub struct PlainBackend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub big_ended: Arc<AtomicUsize>,
    pub held: Arc<AtomicUsize>,
}

/// Counts an endless body as ended when hyper drops it.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A `/hold` request being held: counted in `held` until hyper drops it
/// (the proxy closed the upstream connection).
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(held: Arc<AtomicUsize>) -> Held {
        held.fetch_add(1, SeqCst);
        Held(held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl PlainBackend {
    async fn start() -> PlainBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let big_ended = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let (req_count, ended, holding) = (requests.clone(), big_ended.clone(), held.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (req_count, ended) = (req_count.clone(), ended.clone());
                let holding = holding.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |mut req: http::Request<hyper::body::Incoming>| {
                            // Held from the count on: a test that sees the
                            // request counted sees it held.
                            let hold =
                                (req.uri().path() == "/hold").then(|| Held::new(holding.clone()));
                            req_count.fetch_add(1, SeqCst);
                            let ended = ended.clone();
                            async move {
                                if let Some(_held) = hold {
                                    let never = std::future::pending::<std::convert::Infallible>();
                                    match never.await {}
                                }
                                if req.uri().path() == "/upload" {
                                    // Like most applications: the whole body
                                    // is read before the answer.
                                    let expect = req.headers().get("expect").cloned();
                                    let expect = expect.as_ref().and_then(|v| v.to_str().ok());
                                    let got = req.into_body().collect().await;
                                    let n = got.map(|b| b.to_bytes().len()).ok();
                                    let body =
                                        serde_json::json!({ "body_bytes": n, "expect": expect });
                                    let body = body.to_string();
                                    let body = Full::new(Bytes::from(body)).boxed();
                                    return Ok(http::Response::new(body));
                                }
                                Ok::<_, std::convert::Infallible>(answer(&mut req, ended))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        PlainBackend {
            addr,
            requests,
            big_ended,
            held,
        }
    }
}

fn answer(
    req: &mut http::Request<hyper::body::Incoming>,
    ended: Arc<AtomicUsize>,
) -> http::Response<BackendBody> {
    if req.uri().path() == "/switch" {
        // A switch nobody asked for.
        return http::Response::builder()
            .status(101)
            .header("upgrade", "h2c")
            .header("connection", "upgrade")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
    }
    if let Some(proto) = req.headers().get("upgrade").cloned() {
        let accept = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| websocket_accept(k.as_bytes()));
        let on = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        // With hop-by-hop fields of its own, which must not reach the client.
        let switched = match accept {
            Some(accept) => http::Response::builder().header("sec-websocket-accept", accept),
            None => http::Response::builder(),
        };
        return switched
            .status(101)
            .header("upgrade", proto)
            .header("connection", "upgrade, x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
    }
    if req.uri().path() == "/stall" {
        // One chunk, then nothing, for ever (a hung backend mid-body).
        let guard = Ended(ended);
        let first =
            futures_util::stream::once(async { Ok(Frame::data(Bytes::from_static(b"first"))) });
        let never = futures_util::stream::unfold(guard, |g| async move {
            std::future::pending::<()>().await;
            Some((Ok(Frame::data(Bytes::new())), g))
        });
        let body = futures_util::StreamExt::chain(first, never);
        return http::Response::new(StreamBody::new(body).boxed());
    }
    if let Some(n) = req.uri().path().strip_prefix("/fat-head/") {
        // A response head of about n bytes.
        return http::Response::builder()
            .header("x-fat", "f".repeat(n.parse().unwrap()))
            .body(Full::new(Bytes::from_static(b"fat")).boxed())
            .unwrap();
    }
    if let Some(n) = req.uri().path().strip_prefix("/kib/") {
        // n KiB of known length.
        let n: usize = n.parse().unwrap();
        return http::Response::new(Full::new(Bytes::from(vec![b'k'; n * 1024])).boxed());
    }
    if req.uri().path() == "/trailers" {
        // A KiB, then trailers as a gRPC answer ends (announced: hyper
        // sends them to a client that sent `TE: trailers`).
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = [
            Ok(Frame::data(Bytes::from(vec![b't'; 1024]))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        return http::Response::builder()
            .header("trailer", "grpc-status")
            .body(body)
            .unwrap();
    }
    if req.uri().path() == "/big" {
        let guard = Ended(ended);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let endless = futures_util::stream::unfold(guard, move |g| {
            let chunk = chunk.clone();
            async move { Some((Ok(Frame::data(chunk)), g)) }
        });
        return http::Response::new(StreamBody::new(endless).boxed());
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let body = serde_json::json!({ "path": req.uri().path(), "query": req.uri().query(), "headers": headers });
    http::Response::new(Full::new(Bytes::from(body.to_string())).boxed())
}

/// A `101`'s `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2):
/// base64(SHA-1(key ++ the protocol's GUID)).
pub fn websocket_accept(key: &[u8]) -> String {
    use aws_lc_rs::digest;
    use base64::Engine as _;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

pub struct World {
    pub scene: Scene,
    pub ca: TestCa,
    pub backend: PlainBackend,
}

pub async fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    let backend = PlainBackend::start().await;
    World { scene, ca, backend }
}

/// A fresh world and the proxy of `config(w, "", limits)` in front of it,
/// with the address of its listener `public`: most tests' set-up.
pub async fn serve(limits: &str) -> (World, Proxy, SocketAddr) {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "", limits));
    let addr = p.listener_addr("public").await;
    (w, p, addr)
}

/// `config(w, "", limits)` with a JSON access log in the scene written
/// first: the config's path, and the log's.
pub fn logged_config(w: &World, limits: &str) -> (PathBuf, PathBuf) {
    let path = config(w, "", limits);
    let log = w.scene.path("access.log");
    edit_config(&path, |text| {
        format!(
            "access_log: {{ path: {}, format: json }}\n{text}",
            log.display()
        )
    });
    (path, log)
}

/// As [`serve`], with the JSON access log of [`logged_config`]: also the
/// log's path.
pub async fn serve_logged(limits: &str) -> (World, Proxy, SocketAddr, PathBuf) {
    let w = world().await;
    let (path, log) = logged_config(&w, limits);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    (w, p, addr, log)
}

/// Rotate the listener's certificate (a new pair for the same name) and
/// wait until the proxy has loaded it: what it had is rotated out.
pub async fn rotate_certificate(w: &World, p: &mut Proxy) {
    w.scene.pair("a", &w.ca.server_pair(&["a.example.com"]));
    p.wait_log("the rotation", |v| v["message"] == "certificate reloaded")
        .await;
}

/// Rewrite the config file at `path` with `edit`; the new text.
pub fn edit_config(path: &Path, edit: impl FnOnce(String) -> String) -> String {
    let text = edit(std::fs::read_to_string(path).unwrap());
    std::fs::write(path, &text).unwrap();
    text
}

/// The `upstreams:` entry `plain` (the plain backend) for
/// `Scene::public_config`; more of its settings may be appended.
pub fn plain_upstream(w: &World) -> String {
    format!(
        "\n  - name: plain\n    servers: [http://{}]",
        w.backend.addr
    )
}

/// Wait until the plain backend counts `n` of its endless (`/big`) or
/// stalled (`/stall`) bodies ended: the upstream requests were released.
pub async fn wait_bodies_released(w: &World, n: usize) {
    let what = format!("{n} upstream bodies released");
    wait_until(WAIT, &what, || async {
        w.backend.big_ended.load(SeqCst) == n
    })
    .await;
}

/// A listener `public` routing everything to the plain backend; `tls`
/// and `limits` are appended to the listener's `tls:` map and `limits:` map.
pub fn config(w: &World, tls: &str, limits: &str) -> PathBuf {
    w.scene.config(&format!(
        r#"
runtime: {{ worker_threads: 1, shutdown_grace: 30s }}
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] {tls} }}
    routes: [{{ upstream: plain }}]
    limits: {{ {limits} }}
upstreams:
  - name: plain
    servers: [http://{}]
"#,
        w.backend.addr
    ))
}

/// A TLS connection to `addr` offering `alpn` (empty: no ALPN extension);
/// the support's `connect` panics if it takes longer than `CLIENT_DEADLINE`.
pub async fn tls(w: &World, addr: SocketAddr, alpn: &[&[u8]]) -> Tls {
    connect(
        addr,
        "a.example.com",
        client_config(&w.ca.cert_pem, None, alpn),
    )
    .await
    .unwrap()
}

/// Send `request` as raw bytes on a fresh HTTP/1.1 TLS connection; what the
/// proxy sends back until it closes (see [`read_to_close`]).
pub async fn h1_exchange(w: &World, addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tls(w, addr, &[b"http/1.1"]).await;
    let what = format!("writing a {}-byte request to {addr}", request.len());
    within_deadline(what, s.write_all(request)).await.unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
}

/// Read a response head (up to the blank line).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(
            n == 1,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Read a whole response with a `content-length` body; return its head.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let head = read_head(s).await;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; len];
    tokio::time::timeout(WAIT, s.read_exact(&mut body))
        .await
        .expect("response body in time")
        .unwrap();
    head
}

/// Write `bytes` on `s` and read the whole response they complete: a 200.
pub async fn write_for_200<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    let head = read_response(s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// The body of `reply`, an HTTP/1.1 response, as JSON.
pub fn body_json(reply: &str) -> serde_json::Value {
    serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// Wait for the `closing connection` line of the client from local port
/// `port`, closed for `reason`.
pub async fn wait_closed_for(p: &mut Proxy, port: u16, reason: &str) {
    let what = format!("the connection from port {port} closed for {reason}");
    p.wait_log(&what, |v| closes_port(v, port) && v["reason"] == reason)
        .await;
}

/// The frames (type and payload) of a byte stream that is a sequence of
/// HTTP/2 frames, or `None` when it is not one.
pub fn h2_frames(mut bytes: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        frames.push((bytes[3], bytes.get(9..9 + len)?));
        bytes = &bytes[9 + len..];
    }
    Some(frames)
}

/// The frame types of a byte stream that is a sequence of HTTP/2 frames,
/// or `None` when it is not one.
pub fn h2_frame_types(bytes: &[u8]) -> Option<Vec<u8>> {
    Some(h2_frames(bytes)?.into_iter().map(|(t, _)| t).collect())
}

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame, what a client sends right after the preface.
pub const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
pub const HEADERS: u8 = 1;
pub const SETTINGS: u8 = 4;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const RST_STREAM: u8 = 3;
pub const CONTINUATION: u8 = 9;

/// A `GET /x` that closes its connection after the answer.
pub const GET_THEN_CLOSE: &[u8] =
    b"GET /x HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n";

/// The local port of a client's connection: how the proxy's log names it.
pub fn local_port(s: &Tls) -> u16 {
    s.get_ref().0.local_addr().unwrap().port()
}

/// A log line about the client whose local port is `port`.
pub fn peer_is(v: &serde_json::Value, port: u16) -> bool {
    v["peer"]
        .as_str()
        .is_some_and(|a| a.ends_with(&format!(":{port}")))
}

/// A `closing connection` log line for the client whose local port is `port`.
pub fn closes_port(v: &serde_json::Value, port: u16) -> bool {
    v["message"] == "closing connection" && peer_is(v, port)
}

pub fn h2_get(path: &str, method: &str) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("https://a.example.com{path}"))
        .body(())
        .unwrap()
}

/// A raw HTTP/2 client's frames, as every raw test writes and reads them.
pub use crate::support::h2raw::{frame as h2_frame, next_frame};

/// Wait until the listener `public` has no connection open.
pub async fn wait_no_connections(admin: SocketAddr) {
    let gauge = "hotproxy_connections_active{listener=\"public\"} 0";
    wait_metric(admin, gauge, WAIT).await;
}

/// The HPACK block of `GET https://a.example.com<path>`: `:method GET`
/// (static 2), `:scheme https` (7), then `:path` (name 4) and
/// `:authority` (name 1) as literals.
pub fn hpack_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 13]);
    block.extend_from_slice(b"a.example.com");
    block
}

/// A raw HTTP/2 connection to the proxy at `addr` whose first request, on
/// stream 1, is the header block `block` (END_STREAM | END_HEADERS).
pub async fn h2_raw_request(w: &World, addr: SocketAddr, block: &[u8]) -> Tls {
    let mut s = tls(w, addr, &[b"h2"]).await;
    let mut out = [PREFACE, EMPTY_SETTINGS].concat();
    out.extend(h2_frame(HEADERS, 0x5, 1, block));
    s.write_all(&out).await.unwrap();
    s
}

/// The response `resp` promises, within `WAIT`.
pub async fn h2_answer(resp: h2::client::ResponseFuture) -> http::Response<h2::RecvStream> {
    tokio::time::timeout(WAIT, resp).await.unwrap().unwrap()
}

/// Everything left of an HTTP/2 response body.
pub async fn h2_body(rx: &mut h2::RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(data) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        got.extend_from_slice(&data.unwrap());
    }
    got
}

/// Send `req` without a body on `client`; its response, within `WAIT`.
pub async fn h2_request(
    client: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
) -> http::Response<h2::RecvStream> {
    let (resp, _) = client.send_request(req, true).unwrap();
    h2_answer(resp).await
}

/// A raw TCP backend: each connection it accepts is counted, then handed
/// to `handle` on a task of its own. Its address, and the count.
pub async fn raw_backend<F, Fut>(handle: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, SeqCst);
            tokio::spawn(handle(tcp));
        }
    });
    (addr, accepted)
}

/// Read more of what `tcp` sends onto `buf` (a raw backend's read): false
/// once it has closed or failed.
pub async fn read_more(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Read from `tcp` onto `buf` until it holds a whole request head: the
/// head's length, or `None` if `tcp` closed first.
pub async fn read_raw_head(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        if !read_more(tcp, buf).await {
            return None;
        }
    }
}

/// An HTTP/2 client of the proxy at `addr`, ready for a first request,
/// and the task driving its connection: for tests that look at how the
/// connection ended (a `GOAWAY`), which `h2_client` leaves to itself.
pub async fn h2_with_conn(
    w: &World,
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let (client, conn) = h2::client::handshake(tls(w, addr, &[b"h2"]).await)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    (client.ready().await.unwrap(), conn)
}

/// The driver task `conn` of an h2 crate client's connection ends with
/// the server's `GOAWAY` `ENHANCE_YOUR_CALM`: cut off as abusive.
pub async fn ended_calm_h2(conn: tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let ended = tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection is closed")
        .unwrap();
    let e = ended.expect_err("ended by the server");
    assert!(e.is_go_away(), "{e}");
    assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{e}");
}
