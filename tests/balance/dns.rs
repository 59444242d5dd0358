//! Names a test's own DNS server answers (the proxy in a mount namespace with its resolv.conf): a re-resolution a reload overtakes, lookups at a tiny `resolve_interval`, a silent name beside others, at start.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

pub(super) use crate::nameserver::NameServer;

/// `{label}-PID.hotproxy.test`: a name only this test process asks.
pub(super) fn own_name(label: &str) -> String {
    format!("{label}-{}.hotproxy.test", std::process::id())
}

/// An upstream's `resolve_interval: 1ms` line.
const TINY: &str = "    resolve_interval: 1ms\n";

/// The proxy with `routes` to `upstreams` (made of its pods' ports), its
/// pods at `pods` (an address and a label each), and `dns` its only name
/// server ([`Proxy::start_with_resolv_conf`]).
async fn serve_by(
    dns: &NameServer,
    pods: &[(&str, &str)],
    routes: &str,
    upstreams: impl FnOnce(&[u16]) -> String,
) -> World {
    let p = Pods::new();
    let mut started = Vec::new();
    for (ip, label) in pods {
        started.push(p.pod_at(ip, label).await);
    }
    let ports: Vec<u16> = started.iter().map(|pod| pod.addr.port()).collect();
    let resolv_conf = p.scene.path("resolv.conf");
    write(&resolv_conf, &dns.resolv_conf());
    let start = |config: &std::path::Path| Proxy::start_with_resolv_conf(config, &resolv_conf);
    p.serve_with(routes, &upstreams(&ports), started, start)
        .await
}

/// The pod of [`app_over`]: `pod` on 127.0.0.2, where `dns` puts names.
const POD: &[(&str, &str)] = &[("127.0.0.2", "pod")];

/// [`serve_by`] with one pod ([`POD`]) and one upstream, `app`, over
/// `names` (at the pod's port), with `settings` lines.
pub(super) async fn app_over(dns: &NameServer, names: &[&str], settings: &str) -> World {
    serve_by(dns, POD, "[{ upstream: app }]", |ports| {
        let servers: Vec<String> = (names.iter())
            .map(|name| format!("https://{name}:{}", ports[0]))
            .collect();
        upstream("app", &servers.join(", "), settings)
    })
    .await
}

/// The proxy with one upstream `app` at `https://{label}-{pid}.hotproxy.test:{port}`,
/// `resolve_interval: {interval}`, its only pod (`pod`, `w.pods[0]`) on
/// 127.0.0.2: the name is answered 127.0.0.2 by the returned name server,
/// the proxy's only one ([`Proxy::start_with_resolv_conf`]).
pub(super) async fn app_by_name(label: &str, interval: &str) -> (NameServer, World) {
    let dns = NameServer::start(&["127.0.0.2"]).await;
    let settings = format!("    resolve_interval: {interval}\n");
    let w = app_over(&dns, &[&own_name(label)], &settings).await;
    (dns, w)
}

/// `pod` answers a GET of `/` on a new connection to the proxy (`what`
/// says why it should).
async fn assert_pod_serves(w: &World, what: &str) {
    let got = get_pod(&mut client(w).await, "/").await;
    assert_eq!(got, (200, Some("pod".into())), "{what}");
}

/// What a re-resolution of an upstream retired meanwhile logs instead of
/// its outcome.
const DROPPED: &str = "upstream retired while its names were resolved again; the answer is dropped";

/// A failed lookup's warning.
pub(super) const FAILED: &str = "upstream DNS lookup failed; keeping the last good addresses";

