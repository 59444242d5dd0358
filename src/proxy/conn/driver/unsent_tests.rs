//! The driver on a real HTTP/2 connection over loopback whose socket's send buffer is full: what the look at a close from outside reads is answered, the answer not sent; a `GOAWAY` the socket does not take gets the lingering close.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::tests::{
    GET, LONG, PREFACE, Signals, answering_unless_refused, configs, received, rules_changed,
    test_driver,
};
use super::{Driver, Ended};
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::Activity;
use crate::proxy::stall::Stalls;
use crate::tls::sent::Counted;

/// HEADERS on stream 3, END_STREAM without END_HEADERS: a header block
/// begun, its CONTINUATION due.
const HALF: &[u8] = b"\x00\x00\x0e\x01\x01\x00\x00\x00\x03\x82\x87\x84\x01\x09localhost";
/// A PING: not the CONTINUATION due, so h2 answers it with a `GOAWAY`
/// (`PROTOCOL_ERROR`).
const PING: &[u8] = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08";

/// Whether the server's frames in `got` ended stream `id` (END_STREAM on
/// its HEADERS or DATA).
fn ended(got: &[u8], id: u8) -> bool {
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        if got[at + 3] <= 1 && got[at + 4] & 1 == 1 && got[at + 5..at + 9] == [0, 0, 0, id] {
            return true;
        }
        at += 9 + len;
    }
    false
}

/// Write to `socket` (a copy of the server's descriptor) until its send
/// buffer takes no more, the client reading none of it: again after a
/// pause while the kernel still makes room.
fn fill(socket: std::os::fd::OwnedFd) {
    let mut socket = std::net::TcpStream::from(socket);
    let junk = vec![0u8; 64 * 1024];
    let mut took = true;
    while took {
        took = false;
        loop {
            match socket.write(&junk) {
                Ok(n) if n > 0 => took = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                other => panic!("{other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP/2 client served once, part way into its next header block
/// (its CONTINUATION due), whose bytes unread at the signal (a PING)
/// begin no stream, is closed at once, though h2's answer to them (a
/// `GOAWAY`: a PING is no CONTINUATION) cannot be sent: the socket's send
/// buffer is full, the client reads nothing. That answer left unwritten
/// made the driver take the connection for one with a response still to
/// send, so a stream begun: it logged "bytes unread at the close began a
/// request", refused new streams and closed gracefully.
#[tokio::test]
async fn an_h2_answer_left_unsent_to_bytes_unread_at_the_signal_begins_no_request() {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, told) = mpsc::channel::<()>();
    let (sent, written) = mpsc::channel::<()>();
    let (done, over) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let tls = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        stream.write_all(&[PREFACE, GET].concat()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !ended(&got, 1) {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before stream 1 ended");
            got.extend_from_slice(&buf[..n]);
        }
        stream.write_all(HALF).unwrap();
        told.recv().unwrap();
        stream.write_all(PING).unwrap();
        sent.send(()).unwrap();
        // Open, read no more, until the server is done.
        let _ = over.recv();
        got
    });
    let (tcp, peer) = listener.accept().await.unwrap();
    let socket = tcp.as_fd().try_clone_to_owned().unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server)
        .accept(Counted::new(tcp))
        .await
        .unwrap();
    let activity = Activity::new(Instant::now(), true);
    let stalls = Stalls::new();
    let io = ClientIo::new(Box::new(tls), activity.clone(), false, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_unless_refused(&activity));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    let short = Duration::from_millis(500);
    let driver = Driver {
        stalls: Some((&*stalls, LONG)),
        header_read_timeout: short,
        send_timeout: short,
        ..test_driver(&activity, peer, &signals)
    };
    let watched = activity.clone();
    // Fires once stream 1 is served and the next block begun, all
    // written (a close at once is due), the socket then filled; the
    // PING on it, unread, as the driver looks.
    let revoked = async move {
        while !watched.block_begun() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fill(socket);
        go.send(()).unwrap();
        written.recv().unwrap();
    };
    let outcome = driver
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    done.send(()).unwrap();
    let got = received(thread).await;
    assert!(ended(&got, 1), "stream 1 not answered");
    assert!(
        !activity.refuses(),
        "new streams refused: taken for a request begun"
    );
    assert_eq!(outcome.by, Ended::ByUs);
    assert!(
        outcome.error.is_none(),
        "{:?}",
        outcome.error.map(|e| e.to_string())
    );
}

/// The row of Linux's `/proc/net/tcp` for the IPv4 socket from `local`
/// to `remote`: its send queue (bytes not acknowledged, sent or not) and
/// its timer (1: retransmission, for bytes sent and not acknowledged; 4:
/// zero window probe, none such, the peer's window closed).
fn tcp_row(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<(u32, u8)> {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(v4.ip().octets()),
                v4.port()
            )
        }
        _ => panic!("/proc/net/tcp is IPv4 only: {a}"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 5 && f[1] == local && f[2] == remote).then(|| {
            let tx = f[4].split(':').next().unwrap();
            let timer = f[5].split(':').next().unwrap();
            (u32::from_str_radix(tx, 16).unwrap(), timer.parse().unwrap())
        })
    })
}

