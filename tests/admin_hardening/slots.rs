//! The admin listener's 64 connections held by clients that stop reading: probes are still answered.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::task::JoinHandle;

use crate::common::*;
use crate::support::*;

/// A client from `from` that pipelines `GET /api/v1/certs` without end and
/// never reads: its answers fill its small receive window and hotproxy's
/// send buffer, and hotproxy's writes to it stall. Returned once the
/// first answer bytes have arrived (the connection holds an admin slot
/// and was served); the task writes on until aborted.
async fn stalled_client(from: &str, api: SocketAddr) -> (OwnedReadHalf, JoinHandle<()>) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    // Small, so that few answers fill it (the kernel rounds it up).
    s.set_recv_buffer_size(4096).unwrap();
    let tcp = s.connect(api).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let batch = format!("GET /api/v1/certs HTTP/1.1\r\nHost: {api}\r\n\r\n").repeat(64);
    let writer = tokio::spawn(async move {
        // Ends when hotproxy closes the connection (the write fails).
        while write.write_all(batch.as_bytes()).await.is_ok() {}
    });
    let mut first = [0u8; 1];
    within_deadline(format!("the first answer to {from}"), read.peek(&mut first))
        .await
        .unwrap();
    (read, writer)
}

/// One request from `from` with `Connection: close`; the whole answer, or
/// `None` if none came within `wait`.
async fn probe(from: &str, api: SocketAddr, path: &str, wait: Duration) -> Option<String> {
    let mut tcp = tcp_from(from, api).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await {
        Ok(read) => {
            read.unwrap();
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

/// Four client addresses (four pods) × 16 connections that pipeline API
/// requests and never read hold all 64 admin slots. kubelet's `/healthz`
/// and `/readyz` from a fifth address used to wait in the backlog until
/// the stalled connections were cut (`SEND_TIMEOUT`, 60 s), long enough
/// for three failed liveness probes and a restart of the whole proxy: a
/// new connection now takes the slot of the connection stalled longest.
///
/// The probes' wait is a quarter of that cut, not a bound on speed: an
/// answer within it can only come while the stalled connections still
/// hold their slots (before the fix none came at all until the cut), and
/// an answer served at once has the whole quarter minute to arrive.
#[tokio::test]
async fn probes_are_answered_while_stalled_clients_hold_every_admin_slot() {
    let a = Api::start("").await;
    let mut held = Vec::new();
    for pod in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            held.push(stalled_client(pod, a.api).await);
        }
    }
    assert_eq!(held.len(), hotproxy::admin::MAX_CONNECTIONS);
    let wait = hotproxy::admin::SEND_TIMEOUT / 4;
    for path in ["/healthz", "/readyz", "/healthz"] {
        let reply = probe("127.0.0.20", a.api, path, wait).await;
        let reply = reply.unwrap_or_else(|| {
            panic!(
                "{path}: no answer within {} s while stalled clients hold every admin slot",
                wait.as_secs()
            )
        });
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
    for (_, writer) in &held {
        writer.abort();
    }
}

/// Eviction takes the connection that has waited on its client longest,
/// never one whose request is being served: with every slot taken, an
/// editor's request whose body is still coming (the oldest connection of
/// all) keeps its slot and is answered, while the idle connection opened
/// first after it is closed for the newcomer.
#[tokio::test]
async fn a_request_being_served_is_not_evicted() {
    let a = Api::start("").await;
    let mut busy = tcp_from("127.0.0.21", a.api).await;
    let head = format!(
        "POST /api/v1/certs/validate HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        a.api
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    // hyper says 100 Continue when the handler reads the body: the
    // request is in flight from here on.
    let mut cont = [0u8; 25];
    within_deadline("100 Continue", busy.read_exact(&mut cont))
        .await
        .unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&cont)
    );
    // The other 63 slots: connections that send nothing.
    let mut idle = Vec::new();
    for pod in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            if idle.len() + 1 < hotproxy::admin::MAX_CONNECTIONS {
                idle.push(tcp_from(pod, a.api).await);
            }
        }
    }
    let reply = probe("127.0.0.20", a.api, "/healthz", CLIENT_DEADLINE).await;
    let reply = reply.expect("/healthz answered while every admin slot is taken");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The idle connection accepted first made room: closed, nothing sent.
    let mut rest = Vec::new();
    let _ = within_deadline(
        "the evicted connection's close",
        idle[0].read_to_end(&mut rest),
    )
    .await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // The request in flight goes on: its body, then its answer.
    busy.write_all(b"{}").await.unwrap();
    let mut answer = Vec::new();
    within_deadline("the busy request's answer", busy.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
