//! Tests of an HTTP/1.1 connection over TLS whose close_notify waits on a full socket: never pooled, never ready.

use std::os::fd::AsFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::*;

/// An HTTP/1.1 connection over TLS 1.3 to an upstream on 127.0.0.2 (its
/// proxy-side socket's send buffer small), the upstream's side of it, a
/// second handle on the proxy side's socket (non-blocking, as tokio set
/// it: read and written around TLS), and that socket's address.
struct Scene {
    c: Box<H1>,
    server: TlsStream<TcpStream>,
    raw: std::net::TcpStream,
    local: std::net::SocketAddr,
}

async fn scene() -> Scene {
    let (server_config, client_config) = tls_configs();
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    socket2::SockRef::from(&tcp)
        .set_send_buffer_size(4096)
        .unwrap();
    let raw = std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned().unwrap());
    let (accepted, _) = listener.accept().await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let (tls, server) = tokio::join!(
        tokio_rustls::TlsConnector::from(client_config).connect(name, Counted::new(tcp)),
        tokio_rustls::TlsAcceptor::from(server_config).accept(accepted),
    );
    let d = Dialled {
        io: UpstreamIo::new(MaybeTls::Tls(Box::new(tls.unwrap())), None),
        h2: false,
    };
    Scene {
        c: Box::new(H1::handshake(d, 0).await.unwrap()),
        server: server.unwrap(),
        raw,
        local,
    }
}

/// A TLS 1.3 server config for `localhost` (self-signed, made now), and a
/// client config that trusts it.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = pair.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
    let provider = crate::tls::provider::get();
    let tls13 = &[&rustls::version::TLS13];
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(tls13)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(tls13)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

impl Scene {
    /// A `GET` sent; the upstream reads its head and answers with the
    /// response head `head`: the response.
    async fn get(&mut self, head: &[u8]) -> Response<Incoming> {
        let req = http::Request::get("/")
            .body(crate::proxy::body::ClientBody::empty())
            .unwrap();
        let server = &mut self.server;
        let answer = async {
            let mut read = Vec::new();
            while !read.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                assert_eq!(server.read(&mut b).await.unwrap(), 1, "no request");
                read.push(b[0]);
            }
            server.write_all(head).await.unwrap();
            server.flush().await.unwrap();
        };
        let (resp, ()) = tokio::join!(self.c.send(req), answer);
        resp.map_err(|e| e.into_error()).expect("answered")
    }

    /// The response's body to its end, driving the connection meanwhile
    /// (as `LeasedBody` does): what it held.
    async fn read_body(&mut self, resp: Response<Incoming>) -> Vec<u8> {
        let mut body = resp.into_body();
        let mut read = Vec::new();
        std::future::poll_fn(|cx| {
            self.c.poll_conn(cx);
            loop {
                match hyper::body::Body::poll_frame(Pin::new(&mut body), cx) {
                    Poll::Ready(Some(frame)) => {
                        read.extend_from_slice(&frame.unwrap().into_data().unwrap());
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        read
    }

    /// The proxy side's send buffer filled until the socket takes no more
    /// (the upstream reads nothing).
    fn fill(&self) {
        let chunk = [0u8; 64 * 1024];
        while std::io::Write::write(&mut &self.raw, &chunk).is_ok() {}
    }
}

/// A TLS upstream (127.0.0.2) that answers `Connection: close` and then
/// reads nothing more, its socket open: hyper shuts the connection down
/// as the response ends, and the close_notify finds the socket's send
/// buffer full (here filled through a second handle on the socket once
/// the response is in, before hyper reads its end; in production by a
/// request body the upstream did not read, all of it given to the
/// kernel). hyper's shutdown waits on the socket; to `Pool::put` the
/// connection was still open (`conn` kept) and its last write and flush
/// had gone through (not `unflushed`): it was pooled, and the next request
/// to take it waited in `H1::ready` for that write for as long as the
/// upstream neither read nor closed (up to `request_timeout`), a live
/// connection pushed out of a full pool for it.
#[tokio::test]
async fn a_connection_whose_close_notify_waits_on_its_socket_is_not_pooled() {
    let mut s = scene().await;
    let resp = s
        .get(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n")
        .await;
    // The body, its record in the client's socket before hyper reads it;
    // then the upstream reads no more, and the send buffer is filled.
    s.server.write_all(b"ok").await.unwrap();
    s.server.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = s.raw.peek(&mut [0u8; 1]) {
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        assert!(Instant::now() < deadline, "the body never arrived");
        tokio::task::yield_now().await;
    }
    s.fill();
    // hyper shuts the connection down in the poll that ends the body.
    assert_eq!(s.read_body(resp).await, b"ok");
    // The scene: the dispatcher waits on its close_notify, and the
    // connection's last write and flush went through.
    assert!(s.c.conn.is_some(), "the close_notify went out");
    assert!(!s.c.head.unflushed());
    let pool = crate::upstream::pool::Pool::new(4, Duration::from_secs(60));
    pool.put(s.c);
    assert_eq!(pool.idle(), 0, "a connection shutting down was pooled");
}

/// A used TLS connection, idle, whose upstream closes its side
/// (close_notify, then a FIN) without reading what the proxy side's
/// socket still holds, the send buffer full: taken for a request, hyper
/// reads the close and shuts down, its close_notify waiting on the
/// socket. hyper's `SendRequest` was ready all the same (it asked for
/// the next request while idle), so `ready` handed it over: the request
/// sat queued on a closing dispatcher, answered (sent back unwritten)
/// only once that write went through or failed, for as long as the
/// upstream neither read nor closed up to `request_timeout` (a `504`
/// counted against the endpoint). A closing connection is not ready.
#[tokio::test]
async fn a_connection_closing_as_it_is_taken_is_not_ready() {
    let mut s = scene().await;
    // One request, answered keep-alive, its (empty) body to the end.
    let resp = s.get(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    assert_eq!(s.read_body(resp).await, b"");
    s.c.idle_since = Some(Instant::now());
    // The upstream closes its side, and the FIN is in (CLOSE_WAIT); it
    // reads no more, and the socket's send buffer is filled.
    s.server.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !close_wait(s.local) {
        assert!(Instant::now() < deadline, "the FIN never arrived");
        tokio::task::yield_now().await;
    }
    s.fill();
    // The runtime polls its IO driver: the socket's readiness is in.
    tokio::task::yield_now().await;
    assert!(!s.c.ready().await, "a closing connection was ready");
    assert!(s.c.conn.is_some(), "the scene: the close_notify went out");
}