/// Write to `socket` (a copy of the server's descriptor) until its send
/// buffer takes no more, the client reading none of it: again once its
/// timer is the zero window probe's, every byte sent acknowledged, so no
/// acknowledgement still to come makes room; until a round takes none.
fn fill_settled(socket: std::os::fd::OwnedFd) {
    let mut socket = std::net::TcpStream::from(socket);
    let (local, remote) = (socket.local_addr().unwrap(), socket.peer_addr().unwrap());
    let junk = vec![0u8; 64 * 1024];
    for _ in 0..1000 {
        let mut took = false;
        loop {
            match socket.write(&junk) {
                Ok(n) if n > 0 => took = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                other => panic!("{other:?}"),
            }
        }
        let deadline = Instant::now() + LONG;
        while tcp_row(local, remote).expect("the server's socket").1 != 4 {
            assert!(
                Instant::now() < deadline,
                "the client's window never closed"
            );
            std::thread::yield_now();
        }
        if !took {
            return;
        }
    }
    panic!("the send buffer kept taking bytes");
}

/// An HTTP/2 connection closed at once before its first request (its
/// SETTINGS exchanged, then the client reading nothing) whose socket's
/// send buffer is full by then: tokio-rustls takes the `GOAWAY` into
/// rustls and says it written, the socket taking none of it, so it gets
/// the lingering close (SPEC §1), which writes it once the client reads,
/// not the full close. Seen from the client: a byte it sends then is
/// acknowledged, not reset. (It was closed fully: the `GOAWAY` and the
/// `close_notify` dropped with rustls' buffer, the client to get our FIN
/// without them, and its byte reset.)
#[tokio::test]
async fn a_goaway_the_full_socket_does_not_take_gets_the_lingering_close() {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ready, settled) = mpsc::channel::<std::net::TcpStream>();
    let (done, over) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let tls = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        let raw = tcp.try_clone().unwrap();
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        stream.write_all(PREFACE).unwrap();
        // Up to the SETTINGS ACK: all the server had to write.
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !got.windows(5).any(|w| w == [0, 0, 0, 4, 1]) {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the SETTINGS ACK");
            got.extend_from_slice(&buf[..n]);
        }
        ready.send(raw).unwrap();
        // Open, read no more, until the server is done.
        let _ = over.recv();
        got
    });
    let (tcp, peer) = listener.accept().await.unwrap();
    let socket = tcp.as_fd().try_clone_to_owned().unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server)
        .accept(Counted::new(tcp))
        .await
        .unwrap();
    let activity = Activity::new(Instant::now(), true);
    let io = ClientIo::new(Box::new(tls), activity.clone(), false, LONG, Box::new(()));
    let svc = hyper::service::service_fn(answering_unless_refused(&activity));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    let signals = Signals::new(false, false);
    // Fires once the client has the SETTINGS ACK, the socket then full.
    let raw = tokio::task::spawn_blocking(move || {
        let raw = settled.recv().unwrap();
        fill_settled(socket);
        raw
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let revoked = async move {
        let _ = tx.send(raw.await.unwrap());
    };
    let outcome = test_driver(&activity, peer, &signals)
        .run(conn, |c| c.graceful_shutdown(), rules_changed(revoked))
        .await;
    assert_eq!(outcome.by, Ended::ByUs);
    // The start of a TLS record: acknowledged by a socket still read (a
    // lingering TLS reader waits for the rest), reset by one closed.
    let mut raw = rx.await.unwrap();
    let (local, remote) = (raw.local_addr().unwrap(), raw.peer_addr().unwrap());
    raw.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20]).unwrap();
    let reset = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + LONG;
        loop {
            if raw.take_error().unwrap().is_some() {
                return true;
            }
            match tcp_row(local, remote) {
                Some((0, _)) => return false,
                None => return true,
                Some(_) => {}
            }
            assert!(Instant::now() < deadline, "neither acknowledged nor reset");
            std::thread::yield_now();
        }
    })
    .await
    .unwrap();
    done.send(()).unwrap();
    received(thread).await;
    assert!(!reset, "closed fully: the GOAWAY left in rustls' buffer");
}
