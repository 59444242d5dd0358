//! The driver on a real TLS connection over loopback whose socket every read tries, as if always found readable: the look at a close from outside reads no further than its count.

use std::convert::Infallible;
use std::future::{Future, ready};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Mutex, mpsc};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::Ended;
use super::tests::{LONG, Signals, configs, received, rules_changed, test_driver};
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::Activity;
use crate::tls::sent::Counted;

/// A loopback socket whose every read is a read of the socket itself (a
/// system call), whatever tokio last knew of its readiness: as on a
/// multi-threaded runtime whose other worker's reactor has just found it
/// readable, at the worst moment, every time. Only when nothing is
/// there does tokio's own read run (it waits for the reactor).
struct Readable(TcpStream);

impl AsyncRead for Readable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let socket = socket2::SockRef::from(&this.0);
        match Read::read(&mut &*socket, buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Pin::new(&mut this.0).poll_read(cx, buf)
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Readable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsFd for Readable {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Holds the calling thread (the runtime's one) until bytes are on
/// `socket`: a peek, the socket made blocking for it (nothing else uses
/// it meanwhile), non-blocking again after.
fn wait_for_bytes(socket: &OwnedFd) {
    let socket = socket2::SockRef::from(socket);
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(LONG)).unwrap();
    let peeked = socket.peek(&mut [MaybeUninit::uninit()]);
    socket.set_read_timeout(None).unwrap();
    socket.set_nonblocking(true).unwrap();
    assert!(matches!(peeked, Ok(1)), "{peeked:?}");
}

/// HTTP/1.1: a request waiting on the socket at the signal (`also_close`)
/// is served, read in the look's poll, and the one the client pipelines
/// behind it after the signal, on the socket while that poll still runs
/// (the first answered in it, hyper reading on for a next head), is not
/// read there: the client gets the first response alone. tokio-rustls'
/// own read, which ClientIo used in the look's poll, reads the socket
/// whenever tokio holds it readable (on a multi-threaded runtime, another
/// worker's reactor may find it so at any time; [`Readable`] always
/// does): it took the second request, which was served.
#[tokio::test]
async fn an_h1_request_sent_after_the_signal_is_not_read_in_the_looks_poll() {
    let got = first_then_next(false).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("/first"),
        "{got:?}"
    );
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got:?}");
}

/// As [`an_h1_request_sent_after_the_signal_is_not_read_in_the_looks_poll`],
/// the signal set while the driver's task waits, its wake-up run later
/// (as a listener's `closing`, the process's shutdown, an admission
/// change reach a connection from another task): the client's first
/// request is served, and the one it sends after the signal, while the
/// first is answered, is not read. The driver's first poll after the
/// wake-up polled the connection before the signal (`biased;`), the look
/// not asked for yet: hyper read the first request, uncapped, answered
/// it, and read the next one, sent after the signal, in that same poll;
/// the signal, looked at then, found a request begun and closed
/// gracefully: both were served.
#[tokio::test]
async fn an_h1_request_sent_after_a_signal_set_while_the_driver_waits_is_not_read() {
    let got = first_then_next(true).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("/first"),
        "{got:?}"
    );
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got:?}");
}

/// A client's `GET /first` on the socket as `also_close` fires; its
/// service cues `GET /next` and holds the runtime's thread until it is
/// on the socket: what the client received by the close. With
/// `set_while_waiting`, `also_close` is fired by another task, once
/// `/first` is on the socket, while the driver's task waits; else it
/// fires in the driver's own poll of it.
async fn first_then_next(set_while_waiting: bool) -> String {
    const FIRST: &[u8] = b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, told) = mpsc::channel();
    let (cue, cued) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let tls = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut stream.sock).unwrap();
        }
        let mut got = Vec::new();
        for (told, bytes) in [(told, FIRST), (cued, NEXT)] {
            if told.recv().is_ok() {
                let _ = stream.write_all(bytes).and_then(|()| stream.flush());
            }
        }
        // A close without close_notify ends it with an error: what came
        // before it is kept.
        let _ = stream.read_to_end(&mut got);
        got
    });
    let (tcp, peer) = listener.accept().await.unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server)
        .accept(Counted::new(Readable(tcp)))
        .await
        .unwrap();
    let socket = tls.get_ref().0.as_fd().try_clone_to_owned().unwrap();
    let on_socket = socket.try_clone().unwrap();
    // The runtime's one thread held until FIRST is on the socket: the
    // look counts it.
    let fire = move || {
        go.send(()).unwrap();
        wait_for_bytes(&socket);
    };
    let revoked: Pin<Box<dyn Future<Output = ()>>> = if set_while_waiting {
        let (set, was_set) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            fire();
            set.send(()).unwrap();
        });
        Box::pin(async move { was_set.await.unwrap() })
    } else {
        Box::pin(async move { fire() })
    };
    let activity = Activity::new(Instant::now(), true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), true, LONG, Box::new(()));
    let answering = activity.clone();
    let cue = Mutex::new(Some(cue));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        drop(answering.begin(false));
        // The first request, in the look's poll (FIRST read whole, the
        // socket empty): the client sends the next one now, on the
        // socket before this answer is written and hyper reads on.
        if let Some(cue) = cue.lock().unwrap().take() {
            cue.send(()).unwrap();
            wait_for_bytes(&on_socket);
        }
        let path = Bytes::from(req.uri().path().to_owned());
        ready(Ok::<_, Infallible>(Response::new(Full::new(path))))
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let driver = test_driver(&activity, peer, &signals);
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    assert_eq!(outcome.by, Ended::ByUs);
    let got = received(client).await;
    String::from_utf8_lossy(&got).into_owned()
}