/// An upstream a reload removes while its re-resolution waits for a
/// lookup: the answer that comes after is dropped. It was applied to the
/// removed upstream, logged under its name (`upstream endpoint added` and
/// `removed` for an upstream no longer configured, or a failed lookup's
/// warning, counted in `hotproxy_upstream_errors_total`) and stored as
/// its endpoints, where retries of its requests still in flight picked.
/// The lookup waits at most 5 s: the reload is applied well within that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_resolution_a_reload_overtakes_is_dropped() {
    let (dns, mut w) = app_by_name("overtaken", "5s").await;
    let pod_addr = w.pods[0].addr;
    assert_pod_serves(&w, "the name, answered by the test's server").await;

    dns.hold();
    dns.wait_held("the re-resolution's lookup").await;
    let other = upstream("other", &format!("https://{pod_addr}"), "");
    w.scene.public_config("[{ upstream: other }]", &other);
    let reloaded = w.wait_reloaded("app removed").await;
    let changes = reloaded["changes"].as_str().unwrap_or("");
    assert!(changes.contains("upstreams removed: app"), "{reloaded}");

    // A new address: applied, the removed upstream would log it added.
    dns.release(&["127.0.0.3"]).await;
    let outcome = w
        .proxy
        .wait_log("the re-resolution's outcome", |v| {
            v["upstream"] == "app"
                && [DROPPED, "upstream endpoint added", FAILED]
                    .contains(&v["message"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(
        outcome["message"], DROPPED,
        "the removed upstream's re-resolution went on: {outcome}"
    );
    assert_pod_serves(&w, "served by the upstream the reload put in service").await;
}

/// `resolve_interval: 1ms` re-resolves names that resolve back to back —
/// `localhost` (from /etc/hosts) and a name the test's server answers —
/// and no lookup fails: both endpoints keep serving, nothing is logged or
/// counted. Each lookup was bounded by the interval: at 1 ms most of those
/// the server answered timed out, and the log filled with failures and
/// recoveries of a name that always resolved (`localhost`, answered from
/// a file in well under 1 ms, rarely did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_resolve_interval_fails_no_lookup() {
    let name = own_name("tiny");
    let dns = NameServer::start(&["127.0.0.2"]).await;
    let pods = [("127.0.0.1", "local"), ("127.0.0.2", "named")];
    let routes = "\n      - { path_prefix: /local, upstream: local }\n      - { path_prefix: /named, upstream: named }";
    let mut w = serve_by(&dns, &pods, routes, |ports| {
        [
            upstream("local", &format!("https://localhost:{}", ports[0]), TINY),
            upstream("named", &format!("https://{name}:{}", ports[1]), TINY),
        ]
        .concat()
    })
    .await;
    // Hundreds of re-resolutions of the name.
    wait_until(WAIT, "500 queries answered", || async {
        dns.answered() >= 500
    })
    .await;
    let mut send = client(&w).await;
    assert_eq!(
        get_pod(&mut send, "/local").await,
        (200, Some("local".into()))
    );
    assert_eq!(
        get_pod(&mut send, "/named").await,
        (200, Some("named".into()))
    );
    let failures: Vec<String> = logged_so_far(&mut w)
        .await
        .into_iter()
        .filter(|l| l.contains("upstream DNS lookup"))
        .collect();
    assert!(failures.is_empty(), "lookups failed: {failures:?}");
    let m = metrics(&w).await;
    assert!(
        !m.contains("reason=\"resolve\""),
        "resolve errors counted:\n{m}"
    );
}

/// A lookup that does not end (its name server silent) is never joined by
/// another: it times out after 5 s, whatever `resolve_interval` is, and
/// the next re-resolution waits for its answer again instead of asking
/// anew; the endpoint serves on its last good address meanwhile, and once
/// the server answers, that lookup's answer is the recovery. Lookups timed
/// out at the interval (1 ms here) and the next began beside the last,
/// every millisecond: hundreds of lookups waiting on the server at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_times_out_is_waited_for_not_repeated() {
    let (dns, mut w) = app_by_name("silent", "1ms").await;
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));

    dns.hold();
    // Three re-resolutions that timed out, the first uncounted: 15 s,
    // bounded generously.
    app_errors_reach(&w, 2.0, 3 * WAIT, "two lookups timed out").await;
    // Served on the last good address meanwhile.
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
    assert_eq!(
        dns.held_askers(),
        1,
        "lookups began beside one still running"
    );
    let failed = w
        .proxy
        .wait_log("the failure", |v| v["message"] == FAILED)
        .await;
    assert_eq!(failed["error"], "lookup timed out", "{failed}");

    dns.release(&["127.0.0.2"]).await;
    w.wait_recovered("app").await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
}

