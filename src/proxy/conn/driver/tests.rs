//! The driver on real TLS connections over loopback: what a close from outside that is already due does to the bytes a client has sent.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::server::TlsStream;

use super::{Driver, Ended, Outcome};
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::{Activity, Expiry};
use crate::proxy::lifetime::Over;
use crate::proxy::stall::Stalls;
use crate::tls::sent::Counted;

/// Long enough never to fall due in a test: only the signals close.
pub(super) const LONG: Duration = Duration::from_secs(60);

/// `signal` as a driver's `also_close`: the client no longer admitted.
pub(super) fn rules_changed(
    signal: impl std::future::Future<Output = ()>,
) -> impl futures_util::Stream<Item = Over> {
    futures_util::stream::once(async {
        signal.await;
        Over::Revoked
    })
}

/// A TLS 1.3 server config for `localhost` (self-signed), and a client
/// config that trusts it.
pub(super) fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
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
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(tls13)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// What a client sends after its handshake: `bytes` in one write once
/// the server tells it to (`go`); `sent` is told once they are written.
/// Then `trickle`, a byte every 20 ms, until a write fails; or, if not
/// empty, `after_goaway` once a `GOAWAY` has come (HTTP/2: sent after the
/// server's close began).
struct Later {
    go: oneshot::Receiver<()>,
    bytes: &'static [u8],
    sent: Option<std::sync::mpsc::Sender<()>>,
    trickle: &'static [u8],
    after_goaway: &'static [u8],
}

impl Later {
    fn on(go: oneshot::Receiver<()>, bytes: &'static [u8]) -> Option<Later> {
        Some(Later {
            go,
            bytes,
            sent: None,
            trickle: b"",
            after_goaway: b"",
        })
    }
}

/// A client (a thread of its own) that sends `first` in the same write
/// as its handshake's last flight (its Finished), then `later`, then
/// reads all it is sent until the close. Returns the server's end once
/// the handshake is done there and `first` is on its socket.
async fn client_sending(
    first: &'static [u8],
    later: Option<Later>,
) -> (
    TlsStream<Counted<TcpStream>>,
    SocketAddr,
    std::thread::JoinHandle<Vec<u8>>,
) {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, written) = oneshot::channel();
    let thread = std::thread::spawn(move || {
        let mut tls =
            rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        // Held until the handshake ends, then sent with its Finished.
        tls.writer().write_all(first).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        while tls.wants_write() {
            tls.write_tls(&mut tcp).unwrap();
        }
        sent.send(()).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        let mut got = Vec::new();
        if let Some(later) = later {
            let _ = later.go.blocking_recv();
            // The server may have closed already: what it sent is read below.
            let _ = stream.write_all(later.bytes);
            let _ = stream.flush();
            if let Some(sent) = later.sent {
                let _ = sent.send(());
            }
            for byte in later.trickle {
                std::thread::sleep(Duration::from_millis(20));
                if stream
                    .write_all(&[*byte])
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    break;
                }
            }
            if !later.after_goaway.is_empty() {
                let mut buf = [0; 4096];
                while !frames(&got).iter().any(|f| f.0 == GOAWAY) {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let _ = stream.write_all(later.after_goaway);
                let _ = stream.flush();
            }
        }
        // A close without close_notify ends it with an error: what came
        // before it is kept.
        let _ = stream.read_to_end(&mut got);
        got
    });
    let (tcp, peer) = listener.accept().await.unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server)
        .accept(Counted::new(tcp))
        .await
        .unwrap();
    written.await.unwrap();
    (tls, peer, thread)
}

/// A client that sends `first` with its handshake, then `bytes` in one
/// write (then `trickle` and `after_goaway`, as [`Later`]'s) that is on
/// the server's socket, unread, as `revoked` fires: the runtime's one
/// thread waits in `revoked` until the client has written them, so a
/// driver that has it as `also_close` looks at it before the runtime
/// polls for I/O again.
pub(super) struct Unread<F> {
    pub(super) tls: TlsStream<Counted<TcpStream>>,
    pub(super) peer: SocketAddr,
    pub(super) client: std::thread::JoinHandle<Vec<u8>>,
    pub(super) revoked: F,
}

