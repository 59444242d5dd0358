//! The metric names of SPEC §5, in one place.
//!
//! One process-wide registry: every serving path records through the
//! functions here, and `/metrics` renders it. Names and labels are the
//! public contract; extend, never rename.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    pub entry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryTypeLabels {
    pub entry: String,
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryResultLabels {
    pub entry: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerResultLabels {
    pub listener: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: String,
    pub upstream: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: String,
    pub upstream: String,
}

/// `hotproxy_upstream_endpoints{upstream,state}` (issue 16).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointStateLabels {
    pub upstream: String,
    pub state: String,
}

/// `hotproxy_upstream_requests_total{upstream,endpoint,code}` (issue 16).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointRequestLabels {
    pub upstream: String,
    pub endpoint: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

fn request_duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Every metric hotproxy exports.
pub struct Metrics {
    pub cert_not_after: Family<EntryTypeLabels, Gauge>,
    /// Earliest nextUpdate of a ca-bundle entry's CRLs (issue 13).
    pub crl_next_update: Family<EntryLabels, Gauge>,
    pub cert_reloads: Family<EntryResultLabels, Counter>,
    pub cert_last_reload: Family<EntryLabels, Gauge>,
    pub tls_handshakes: Family<ListenerResultLabels, Counter>,
    pub connections_active: Family<ListenerLabels, Gauge>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    /// 1 once the configuration file loaded (startup) or reloaded, 0 while
    /// the file on disk is rejected and the previous configuration runs.
    pub config_last_reload_successful: Gauge,
    /// Clients refused for who they are (issue 15): handshake or route.
    pub client_auth_denied: Family<ListenerReasonLabels, Counter>,
    /// Lines dropped because the writer lagged or could not write them:
    /// the access log's, and the diagnostic log's (stderr, `log_writer`).
    pub access_log_dropped: Counter,
    pub log_lines_dropped: Counter,
    // What an operator is told (issue 18): pending and failing reloads,
    // a degraded watcher, SNI misses, clients that leave without asking.
    pub cert_reload_pending: Family<EntryLabels, Gauge>,
    pub cert_reload_failing: Family<EntryLabels, Gauge>,
    pub watch_degraded: Gauge,
    pub tls_sni_default: Family<ListenerLabels, Counter>,
    pub closed_before_request: Family<ListenerLabels, Counter>,
    /// HTTP/2 connections closed for rapid reset (src/proxy/cancels.rs).
    pub rapid_reset_closed: Family<ListenerLabels, Counter>,
    /// Failed `accept()` calls (EMFILE, ENFILE, ...) per listener; the
    /// admin listener counts as `listener="admin"`.
    pub accept_errors: Family<ListenerLabels, Counter>,
    /// Admin API requests refused for their token (401), by reason
    /// (`missing_token`, `invalid_token`).
    pub admin_auth_failures: Family<ReasonLabels, Counter>,
    /// Endpoints of an upstream by state (`healthy`, `ejected`).
    pub upstream_endpoints: Family<EndpointStateLabels, Gauge>,
    /// Responses (and failures, as the status answered) per endpoint.
    pub upstream_requests: Family<EndpointRequestLabels, Counter>,
    /// Requests sent again to another endpoint.
    pub upstream_retries: Family<UpstreamLabels, Counter>,
    /// Retries to another endpoint the retry budget refused.
    pub upstream_retry_overflow: Family<UpstreamLabels, Counter>,
    /// Requests sent again to the same endpoint: on a new connection, or
    /// (refused on a connection that still serves) on any connection.
    pub upstream_resends: Family<UpstreamLabels, Counter>,
    /// The length of the last scrape's text: the next is rendered into a
    /// String of that size, not grown from empty by doubling.
    rendered_len: std::sync::atomic::AtomicUsize,
    registry: Registry,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            cert_not_after: Family::default(),
            crl_next_update: Family::default(),
            cert_reloads: Family::default(),
            cert_last_reload: Family::default(),
            tls_handshakes: Family::default(),
            connections_active: Family::default(),
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(
                request_duration_histogram as fn() -> Histogram,
            ),
            upstream_errors: Family::default(),
            config_reloads: Family::default(),
            config_last_reload_successful: Gauge::default(),
            client_auth_denied: Family::default(),
            access_log_dropped: Counter::default(),
            log_lines_dropped: Counter::default(),
            cert_reload_pending: Family::default(),
            cert_reload_failing: Family::default(),
            watch_degraded: Gauge::default(),
            tls_sni_default: Family::default(),
            closed_before_request: Family::default(),
            rapid_reset_closed: Family::default(),
            accept_errors: Family::default(),
            admin_auth_failures: Family::default(),
            upstream_endpoints: Family::default(),
            upstream_requests: Family::default(),
            upstream_retries: Family::default(),
            upstream_retry_overflow: Family::default(),
            upstream_resends: Family::default(),
            rendered_len: std::sync::atomic::AtomicUsize::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "hotproxy_cert_not_after_timestamp_seconds",
            "Not-after of the certificate an entry serves or trusts (earliest in a bundle)",
            m.cert_not_after.clone(),
        );
        registry.register(
            "hotproxy_crl_next_update_timestamp_seconds",
            "Earliest nextUpdate of the CRLs of a ca-bundle entry; past it, verifying listeners refuse client certificates",
            m.crl_next_update.clone(),
        );
        registry.register(
            "hotproxy_cert_reloads",
            "Reloads of a catalogue entry by result",
            m.cert_reloads.clone(),
        );
        registry.register(
            "hotproxy_cert_last_reload_timestamp_seconds",
            "When an entry's material was last swapped in",
            m.cert_last_reload.clone(),
        );
        registry.register(
            "hotproxy_tls_handshakes",
            "TLS handshakes on listeners by result",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "hotproxy_connections_active",
            "Open client connections per listener",
            m.connections_active.clone(),
        );
        registry.register(
            "hotproxy_http_requests",
            "Requests answered per listener, upstream and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "hotproxy_http_request_duration_seconds",
            "Time from request head to response head",
            m.http_request_duration.clone(),
        );
        registry.register(
            "hotproxy_upstream_errors",
            "Failed upstream requests by cause",
            m.upstream_errors.clone(),
        );
        registry.register(
            "hotproxy_config_reloads",
            "Configuration file reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "hotproxy_config_last_reload_successful",
            "1 if the configuration file's last load or reload applied (or found it unchanged), 0 while the file is rejected and the previous configuration runs",
            m.config_last_reload_successful.clone(),
        );
        registry.register(
            "hotproxy_upstream_endpoints",
            "Endpoints (resolved server addresses) of an upstream by health state",
            m.upstream_endpoints.clone(),
        );
        registry.register(
            "hotproxy_upstream_requests",
            "Upstream requests per endpoint by the status answered",
            m.upstream_requests.clone(),
        );
        registry.register(
            "hotproxy_upstream_retries",
            "Upstream requests sent again to another endpoint",
            m.upstream_retries.clone(),
        );
        registry.register(
            "hotproxy_upstream_retry_overflow",
            "Retries to another endpoint the upstream's retry budget refused: the request failed with its attempt's failure",
            m.upstream_retry_overflow.clone(),
        );
        registry.register(
            "hotproxy_upstream_resends",
            "Upstream requests sent again to the same endpoint, on a new connection or (REFUSED_STREAM on a connection that still serves) on any: not written, left unprocessed, or idempotent on a reused connection closed before the response",
            m.upstream_resends.clone(),
        );
        registry.register(
            "hotproxy_client_auth_denied",
            "Clients refused by client authentication or allow rules, by listener and reason",
            m.client_auth_denied.clone(),
        );
        registry.register(
            "hotproxy_access_log_dropped",
            "Access-log lines dropped because the writer could not keep up or write them",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "hotproxy_log_lines_dropped",
            "Diagnostic log lines dropped because stderr was not read fast enough",
            m.log_lines_dropped.clone(),
        );
        registry.register(
            "hotproxy_accept_errors",
            "Failed accepts of client connections (out of file descriptors, ...) per listener",
            m.accept_errors.clone(),
        );
        registry.register(
            "hotproxy_admin_auth_failures",
            "Admin API requests refused for a missing or invalid bearer token (401), by reason",
            m.admin_auth_failures.clone(),
        );
        registry.register(
            "hotproxy_cert_reload_pending",
            "1 while an entry's changed files are not loadable yet and are waited for (up to settle_timeout)",
            m.cert_reload_pending.clone(),
        );
        registry.register(
            "hotproxy_cert_reload_failing",
            "1 while an entry's files are refused (the previous material, if any, is still served)",
            m.cert_reload_failing.clone(),
        );
        registry.register(
            "hotproxy_watch_degraded",
            "1 while a directory cannot be watched and changes are found by polling only",
            m.watch_degraded.clone(),
        );
        registry.register(
            "hotproxy_tls_sni_default",
            "ClientHellos (one per connection) whose SNI matched no configured name and got the listener's default certificate, whether or not the handshake then completed",
            m.tls_sni_default.clone(),
        );
        registry.register(
            "hotproxy_connections_closed_before_request",
            "TLS connections the client closed before sending a request (e.g. it refused the certificate's name)",
            m.closed_before_request.clone(),
        );
        registry.register(
            "hotproxy_http2_rapid_reset_closed",
            "HTTP/2 connections closed because their client cancelled most of its requests before the answer, each within 1 s of its start (rapid reset)",
            m.rapid_reset_closed.clone(),
        );
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        // Both results exist from the start, so `rate()` and alerts on
        // failures see a zero before the first reload.
        for result in ["success", "failure"] {
            drop(m.config_reloads.get_or_create(&ResultLabels {
                result: result.into(),
            }));
        }
        Metrics { registry, ..m }
    }

    /// Prometheus / OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::with_capacity(self.rendered_len.load(Relaxed));
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        self.rendered_len.store(out.len(), Relaxed);
        out
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Count one failed upstream request. `reason` is one of a small fixed set
/// (SPEC §5): `connect_refused`, `connect_timeout`, `connect_error` (any
/// other dial failure: a name that does not resolve, no route to the host),
/// `connection_limit` (no slot of `max_connections_per_server` free),
/// `timeout`, `keepalive_timeout`, `read_timeout`, `unknown_ca`,
/// `name_mismatch`, `expired`, `invalid_purpose`, `client_cert_refused`,
/// `crl_invalid`, `tls`, `protocol`, `no_servers`, and `resolve` (a failed
/// re-resolution, not a request).
pub fn upstream_error(upstream: &str, reason: &str) {
    METRICS
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            upstream: upstream.to_owned(),
            reason: reason.to_owned(),
        })
        .inc();
}