/// The value of `hotproxy_upstream_errors_total{upstream=NAME,reason="resolve"}`.
pub(super) async fn errors_of(w: &World, name: &str) -> f64 {
    let errors =
        format!("hotproxy_upstream_errors_total{{upstream=\"{name}\",reason=\"resolve\"}} ");
    (metrics(w).await.lines())
        .find_map(|l| l.strip_prefix(errors.as_str())?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Wait, `limit` at most, until [`errors_of`] `app` reaches `n` (`what`:
/// the failures counted).
pub(super) async fn app_errors_reach(w: &World, n: f64, limit: Duration, what: &str) {
    wait_until(limit, what, || async { errors_of(w, "app").await >= n }).await;
}

/// A lookup that timed out twice (a re-resolution's 5 s, then the next's
/// wait for it, which counted the failure) and then ended (its name
/// server answered it late, with no address) is not counted again: the
/// next re-resolution asks anew, gets the address and recovers, with the
/// failure counted once. The late answer was taken as
/// the next re-resolution's, and its failure counted a second time.
/// (Its release comes as soon as the timeout is counted, and the next
/// re-resolution 10 s after: the margin is the test's only assumption.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_lookup_that_ended_since_is_asked_anew() {
    let (dns, mut w) = app_by_name("late", "10s").await;

    dns.hold();
    // Two re-resolutions (10 s each) and their waits (5 s each), bounded generously.
    app_errors_reach(&w, 1.0, 4 * WAIT, "the lookup timed out").await;
    dns.release_as(&[], &["127.0.0.2"]).await;
    w.wait_recovered("app").await;
    let errors = errors_of(&w, "app").await;
    assert_eq!(errors, 1.0, "the late answer was counted");
    assert_pod_serves(&w, "recovered").await;
}

/// An upstream's names are re-resolved each on its own: one that its name
/// server never answers holds back no other's fresh addresses. They were
/// looked up one after another, the silent one first: the other's new
/// address came only after the silent one's lookup timed out (5 s, its
/// failure logged), once per re-resolution. That margin is the test's
/// only assumption: the new address is seen well within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_name_holds_back_no_other() {
    let (silent, fresh) = (own_name("hanging"), own_name("fresh"));
    let dns = NameServer::start(&["127.0.0.2"]).await;
    let mut w = app_over(&dns, &[&silent, &fresh], TINY).await;
    let port = w.pods[0].addr.port();

    dns.hold_name(&silent);
    dns.wait_held("the silent name's lookup").await;
    dns.answer_with(&["127.0.0.3"]);
    let first = w
        .proxy
        .wait_log("the new address, or the silent name's failure", |v| {
            v["upstream"] == "app"
                && ["upstream endpoint added", FAILED]
                    .contains(&v["message"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(
        first["message"], "upstream endpoint added",
        "the other name waited for the silent one: {first}"
    );
    assert_eq!(first["endpoint"], format!("127.0.0.3:{port}"), "{first}");
}

/// A lookup made as the configuration is applied that runs past 5 s (its
/// name server silent from the start) is waited for by the first
/// re-resolution, which asks no second beside it; once the server
/// answers, that lookup's answer is the recovery. It was left to end on
/// its own, and the re-resolutions (every millisecond here) asked beside
/// it: two lookups waiting on the server once the first had timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_at_start_past_5s_is_waited_for_not_repeated() {
    let dns = NameServer::start(&["127.0.0.2"]).await;
    dns.hold();
    let mut w = app_over(&dns, &[&own_name("start")], TINY).await;
    // The start's lookup (5 s), then the first re-resolution's wait for
    // it (5 s), bounded generously.
    app_errors_reach(&w, 1.0, 4 * WAIT, "the first re-resolution timed out").await;
    assert_eq!(
        dns.held_askers(),
        1,
        "a re-resolution's lookup began beside the start's"
    );

    dns.release(&["127.0.0.2"]).await;
    w.wait_recovered("app").await;
    assert_pod_serves(&w, "recovered").await;
}

/// An edit of an upstream while its name's lookup hangs (its name server
/// silent) takes that lookup over: the replacement waits for it, as the
/// upstream it replaces did, and asks no second beside it. The
/// replacement asked anew for every name: each edit added a lookup
/// waiting on the server (a blocked thread) beside those still running,
/// and a name's lookups overlapped. Once the server answers, the lookup
/// taken over is the replacement's answer and the pod is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_takes_over_the_lookup_it_finds_running() {
    let (dns, mut w) = app_by_name("edited", "1ms").await;
    let name = own_name("edited");
    let port = w.pods[0].addr.port();
    dns.hold();
    dns.wait_held("the re-resolution's lookup").await;
    let settings = "    resolve_interval: 1ms\n    read_timeout: 30s\n";
    let edited = upstream("app", &format!("https://{name}:{port}"), settings);
    w.scene.public_config("[{ upstream: app }]", &edited);
    let reloaded = w.wait_reloaded("the edit applied").await;
    assert_eq!(reloaded["changes"], "upstreams changed: app");
    assert_eq!(
        dns.held_askers(),
        1,
        "the edit's upstream asked beside the lookup running"
    );

    dns.release(&["127.0.0.2"]).await;
    assert_pod_serves(&w, "the lookup taken over answered").await;
}

/// Lookups run at most 64 at once in the process: with 65 names on a
/// silent name server, 64 lookups wait on it and the 65th name's
/// re-resolution fails at once (`too many lookups running`), logged and
/// counted like any failed lookup, its server kept as it was; once the
/// server answers, the lookups end and that name recovers too. Each name
/// held a blocked thread of its own, with no bound: 65 lookups waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_run_at_most_64_at_once() {
    let names: Vec<String> = (0..65).map(|k| own_name(&format!("crowd-{k}"))).collect();
    let dns = NameServer::start(&["127.0.0.2"]).await;
    dns.hold();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = app_over(&dns, &names, TINY).await;
    let last = format!("https://{}:{}", names[64], w.pods[0].addr.port());
    let failed = w
        .proxy
        .wait_log("a failed lookup", |v| v["message"] == FAILED)
        .await;
    assert!(
        dns.held_askers() <= 64,
        "{} lookups waiting at once",
        dns.held_askers()
    );
    assert_eq!(failed["server"], last, "{failed}");
    let error = failed["error"].as_str().unwrap_or("");
    assert!(error.contains("too many lookups running"), "{failed}");

    dns.release(&["127.0.0.2"]).await;
    w.proxy
        .wait_log("the 65th name's recovery", |v| {
            v["message"] == "upstream DNS lookup recovered" && v["server"] == last
        })
        .await;
}

/// Rejected reloads that each build the same new upstream (its name's
/// server silent; the listener part rejected after the upstreams are
/// built) ask its name once between them: the lookup the first attempt
/// left running is joined by the next, in the process, not only by an
/// edit's replacement. Each attempt asked anew beside the lookups of the
/// attempts before (a blocked thread each), until all 64 places were
/// taken and every name in the process failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_reloads_ask_a_new_name_once() {
    let (dns, mut w) = app_by_name("beside", "5s").await;
    let port = w.pods[0].addr.port();
    let fresh = own_name("rejected");
    dns.hold_name(&fresh);
    // A listener on an address taken: rejected once the upstreams are built.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap();
    let app = upstream(
        "app",
        &format!("https://{}:{port}", own_name("beside")),
        "    resolve_interval: 5s\n",
    );
    let upstreams = [
        app,
        upstream("fresh", &format!("https://{fresh}:{port}"), ""),
    ]
    .concat();
    for k in 0..2 {
        let listener = format!("taken{k}");
        w.scene.config(&format!(
            "\nadmin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{}\n{}\nupstreams:{upstreams}\n",
            listener_yaml("public", "127.0.0.1:0", "[{ upstream: app }]"),
            listener_yaml(&listener, &taken.to_string(), "[{ upstream: fresh }]"),
        ));
        let rejected = w
            .proxy
            .wait_log("the reload rejected", |v| {
                v["message"] == "configuration rejected; the running configuration stays"
                    && v["error"].as_str().unwrap_or("").contains(&listener)
            })
            .await;
        assert!(
            rejected["error"]
                .as_str()
                .unwrap_or("")
                .contains("cannot bind"),
            "{rejected}"
        );
    }
    assert_eq!(
        dns.held_askers(),
        1,
        "a rejected reload's lookup of the name was not joined by the next"
    );
}

/// A server dialled by name (`resolve_interval: 0s`) on a silent name
/// server: each dial times out (`connect_timeout`), its lookup still
/// running, and the next dial joins that lookup instead of asking beside
/// it. Each dial ran a lookup of its own on the blocking pool, outside
/// the 64, and one timed out left its thread blocked: one more per dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_by_name_share_one_lookup() {
    let dns = NameServer::start(&["127.0.0.2"]).await;
    dns.hold();
    let settings = "    resolve_interval: 0s\n    connect_timeout: 1s\n";
    let w = app_over(&dns, &[&own_name("dialled")], settings).await;
    // One after another: concurrent ones would wait for one dial.
    for _ in 0..3 {
        let (status, _) = get_pod(&mut client(&w).await, "/").await;
        assert_eq!(status, 504, "a dial on a silent name server");
    }
    assert_eq!(
        dns.held_askers(),
        1,
        "dials by name each asked beside the lookup running"
    );
}

