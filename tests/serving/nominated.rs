//! A `Connection` nominating more distinct names than a head may hold fields: `400`, never forwarded.

use std::sync::atomic::Ordering::SeqCst;

use crate::common::*;
use crate::support::*;

/// The `n`th short name of `a, b, …, z, aa, ab, …`.
fn short_name(mut n: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
        n -= 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap()
}

/// A request whose `Connection` nominates `names` (each `times` times).
fn nominating(names: usize, times: usize) -> String {
    let listed: Vec<String> = (0..times)
        .flat_map(|_| (0..names).map(short_name))
        .collect();
    format!(
        "GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-foo: 1\r\nconnection: close, {}\r\n\r\n",
        listed.join(",")
    )
}

/// A head may carry 100 fields, so a `Connection` naming more than 100
/// distinct headers protects nothing more and would keep every name
/// (thousands, filling `max_header_bytes`) for the whole request: such a
/// head is refused `400`, logged as other malformed requests are, and
/// never reaches the backend. 100 names (however often repeated) pass, and
/// an ordinary `Connection: keep-alive, x-foo` still strips `x-foo`.
#[tokio::test]
async fn a_connection_nominating_more_names_than_a_head_holds_is_refused() {
    let (w, _p, addr, log) = serve_logged("").await;
    // ~14,000 names fill the default 64 KiB head.
    for (names, times) in [(14_000, 1), (101, 1)] {
        let request = nominating(names, times);
        assert!(request.len() < 65_536, "{} bytes", request.len());
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 "),
            "{names} names: {}",
            &reply[..reply.len().min(300)]
        );
    }
    assert_eq!(
        w.backend.requests.load(SeqCst),
        0,
        "a refused head reached the backend"
    );
    let reply = h1_exchange(&w, addr, nominating(100, 100).as_bytes()).await;
    assert!(
        reply.starts_with("HTTP/1.1 200 "),
        "{}",
        &reply[..reply.len().min(300)]
    );
    let seen = body_json(&reply);
    assert!(seen["headers"].get("x-foo").is_some(), "{seen}");
    // Kept alive: a second request, which closes, follows it.
    let reply = h1_exchange(
        &w,
        addr,
        b"GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-foo: 1\r\nx-bar: 2\r\n\
          connection: keep-alive, x-foo\r\n\r\n\
          GET /api HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let first = reply.split("HTTP/1.1 ").nth(1).unwrap();
    let seen = body_json(&format!("HTTP/1.1 {first}"));
    assert!(seen["headers"].get("x-foo").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-bar"], "2", "{seen}");
    assert_eq!(w.backend.requests.load(SeqCst), 3);
    let lines = wait_access_log(&log, 5, WAIT).await;
    let statuses: Vec<_> = lines.iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, [400, 400, 200, 200, 200], "{lines:?}");
    assert_eq!(lines[0]["path"], "/api", "{}", lines[0]);
}
