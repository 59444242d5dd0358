//! The endpoint's unit tests: leasing under slot and dial bounds, checks past the limit.

use super::*;
use crate::config::{UpstreamConfig, UpstreamTls};
use futures_util::FutureExt;
use std::time::Duration;

/// [`Endpoint::checkout`] for a request's first send.
async fn checkout(
    e: &Endpoint,
    want: Want,
    until: tokio::time::Instant,
) -> Result<Lease, DialError> {
    e.checkout(want, &mut Earlier::default(), until).await
}

/// A name resolved to an address is logged as that address in the
/// URL's form; a server given by IP, or a name dialled as such, as
/// configured.
#[test]
fn the_dialled_url_puts_the_address_in_place_of_a_resolved_name() {
    let cases = [
        ("https://app.svc:8443", "10.0.0.5", "https://10.0.0.5:8443"),
        ("http://app.svc/", "10.0.0.5", "http://10.0.0.5/"),
        ("https://app.svc", "fd00::5", "https://[fd00::5]"),
        ("https://app.svc:8443", "app.svc", "https://app.svc:8443"),
        ("https://10.0.0.5:8443", "10.0.0.5", "https://10.0.0.5:8443"),
        (
            "https://[fd00::5]:8443",
            "fd00::5",
            "https://[fd00::5]:8443",
        ),
    ];
    for (url, host, want) in cases {
        assert_eq!(&*dialled_url(url, host), want, "{url} dialled at {host}");
    }
}

/// A plain-HTTP endpoint at `port` with one server slot.
fn one_slot(port: u16) -> Endpoint {
    endpoint(port, false, 1)
}

/// An endpoint at 127.0.0.1:`port` with `slots` server slots.
pub(crate) fn endpoint(port: u16, https: bool, slots: usize) -> Endpoint {
    endpoint_timed(port, https, slots, Duration::from_secs(2))
}

/// [`endpoint`], with `connect_timeout`.
fn endpoint_timed(port: u16, https: bool, slots: usize, connect_timeout: Duration) -> Endpoint {
    let limits = config(slots, connect_timeout);
    let dialer = Dialer {
        tls: Arc::new(arc_swap::ArcSwap::new(
            crate::tls::client::build(None, None, &[]).unwrap(),
        )),
        server_name: None,
        connect_timeout: limits.connect_timeout,
        h2_keepalive: None,
        h2_stream_window: limits.http2_stream_window_bytes,
    };
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}");
    Endpoint::new(url, https, "127.0.0.1".into(), port, dialer, &limits).unwrap()
}

/// The upstream settings of [`endpoint_timed`]'s endpoints.
pub(crate) fn config(slots: usize, connect_timeout: Duration) -> UpstreamConfig {
    UpstreamConfig {
        name: "api".into(),
        servers: vec![],
        tls: UpstreamTls::default(),
        connect_timeout,
        request_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        max_idle_connections: 4,
        idle_timeout: Duration::from_secs(60),
        max_connections_per_server: slots,
        resolve_interval: Duration::ZERO,
        balance: Default::default(),
        health: Default::default(),
        retries: 0,
        retry_budget: Default::default(),
        http2_keepalive: None,
        http2_stream_window_bytes: crate::config::DEFAULT_HTTP2_STREAM_WINDOW,
    }
}

