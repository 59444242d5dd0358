//! Upgrade requests whose upstream answers before their body is through, and that hotproxy refuses.

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;
use crate::tunnels::{serve_raw, upgrade_with_endless_body};

/// An upgrade request answered before its body is through, with a head
/// hotproxy refuses (`Content-Length` twice: hyper takes equal copies, the
/// framing check does not), by an upstream that then takes no more of the
/// body: the client gets a `502` and its connection closes at once, with
/// `body_read_timeout` an hour. The upgrade connection's task kept writing
/// the body into the full socket: no response held it to be cut, and the
/// client's connection stayed busy with its body for as long as the
/// upstream kept its side open.
#[tokio::test]
async fn a_refused_early_answer_to_an_upgrade_cuts_its_body_at_once() {
    refused_answer_cuts_the_body(
        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\n\
        content-length: 7\r\n\r\ndenied\n",
    )
    .await;
}

/// A `101` to a protocol the upgrade request did not ask for (`h2c` for
/// `websocket`), before the request's body is through, by an upstream
/// that then takes no more of it: hotproxy refuses the switch with a
/// `502` and cuts the body at once, the client's connection closed with
/// `body_read_timeout` an hour. The body was cut only once it had not
/// moved for one to two `body_read_timeout`s, the client's connection
/// held after its `502` till then.
#[tokio::test]
async fn a_refused_switch_before_the_body_cuts_it_at_once() {
    refused_answer_cuts_the_body(
        b"HTTP/1.1 101 Switching Protocols\r\n\
        upgrade: h2c\r\nconnection: upgrade\r\n\r\n",
    )
    .await;
}

/// An upstream that reads an upgrade request's head, sends `answer`, then
/// keeps its side open and reads nothing more: the client streaming an
/// endless body gets a `502` and its connection closed, with
/// `body_read_timeout` an hour.
async fn refused_answer_cuts_the_body(answer: &'static [u8]) {
    let w = world().await;
    let (backend, _) = raw_backend(move |mut tcp| async move {
        let mut buf = Vec::new();
        if read_raw_head(&mut tcp, &mut buf).await.is_none() {
            return;
        }
        if tcp.write_all(answer).await.is_ok() {
            std::future::pending::<()>().await;
        }
    })
    .await;
    let (_p, addr, _log) = serve_raw(&w, backend, "body_read_timeout: 1h", "").await;
    let (head, mut from, writer) = upgrade_with_endless_body(&w, addr).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    read_to_close(&mut from).await;
    writer.abort();
}