/// Count one reload of the catalogue entry `entry`: `success` (new
/// material served) or `failure` (its files refused, counted once per
/// failed material: see `reload::entry`).
pub fn cert_reload(entry: &str, result: &str) {
    METRICS
        .cert_reloads
        .get_or_create(&EntryResultLabels {
            entry: entry.to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

/// Count one request sent again (on a new connection, or on any after a
/// refusal on one that still serves) to the endpoint it was sent to (a
/// reused connection closed before answering it, and the like: SPEC,
/// Upstream connection pool).
pub fn upstream_resend(upstream: &str) {
    let labels = UpstreamLabels {
        upstream: upstream.to_owned(),
    };
    METRICS.upstream_resends.get_or_create(&labels).inc();
}

/// Record one answered request.
pub fn request(listener: &str, upstream: &str, code: u16, elapsed: Duration) {
    METRICS
        .http_requests
        .get_or_create(&RequestLabels {
            listener: listener.to_owned(),
            upstream: upstream.to_owned(),
            code: code.to_string(),
        })
        .inc();
    METRICS
        .http_request_duration
        .get_or_create(&RouteLabels {
            listener: listener.to_owned(),
            upstream: upstream.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

#[cfg(test)]
thread_local! {
    /// Family look-ups `forget_endpoint_requests` made on this thread.
    pub static FORGET_LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Remove the `hotproxy_upstream_requests_total` series of `endpoint` (an
/// address) of `upstream` with the status `codes`: every code counted at
/// it, which the members at that address keep together (see
/// `upstream::members::Series`). No endpoint of it has that address any
/// more. Only those: looking for every code from 100 to 999 took 900
/// look-ups per address, on a runtime worker.
pub fn forget_endpoint_requests(
    upstream: &str,
    endpoint: &str,
    codes: impl IntoIterator<Item = u16>,
) {
    let mut labels = EndpointRequestLabels {
        upstream: upstream.to_owned(),
        endpoint: endpoint.to_owned(),
        code: String::new(),
    };
    for code in codes {
        labels.code.clear();
        let _ = write!(labels.code, "{code}");
        #[cfg(test)]
        FORGET_LOOKUPS.with(|n| n.set(n.get() + 1));
        METRICS.upstream_requests.remove(&labels);
    }
}

/// Counters of one label set by status code, each resolved in its family
/// on first use: counting a response then takes no family lock and builds
/// no label strings. The table (500 codes) is allocated on the first
/// count, so a route or endpoint that never answers costs one pointer;
/// the codes past 599 (valid, if unregistered) have a table of their own,
/// allocated on the first of them: each of those took the family lock and
/// built its labels on every response, a backend answering `799` to every
/// request paying that per request.
#[derive(Default)]
pub struct CodeCounters {
    /// Status codes 100..=599, by `code - 100`.
    codes: CodeTable,
    /// Status codes 600..=999, by `code - 600`.
    high: CodeTable,
}

/// A [`CodeCounters`] table, allocated on its first count.
type CodeTable = std::sync::OnceLock<Box<[std::sync::OnceLock<Counter>]>>;

impl CodeCounters {
    /// The counter for `code`; `resolve` finds it in its family the
    /// first time. `None` outside 100..=999 (no status code there).
    pub fn get(&self, code: u16, resolve: impl FnOnce() -> Counter) -> Option<&Counter> {
        let (table, i, len) = self.slot(code)?;
        let codes = table.get_or_init(|| (0..len).map(|_| std::sync::OnceLock::new()).collect());
        Some(codes.get(i)?.get_or_init(resolve))
    }

    /// The counter of `code` if it was made already.
    pub fn cached(&self, code: u16) -> Option<&Counter> {
        let (table, i, _) = self.slot(code)?;
        table.get()?.get(i)?.get()
    }

    /// The table `code` is in, its place there, and the table's length.
    fn slot(&self, code: u16) -> Option<(&CodeTable, usize, usize)> {
        match code {
            100..=599 => Some((&self.codes, usize::from(code - 100), 500)),
            600..=999 => Some((&self.high, usize::from(code - 600), 400)),
            _ => None,
        }
    }
}

/// `hotproxy_http_requests_total` and `hotproxy_http_request_duration_seconds`
/// of one (listener, upstream) pair, resolved once: recording a request then
/// takes no family lock and builds no label strings (each status code's
/// counter is looked up on its first use).
pub struct RouteMetrics {
    listener: String,
    upstream: String,
    duration: std::sync::OnceLock<Histogram>,
    codes: CodeCounters,
}

impl RouteMetrics {
    /// The pair's metrics, its duration series in `/metrics` at once.
    pub fn new(listener: &str, upstream: &str) -> RouteMetrics {
        let m = RouteMetrics::deferred(listener, upstream);
        m.register();
        m
    }

    /// The pair's metrics for a configuration being planned: nothing is
    /// registered until [`RouteMetrics::register`] (when it commits) or
    /// a first request, so a configuration rejected later leaves no series
    /// of a listener that never ran.
    pub fn deferred(listener: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            listener: listener.to_owned(),
            upstream: upstream.to_owned(),
            duration: std::sync::OnceLock::new(),
            codes: CodeCounters::default(),
        }
    }

    /// Put the pair's duration series in `/metrics` (at zero until a
    /// request is counted): once the configuration it was made for runs.
    pub fn register(&self) {
        self.duration();
    }

    fn duration(&self) -> &Histogram {
        self.duration.get_or_init(|| {
            METRICS
                .http_request_duration
                .get_or_create(&RouteLabels {
                    listener: self.listener.clone(),
                    upstream: self.upstream.clone(),
                })
                .clone()
        })
    }

    /// Record one answered request.
    pub fn record(&self, code: u16, elapsed: Duration) {
        let counted = self.codes.get(code, || {
            METRICS
                .http_requests
                .get_or_create(&RequestLabels {
                    listener: self.listener.clone(),
                    upstream: self.upstream.clone(),
                    code: code.to_string(),
                })
                .clone()
        });
        let Some(counter) = counted else {
            return request(&self.listener, &self.upstream, code, elapsed);
        };
        counter.inc();
        self.duration().observe(elapsed.as_secs_f64());
    }
}

/// Every `result` of `hotproxy_tls_handshakes_total` (SPEC §5): a removed
/// listener's series are looked up by it.
const HANDSHAKE_RESULTS: &[&str] = &[
    "success",
    "plain_http",
    "source_not_allowed",
    "proxy_protocol_missing",
    "proxy_protocol_not_allowed",
    "proxy_protocol_malformed",
    "proxy_protocol_timeout",
    "proxy_protocol_closed",
    "timeout",
    "client_closed",
    "no_client_cert",
    "not_allowed",
    "unknown_ca",
    "revoked",
    "revocation_unknown",
    "crl_expired",
    "crl_invalid",
    "expired",
    "bad_client_cert",
    "client_refused_cert",
    "no_alpn_match",
    "incompatible",
    "protocol",
];

/// Every `reason` of `hotproxy_client_auth_denied_total` (SPEC §5).
const DENIED_REASONS: &[&str] = &[
    "not_allowed",
    "route_not_allowed",
    "source_not_allowed",
    "no_client_cert",
    "unknown_ca",
    "revoked",
    "revocation_unknown",
    "crl_expired",
    "crl_invalid",
    "expired",
    "bad_client_cert",
];

/// The running listeners of each name: a reload that moves a listener
/// starts the new one before the old one's connections end, and a name
/// removed may come back while they drain.
static LISTENERS: std::sync::Mutex<BTreeMap<String, usize>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A listener's own series, held by each running listener of that name:
/// when the last one is gone (removed or renamed by a reload, and its
/// connections ended) they leave `/metrics`, as a removed entry's do. Not
/// before: the gauge counts the draining connections down, and a count
/// made by one of them would bring a series back.
pub struct ListenerSeries {
    name: String,
    /// `hotproxy_connections_active{listener}`, looked up once: the family
    /// lookup takes a lock that has no place on the accept path.
    pub connections: Gauge,
    /// `hotproxy_tls_handshakes_total{listener, result="success"}`, looked
    /// up once for the same reason (failures, rarer, take the family).
    pub handshakes_ok: Counter,
}

impl ListenerSeries {
    pub fn new(name: &str) -> ListenerSeries {
        // Counted before the series are made: a last one of this name
        // going meanwhile does not remove them from under this one.
        let mut live = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
        *live.entry(name.to_owned()).or_default() += 1;
        drop(live);
        let listener = name.to_owned();
        ListenerSeries {
            connections: METRICS
                .connections_active
                .get_or_create_owned(&ListenerLabels {
                    listener: listener.clone(),
                }),
            handshakes_ok: METRICS
                .tls_handshakes
                .get_or_create_owned(&ListenerResultLabels {
                    listener,
                    result: "success".to_owned(),
                }),
            name: name.to_owned(),
        }
    }
}

impl Drop for ListenerSeries {
    fn drop(&mut self) {
        let mut live = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(n) = live.get_mut(&self.name) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        live.remove(&self.name);
        // Under the lock: a listener of this name starting now makes its
        // series after these are gone.
        let one = ListenerLabels {
            listener: self.name.clone(),
        };
        METRICS.connections_active.remove(&one);
        for family in [
            &METRICS.tls_sni_default,
            &METRICS.closed_before_request,
            &METRICS.rapid_reset_closed,
            &METRICS.accept_errors,
        ] {
            family.remove(&one);
        }
        for result in HANDSHAKE_RESULTS {
            METRICS.tls_handshakes.remove(&ListenerResultLabels {
                listener: self.name.clone(),
                result: (*result).to_owned(),
            });
        }
        for reason in DENIED_REASONS {
            METRICS.client_auth_denied.remove(&ListenerReasonLabels {
                listener: self.name.clone(),
                reason: (*reason).to_owned(),
            });
        }
    }
}

/// Count one TLS handshake on a listener; `result` is `success` or a short cause.
pub fn handshake(listener: &str, result: &str) {
    debug_assert!(
        HANDSHAKE_RESULTS.contains(&result),
        "{result}: add it to HANDSHAKE_RESULTS"
    );
    METRICS
        .tls_handshakes
        .get_or_create(&ListenerResultLabels {
            listener: listener.to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

/// Count one client refused for who it is: `reason` is the handshake
/// failure (`not_allowed`, `unknown_ca`, `revoked`, `expired`,
/// `no_client_cert`, …) or `route_not_allowed` for a 403.
pub fn client_auth_denied(listener: &str, reason: &str) {
    debug_assert!(
        DENIED_REASONS.contains(&reason),
        "{reason}: add it to DENIED_REASONS"
    );
    METRICS
        .client_auth_denied
        .get_or_create(&ListenerReasonLabels {
            listener: listener.to_owned(),
            reason: reason.to_owned(),
        })
        .inc();
}

/// Count one connection whose ClientHello's SNI matched no configured name
/// (it got the listener's default certificate), at the ClientHello.
pub fn sni_default(listener: &str) {
    METRICS
        .tls_sni_default
        .get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        })
        .inc();
}

/// Count one TLS connection the client closed before its first request.
pub fn closed_before_request(listener: &str) {
    METRICS
        .closed_before_request
        .get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        })
        .inc();
}

/// Count one HTTP/2 connection closed for rapid reset.
pub fn rapid_reset_closed(listener: &str) {
    METRICS
        .rapid_reset_closed
        .get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        })
        .inc();
}

/// Count one failed `accept()` on a listener (`admin` for the admin listener).
pub fn accept_error(listener: &str) {
    METRICS
        .accept_errors
        .get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        })
        .inc();
}

/// Publish (or, without CRLs, withdraw) the earliest nextUpdate of the
/// CRLs of ca-bundle `entry`.
pub fn crl_next_update(entry: &str, next_update: Option<i64>) {
    let labels = EntryLabels {
        entry: entry.to_owned(),
    };
    match next_update {
        Some(t) => {
            METRICS.crl_next_update.get_or_create(&labels).set(t);
        }
        None => {
            METRICS.crl_next_update.remove(&labels);
        }
    }
}

#[cfg(test)]
mod tests;