/// Every slot taken, a retry (which may not reuse a pooled connection)
/// waiting first and an ordinary request second: the connection handed
/// back goes to the ordinary request, not to a wake-up the retry
/// swallows while it goes on waiting for a slot.
#[tokio::test]
async fn a_connection_handed_back_serves_the_request_that_can_use_it() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = one_slot(listener.local_addr().unwrap().port());
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let Ok(Lease::H1(held)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the first request got no connection");
    };
    // Each waits, in this order (a waker-less poll registers it).
    let mut retry = Box::pin(checkout(&endpoint, Want::Fresh, until));
    assert!(
        (&mut retry).now_or_never().is_none(),
        "the retry got a slot"
    );
    let mut ordinary = Box::pin(checkout(&endpoint, Want::Any, until));
    assert!((&mut ordinary).now_or_never().is_none(), "no wait");
    endpoint.pool.put(held);
    match ordinary.await {
        Ok(Lease::H1(_)) => {}
        Ok(Lease::H2 { .. }) => panic!("an HTTP/2 stream from an HTTP/1.1 listener"),
        Err(e) => panic!("the connection handed back did not reach the waiting request: {e}"),
    }
}
/// A dead endpoint that still gets traffic: the dial bound is taken by
/// requests' dials, each waiting out `connect_timeout` (here: TLS
/// handshakes the server never answers). An active check dials its own
/// and fails with it, a verdict; it waited behind them instead, ended
/// as the connection limit, and was skipped, every time.
#[tokio::test]
async fn an_active_check_does_not_wait_behind_requests_dials() {
    // The kernel's backlog completes the connects; nothing answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = endpoint(port, true, 2 * crate::upstream::pool::MAX_DIALS);
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut dials: Vec<_> = (0..crate::upstream::pool::MAX_DIALS)
        .map(|_| Box::pin(checkout(&endpoint, Want::Any, until)))
        .collect();
    for d in &mut dials {
        assert!(d.now_or_never().is_none(), "a dial ended");
    }
    // The bound holds: another request waits.
    let mut request = Box::pin(checkout(&endpoint, Want::Any, until));
    assert!((&mut request).now_or_never().is_none(), "no wait");
    let check_until = tokio::time::Instant::now() + Duration::from_millis(200);
    match checkout(&endpoint, Want::Check, check_until).await {
        Err(DialError::Timeout) => {}
        Err(e) => panic!("the check has no verdict of its own: {e}"),
        Ok(_) => panic!("a connection from a server that never answers"),
    }
}

/// Every server slot taken (a request holds the one connection), an
/// active check dials a connection of its own past the limit rather
/// than wait for one and be skipped: one at a time (a second check
/// meanwhile waits, as a request does), closed after the check instead
/// of pooled, so requests never have more than the limit.
#[tokio::test]
async fn an_active_check_gets_one_connection_past_every_slot_taken() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = one_slot(listener.local_addr().unwrap().port());
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let Ok(Lease::H1(_held)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the request got no connection");
    };
    let check = match checkout(&endpoint, Want::Check, until).await {
        Ok(Lease::H1(c)) => c,
        Ok(Lease::H2 { .. }) => panic!("an HTTP/2 stream from an HTTP/1.1 listener"),
        Err(e) => panic!("the check got no connection of its own: {e}"),
    };
    let short = tokio::time::Instant::now() + Duration::from_millis(200);
    match checkout(&endpoint, Want::Check, short).await {
        Err(DialError::Limit(_)) => {}
        Err(e) => panic!("not the connection limit: {e}"),
        Ok(_) => panic!("a second connection past the limit"),
    }
    endpoint.pool.put(check);
    assert_eq!(endpoint.pool.idle(), 0, "the check's connection was pooled");
    // Closed, its slot is free for the next check.
    let short = tokio::time::Instant::now() + Duration::from_millis(200);
    assert!(
        matches!(
            checkout(&endpoint, Want::Check, short).await,
            Ok(Lease::H1(_))
        ),
        "the next check got no connection of its own"
    );
}

/// A request waiting for a dial in progress that is then given up
/// (its request found every server slot taken) looks again: here it
/// dials itself, a slot having come free. It was not woken, waited out
/// `connect_timeout`, and got a `504` for a dial that never was.
#[tokio::test]
async fn a_request_waiting_for_a_dial_given_up_looks_again() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = one_slot(listener.local_addr().unwrap().port());
    // One dial at a time (the endpoint spoke HTTP/2), the slot taken.
    endpoint.pool.learned(true);
    let taken = endpoint.slots.try_take();
    // Another request's dial, in progress when this one looks ...
    let Found::Dial(token) = endpoint.pool.find(Want::Any, None) else {
        panic!("no dial");
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut waiting = Box::pin(checkout(&endpoint, Want::Any, until));
    assert!((&mut waiting).now_or_never().is_none(), "no wait");
    // ... given up, as that request found no slot free; one is now.
    token.abandon();
    drop(taken);
    match waiting.await {
        Ok(Lease::H1(_)) => {}
        Ok(Lease::H2 { .. }) => panic!("an HTTP/2 stream from an HTTP/1.1 listener"),
        Err(e) => panic!("the request waited for a dial given up: {e}"),
    }
}