pub(super) async fn unread_at_signal(
    first: &'static [u8],
    bytes: &'static [u8],
    trickle: &'static [u8],
    after_goaway: &'static [u8],
) -> Unread<impl std::future::Future<Output = ()>> {
    let (go, told) = oneshot::channel();
    let (sent, written) = std::sync::mpsc::channel();
    let later = Some(Later {
        go: told,
        bytes,
        sent: Some(sent),
        trickle,
        after_goaway,
    });
    let (tls, peer, client) = client_sending(first, later).await;
    let revoked = async move {
        let _ = go.send(());
        written.recv().unwrap();
    };
    Unread {
        tls,
        peer,
        client,
        revoked,
    }
}

/// All the client read until the close, its thread joined off the
/// runtime's one thread.
pub(super) async fn received(client: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap()
}

/// A service answering `ok` to every request, each begun and ended on
/// `activity` as the proxy's handler does, and (HTTP/1.1) `Connection:
/// close` on the last, as its listeners and the admin listener do.
pub(super) fn answering_ok(
    activity: &Arc<Activity>,
) -> impl Fn(Request<Incoming>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> + Clone {
    let activity = activity.clone();
    move |_req| {
        drop(activity.begin(false));
        ready(Ok(ok(&activity)))
    }
}

/// `200 ok`, saying `Connection: close` when `activity` makes it the
/// connection's last ([`Activity::answers_last`]), as the proxy's
/// services do.
pub(super) fn ok(activity: &Activity) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
    if activity.answers_last() {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// HTTP/2 frame types.
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
pub(super) const GOAWAY: u8 = 0x7;

/// The HTTP/2 client preface and an empty SETTINGS frame.
pub(super) const PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// HEADERS on stream 1, END_STREAM | END_HEADERS: GET https://localhost/.
pub(super) const GET: &[u8] = b"\x00\x00\x0e\x01\x05\x00\x00\x00\x01\x82\x87\x84\x01\x09localhost";

/// A driver of a plain listener (no stalls, nothing from a queue) whose
/// timeouts are all `LONG`, watching `signals`.
pub(super) fn test_driver<'a>(
    activity: &'a Activity,
    peer: SocketAddr,
    signals: &Signals,
) -> Driver<'a> {
    Driver {
        name: "test",
        peer,
        activity,
        header_read_timeout: LONG,
        idle_timeout: LONG,
        shutdown: signals.closing.subscribe(),
        also_close_grace: LONG,
        process: Some(signals.process.subscribe()),
        answer_first: false,
        handed_over: None,
        answer_unbegun: false,
        stalls: None,
        send_timeout: LONG,
    }
}

/// Signals for a driver: the listener's `closing` and the process's shutdown.
pub(super) struct Signals {
    pub(super) closing: watch::Sender<bool>,
    pub(super) process: watch::Sender<bool>,
}

impl Signals {
    pub(super) fn new(closing: bool, process: bool) -> Signals {
        Signals {
            closing: watch::channel(closing).0,
            process: watch::channel(process).0,
        }
    }
}

/// Runs an HTTP/1.1 connection on `tls` under a driver watching
/// `signals` (and `also_close`), each request answered `200 ok`: how it
/// ended.
async fn drive_h1(
    tls: TlsStream<Counted<TcpStream>>,
    peer: SocketAddr,
    signals: &Signals,
    also_close: impl std::future::Future<Output = ()>,
) -> Outcome<hyper::Error> {
    let activity = Activity::new(Instant::now(), true);
    let svc = hyper::service::service_fn(answering_ok(&activity));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
    let driver = test_driver(&activity, peer, signals);
    driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(also_close))
        .await
}

/// A request that came in the same write as the client's TLS Finished
/// is served when the shutdown (the listener's `closing` and the
/// process's signal) is already set as the driver starts: it was sent
/// before the signal (SPEC §1 drops a request completed after it). The
/// driver's first `select!` picked its branches in random order, and in
/// five orders of seven a signal's branch ran before hyper had parsed the
/// head waiting in its buffer: no request yet, closed at once. The
/// driver alone, its signal set after the handshake ended: in the proxy,
/// a listener's `closing` set already when the handshake ends closes the
/// connection before the driver starts (`connection`, SPEC §3), so here
/// it stands for a removal between the handshake's end and the driver's
/// first poll, once the request had come.
#[tokio::test]
async fn a_request_sent_with_the_handshake_is_served_when_the_signal_is_already_set() {
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (i, (closing, process)) in [(true, true), (true, false), (false, true)]
        .into_iter()
        .cycle()
        .take(21)
        .enumerate()
    {
        let (tls, peer, client) = client_sending(GET, None).await;
        let signals = Signals::new(closing, process);
        let outcome = drive_h1(tls, peer, &signals, std::future::pending()).await;
        let got = client.join().unwrap();
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("ok"),
            "try {i} (closing {closing}, process {process}): {got:?}"
        );
        assert_eq!(outcome.by, Ended::ByUs);
    }
}

