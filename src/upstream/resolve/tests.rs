//! Unit tests of re-resolution: two names' answers applied at once.

use std::net::Ipv4Addr;
use std::sync::Barrier;

use super::*;
use crate::config::{UpstreamServer, UpstreamTls};

/// An upstream of two names re-resolved every 5 s (never here: the test
/// sets what they resolved to).
fn two_names() -> UpstreamConfig {
    let server = |host: &str| UpstreamServer {
        url: format!("http://{host}:8080"),
        https: false,
        host: host.to_owned(),
        port: 8080,
    };
    UpstreamConfig {
        name: "two-names".into(),
        servers: vec![server("web.resolve.test"), server("api.resolve.test")],
        tls: UpstreamTls::default(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        max_idle_connections: 4,
        idle_timeout: Duration::from_secs(60),
        max_connections_per_server: 0,
        resolve_interval: Duration::from_secs(5),
        balance: Default::default(),
        health: Default::default(),
        retries: 0,
        retry_budget: Default::default(),
        http2_keepalive: None,
        http2_stream_window_bytes: crate::config::DEFAULT_HTTP2_STREAM_WINDOW,
    }
}

fn resolution() -> Resolution {
    let config = two_names();
    let dialer = Dialer {
        tls: Arc::new(arc_swap::ArcSwap::new(
            crate::tls::client::build(None, None, &[]).unwrap(),
        )),
        server_name: None,
        connect_timeout: config.connect_timeout,
        h2_keepalive: None,
        h2_stream_window: config.http2_stream_window_bytes,
    };
    Resolution::new("two-names".into(), config, dialer)
}

/// `n` pod addresses in 10.`net`.0.0/16, port 8080.
fn pods(net: u8, n: u16) -> Vec<SocketAddr> {
    let pod = |k: u16| Ipv4Addr::new(10, net, (k >> 8) as u8, k as u8);
    normalise((1..=n).map(|k| SocketAddr::from((pod(k), 8080))).collect()).0
}

/// What [`Resolution::refresh`] stores for server `i` on a changed answer.
fn answered(r: &Resolution, i: usize, addrs: &[SocketAddr]) {
    r.last.lock().unwrap()[i] = Some(addrs.to_vec());
}

/// Each server's name's endpoints in `set`, as `url address`.
fn endpoints(set: &Members) -> Vec<String> {
    let mut all: Vec<_> = set
        .members
        .iter()
        .map(|m| format!("{} {}", m.endpoint.url, m.label))
        .collect();
    all.sort();
    all
}

/// The endpoints two names should have: `web`'s and `api`'s addresses.
fn expected(r: &Resolution, web: &[SocketAddr], api: &[SocketAddr]) -> Vec<String> {
    let servers = &r.config.servers;
    let mut all: Vec<_> = [(&servers[0], web), (&servers[1], api)]
        .into_iter()
        .flat_map(|(s, addrs)| addrs.iter().map(move |a| format!("{} {a}", s.url)))
        .collect();
    all.sort();
    all
}

/// Two names of one upstream answer changes within microseconds, each
/// re-resolved by a task of its own on a multi-thread runtime: the set in
/// service ends with both changes. Each made its set from the one in
/// service and stored it with nothing between: the later store, made from
/// the set before the other's, lost the other's change for good (that
/// name's next answers equal its last, nothing to apply), and kept the
/// address it dropped, whose pool that one had already retired: its
/// requests went on over unpooled connections to a pod gone. Here `web`
/// scales down from many pods to one (its old set takes long to make
/// again) while `api` gains one, a bounded number of times.
#[test]
fn two_names_changed_at_once_both_reach_the_set_in_service() {
    let (web_before, web_after) = (pods(1, 300), pods(2, 1));
    let (api_before, api_after) = (pods(3, 1), pods(3, 2));
    for round in 0..100 {
        let r = resolution();
        answered(&r, 0, &web_before);
        answered(&r, 1, &api_before);
        let current = ArcSwap::from_pointee(r.members(&[], &[]));
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            for (i, addrs) in [(0, &web_after), (1, &api_after)] {
                let (r, current, start) = (&r, &current, &start);
                s.spawn(move || {
                    start.wait();
                    answered(r, i, addrs);
                    r.apply(current);
                });
            }
        });
        let now = current.load();
        assert_eq!(
            endpoints(&now),
            expected(&r, &web_after, &api_after),
            "round {round}: a name's change was lost"
        );
        for m in &now.members {
            assert!(
                !m.endpoint.pool.retired(),
                "round {round}: {} in service with its pool retired",
                m.label
            );
        }
    }
}