/// Requests that waited for a server slot dial within the dial bound
/// too (one at a time, the endpoint speaking HTTP/2): the first one
/// given a slot dials, the second waits for that dial. Both dialled at
/// once, each without a dial token. The second's time runs out with
/// that dial in progress: its 504 is the dial's `connect_timeout`, not
/// the connection limit (it has its slot).
#[tokio::test]
async fn a_request_that_waited_for_a_slot_keeps_to_the_dial_bound() {
    // The kernel's backlog completes the connects; nothing answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = endpoint(listener.local_addr().unwrap().port(), true, 2);
    endpoint.pool.learned(true);
    let taken = [endpoint.slots.try_take(), endpoint.slots.try_take()];
    let long = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut first = Box::pin(checkout(&endpoint, Want::Any, long));
    assert!((&mut first).now_or_never().is_none(), "no wait for a slot");
    let short = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut second = Box::pin(checkout(&endpoint, Want::Any, short));
    assert!((&mut second).now_or_never().is_none(), "no wait for a slot");
    drop(taken);
    // The first takes its slot and dials (its TLS handshake unanswered).
    assert!((&mut first).now_or_never().is_none(), "the dial ended");
    match second.await {
        Err(DialError::Waited(cause)) if cause.reason == "connect_timeout" => {}
        Err(e) => panic!("the second dialled too, past the dial bound: {e}"),
        Ok(_) => panic!("a connection from a server that never answers"),
    }
}

/// A plain-HTTP endpoint at 127.0.0.1:`port` with two server slots
/// (`connect_timeout` 30 s), both taken: one by an idle pooled
/// connection, the other by the slot returned.
async fn idle_and_taken(port: u16) -> (Endpoint, Option<tokio::sync::OwnedSemaphorePermit>) {
    let endpoint = endpoint_timed(port, false, 2, Duration::from_secs(30));
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let Ok(Lease::H1(idle)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the first request got no connection");
    };
    endpoint.pool.put(idle);
    assert_eq!(endpoint.pool.idle(), 1);
    let taken = endpoint.slots.try_take().expect("the other slot");
    (endpoint, taken)
}

/// A request sent again on a new connection (here: its reused one
/// closed before the response head) finds every server slot taken, one
/// by an idle pooled connection, the other by a request that took the
/// slot the closed connection freed. It takes the idle one's slot (that
/// connection closed) and dials. It waited for a slot instead, which no
/// idle connection gives back: the whole `connect_timeout` (30 s here,
/// far beyond this test's wait), then the connection limit's `504`.
#[tokio::test]
async fn a_resend_takes_the_slot_of_an_idle_connection_when_none_is_free() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (endpoint, _taken) = idle_and_taken(listener.local_addr().unwrap().port()).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let resend = checkout(&endpoint, Want::Fresh, until);
    match tokio::time::timeout(Duration::from_secs(5), resend).await {
        Ok(Ok(Lease::H1(c))) => assert!(!c.reused(), "a pooled connection"),
        Ok(Ok(Lease::H2 { .. })) => panic!("an HTTP/2 stream from an HTTP/1.1 listener"),
        Ok(Err(e)) => panic!("the resend got no connection: {e}"),
        Err(_) => panic!("the resend waited for a slot the idle connection held"),
    }
    assert_eq!(endpoint.pool.idle(), 0, "the idle connection kept");
}