/// A connection its admission rules no longer admit (`also_close`: a
/// CRL revoking its client, `allow_from`, client auth changed), part
/// way into its first HTTP/1.1 head, is closed at once, and the rest of
/// its head, sent after, is not served. `also_close` only asked hyper
/// for a graceful close, which closes an HTTP/1.1 connection only while
/// its read buffer is empty: the revoked client's head, completed, was
/// answered.
#[tokio::test]
async fn a_connection_no_longer_admitted_with_half_a_first_head_is_closed_at_once() {
    let (go, told) = oneshot::channel();
    let later = Later::on(told, b"st: localhost\r\n\r\n");
    let (tls, peer, client) = client_sending(b"GET / HTTP/1.1\r\nHo", later).await;
    let signals = Signals::new(false, false);
    // Fires at the driver's first look; the client sends the rest then.
    let revoked = async move {
        let _ = go.send(());
    };
    let outcome = drive_h1(tls, peer, &signals, revoked).await;
    let got = client.join().unwrap();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(outcome.by, Ended::ByUs);
}

/// As [`a_connection_no_longer_admitted_with_half_a_first_head_is_closed_at_once`],
/// on HTTP/2: a client that has sent its preface and SETTINGS but no
/// stream when `also_close` fires is closed at once, and the stream it
/// opens after is not answered. hyper's graceful close sent `GOAWAY`
/// (2^31-1) and a PING, and took the stream, sent before the client
/// answered the PING: the revoked client's request was served.
#[tokio::test]
async fn an_h2_connection_no_longer_admitted_before_its_first_stream_is_closed_at_once() {
    let (go, told) = oneshot::channel();
    let (tls, peer, client) = client_sending(PREFACE, Later::on(told, GET)).await;
    let activity = Activity::new(Instant::now(), true);
    let svc = hyper::service::service_fn(answering_ok(&activity));
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), svc);
    let signals = Signals::new(false, false);
    let driver = test_driver(&activity, peer, &signals);
    let revoked = async move {
        let _ = go.send(());
    };
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    let got = client.join().unwrap();
    // The frames sent: no HEADERS (type 1), no answer to stream 1.
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        assert_ne!(got[at + 3], 1, "stream 1 answered: {got:?}");
        at += 9 + len;
    }
    assert_eq!(outcome.by, Ended::ByUs);
}

/// The HTTP/2 frames in `got` (a server's bytes): type, stream, payload.
pub(super) fn frames(got: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        let stream = u32::from_be_bytes([got[at + 5], got[at + 6], got[at + 7], got[at + 8]]);
        let end = (at + 9 + len).min(got.len());
        out.push((got[at + 3], stream & 0x7fff_ffff, &got[at + 9..end]));
        at += 9 + len;
    }
    out
}

/// Whether `frames` answer `stream` `:status 200`: a HEADERS frame on it
/// whose block begins with the static table's entry 8 (0x88).
pub(super) fn ok_on(frames: &[(u8, u32, &[u8])], stream: u32) -> bool {
    frames
        .iter()
        .any(|&(kind, on, block)| kind == HEADERS && on == stream && block.first() == Some(&0x88))
}

/// An HTTP/2 client whose preface, SETTINGS and first HEADERS
/// (END_STREAM) came in one write before `also_close` fired, whole on
/// the server's socket but not read yet (the runtime had not polled for
/// I/O since they arrived: the signal fires within the same poll), is
/// served as one whose request had begun: `HEADERS` `:status 200` on
/// stream 1. The driver saw no request and closed it at once, as one
/// that had sent nothing, with a `GOAWAY` naming no stream processed.
#[tokio::test]
async fn an_h2_request_unread_on_the_socket_at_the_signal_is_served() {
    const ALL: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\
        \x00\x00\x0e\x01\x05\x00\x00\x00\x01\x82\x87\x84\x01\x09localhost";
    assert_eq!(ALL, [PREFACE, GET].concat());
    let (outcome, got) = h2_closed_with_bytes_unread(b"", ALL, b"").await;
    let frames = frames(&got);
    let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert!(
        ok_on(&frames, 1),
        "no :status 200 on stream 1; frames (type, stream): {kinds:?}"
    );
    assert_eq!(outcome.by, Ended::ByUs);
}

