//! A dial by name (`resolve_interval: 0s`) whose first address never answers: the next one gets the time left.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::common::*;
use crate::dns::*;

/// A listener at `at` whose accept queue is full (backlog 0, one
/// connection never accepted): its SYNs go unanswered, as a dead node's.
/// The connection filling it is returned with it.
fn black_hole(at: SocketAddr) -> (Socket, std::net::TcpStream) {
    let hole = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    hole.set_reuse_address(true).unwrap();
    hole.bind(&at.into()).unwrap();
    hole.listen(0).unwrap();
    let filler = std::net::TcpStream::connect(at).unwrap();
    (hole, filler)
}

/// A name answered a silent address first, then its pod's, dialled by
/// name with a 4 s `connect_timeout`: the silent address gets half, the
/// pod the rest, and the request is served. The first address took all
/// of `connect_timeout` (one connect over every address): every request
/// was a `504` though the pod was there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_by_name_past_a_silent_address_reaches_the_next() {
    let dns = NameServer::start(&["127.0.0.3", "127.0.0.2"]).await;
    let name = own_name("serial");
    let settings =
        "    resolve_interval: 0s\n    connect_timeout: 4s\n    retries: { attempts: 0 }\n";
    // 127.0.0.3 before .2: glibc orders them by the longest prefix shared
    // with the source (127.0.0.1, RFC 6724 rule 9): a tie keeps the order.
    let w = app_over(&dns, &[&name], settings).await;
    let hole_at = SocketAddr::from(([127, 0, 0, 3], w.pods[0].addr.port()));
    let _hole = black_hole(hole_at);
    // The premise: a connect there goes unanswered.
    let probe = std::net::TcpStream::connect_timeout(&hole_at, Duration::from_millis(300));
    assert!(probe.is_err(), "the black hole accepted a connection");

    let got = get_pod(&mut client(&w).await, "/").await;
    assert_eq!(
        got,
        (200, Some("pod".into())),
        "the second address, dialled"
    );
}
