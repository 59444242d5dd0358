//! A response in flight for another `certs` entry's host, cut `shutdown_grace` after changed rules stop admitting its client there.
//!
//! With per-entry client auth a request for a host of another entry that
//! shares the connection's `client_auth` is served (an HTTP/2 client
//! coalescing hosts, a client without SNI). The connection is checked
//! again at an admission change against the entry it shook hands under
//! only ([`crate::proxy::readmit::Admitted`]), which may still admit a
//! client the host's entry no longer does: a long response to that host
//! (server-sent events, a gRPC stream) went on. Its body now watches the
//! host's entry ([`crate::proxy::readmit::host_refused`]) and, refused,
//! ends as a revoked connection's responses in flight do: served on for
//! `shutdown_grace`, then cut (on HTTP/2 the stream is reset, on HTTP/1.1
//! the connection closes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::proxy::forward::{BoxError, RequestContext, ResponseBody};
use crate::proxy::listener::Listener;
use crate::proxy::readmit::host_refused;

/// `resp` with its body cut `grace` after the listener's changed admission
/// rules no longer admit `ctx`'s client for entry `host_at` (let through
/// at admission generation `since`).
pub fn cut_when_refused(
    resp: Response<ResponseBody>,
    listener: &Arc<Listener>,
    ctx: &Arc<RequestContext>,
    (host_at, since): (usize, u64),
    grace: Duration,
) -> Response<ResponseBody> {
    use http_body_util::BodyExt;
    let (listener, ctx) = (listener.clone(), ctx.clone());
    // A task of its own: the body must be `Sync`, a watch's wait is not.
    let cut = tokio::spawn(async move {
        host_refused(&listener, &ctx, host_at, since, false).await;
        tokio::time::sleep(grace).await;
        debug!(listener = %listener.name, peer = %ctx.client_addr, reason = "admission_rules_changed", "response in flight cut: its host's entry no longer admits the client");
    });
    resp.map(|inner| {
        HostCut {
            inner,
            cut: Some(cut),
        }
        .boxed()
    })
}

/// A response body ended with an error once `cut` is done.
struct HostCut {
    inner: ResponseBody,
    /// `None` once done: the body has ended with its error.
    cut: Option<JoinHandle<()>>,
}

impl Drop for HostCut {
    fn drop(&mut self) {
        // The response ended (or was dropped): nothing is left to cut.
        if let Some(cut) = &self.cut {
            cut.abort();
        }
    }
}

impl Body for HostCut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(cut) = self.cut.as_mut() else {
            return Poll::Ready(None);
        };
        if Pin::new(cut).poll(cx).is_ready() {
            self.cut = None;
            let refused = "admission_rules_changed: the host's entry no longer admits the client";
            return Poll::Ready(Some(Err(refused.into())));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
