//! The redirect listener's connection on real sockets over loopback: what a close from outside does to a request sent before it, not read yet.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::{Front, redirect_connection};
use crate::config::{ClientAuthMode, FrontConfig, Limits};
use crate::proxy::drain::Drain;
use crate::proxy::listener::{Handshake, Listener, Slot};
use crate::proxy::router::Router;
use crate::tls::server::SniResolver;

/// Long enough never to fall due in a test: only the signals close.
const LONG: Duration = Duration::from_secs(60);

/// The redirect's target port.
const PORT: u16 = 8443;

/// A redirect listener `http` as a reload makes one: no pair, no route.
fn redirect_listener(limits: &Limits) -> Arc<Listener> {
    let resolver = Arc::new(SniResolver::none());
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider::get())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let handshake = Handshake {
        config: Arc::new(config),
        mode: ClientAuthMode::None,
        gate: None,
        generation: 0,
        per_name: None,
        resolver,
    };
    let router = Router::new("http", &[], &HashMap::new());
    let live = Listener::new("http", handshake, router, limits.clone(), Vec::new());
    let front = FrontConfig {
        redirect_https: Some(PORT),
        ..FrontConfig::default()
    };
    live.front.store(Front::new(&front));
    live
}

/// Which close from outside comes while the request waits unread.
#[derive(Clone, Copy)]
enum Close {
    /// A reload removes the listener (its `closing`), on a connection it
    /// accepted before.
    Removed,
    /// The process shuts down, on a connection taken from the queue of
    /// the socket the removed listener gave up (`answer_first`).
    ShutdownOfAQueuedOne,
    /// The process shuts down (the accept loop sets `closing` then too)
    /// as a connection it accepted before starts, its request sent.
    ShutdownAtStart,
}

/// A redirect connection whose client writes its whole request, and the
/// close comes, within one poll of the runtime's one thread, before the
/// connection's next: the runtime has not seen the socket readable when
/// the close is looked at. What the client read until the close.
async fn request_unread_at(close: Close) -> String {
    let limits = Limits {
        header_read_timeout: LONG,
        send_timeout: LONG,
        ..Limits::default()
    };
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (go, told) = std::sync::mpsc::channel::<()>();
    let (sent, written) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        told.recv().unwrap();
        tcp.write_all(b"GET /unread?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap();
        sent.send(()).unwrap();
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got);
        got
    });
    let (stream, peer) = socket.accept().await.unwrap();
    let live = redirect_listener(&limits);
    let (shutdown, process) = watch::channel(false);
    let drain = Arc::new(Drain::new(LONG, process));
    let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
    let slot = Slot::new(live.clone(), permit, drain.enter());
    let answer_first = match close {
        Close::Removed => false,
        Close::ShutdownAtStart => {
            go.send(()).unwrap();
            written.recv().unwrap();
            shutdown.send_replace(true);
            live.closing.send_replace(true);
            false
        }
        // Taken from the queue once the listener was removed.
        Close::ShutdownOfAQueuedOne => {
            live.closing.send_replace(true);
            true
        }
    };
    let front = live.front.load_full();
    let run = redirect_connection(
        live.clone(),
        stream,
        peer,
        front,
        limits.clone(),
        PORT,
        Instant::now(),
        slot,
        answer_first,
    );
    let mut run = std::pin::pin!(run);
    let mut polls = 0;
    std::future::poll_fn(|cx| {
        // The first poll left hyper waiting to read; before the second,
        // the request is on the socket and the signal set.
        if polls == 1 {
            let signal = |set: &dyn Fn()| {
                go.send(()).unwrap();
                written.recv().unwrap();
                set();
            };
            match close {
                // As the accept loop stops: removed, then closing.
                Close::Removed => signal(&|| {
                    live.set_removed(false);
                    live.closing.send_replace(true);
                }),
                Close::ShutdownOfAQueuedOne => signal(&|| {
                    shutdown.send_replace(true);
                }),
                Close::ShutdownAtStart => {}
            };
        }
        polls += 1;
        let out = run.as_mut().poll(cx);
        if polls == 1 {
            cx.waker().wake_by_ref();
        }
        out
    })
    .await;
    let got = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

/// What a request sent before the close must get: its `308`, as the
/// connection's last (SPEC §1, and the redirect listener's "closes at once
/// each connection that has not sent a whole head").
fn assert_answered_last(got: &str) {
    assert!(
        got.starts_with("http/1.1 308")
            && got.contains("\r\nlocation: https://example.com:8443/unread?q=1\r\n")
            && got.contains("\r\nconnection: close\r\n"),
        "{got:?}"
    );
}

/// A reload removes the redirect listener while a request it has not read
/// yet waits on a connection's socket: the request came before the close
/// and is answered, its `308` the last. It was closed unanswered (its
/// bytes reset by the kernel): the connection only looked at what the
/// runtime had found readable.
#[tokio::test]
async fn a_request_unread_when_the_listener_is_removed_is_answered() {
    assert_answered_last(&request_unread_at(Close::Removed).await);
}

/// The process shuts down while a request not read yet waits on a
/// connection the removed redirect listener took from its queue: answered
/// as above, where it was closed unanswered.
#[tokio::test]
async fn a_request_unread_at_the_shutdown_is_answered() {
    assert_answered_last(&request_unread_at(Close::ShutdownOfAQueuedOne).await);
}

/// The process shuts down as a redirect connection accepted before it
/// starts, its request already on the socket: answered as its last (SPEC
/// §1: the bytes waiting at the signal decide), as the TLS listeners'. It
/// was closed unread, the kernel resetting the client, when the accept
/// loop's `closing` (set at shutdown too) was seen first: which task ran
/// first decided. Only a removal closes it before its request.
#[tokio::test]
async fn a_request_sent_as_the_shutdown_begins_is_answered() {
    assert_answered_last(&request_unread_at(Close::ShutdownAtStart).await);
}