/// A request sent again on a new connection finds every server slot
/// taken, one by an idle pooled connection: it takes that one's slot at
/// once and dials, having waited for nothing. `request_timeout` cutting
/// that dial short (here: a SYN the full accept queue drops) is the dial's
/// timeout. It was the connection limit (`504` `no upstream connection
/// free`, reason `connection_limit`): the resend was marked as waiting for
/// a slot (and logged so) before it looked for an idle connection.
#[tokio::test]
async fn a_resend_that_took_an_idle_connections_slot_waited_for_none() {
    // Backlog 0: the pooled connection, never accepted, fills the accept
    // queue, and the kernel drops the resend's SYN.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let (endpoint, _taken) = idle_and_taken(listener.local_addr().unwrap().port()).await;
    let short = tokio::time::Instant::now() + Duration::from_millis(300);
    match checkout(&endpoint, Want::Fresh, short).await {
        Err(DialError::Timeout) => {}
        Err(e) => panic!("not the dial's own timeout: {e}"),
        Ok(_) => panic!("a connection through a full accept queue"),
    }
    assert_eq!(endpoint.pool.idle(), 0, "the idle connection kept");
}

/// A request sent again on a new connection waits for a server slot,
/// every one held by a busy connection (the one `max_connections_per_server:
/// 1` allows). That connection is then handed back idle: the resend takes
/// its slot (closed for it) and dials. It was not woken by it, and waited
/// for a slot that the idle connection keeps until `idle_timeout`: the
/// whole `connect_timeout` (30 s here), then the connection limit's `504`.
#[tokio::test]
async fn a_resend_waiting_for_a_slot_takes_a_connection_handed_back_idle() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = endpoint_timed(port, false, 1, Duration::from_secs(30));
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let Ok(Lease::H1(busy)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the first request got no connection");
    };
    let mut resend = Box::pin(checkout(&endpoint, Want::Fresh, until));
    assert!((&mut resend).now_or_never().is_none(), "no wait for a slot");
    endpoint.pool.put(busy);
    match resend.await {
        Ok(Lease::H1(c)) => assert!(!c.reused(), "a pooled connection"),
        Ok(Lease::H2 { .. }) => panic!("an HTTP/2 stream from an HTTP/1.1 listener"),
        Err(e) => panic!("the resend missed the connection handed back: {e}"),
    }
    assert_eq!(endpoint.pool.idle(), 0, "the idle connection kept");
}

/// An `Upgrade` request (which takes no pooled connection: its own becomes
/// the tunnel) finds the one server slot held by an idle pooled
/// connection, and later by a busy one that then goes idle: each time it
/// takes that connection's slot (closed for it) and dials. It waited for
/// a slot instead, which an idle connection gives back only at
/// `idle_timeout`: the whole `connect_timeout` (30 s here), then the
/// connection limit's `504`.
#[tokio::test]
async fn an_upgrade_takes_the_slot_of_an_idle_connection() {
    // The kernel's backlog completes the connects; nothing is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = endpoint_timed(port, false, 1, Duration::from_secs(30));
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let Ok(Lease::H1(idle)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the first request got no connection");
    };
    endpoint.pool.put(idle);
    let tunnel = match endpoint.upgrade_connection(until).await {
        Ok(tunnel) => tunnel,
        Err(e) => panic!("the upgrade waited for the idle connection's slot: {e}"),
    };
    assert_eq!(endpoint.pool.idle(), 0, "the idle connection kept");
    drop(tunnel);
    // Busy when the upgrade comes, idle while it waits.
    let Ok(Lease::H1(busy)) = checkout(&endpoint, Want::Any, until).await else {
        panic!("the next request got no connection");
    };
    let mut upgrade = Box::pin(endpoint.upgrade_connection(until));
    assert!(
        (&mut upgrade).now_or_never().is_none(),
        "no wait for a slot"
    );
    endpoint.pool.put(busy);
    if let Err(e) = upgrade.await {
        panic!("the upgrade missed the connection handed back: {e}");
    }
    assert_eq!(endpoint.pool.idle(), 0, "the idle connection kept");
}