/// A name refused a place (64 lookups hang on a silent name server, an
/// upstream's 64 names) is asked again no sooner than 1 s after, whatever
/// its `resolve_interval` (1 ms here): a second at least passes between
/// two refusals in a row. It was asked again every interval: hundreds of
/// failures a second. A refused lookup never starts, so the name server
/// sees none of them: they show as its failures counted, read until
/// [`GAPS`] more have come, each read between when it was asked and when
/// it was told. Two refusals in a row took place after the last read that
/// counted neither and no later than the first that counted both: that
/// span holds their gap, so it is 1 s or more however slow the machine
/// (slower, it only grows); asked every interval, it is a read or two.
/// No place frees meanwhile (which would end a wait sooner): the 64
/// lookups hold theirs until resolv.conf's 30 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_refused_a_place_waits_a_second() {
    let dns = NameServer::start(&["127.0.0.2"]).await;
    dns.hold();
    let names: Vec<String> = (0..64).map(|k| own_name(&format!("taking-{k}"))).collect();
    let late = own_name("late");
    // `app` first: its 64 lookups take every place before `late` asks.
    let routes = "\n      - { path_prefix: /app, upstream: app }\n      - { path_prefix: /late, upstream: late }";
    let mut w = serve_by(&dns, POD, routes, |ports| {
        let port = ports[0];
        let servers: Vec<String> = (names.iter())
            .map(|name| format!("https://{name}:{port}"))
            .collect();
        [
            upstream("app", &servers.join(", "), TINY),
            upstream("late", &format!("https://{late}:{port}"), TINY),
        ]
        .concat()
    })
    .await;
    let failed = w
        .proxy
        .wait_log("the late name refused", |v| {
            v["message"] == FAILED && v["upstream"] == "late"
        })
        .await;
    let error = failed["error"].as_str().unwrap_or("");
    assert!(error.contains("too many lookups running"), "{failed}");

    // Each read of the count: when asked, when told, the count.
    let mut reads = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let asked = Instant::now();
        let count = errors_of(&w, "late").await;
        reads.push((asked, Instant::now(), count));
        let more = count - reads[0].2;
        if more > GAPS as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "{more} refusals in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in 1..=GAPS {
        // Refusals `n` and `n + 1` (counted from the first read's).
        let n = reads[0].2 + k as f64;
        let (after, _, _) = reads.iter().rfind(|r| r.2 < n).unwrap();
        let (_, by, _) = reads.iter().find(|r| r.2 > n).unwrap();
        let span = by.duration_since(*after);
        assert!(
            span >= Duration::from_secs(1),
            "refusals {k} and {} within {span:?}: {:?}",
            k + 1,
            reads.iter().map(|r| r.2).collect::<Vec<_>>()
        );
    }
}

