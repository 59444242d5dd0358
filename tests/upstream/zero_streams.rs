//! An HTTP/2 server that allows no stream (`SETTINGS_MAX_CONCURRENT_STREAMS` 0, or a `GOAWAY` with its SETTINGS), from the start or later.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::*;
use crate::support::*;

/// SETTINGS with SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = `max`.
fn max_streams(max: u32) -> Vec<u8> {
    settings(&[(3, max)])
}

/// What a [`zero_streams`] backend saw.
#[derive(Default)]
struct Seen {
    /// Requests' HEADERS read, on any connection.
    requests: AtomicUsize,
    /// Requests' HEADERS read on the first connection.
    on_first: AtomicUsize,
    /// Connections the client has closed.
    closed: AtomicUsize,
    /// Notified with each of `closed`.
    changed: tokio::sync::Notify,
}

impl Seen {
    /// Wait until the client has closed `n` connections.
    async fn closed(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.closed.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }
}

/// A raw HTTP/2 backend whose first SETTINGS are `first`; it answers each
/// request `200`, body `connection N` (its connections numbered from 0).
/// With `lower`, the first connection allows no stream
/// (`SETTINGS_MAX_CONCURRENT_STREAMS` 0) after its first answer, in the
/// same write. Returns its address, its accepted connections and what it
/// saw.
async fn zero_streams(
    pair: &TestPair,
    first: Vec<u8>,
    lower: bool,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let told = seen.clone();
    let (addr, accepted) = raw_h2(pair, first, move |mut tls, n| {
        let seen = told.clone();
        async move {
            while let Some((kind, _, stream)) = next_acking(&mut tls).await {
                if kind != 1 {
                    continue;
                }
                seen.requests.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    seen.on_first.fetch_add(1, Ordering::SeqCst);
                }
                let mut out = naming(n, stream);
                if lower && n == 0 {
                    out.extend(max_streams(0));
                }
                let _ = tls.write_all(&out).await;
            }
            seen.closed.fetch_add(1, Ordering::SeqCst);
            seen.changed.notify_waiters();
        }
    })
    .await;
    (addr, accepted, seen)
}

/// An HTTP/2 server whose first SETTINGS allow no stream (RFC 9113
/// §6.5.2: one that takes no requests should close instead) fails the
/// dial at once: `502` `connect_error`, saying why, and the connection is
/// closed. The dial used to wait for a stream count above zero as the sign
/// that the SETTINGS were in, so it waited out `connect_timeout` and the
/// request got `504` `connect_timeout`, though TCP, TLS and the SETTINGS
/// had all come in time.
#[tokio::test]
async fn an_h2_server_whose_first_settings_allow_no_stream_fails_the_dial_at_once() {
    let w = world();
    let (backend, accepted, seen) = zero_streams(&w.backend_pair, max_streams(0), false).await;
    let (mut p, addr) = proxy_for(&w, backend).await;
    let (status, body) = send(addr, &w, "GET", "").await;
    assert_eq!((status, body.as_str()), (502, "upstream unavailable\n"));
    p.wait_log("the dial's cause", |v| {
        v["message"] == "upstream request failed"
            && v["reason"] == "connect_error"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("SETTINGS allow no stream"))
    })
    .await;
    // Closed by the proxy, not kept (with its server slot) unused.
    seen.closed(1).await;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A pooled HTTP/2 connection whose server lowers its stream limit to 0 (a
/// soft drain before a `GOAWAY`) gets no new request: the next goes on a
/// new connection, which serves the one after too. It used to count as a
/// limit of one, so the next request was handed to hyper on it and held
/// there unsent, waiting out `request_timeout` for a `504`.
#[tokio::test]
async fn an_h2_connection_whose_server_allows_no_more_streams_gets_no_new_request() {
    let w = world();
    let (backend, accepted, seen) = zero_streams(&w.backend_pair, settings(&[]), true).await;
    let (mut p, addr) = proxy_for(&w, backend).await;
    let mut sender = h1_sender(&w, addr).await;
    let (status, got) = exchange(&mut sender, h1_request("GET", "/x", "")).await;
    assert_eq!((status, &got[..]), (200, &b"connection 0"[..]));
    // The proxy has read the server's zero (it came with the answer).
    p.wait_log("the limit of zero read", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("takes no new stream"))
    })
    .await;
    for _ in 0..2 {
        let (status, got) = exchange(&mut sender, h1_request("GET", "/x", "")).await;
        assert_eq!(
            (status, String::from_utf8_lossy(&got).as_ref()),
            (200, "connection 1")
        );
    }
    assert_eq!(seen.on_first.load(Ordering::SeqCst), 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// An HTTP/2 server that sends `GOAWAY` (last stream 0) with its first
/// SETTINGS, taking no request on the connection (one shutting down as it
/// accepts), fails the dial as `connect_error`, saying the connection
/// ended right after those SETTINGS; each request waiting for that dial
/// gets the same cause. TCP and TLS had succeeded, yet it was
/// `connect_refused` ("connection refused"), which sends an operator
/// looking for a server that is not listening.
#[tokio::test]
async fn an_h2_server_going_away_with_its_settings_fails_the_dial_as_connect_error() {
    let w = world();
    let first = [settings(&[]), goaway(0)].concat();
    let (backend, accepted, seen) = zero_streams(&w.backend_pair, first, false).await;
    let (p, addr) = proxy_for(&w, backend).await;
    // One, then three at once: the pool now knows the endpoint speaks
    // HTTP/2 and dials for one at a time; those that come meanwhile wait
    // for that dial and get its cause.
    let (status, body) = send(addr, &w, "GET", "").await;
    assert_eq!((status, body.as_str()), (502, "upstream unavailable\n"));
    let (a, b, c) = tokio::join!(
        send(addr, &w, "GET", ""),
        send(addr, &w, "GET", ""),
        send(addr, &w, "GET", "")
    );
    for (status, body) in [a, b, c] {
        assert_eq!((status, body.as_str()), (502, "upstream unavailable\n"));
    }
    // One line per request, logged before its 502 went out.
    let failed = || {
        p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "upstream request failed")
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, "four failures logged", || async {
        failed().len() == 4
    })
    .await;
    for v in failed() {
        assert_eq!(v["reason"], "connect_error", "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains("right after the server's SETTINGS"), "{v}");
    }
    // No request reached it; every connection was closed.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    seen.closed(accepted.load(Ordering::SeqCst)).await;
}
