//! The checked types of one upstream: servers, TLS to them, timeouts, pool limits, balancing, health.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    /// TLS settings for `https://` servers (defaults when not configured:
    /// system roots, no client certificate, the URL host as server name).
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
    /// From the request until the response head, a small body read whole
    /// first ([`crate::proxy::buffer`]) included; all attempts share it.
    pub request_timeout: Duration,
    /// The longest wait for the next piece of a response body (nginx's
    /// `proxy_read_timeout`); then the response is cut.
    pub read_timeout: Duration,
    /// Idle pooled connections kept per server (nginx's `keepalive N`);
    /// beyond that a connection returned to the pool is closed, so a burst
    /// does not leave hundreds of upstream connections open.
    pub max_idle_connections: usize,
    /// An idle pooled connection (HTTP/1.1 between requests, HTTP/2 with
    /// no stream) older than this is closed instead of reused (nginx's
    /// upstream `keepalive_timeout`, Traefik's `idleConnTimeout`).
    pub idle_timeout: Duration,
    /// Open connections per server at most (0 = unlimited); a request
    /// needing another waits up to `connect_timeout` (`proxy::slots`).
    pub max_connections_per_server: usize,
    /// How often server hostnames are re-resolved (issue 16); every address
    /// is an endpoint. Zero = hotproxy does not resolve: each server is one
    /// endpoint whose name is resolved per new connection.
    pub resolve_interval: Duration,
    pub balance: Balance,
    pub health: HealthConfig,
    /// `retries.attempts`: further tries on another endpoint where safe.
    pub retries: u32,
    /// `retries.budget_percent` and `retries.min_retry_concurrency`: how
    /// many retries may be in flight at once across the upstream's requests.
    pub retry_budget: RetryBudget,
    /// PINGs on HTTP/2 upstream connections; off unless configured.
    pub http2_keepalive: Option<Http2Keepalive>,
    /// Response bytes one stream of an HTTP/2 upstream connection may have
    /// unread (its flow-control window; the connection's is 100 of them).
    /// It bounds one stream's rate to this per round trip, and what a
    /// client that stops reading leaves in memory per stream.
    pub http2_stream_window_bytes: u32,
}

/// `http2_stream_window_bytes` by default: 250 MB/s a stream at an
/// in-cluster 0.5 ms round trip, 16 MB for a client with 100 unread
/// streams.
pub const DEFAULT_HTTP2_STREAM_WINDOW: u32 = 128 * 1024;

/// The largest `http2_stream_window_bytes`: 100 streams' worth must fit in
/// HTTP/2's largest window (2^31 - 1).
pub const MAX_HTTP2_STREAM_WINDOW: u32 = (u32::MAX >> 1) / 100;

/// The smallest: HTTP/2's initial window (RFC 9113 §6.9.2).
pub const MIN_HTTP2_STREAM_WINDOW: u32 = 65_535;

/// `http2_keepalive`: a PING on an HTTP/2 upstream connection that has
/// requests in flight and has read nothing for `interval`; no answer
/// within `timeout` closes it and fails its requests (Envoy's
/// `connection_keepalive`, Go's and Traefik's `ReadIdleTimeout` and
/// `PingTimeout`).
///
/// Off by default, as in those: grpc-go servers answer PINGs sent more
/// often than their enforcement policy's `MinTime` (5 minutes by default)
/// with `GOAWAY too_many_pings`, closing every stream of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

/// The retry budget (Envoy's cluster `retry_budget`): a retry to another
/// endpoint goes only while the upstream's retries in flight are fewer
/// than `min_concurrency` or `percent` % of its requests in flight,
/// whichever allows more ([`crate::proxy::budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    /// 0..=100.
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for RetryBudget {
    /// Envoy's defaults: 20 %, at least 3.
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_concurrency: 3,
        }
    }
}

/// `balance`: how each request picks an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequest,
}

/// `health`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthConfig {
    pub passive: PassiveHealth,
    pub active: Option<ActiveHealth>,
}

/// `health.passive`: ejection after consecutive failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassiveHealth {
    /// 0 = passive health off.
    pub consecutive_failures: u32,
    pub eject_for: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            consecutive_failures: 5,
            eject_for: Duration::from_secs(10),
        }
    }
}

/// `health.active`: a GET of `path` on every endpoint, over the upstream's TLS.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveHealth {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// 1 to [`MAX_ACTIVE_COUNT`].
    pub healthy_after: u32,
    /// 1 to [`MAX_ACTIVE_COUNT`].
    pub unhealthy_after: u32,
}

/// The most `healthy_after` / `unhealthy_after` may be: checks in a row
/// are counted in an `i32`, and thresholds are small numbers elsewhere
/// too (nginx's `max_fails`, Envoy's `unhealthy_threshold`).
pub const MAX_ACTIVE_COUNT: u32 = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamServer {
    /// As configured, e.g. `https://127.0.0.1:9443`.
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamTls {
    pub ca: UpstreamCa,
    /// Catalogue entry id (type client-pair).
    pub client_cert: Option<String>,
    /// The SNI sent, and the name verified unless `verify_names` is set;
    /// `None` = each server URL's host (no SNI when that is an IP).
    pub server_name: Option<String>,
    /// Accepted certificate names (DNS, IP, URI, `spiffe://td/**`); when
    /// non-empty they replace checking the server name (issue 16).
    pub verify_names: Vec<crate::tls::names::NamePattern>,
    pub drain_on_rotation: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca: UpstreamCa::System,
            client_cert: None,
            server_name: None,
            verify_names: Vec::new(),
            drain_on_rotation: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum UpstreamCa {
    /// Catalogue entry id (type ca-bundle).
    Entry(String),
    /// The operating system's trust store.
    System,
}