/// Gaps between refusals in a row that [`a_name_refused_a_place_waits_a_second`] measures.
const GAPS: usize = 3;

/// SIGTERM while a reload waits for a name's lookup (its name server
/// silent): once the lookup gives up, the reload is dropped, not applied
/// (no reload once shutdown has begun, SPEC §3). Shutdown was checked only
/// when a reload began: this one was committed after shutdown began, and
/// the listening sockets' release waited behind it. Nor is the edit's
/// second upstream built then: its lookup (5 s more) held the listening
/// socket open with nobody accepting; its name is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_still_building_when_shutdown_begins_is_not_applied() {
    let (dns, mut w) = app_by_name("stopping", "0s").await;
    let port = w.pods[0].addr.port();
    // A request held at the pod: the drain lasts until the test ends.
    let mut held_send = client(&w).await;
    let held = tokio::spawn(async move { get_pod(&mut held_send, "/hang").await });
    wait_until(WAIT, "the request held at the pod", || async {
        w.pods[0].requests_for("/hang") == 1
    })
    .await;
    let (late, second) = (own_name("stopping-late"), own_name("stopping-second"));
    dns.hold_name(&late);
    dns.hold_name(&second);
    let edited = upstream("app", &format!("https://{late}:{port}"), "")
        + &upstream("two", &format!("https://{second}:{port}"), "");
    let routes = "[{ path_prefix: /two, upstream: two }, { upstream: app }]";
    w.scene.public_config(routes, &edited);
    dns.wait_held("the edit's lookup").await;
    w.proxy.signal("TERM");
    let began = "shutting down: no new connections, draining open ones";
    w.proxy
        .wait_log("shutdown begun", |v| v["message"] == began)
        .await;
    let outcome = w
        .proxy
        .wait_log("the reload's end", |v| {
            v["message"] == "configuration reloaded"
                || v["message"] == "shutting down; configuration change ignored"
        })
        .await;
    assert_eq!(
        outcome["message"], "shutting down; configuration change ignored",
        "{outcome}"
    );
    wait_until(WAIT, "the listening socket closed", || async {
        tokio::net::TcpStream::connect(w.public).await.is_err()
    })
    .await;
    let asked = |name: &str| dns.held_for(name);
    assert!(asked(&late) > 0, "the first upstream's name was asked");
    assert_eq!(
        asked(&second),
        0,
        "the second upstream was built after SIGTERM"
    );
    held.abort();
}
