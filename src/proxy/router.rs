//! Host / path-prefix -> upstream. (stub until merged)

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::RouteConfig;
use crate::proxy::forward::Upstream;

pub struct Router {
    routes: Vec<Arc<Upstream>>,
}

impl Router {
    pub fn new(routes: &[RouteConfig], upstreams: &HashMap<String, Arc<Upstream>>) -> Router {
        Router {
            routes: routes
                .iter()
                .filter_map(|r| upstreams.get(&r.upstream).cloned())
                .collect(),
        }
    }
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Upstream>> {
        let _ = (host, path);
        self.routes.first()
    }
}