/// An HTTP/1.1 client whose `bytes` are on the server's socket unread as
/// `also_close` fires, then `trickle` (as [`Later`]'s), under a driver
/// whose `header_read_timeout` is `header_read`: how the connection
/// ended, how long from the accept, and what the client was sent. Each
/// request is answered `ok` once the service has waited once, as a
/// proxied one does on its upstream.
async fn h1_closed_with_bytes_unread(
    bytes: &'static [u8],
    trickle: &'static [u8],
    header_read: Duration,
) -> (Outcome<hyper::Error>, Duration, Vec<u8>) {
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(b"", bytes, trickle, b"").await;
    let accepted = Instant::now();
    let activity = Activity::new(accepted, true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), true, LONG, Box::new(()));
    let answering = activity.clone();
    let svc = hyper::service::service_fn(move |_req| {
        let in_flight = answering.begin(false);
        let resp = ok(&answering);
        async move {
            tokio::task::yield_now().await;
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let driver = Driver {
        header_read_timeout: header_read,
        ..test_driver(&activity, peer, &signals)
    };
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    let took = accepted.elapsed();
    (outcome, took, received(client).await)
}

/// As [`an_h2_request_unread_on_the_socket_at_the_signal_is_served`], on
/// HTTP/1.1: a whole first head written just before `also_close` fires,
/// on the server's socket but not read yet, is answered (`200`,
/// `Connection: close`) rather than closed unanswered as a connection
/// with no request yet. The answer waits once, as a proxied one does
/// (on its upstream): the close, asked for once the request has begun,
/// comes before the response head is written.
#[tokio::test]
async fn an_h1_request_unread_on_the_socket_at_the_signal_is_served() {
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (outcome, _, got) = h1_closed_with_bytes_unread(head, b"", LONG).await;
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    answered_last(&got);
    assert_eq!(outcome.by, Ended::ByUs);
}

/// As [`an_h1_request_unread_on_the_socket_at_the_signal_is_served`], the
/// bytes unread at the signal the first of a head the client then
/// trickles, a byte every 20 ms, never ending it: the close, graceful
/// for them, is still bounded by the first request's
/// `header_read_timeout` from the accept, not held open by the trickle.
#[tokio::test]
async fn an_h1_head_trickled_after_the_signal_is_closed_at_header_read_timeout() {
    const TRICKLE: &[u8] = b"ET / HTTP/1.1\r\nX-Trickle: \
        aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let header_read = Duration::from_millis(500);
    let (outcome, took, got) = h1_closed_with_bytes_unread(b"G", TRICKLE, header_read).await;
    // The trickle alone would last over two seconds.
    assert!(took >= header_read && took < header_read * 3, "{took:?}");
    assert_eq!(outcome.expired, Some(Expiry::HeaderRead));
    assert_eq!(outcome.by, Ended::ByUs);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// HTTP/1.1: an empty line (`\r\n`, which hyper skips before a head)
/// unread at the signal begins no request: the connection is closed at
/// once, and the head the client then sends, a byte every 20 ms after
/// the signal, is not answered. Any byte unread made the close graceful,
/// and the first request completed within header_read_timeout was
/// served, all of it sent after the signal.
#[tokio::test]
async fn an_h1_empty_line_unread_at_the_signal_is_closed_at_once() {
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (outcome, _, got) = h1_closed_with_bytes_unread(b"\r\n", head, LONG).await;
    assert_eq!(outcome.by, Ended::ByUs);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// HEADERS on stream 3, as [`GET`] on stream 1 (its HPACK adds nothing
/// to the table: the same block serves again).
const GET3: &[u8] = b"\x00\x00\x0e\x01\x05\x00\x00\x00\x03\x82\x87\x84\x01\x09localhost";

/// As the proxy's service (src/proxy/listener.rs): a stream opened once
/// `Activity::refuses` is reset `REFUSED_STREAM`, any other answered `ok`.
pub(super) fn answering_unless_refused(
    activity: &Arc<Activity>,
) -> impl Fn(Request<Incoming>) -> Ready<Result<Response<Full<Bytes>>, h2::Error>> + Clone {
    let activity = activity.clone();
    move |_req| {
        if activity.refuses() {
            return ready(Err(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        }
        drop(activity.begin(false));
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

/// An HTTP/2 client that sends `first` with its handshake, `bytes` in
/// one write on the server's socket unread as `also_close` fires (as in
/// [`an_h2_request_unread_on_the_socket_at_the_signal_is_served`]), and
/// `after` once a `GOAWAY` has come: how the connection ended, and the
/// frames it was sent.
async fn h2_closed_with_bytes_unread(
    first: &'static [u8],
    bytes: &'static [u8],
    after: &'static [u8],
) -> (Outcome<hyper::Error>, Vec<u8>) {
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(first, bytes, b"", after).await;
    let activity = Activity::new(Instant::now(), true);
    let stalls = Stalls::new();
    let io = ClientIo::new(Box::new(tls), activity.clone(), false, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_unless_refused(&activity));
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    // A graceful close ends soon: the client never answers its PING.
    let short = Duration::from_millis(500);
    let driver = Driver {
        stalls: Some((&*stalls, LONG)),
        header_read_timeout: short,
        send_timeout: short,
        ..test_driver(&activity, peer, &signals)
    };
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    let got = received(client).await;
    (outcome, got)
}

/// An HTTP/2 client with no stream yet whose bytes unread at the signal
/// (`also_close`: its certificate revoked, say) are WINDOW_UPDATE frames
/// alone is closed at once (`GOAWAY`), and the stream it opens once it
/// has that `GOAWAY` is not answered. Any byte unread made the close
/// graceful, and hyper's graceful close took new streams until its PING
/// was answered: the request, sent after the signal, was served.
#[tokio::test]
async fn an_h2_client_with_only_window_updates_unread_at_the_signal_is_closed_at_once() {
    const WINDOW_UPDATE: &[u8] = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01";
    let flood: &'static [u8] = WINDOW_UPDATE.repeat(200).leak();
    let (outcome, got) = h2_closed_with_bytes_unread(PREFACE, flood, GET).await;
    let frames = frames(&got);
    let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert!(kinds.contains(&(GOAWAY, 0)), "no GOAWAY: {kinds:?}");
    assert!(
        !frames.iter().any(|f| f.0 == HEADERS),
        "a stream answered; frames (type, stream): {kinds:?}"
    );
    assert_eq!(outcome.by, Ended::ByUs);
}

/// An HTTP/2 client whose first HEADERS is unread on the socket at the
/// signal has that stream served, and the stream it opens once it has
/// the graceful close's `GOAWAY`, after the signal, refused
/// (`RST_STREAM` `REFUSED_STREAM`), not served: any byte unread made the
/// close graceful with no other bound than hyper's, which took new
/// streams until its PING was answered.
#[tokio::test]
async fn an_h2_stream_opened_after_the_signal_is_refused_when_one_unread_at_it_is_served() {
    let (outcome, got) = h2_closed_with_bytes_unread(PREFACE, GET, GET3).await;
    let frames = frames(&got);
    let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert!(
        ok_on(&frames, 1),
        "no :status 200 on stream 1; frames (type, stream): {kinds:?}"
    );
    assert!(
        frames
            .iter()
            .any(|&(kind, stream, code)| kind == RST_STREAM && stream == 3 && code == [0, 0, 0, 7]),
        "stream 3 not refused; frames (type, stream): {kinds:?}"
    );
    assert!(
        !frames.iter().any(|f| f.0 == HEADERS && f.1 == 3),
        "stream 3 answered; frames (type, stream): {kinds:?}"
    );
    assert_eq!(outcome.by, Ended::ByUs);
}

/// An HTTP/1.1 client that sends `first` with its handshake (read before
/// the signal), `bytes` on the server's socket unread as `also_close`
/// fires, then `trickle` (as [`Later`]'s), each request answered as soon
/// as it is read: how the connection ended, and what the client was
/// sent. With `piled`, the runtime's one thread is held once the look is
/// over until all of `trickle` is on the socket, so that hyper reads it
/// in one go: requests the client pipelined after the signal.
pub(super) async fn h1_answered_at_once(
    first: &'static [u8],
    bytes: &'static [u8],
    trickle: &'static [u8],
    piled: bool,
) -> (Outcome<hyper::Error>, String) {
    use std::os::fd::AsFd;
    let Unread {
        tls,
        peer,
        client,
        revoked,
    } = unread_at_signal(first, bytes, trickle, b"").await;
    let socket = tls.get_ref().0.as_fd().try_clone_to_owned().unwrap();
    let activity = Activity::new(Instant::now(), true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), true, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_ok(&activity));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let driver = test_driver(&activity, peer, &signals);
    let revoked = async move {
        revoked.await;
        // Run once the driver's task, the look made, waits: a TLS 1.3
        // record per byte trickled (a 5-byte header, the byte, its
        // content type, a 16-byte tag).
        let all = 23 * trickle.len();
        tokio::spawn(async move {
            while piled && rustix::io::ioctl_fionread(&socket).unwrap() < all as u64 {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    };
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    let got = received(client).await;
    (outcome, String::from_utf8_lossy(&got).to_ascii_lowercase())
}

/// HTTP/1.1: a head's first byte unread at the signal makes its request
/// the connection's last, answered `Connection: close`, and a second one
/// the client pipelines behind it after the signal is not served, though
/// hyper answers the first as soon as it has read it. The close was asked
/// of hyper only once the first had begun, after that poll: hyper had
/// answered it keep-alive and begun the second in the same poll, and
/// both were served.
#[tokio::test]
async fn an_h1_request_pipelined_behind_the_first_and_last_is_not_served() {
    const PIPELINED: &[u8] =
        b"ET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nGET /real HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (outcome, got) = h1_answered_at_once(b"", b"G", PIPELINED, true).await;
    assert!(
        got.starts_with("http/1.1 200") && got.contains("\r\nconnection: close\r\n"),
        "{got:?}"
    );
    assert_eq!(got.matches("http/1.1 ").count(), 1, "{got:?}");
    assert_eq!(outcome.by, Ended::ByUs);
}

/// HTTP/1.1: two requests pipelined, both unread at the signal, the
/// first answered as soon as it is read (as the proxy answers a `404` or
/// a redirect itself): the first is the connection's last, answered
/// `Connection: close`, and the second is not read. Both came in the
/// bytes the look's poll read; hyper answered the first keep-alive in
/// that poll and went on to the second from its buffer, before the
/// close was asked of it: both were served.
#[tokio::test]
async fn an_h1_request_pipelined_behind_the_first_both_unread_at_the_signal_is_not_served() {
    const BOTH: &[u8] =
        b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nGET /real HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (outcome, got) = h1_answered_at_once(b"", BOTH, b"", false).await;
    assert!(
        got.starts_with("http/1.1 200") && got.contains("\r\nconnection: close\r\n"),
        "{got:?}"
    );
    assert_eq!(got.matches("http/1.1 ").count(), 1, "{got:?}");
    assert_eq!(outcome.by, Ended::ByUs);
}

/// HTTP/1.1: the line end unread at the signal that goes on from a head
/// read before it (`GET / HTTP/1.1` read, its `\r\n` unread) is a byte of
/// that head, as a letter would be: the close is graceful for it, and the
/// head, completed after the signal, answered (`Connection: close`). It
/// was taken for an empty line before a head, and the connection closed
/// at once.
#[tokio::test]
async fn an_h1_line_end_unread_at_the_signal_goes_on_from_the_head_begun() {
    let head = b"Host: localhost\r\n\r\n";
    let (outcome, got) = h1_answered_at_once(b"GET / HTTP/1.1", b"\r\n", head, false).await;
    answered_last(&got);
    assert_eq!(outcome.by, Ended::ByUs);
}

/// `got` (lowercased) is one answer, `200 ok`, saying `Connection: close`:
/// the request served as its connection's last.
pub(super) fn answered_last(got: &str) {
    assert!(
        got.starts_with("http/1.1 200")
            && got.contains("\r\nconnection: close\r\n")
            && got.ends_with("ok"),
        "{got:?}"
    );
}