/// One pod's address answered as IPv4 and as IPv4-mapped IPv6 is one
/// endpoint (it was two: twice its share of requests, and counted twice
/// toward the ejection cap and panic mode); an unspecified or multicast
/// address is skipped, never dialled (0.0.0.0 reached this host);
/// loopback stays (sidecars, tests).
#[test]
fn an_answer_is_one_endpoint_per_usable_address() {
    let r = resolution();
    let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 8080);
    let answer = [
        "10.0.0.5",
        "::ffff:10.0.0.5",
        "::ffff:10.0.0.6",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "127.0.0.1",
        "::1",
    ];
    let refreshed = r.answered(
        0,
        Ok(answer.iter().map(|ip| at(ip)).collect()),
        Refreshed::Same,
    );
    assert_eq!(refreshed, Refreshed::Changed);
    answered(&r, 1, &pods(3, 1));
    let set = r.members(&[], &[]);
    let web = ["10.0.0.5", "10.0.0.6", "127.0.0.1", "::1"].map(at);
    assert_eq!(endpoints(&set), expected(&r, &web, &pods(3, 1)));
    // Nothing usable: a failed lookup, the last good addresses kept.
    let refreshed = r.answered(0, Ok(vec![at("0.0.0.0"), at("ff02::1")]), Refreshed::Same);
    assert_eq!(refreshed, Refreshed::Same);
    assert_eq!(endpoints(&r.members(&[], &[])), endpoints(&set));
}

/// A dial by name tries the usable addresses in the resolver's order;
/// with none, it fails naming the host.
#[test]
fn a_dial_by_name_skips_unusable_addresses_in_order() {
    let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 443);
    let found = ["::1", "0.0.0.0", "10.0.0.9", "239.1.1.1", "127.0.0.1"].map(at);
    let dialled = to_dial("api.resolve.test", found.to_vec()).unwrap();
    assert_eq!(dialled, ["::1", "10.0.0.9", "127.0.0.1"].map(at));
    let e = to_dial("api.resolve.test", vec![at("::ffff:0.0.0.0")]).unwrap_err();
    assert_eq!(e.to_string(), "no usable addresses for api.resolve.test");
}

/// A name of 2,000 pods, half of them replaced, and a second name
/// answering 500 of the same addresses: the set is made again with each
/// server's address once, the members of the addresses that stay kept
/// (their pools in service), those of the addresses gone drained.
#[test]
fn two_thousand_addresses_are_made_again_correctly() {
    let r = resolution();
    let before = pods(1, 2000);
    let after = normalise(
        before[1000..]
            .iter()
            .copied()
            .chain(pods(2, 1000))
            .collect(),
    )
    .0;
    let api = before[1500..].to_vec();
    answered(&r, 0, &before);
    answered(&r, 1, &api);
    let first = r.members(&[], &[]);
    assert_eq!(endpoints(&first), expected(&r, &before, &api));
    answered(&r, 0, &after);
    let next = r.members(&first.members, &[]);
    assert_eq!(endpoints(&next), expected(&r, &after, &api));
    let kept: std::collections::HashSet<_> = next.members.iter().map(Arc::as_ptr).collect();
    let (mut stayed, mut drained) = (0, 0);
    for m in &first.members {
        if kept.contains(&Arc::as_ptr(m)) {
            assert!(!m.endpoint.pool.retired(), "{} kept, drained", m.label);
            stayed += 1;
        } else {
            assert!(m.endpoint.pool.retired(), "{} gone, not drained", m.label);
            drained += 1;
        }
    }
    assert_eq!((stayed, drained), (1000 + 500, 1000));
    // The same answers again: the very same members.
    let again = r.members(&next.members, &[]);
    assert!(
        again
            .members
            .iter()
            .zip(&next.members)
            .all(|(a, n)| Arc::ptr_eq(a, n))
    );
    assert_eq!(again.members.len(), next.members.len());
}
