//! send_timeout counts what a TLS stream writes to its socket, also in a write or flush that still waits.
//!
//! rustls holds up to 64 KiB of records; tokio-rustls's flush (and its
//! write, once that buffer is full) writes some of them and then waits.
//! These tests put the proxy's stream types over real TCP on 127.0.0.1
//! with real TLS, the writer's send buffer and the reader's receive
//! buffer fixed small: loopback's own grow to megabytes and would take a
//! whole body, hiding what waits in rustls.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotproxy::proxy::client_io::ClientIo;
use hotproxy::proxy::conn::Activity;
use hotproxy::proxy::relay::SendBound;
use hotproxy::tls::sent::Counted;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::*;

/// What the writer sends: 6.4 s at the reader's 40 KiB/s.
const BODY: usize = 256 * 1024;

/// The writer's bound: 1 s, in which the reader takes 40 KiB, more than
/// SPEC's floor (16 KiB), less than what rustls may hold (64 KiB).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A TCP connection on 127.0.0.1 between a writer and a reader, the
/// writer's send buffer and the reader's receive buffer fixed at 4 KiB
/// (the kernel doubles them): the writer's socket takes more as the
/// reader reads, a few KiB at a time. `writer_accepts`: the writer's end
/// is the accepted one. The writer's end, then the reader's.
async fn connection(writer_accepts: bool) -> (TcpStream, TcpStream) {
    let (listening, connecting) = (TcpSocket::new_v4().unwrap(), TcpSocket::new_v4().unwrap());
    let (writer, reader) = match writer_accepts {
        true => (&listening, &connecting),
        false => (&connecting, &listening),
    };
    writer.set_send_buffer_size(4096).unwrap();
    reader.set_recv_buffer_size(4096).unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listening.listen(1).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (accepted, connected) = tokio::join!(listener.accept(), connecting.connect(addr));
    let (accepted, connected) = (accepted.unwrap().0, connected.unwrap());
    match writer_accepts {
        true => (accepted, connected),
        false => (connected, accepted),
    }
}

/// A server config for `pair`, and a client config trusting `ca`.
fn configs(
    ca: &TestCa,
    pair: &TestPair,
) -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    let client = client_config(&ca.cert_pem, None, &[]);
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(client),
    )
}

fn name() -> ServerName<'static> {
    ServerName::try_from("a.example.com").unwrap()
}

/// The proxy's client stream (`ClientIo`) writing `BODY` with
/// send_timeout 1 s to a client that takes 40 KiB/s from its socket: the
/// result of the writes, flush and shutdown, and the bytes the client
/// read to the close. `stop_after`: the client stops reading after that
/// many bytes from its socket.
async fn to_a_paced_client(stop_after: Option<usize>) -> (std::io::Result<()>, usize) {
    let ca = TestCa::new("send progress CA");
    let (acceptor, connector) = configs(&ca, &ca.server_pair(&["a.example.com"]));
    let (server, client) = connection(true).await;
    let client = async move {
        let paced = match stop_after {
            Some(n) => Paced::stopping_after(client, n),
            None => Paced::new(client),
        };
        let mut tls = connector.connect(name(), paced).await.unwrap();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got).await;
        got.len()
    };
    let server = async move {
        let tls = acceptor.accept(Counted::new(server)).await.unwrap();
        let activity = Activity::new(Instant::now(), false);
        let mut io = ClientIo::new(Box::new(tls), activity, false, SEND_TIMEOUT, Box::new(()));
        let body = vec![b'b'; BODY];
        let sent = async {
            io.write_all(&body).await?;
            io.flush().await?;
            io.shutdown().await
        };
        let sent = sent.await;
        drop(io);
        sent
    };
    // The client on a task of its own: once it stops reading it waits
    // for ever, and the server's side decides.
    let client = tokio::spawn(client);
    let sent = within_deadline("the server's writes", server).await;
    let got = match stop_after {
        Some(_) => 0,
        None => within_deadline("the client's reads", client).await.unwrap(),
    };
    (sent, got)
}

/// A client taking 40 KiB/s without a pause gets all 256 KiB: each wait
/// that wrote some of rustls's records to the socket is progress. The
/// flush at the end used to be cut 1 s after it began, rustls holding up
/// to 64 KiB the client would take in 1.6 s.
#[tokio::test]
async fn a_client_taking_bytes_steadily_is_never_cut() {
    let (sent, got) = to_a_paced_client(None).await;
    sent.expect("written, flushed and shut down");
    assert_eq!(got, BODY, "the bytes the client read");
}

/// A client that stops reading is still cut by send_timeout.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut() {
    let (sent, _) = to_a_paced_client(Some(64 * 1024)).await;
    let e = sent.expect_err("cut");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
}

/// A tunnel's upstream stream (`SendBound`, over the proxy's TLS client
/// stream) writing 256 KiB and shutting down, to an upstream that takes
/// 40 KiB/s: all of it arrives, the wait of the shutdown that wrote
/// rustls's last records counted as progress.
#[tokio::test]
async fn an_upstream_taking_bytes_steadily_gets_all_of_a_tunnel() {
    let ca = TestCa::new("send progress CA");
    let (acceptor, connector) = configs(&ca, &ca.server_pair(&["a.example.com"]));
    let (proxy, upstream) = connection(false).await;
    let upstream = async move {
        let mut tls = acceptor.accept(Paced::new(upstream)).await.unwrap();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got).await;
        got.len()
    };
    let proxy = async move {
        let tls = connector
            .connect(name(), Counted::new(proxy))
            .await
            .unwrap();
        let mut io = SendBound::new(tls, SEND_TIMEOUT, "the upstream stopped reading");
        io.write_all(&vec![b't'; BODY]).await?;
        io.shutdown().await?;
        // Closed once the upstream has read to the end (a close with its
        // session tickets unread would be a reset, dropping what it had
        // not read yet).
        let _ = io.read_to_end(&mut Vec::new()).await;
        Ok::<_, std::io::Error>(())
    };
    let (sent, got) = within_deadline("the tunnel", async { tokio::join!(proxy, upstream) }).await;
    sent.expect("written and shut down");
    assert_eq!(got, BODY, "the bytes the upstream read");
}
