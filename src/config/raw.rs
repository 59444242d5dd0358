//! The file as written: plain serde structs, unknown keys refused.

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub runtime: Option<Runtime>,
    pub admin: Option<Admin>,
    pub store: Option<Store>,
    pub watch: Option<Watch>,
    pub access_log: Option<AccessLog>,
    #[serde(default)]
    pub certs: Vec<Entry>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
}

/// `access_log:` as written; checked into [`crate::access_log::AccessLogConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub path: String,
    #[serde(default)]
    pub format: crate::access_log::LogFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub worker_threads: Option<usize>,
    pub shutdown_grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub bind: String,
    #[serde(default)]
    pub tokens: Vec<Token>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub role: String,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub path: String,
    pub key_file: String,
    pub file_roots: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub debounce: Option<String>,
    pub poll_interval: Option<String>,
    pub settle_timeout: Option<String>,
    pub events: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub crl_files: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    pub tls: Option<ListenerTls>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub limits: Option<Limits>,
    pub forward_client_cert: Option<crate::proxy::client_cert::ForwardClientCert>,
    pub request_id: Option<crate::proxy::request_id::RequestIdConfig>,
    pub access_log: Option<bool>,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub trusted_proxies: Option<Vec<String>>,
    pub allow_from: Option<Vec<String>>,
    pub response_headers: Option<ResponseHeaders>,
    pub redirect_https: Option<RedirectHttps>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    pub from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeaders {
    /// In file order: a name set twice (in any case) is refused naming
    /// the earlier entry, where a sorted map kept one by its spelling.
    #[serde(default, deserialize_with = "in_file_order")]
    pub set: Vec<(String, String)>,
}

/// A mapping's entries as written, in order (duplicates kept for the
/// resolver to refuse).
fn in_file_order<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of header names to values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = a.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    d.deserialize_map(Entries)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    pub port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    #[serde(default)]
    pub certs: Vec<CertRef>,
    pub client_auth: Option<ClientAuth>,
    pub alpn: Option<Vec<String>>,
    pub min_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRef {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_names: Option<Vec<String>>,
    /// Listener `certs` only: this entry's own client auth (chosen by SNI).
    pub client_auth: Option<ClientAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    pub mode: Option<String>,
    pub ca: Option<CaRef>,
    /// As written: each rule is checked by the resolver, a malformed one a
    /// problem at its place and line, and the rest of the file still read.
    pub allow: Option<Vec<crate::identity::RuleSpec>>,
    pub allow_expired_crl: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRef {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub ca_file: Option<String>,
    pub crl_files: Option<Vec<String>>,
    pub system: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: String,
    pub allow: Option<Vec<crate::identity::RuleSpec>>,
    pub forward_client_cert: Option<crate::proxy::client_cert::ForwardClientCert>,
    pub max_body_bytes: Option<u64>,
    pub allow_from: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_connection_lifetime: Option<String>,
    pub send_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub body_buffer_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub tunnel_idle_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<String>,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub max_idle_connections: Option<usize>,
    pub idle_timeout: Option<String>,
    pub max_connections_per_server: Option<usize>,
    pub resolve_interval: Option<String>,
    pub balance: Option<String>,
    pub health: Option<Health>,
    pub retries: Option<Retries>,
    pub http2_keepalive: Option<Http2Keepalive>,
    pub http2_stream_window_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Keepalive {
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub passive: Option<PassiveHealth>,
    pub active: Option<ActiveHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    pub consecutive_failures: Option<u32>,
    pub eject_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealth {
    pub path: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_after: Option<u32>,
    pub unhealthy_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    pub attempts: Option<u32>,
    pub budget_percent: Option<u32>,
    pub min_retry_concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    pub ca: Option<CaRef>,
    pub client_cert: Option<CertRef>,
    pub server_name: Option<String>,
    pub verify_names: Option<Vec<String>>,
    pub drain_on_rotation: Option<bool>,
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{messages, parse_str};

    /// A typo is an error naming the key and its line.
    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse_str("watch:\n  debounse: 1s\n").unwrap_err();
        let m = messages(&e);
        assert!(m.contains("debounse") && m.contains("line 2"), "{m}");
    }
}
