//! `read_timeout`: the longest wait for the next piece of an upstream response body, after which the response is cut.
//!
//! `request_timeout` ends at the response head. Without a bound after it, a
//! backend that hangs in the middle of a body leaves the client waiting for
//! ever and holds the upstream connection (nginx's `proxy_read_timeout`,
//! default 60 s, bounds each read the same way). The timer is armed only
//! when the body has to wait: a body that arrives with its head, as most
//! do, costs no timer at all. A body the upstream breaks instead (a bad
//! chunk, a close or a reset before its end) is logged and counted here
//! too, unless the client's own request body broke first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::proxy::body::Fault;
use crate::proxy::forward::BoxError;

/// One upstream's `read_timeout`, shared by its response bodies.
pub struct ReadTimeout {
    pub timeout: Duration,
    /// For the log line and the metric.
    pub upstream: Arc<str>,
}

/// One response body's wait for its next piece.
pub struct ReadTimer {
    limit: Arc<ReadTimeout>,
    /// Armed at the first wait; reset only after progress.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was last set.
    progress: bool,
}

impl ReadTimer {
    pub fn new(limit: Arc<ReadTimeout>) -> ReadTimer {
        ReadTimer {
            limit,
            sleep: None,
            progress: false,
        }
    }

    /// The upstream's name, for the logs.
    pub fn upstream(&self) -> &Arc<str> {
        &self.limit.upstream
    }

    /// A piece of the body arrived.
    pub fn progress(&mut self) {
        self.progress = true;
    }

    /// The body failed with `e`: the response is cut, as after a stall.
    /// If the upstream broke it (a bad chunk size, a close before its
    /// length, a reset), that is logged and counted by its cause as a
    /// failed request is. If the client broke its own request body
    /// first (`client`: it stalled, went over `max_body_bytes`, sent
    /// trailers refused), hyper abandoned the upstream request for it:
    /// the client's fault, at debug as [`crate::proxy::forward::client_fault`]
    /// logs it, never counted against the upstream.
    pub fn body_failed(&self, e: &hyper::Error, client: Option<&Fault>) {
        let upstream = &self.limit.upstream;
        let error = crate::proxy::conn::causes(e);
        if let Some(fault) = client {
            debug!(upstream = %upstream, ?fault, error, "upstream response cut: the client's request body failed");
            return;
        }
        let (reason, _, _) = crate::proxy::failure::diagnose_request(e);
        crate::metrics::upstream_error(upstream, reason);
        warn!(upstream = %upstream, reason, error, "upstream response body failed");
    }

    /// The body has nothing yet: wait at most `read_timeout` from the last
    /// progress. `Err` once that has passed (logged and counted here).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        let timeout = self.limit.timeout;
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep(timeout))),
            Some(s) if self.progress => s.as_mut().reset(Instant::now() + timeout),
            Some(_) => {}
        }
        self.progress = false;
        let sleep = self.sleep.as_mut().expect("armed above");
        if let Poll::Ready(()) = sleep.as_mut().poll(cx) {
            let upstream = &self.limit.upstream;
            crate::metrics::upstream_error(upstream, "read_timeout");
            warn!(upstream = %upstream, reason = "read_timeout", timeout = ?timeout, "upstream response stalled");
            return Err(format!("read_timeout: no data from the upstream for {timeout:?}").into());
        }
        Ok(())
    }
}
