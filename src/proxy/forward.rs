//! Header rewriting, pooled upstream client, 502/504 mapping. (stub until merged)

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use rustls::ClientConfig;

use crate::config::UpstreamConfig;
use crate::tls::ClientIdentity;

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

pub struct RequestContext {
    pub listener: Arc<str>,
    pub client_addr: SocketAddr,
    pub client_cert: Option<Arc<ClientIdentity>>,
    pub tls_sni: Option<Arc<str>>,
}

pub struct Upstream {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, tls: Arc<ClientConfig>) -> Arc<Upstream> {
        let _ = tls;
        Arc::new(Upstream {
            name: config.name.as_str().into(),
            config,
        })
    }
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        let _ = tls;
    }
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Response<ResponseBody> {
        let _ = (req, ctx);
        error_response(StatusCode::BAD_GATEWAY, "stub")
    }
}

pub fn error_response(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    use http_body_util::{BodyExt, Full};
    let body = Full::new(Bytes::from(format!("{msg}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp
}
