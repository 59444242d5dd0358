//! An HTTPS echo backend (optionally requiring a client certificate) that tells what it saw,
//! and the listener of a raw TLS backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::pki::{certs, key};
use super::{Scene, TestCa, TestPair, fingerprint, write};

/// An HTTPS echo backend that (optionally) requires a client certificate
/// from `client_ca` and answers JSON: the client certificate it saw, the
/// request headers (and those sent more than once), its own name, and a
/// connection counter.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections open right now.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
    /// `/slow` and `/hang` requests (any, while `hang_all`) being answered
    /// right now (arrived, not yet replied).
    pub slow_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The accept loop and every connection task, for `kill`.
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Every connection's switch to silence, for `go_silent`.
    silences: Arc<std::sync::Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` for HTTP/2 connections accepted
    /// from now on; 0: hyper's default (no limit).
    pub h2_max_streams: Arc<std::sync::atomic::AtomicU32>,
    /// Body bytes of `…/mebibytes/N` responses handed to the server so far
    /// (over HTTP/2, only as the peer's flow-control windows let them go).
    pub bulk_sent: Arc<std::sync::atomic::AtomicUsize>,
    /// While true, accepted connections wait before their TLS handshake
    /// (`accepted` counts them): dials in progress, held.
    pub hold_handshakes: tokio::sync::watch::Sender<bool>,
    /// While true, every request is held as `/hang` is (counted, never
    /// answered): a backend that completes TLS and then answers nothing.
    pub hang_all: Arc<std::sync::atomic::AtomicBool>,
    /// While not 0, the status of every answer (its body as usual, naming
    /// the backend): a pod whose shared database is down answers `503`.
    pub answer_status: Arc<std::sync::atomic::AtomicU16>,
    /// Requests received so far, by path.
    paths: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// A connection that can fall silent: then it reads, writes and flushes
/// nothing, and never wakes, while its socket stays open. That is what a
/// proxy sees of a node gone without a reset or a black-holed pod IP: no
/// answer, no PING acknowledgement, no FIN.
struct Silenceable<S> {
    io: S,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

impl<S> Silenceable<S> {
    fn silent(&self) -> bool {
        self.silent.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Silenceable<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.silent() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Silenceable<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.silent() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.silent() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.silent() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How long a `/burst/N…` request waits for the rest of its burst before
/// it is answered 503: a burst that cannot gather (the proxy sending its
/// requests one after another) fails its test rather than hanging it.
pub const BURST_DEADLINE: Duration = Duration::from_secs(15);

/// `/burst/N…` requests are held until N of them wait at once, then all
/// answered: N requests in flight together at the backend, guaranteed
/// rather than hoped for from a pause.
struct Burst {
    /// Requests waiting now.
    waiting: std::sync::Mutex<usize>,
    /// Bumped (under `waiting`'s lock) each time a burst is let go.
    released: tokio::sync::watch::Sender<u64>,
}

/// One request's place in a [`Burst`]: given up if it leaves unreleased
/// (its deadline passed, or its connection went).
struct InBurst<'a> {
    burst: &'a Burst,
    generation: u64,
}

impl Drop for InBurst<'_> {
    fn drop(&mut self) {
        let mut waiting = self.burst.waiting.lock().unwrap();
        if *self.burst.released.borrow() == self.generation {
            *waiting -= 1;
        }
    }
}

impl Burst {
    fn new() -> Burst {
        Burst {
            waiting: std::sync::Mutex::new(0),
            released: tokio::sync::watch::channel(0).0,
        }
    }

    /// Wait until `n` requests (this one included) wait here at once; or,
    /// past `BURST_DEADLINE`, `Err` with how many did.
    async fn gather(&self, n: usize) -> Result<(), usize> {
        let (place, mut released) = {
            let mut waiting = self.waiting.lock().unwrap();
            *waiting += 1;
            if *waiting >= n {
                *waiting = 0;
                self.released.send_modify(|g| *g += 1);
                return Ok(());
            }
            let place = InBurst {
                burst: self,
                generation: *self.released.borrow(),
            };
            (place, self.released.subscribe())
        };
        let generation = place.generation;
        let gathered =
            tokio::time::timeout(BURST_DEADLINE, released.wait_for(|g| *g != generation)).await;
        match gathered {
            Ok(_) => Ok(()),
            Err(_) => Err(*self.waiting.lock().unwrap()),
        }
    }
}

/// Counts a backend connection as open while it lives.
struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A scene with pair `a` (localhost, of a new edge CA) and the backend
/// CA's certificate as `backend-ca.crt`, and backend `name` (backend.local,
/// of that CA) started: the scene, the edge CA and the backend.
pub async fn scene_with_backend(name: &str) -> (Scene, TestCa, Backend) {
    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start(name, &backend_ca.server_pair(&["backend.local"]), None).await;
    (s, ca, backend)
}

impl Backend {
    pub async fn start(name: &str, server: &TestPair, client_ca: Option<&str>) -> Backend {
        Backend::with_alpn(name, server, client_ca, &[b"h2", b"http/1.1"]).await
    }

    /// A backend offering only HTTP/1.1 (like nginx without `http2`).
    pub async fn start_h1(name: &str, server: &TestPair, client_ca: Option<&str>) -> Backend {
        Backend::with_alpn(name, server, client_ca, &[b"http/1.1"]).await
    }

    /// A backend on `addr` (`127.0.0.2:0` for another pod, or the address
    /// of a killed backend to bring it back).
    pub async fn start_at(
        addr: SocketAddr,
        name: &str,
        server: &TestPair,
        client_ca: Option<&str>,
    ) -> Backend {
        Backend::bound(addr, name, server, client_ca, &[b"h2", b"http/1.1"]).await
    }

    /// [`Backend::start_at`] offering only HTTP/1.1.
    pub async fn start_h1_at(
        addr: SocketAddr,
        name: &str,
        server: &TestPair,
        client_ca: Option<&str>,
    ) -> Backend {
        Backend::bound(addr, name, server, client_ca, &[b"http/1.1"]).await
    }

    /// Like a pod killed: the socket closes (connects are refused) and
    /// every open connection is reset.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// How many requests for `path` have arrived so far.
    pub fn requests_for(&self, path: &str) -> usize {
        self.paths.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Every connection open now falls silent (see [`Silenceable`]); new
    /// ones are served. A request for `…/go-silent` silences its own.
    pub fn go_silent(&self) {
        for s in self.silences.lock().unwrap().iter() {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    async fn with_alpn(
        name: &str,
        server: &TestPair,
        client_ca: Option<&str>,
        alpn: &[&[u8]],
    ) -> Backend {
        let addr = "127.0.0.1:0".parse().unwrap();
        Backend::bound(addr, name, server, client_ca, alpn).await
    }

    async fn bound(
        addr: SocketAddr,
        name: &str,
        server: &TestPair,
        client_ca: Option<&str>,
        alpn: &[&[u8]],
    ) -> Backend {
        let mut b = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca) {
                    roots.add(c).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                rustls::ServerConfig::builder().with_client_cert_verifier(v)
            }
            None => rustls::ServerConfig::builder().with_no_client_auth(),
        }
        .with_single_cert(certs(&server.cert_pem), key(&server.key_pem))
        .unwrap();
        b.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(b));
        let listener = {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.set_reuseaddr(true).unwrap();
            s.bind(addr).unwrap();
            s.listen(1024).unwrap()
        };
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open_count = open.clone();
        let slow_in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow_count = slow_in_flight.clone();
        let name = name.to_owned();
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let conn_tasks = tasks.clone();
        let silences = Arc::new(std::sync::Mutex::new(Vec::new()));
        let conn_silences = silences.clone();
        let h2_max_streams = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let max_streams = h2_max_streams.clone();
        let bulk_sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bulk_count = bulk_sent.clone();
        let (hold_handshakes, held) = tokio::sync::watch::channel(false);
        let hang_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conn_hang_all = hang_all.clone();
        let answer_status = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let conn_answer_status = answer_status.clone();
        let conn_burst = Arc::new(Burst::new());
        let paths = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let conn_paths = paths.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn_id = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let guard = OpenGuard(open_count.clone());
                let acceptor = acceptor.clone();
                let name = name.clone();
                let slow_count = slow_count.clone();
                let bulk_count = bulk_count.clone();
                let burst = conn_burst.clone();
                let hang_all = conn_hang_all.clone();
                let answer_status = conn_answer_status.clone();
                let paths = conn_paths.clone();
                let mut held = held.clone();
                let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
                conn_silences.lock().unwrap().push(silent.clone());
                let max_streams = max_streams.load(std::sync::atomic::Ordering::SeqCst);
                let conn = tokio::spawn(async move {
                    let _open = guard;
                    let _ = held.wait_for(|held| !*held).await;
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let seen = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| fingerprint(c.as_ref()));
                    let io = Silenceable {
                        io: tls,
                        silent: silent.clone(),
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            let name = name.clone();
                            let sni = sni.clone();
                            let slow_count = slow_count.clone();
                            let bulk_count = bulk_count.clone();
                            let silent = silent.clone();
                            let burst = burst.clone();
                            let hang_all = hang_all.clone();
                            let answer_status = answer_status.clone();
                            *paths
                                .lock()
                                .unwrap()
                                .entry(req.uri().path().to_owned())
                                .or_insert(0) += 1;
                            async move {
                                // `/hang` (any request, while `hang_all`):
                                // counted with `/slow` while being answered,
                                // and never answered: the count drops only
                                // when the proxy abandons it.
                                if req.uri().path() == "/hang"
                                    || hang_all.load(std::sync::atomic::Ordering::SeqCst)
                                {
                                    slow_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    let _answering = OpenGuard(slow_count.clone());
                                    std::future::pending::<()>().await;
                                }
                                // `…/go-silent`: this connection falls
                                // silent and the request is never answered.
                                if req.uri().path().ends_with("/go-silent") {
                                    silent.store(true, std::sync::atomic::Ordering::SeqCst);
                                    std::future::pending::<()>().await;
                                }
                                // `…/echo`: the request body back as it
                                // comes, piece by piece, before it ends (a
                                // gRPC bidirectional call's shape).
                                if req.uri().path().ends_with("/echo") {
                                    let echo = futures_util::stream::unfold(
                                        req.into_body(),
                                        |mut body| async move {
                                            let frame = body.frame().await?.ok()?;
                                            Some((Ok(frame), body))
                                        },
                                    );
                                    let echo = http_body_util::StreamBody::new(echo).boxed();
                                    return Ok(http::Response::new(echo));
                                }
                                // `…/echo-once`: the request body's first
                                // piece back, then nothing: what comes next
                                // is taken and never answered (a
                                // bidirectional backend that hangs).
                                if req.uri().path().ends_with("/echo-once") {
                                    let echo = futures_util::stream::unfold(
                                        Some(req.into_body()),
                                        |body| async move {
                                            let mut body = body?;
                                            let first = body.frame().await?.ok()?;
                                            tokio::spawn(async move {
                                                while let Some(Ok(_)) = body.frame().await {}
                                            });
                                            Some((Ok(first), None))
                                        },
                                    );
                                    let echo = futures_util::StreamExt::chain(
                                        echo,
                                        futures_util::stream::pending(),
                                    );
                                    let echo = http_body_util::StreamBody::new(echo).boxed();
                                    return Ok(http::Response::new(echo));
                                }
                                let trailers = req.uri().path().contains("/trailers");
                                // `…/endless`: the head, then a body that
                                // never comes.
                                let endless = req.uri().path().ends_with("/endless");
                                let number_after = |marker: &str| {
                                    req.uri()
                                        .path()
                                        .split_once(marker)
                                        .and_then(|(_, n)| n.parse::<usize>().ok())
                                };
                                let fat_head = number_after("/fat-head/");
                                let many_headers = number_after("/many-headers/");
                                // `…/mebibytes/N`: a body of N MiB, in
                                // 64 KiB pieces, counted as they go.
                                let mebibytes = number_after("/mebibytes/");
                                if req.uri().path() == "/slow" {
                                    slow_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    let _answering = OpenGuard(slow_count.clone());
                                    tokio::time::sleep(Duration::from_secs(2)).await;
                                }
                                // `/burst/N…`: held until N such requests
                                // wait at once (see `Burst`).
                                if let Some(rest) = req.uri().path().strip_prefix("/burst/") {
                                    let n = rest.split('/').next().and_then(|n| n.parse().ok());
                                    let Some(n) = n else {
                                        panic!("{}: /burst/N…, N a count", req.uri().path());
                                    };
                                    if let Err(came) = burst.gather(n).await {
                                        let why = format!(
                                            "burst of {n}: only {came} at once within {} s",
                                            BURST_DEADLINE.as_secs()
                                        );
                                        let mut resp = http::Response::new(
                                            Full::new(Bytes::from(why)).boxed(),
                                        );
                                        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                        return Ok(resp);
                                    }
                                }
                                let headers: serde_json::Map<String, serde_json::Value> = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                                    .collect();
                                // Names sent more than once, with every value
                                // in order (`headers` keeps the last).
                                let repeated: serde_json::Map<String, serde_json::Value> = req
                                    .headers()
                                    .keys()
                                    .filter(|k| req.headers().get_all(*k).iter().count() > 1)
                                    .map(|k| {
                                        let all: Vec<&str> = req
                                            .headers()
                                            .get_all(k)
                                            .iter()
                                            .map(|v| v.to_str().unwrap_or(""))
                                            .collect();
                                        (k.to_string(), all.into())
                                    })
                                    .collect();
                                let mut body = serde_json::json!({
                                    "backend": name,
                                    "path": req.uri().path(),
                                    // HTTP/2's `:authority` (absent on HTTP/1.1).
                                    "authority": req.uri().authority().map(|a| a.as_str()),
                                    "version": format!("{:?}", req.version()),
                                    "client_cert_fingerprint": seen,
                                    "headers": headers,
                                    "repeated": repeated,
                                    "connection": conn_id,
                                    "sni": sni,
                                });
                                if req.uri().path().ends_with("/upload") {
                                    // Like most applications: the whole body
                                    // is read before the answer.
                                    let got = req.into_body().collect().await;
                                    if let Some(t) = got.as_ref().ok().and_then(|b| b.trailers()) {
                                        body["trailers"] = t
                                            .iter()
                                            .map(|(k, v)| {
                                                (k.to_string(), v.to_str().unwrap_or("").into())
                                            })
                                            .collect::<serde_json::Map<_, _>>()
                                            .into();
                                    }
                                    let got = got.map(|b| b.to_bytes());
                                    body["body_bytes"] = got.as_ref().map(|b| b.len()).ok().into();
                                    // A small body as it came (lossy UTF-8).
                                    if let Ok(b) = &got
                                        && b.len() <= 64 * 1024
                                    {
                                        body["body"] = String::from_utf8_lossy(b).into();
                                    }
                                }
                                // `…/trailers…`: the answer ends as a gRPC
                                // one does, with grpc-status in trailers.
                                let trailers_announced = trailers;
                                let trailers = trailers.then(|| {
                                    let mut t = http::HeaderMap::new();
                                    t.insert("grpc-status", http::HeaderValue::from_static("0"));
                                    t.insert(
                                        "grpc-message",
                                        http::HeaderValue::from_static("done"),
                                    );
                                    // No trailer may carry framing.
                                    t.insert(
                                        "content-length",
                                        http::HeaderValue::from_static("99"),
                                    );
                                    t
                                });
                                let body = Bytes::from(body.to_string());
                                let mut resp = http::Response::new(if endless {
                                    http_body_util::StreamBody::new(futures_util::stream::pending())
                                        .boxed()
                                } else if let Some(n) = mebibytes {
                                    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
                                    let pieces = futures_util::StreamExt::map(
                                        futures_util::stream::iter(0..n * 16),
                                        move |_| {
                                            bulk_count.fetch_add(
                                                piece.len(),
                                                std::sync::atomic::Ordering::SeqCst,
                                            );
                                            Ok(hyper::body::Frame::data(piece.clone()))
                                        },
                                    );
                                    http_body_util::StreamBody::new(pieces).boxed()
                                } else if let Some(t) = trailers {
                                    // Of no declared length, so that over
                                    // HTTP/1.1 it is chunked and can end
                                    // with a trailer section.
                                    http_body_util::StreamBody::new(futures_util::stream::iter([
                                        Ok(hyper::body::Frame::data(body)),
                                        Ok(hyper::body::Frame::trailers(t)),
                                    ]))
                                    .boxed()
                                } else {
                                    Full::new(body).boxed()
                                });
                                if trailers_announced {
                                    // hyper's HTTP/1.1 server writes only
                                    // announced trailer fields (and only to
                                    // a client that sent `TE: trailers`).
                                    resp.headers_mut().insert(
                                        "trailer",
                                        http::HeaderValue::from_static(
                                            "grpc-status, grpc-message, content-length",
                                        ),
                                    );
                                }
                                // `…/fat-head/N`: a response head of about N bytes.
                                if let Some(n) = fat_head {
                                    resp.headers_mut().insert(
                                        "x-fat",
                                        http::HeaderValue::from_str(&"f".repeat(n)).unwrap(),
                                    );
                                }
                                // `…/many-headers/N`: N more header fields.
                                for i in 0..many_headers.unwrap_or(0) {
                                    resp.headers_mut()
                                        .append("x-many", http::HeaderValue::from(i));
                                }
                                let status =
                                    answer_status.load(std::sync::atomic::Ordering::SeqCst);
                                if status != 0 {
                                    *resp.status_mut() =
                                        http::StatusCode::from_u16(status).unwrap();
                                }
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let mut server =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // Windows as large as gRPC servers' grown ones: an
                    // HTTP/2 client may fill the kernel's buffers.
                    server
                        .http2()
                        .initial_stream_window_size(16 << 20)
                        .initial_connection_window_size(16 << 20);
                    if max_streams > 0 {
                        server.http2().max_concurrent_streams(max_streams);
                    }
                    let _ = server.serve_connection(TokioIo::new(io), svc).await;
                });
                conn_tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Backend {
            addr,
            accepted,
            open,
            slow_in_flight,
            tasks,
            silences,
            h2_max_streams,
            bulk_sent,
            hold_handshakes,
            hang_all,
            answer_status,
            paths,
        }
    }
}

/// A listening socket on 127.0.0.1 for a raw TLS backend, and its
/// acceptor, serving `pair` and offering `alpn`.
pub async fn tls_listener(
    pair: &TestPair,
    alpn: &[u8],
) -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor) {
    tls_listener_at("127.0.0.1:0", pair, alpn).await
}

/// A raw HTTP/2 backend over TLS on 127.0.0.1 serving `pair`: every stream
/// of every connection is handed to `answer`, called on the connection's
/// task (one that must wait, or keep sending, spawns a task of its own:
/// the connection is driven by the loop that calls it). Its address.
pub async fn h2_backend<F>(pair: &TestPair, answer: F) -> SocketAddr
where
    F: Fn(http::Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) + Clone + Send + 'static,
{
    h2_backend_at("127.0.0.1:0", pair, answer).await
}

/// [`h2_backend`] bound at `at` (`127.0.0.2:0`, or a port that pods on
/// other addresses share for one name).
pub async fn h2_backend_at<F>(at: &str, pair: &TestPair, answer: F) -> SocketAddr
where
    F: Fn(http::Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) + Clone + Send + 'static,
{
    let (addr, _) = h2_conns(at, pair, move |mut conn, _| {
        let answer = answer.clone();
        async move {
            while let Some(Ok((req, respond))) = conn.accept().await {
                answer(req, respond);
            }
        }
    })
    .await;
    addr
}

/// A server connection of an [`h2_conns`] backend, past its handshakes.
pub type H2ServerConn =
    h2::server::Connection<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Bytes>;

/// An HTTP/2 backend (the h2 crate) over TLS at `at` serving `pair`: each
/// connection it accepts is numbered (from 0) and, once its TLS and
/// HTTP/2 handshakes are done, handed with its number to `serve`, on a
/// task of its own. Its address and its accepted connections.
pub async fn h2_conns<F, Fut>(
    at: &str,
    pair: &TestPair,
    serve: F,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(H2ServerConn, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, acceptor) = tls_listener_at(at, pair, b"h2").await;
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(conn) = h2::server::handshake(tls).await else {
                    return;
                };
                serve(conn, n).await;
            });
        }
    });
    (addr, accepted)
}

/// [`tls_listener`] bound at `at` (`127.0.0.2:0`, or a port that pods on
/// other addresses share for one name).
pub async fn tls_listener_at(
    at: &str,
    pair: &TestPair,
    alpn: &[u8],
) -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor) {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    (listener, acceptor)
}
