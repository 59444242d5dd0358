//! An upstream: server URLs, TLS to them (CA, client pair, server name), timeouts, pool size.

use std::time::Duration;

use super::{Named, Resolver};
use crate::config::raw;
use crate::config::{EntryKind, EntrySpec, UpstreamConfig, UpstreamServer, UpstreamTls};

impl Resolver {
    pub(super) fn upstream(
        &mut self,
        i: usize,
        u: &raw::Upstream,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> UpstreamConfig {
        let at = format!("upstreams[{i}]");
        if u.servers.is_empty() {
            self.problem(format!("{at}.servers"), "at least one server is needed");
        }
        let mut servers = Vec::new();
        for (j, s) in u.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            let url = self.string(&sat, s);
            match parse_server(&url) {
                Ok(server) => servers.push(server),
                Err(e) => self.problem(sat, e),
            }
        }
        let mut tls = UpstreamTls::default();
        if let Some(t) = &u.tls {
            let tat = format!("{at}.tls");
            if let Some(ca) = &t.ca {
                let place = format!("upstreams.{}.tls.ca", u.name);
                if let Some(ca) = self.ca(&format!("{tat}.ca"), ca, place, true, named, anonymous) {
                    tls.ca = ca;
                }
            }
            if let Some(c) = &t.client_cert {
                let place = format!("upstreams.{}.tls.client_cert", u.name);
                if c.server_names.is_some() {
                    self.problem(
                        format!("{tat}.client_cert.server_names"),
                        "server_names apply to listener certificates only",
                    );
                }
                if c.client_auth.is_some() {
                    self.problem(
                        format!("{tat}.client_cert.client_auth"),
                        "client_auth applies to listener certificates only",
                    );
                }
                tls.client_cert = self.pair(
                    &format!("{tat}.client_cert"),
                    c,
                    EntryKind::ClientPair,
                    place,
                    named,
                    anonymous,
                );
            }
            if let Some(n) = &t.server_name {
                let n = self.string(&format!("{tat}.server_name"), n);
                if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
                    self.problem(
                        format!("{tat}.server_name"),
                        format!("{n:?} is not a DNS name or IP address"),
                    );
                }
                tls.server_name = Some(n);
            }
            if let Some(d) = t.drain_on_rotation {
                tls.drain_on_rotation = d;
            }
        }
        UpstreamConfig {
            name: u.name.clone(),
            servers,
            tls,
            connect_timeout: self.duration(
                &format!("{at}.connect_timeout"),
                u.connect_timeout.as_ref(),
                Duration::from_secs(5),
            ),
            request_timeout: self.duration(
                &format!("{at}.request_timeout"),
                u.request_timeout.as_ref(),
                Duration::from_secs(60),
            ),
            max_idle_connections: u.max_idle_connections.unwrap_or(256),
            // Envoy's default max_connections: a cap, not a throttle.
            max_connections_per_server: u.max_connections_per_server.unwrap_or(1024),
        }
    }
}

/// `https://host:port` or `http://host[:port]` (default ports 443 / 80).
fn parse_server(url: &str) -> Result<UpstreamServer, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{url:?} must be scheme://host[:port] without a path"
        ));
    }
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("{url:?} has an invalid host or port"))?;
    let host = uri
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(UpstreamServer {
        url: url.to_owned(),
        https,
        host,
        port,
    })
}
