//! A request in flight for another `certs` entry's host, head come or not, cut `shutdown_grace` after changed rules stop admitting its client there.
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
//!
//! The watch starts before the request is forwarded, not when its
//! response head comes: a request whose head is long in coming (a long
//! poll, an upload) is cut at the same deadline, `shutdown_grace` after
//! the change, as a revoked connection's request waiting for its head is
//! (logged `499`, the endpoint tried named). Requests for the connection's
//! own entry get no watch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::AbortHandle;
use tracing::debug;

use crate::proxy::cancels::Unanswered;
use crate::proxy::forward::{BoxError, RequestContext, ResponseBody};
use crate::proxy::listener::Listener;
use crate::proxy::readmit::host_refused;

/// One request's watch on its host's entry: fires `grace` after a change
/// under which that entry no longer admits the client. The watch's task is
/// aborted when the last holder (the request waiting for its head, then
/// its response body) is gone.
#[derive(Clone)]
pub struct HostWatch(Arc<Guard>);

/// The watch's task, aborted on drop, and what it tells.
struct Guard {
    fired: Arc<Fired>,
    task: AbortHandle,
    listener: Arc<Listener>,
    ctx: Arc<RequestContext>,
}

/// Set once the deadline has passed; the one waiting (for the head, then
/// on the response body: never both at once) woken.
#[derive(Default)]
struct Fired {
    done: AtomicBool,
    waker: AtomicWaker,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // The request and its response are over: nothing is left to cut.
        self.task.abort();
    }
}

/// What a request cut before its response head is answered with inside
/// the proxy: the service turns it into an error ([`not_cut`]).
#[derive(Clone, Copy)]
struct CutBeforeHead;

impl HostWatch {
    /// Watch entry `host_at` (let through at admission generation
    /// `since`) for `ctx`'s client on `listener`, from now on.
    pub fn start(
        listener: &Arc<Listener>,
        ctx: &Arc<RequestContext>,
        (host_at, since): (usize, u64),
        grace: Duration,
    ) -> HostWatch {
        let fired = Arc::new(Fired::default());
        let (l, c, f) = (listener.clone(), ctx.clone(), fired.clone());
        // A task of its own: a body must be `Sync`, a watch's wait is not.
        let task = tokio::spawn(async move {
            host_refused(&l, &c, host_at, since, false).await;
            // Measured from the change, head or no head.
            tokio::time::sleep(grace).await;
            f.done.store(true, Ordering::Release);
            f.waker.wake();
        });
        HostWatch(Arc::new(Guard {
            fired,
            task: task.abort_handle(),
            listener: listener.clone(),
            ctx: ctx.clone(),
        }))
    }

    /// Ready once the deadline has passed.
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let fired = &self.0.fired;
        fired.waker.register(cx.waker());
        match fired.done.load(Ordering::Acquire) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    fn cut(&self, what: &str) {
        let (listener, ctx) = (&self.0.listener, &self.0.ctx);
        debug!(listener = %listener.name, peer = %ctx.client_addr, reason = "admission_rules_changed", "{what} cut: its host's entry no longer admits the client");
    }

    /// `forward`'s response, unless the deadline passes first: then
    /// `forward` is dropped (its attempt with it, the endpoint noted for
    /// the `499` line) and a marker is returned, which the caller returns
    /// unanswered and the service turns into the stream's reset
    /// ([`not_cut`]).
    pub async fn before_head(
        &self,
        forward: impl Future<Output = Response<ResponseBody>>,
    ) -> Response<ResponseBody> {
        let fired = std::future::poll_fn(|cx| self.poll_fired(cx));
        tokio::select! {
            biased;
            () = fired => {
                self.cut("request in flight");
                use http_body_util::{BodyExt, Empty};
                let empty = Empty::new().map_err(|never| match never {}).boxed();
                let mut resp = Response::new(empty);
                resp.extensions_mut().insert(CutBeforeHead);
                resp
            }
            resp = forward => resp,
        }
    }

    /// `resp` with its body cut at the watch's deadline.
    pub fn on_body(self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        use http_body_util::BodyExt;
        resp.map(|inner| {
            HostCut {
                inner,
                watch: Some(self),
            }
            .boxed()
        })
    }
}

/// `forward`'s response, raced against `watch` if the request has one
/// ([`HostWatch::before_head`]); nothing more for the connection's own
/// entry's requests.
pub async fn forwarded(
    watch: Option<&HostWatch>,
    forward: impl Future<Output = Response<ResponseBody>>,
) -> Response<ResponseBody> {
    match watch {
        Some(watch) => watch.before_head(forward).await,
        None => forward.await,
    }
}

/// Whether `resp` is [`HostWatch::before_head`]'s marker.
pub fn was_cut(resp: &Response<ResponseBody>) -> bool {
    resp.extensions().get::<CutBeforeHead>().is_some()
}

/// The service's answer to `resp`: a request cut before its head is an
/// error (HTTP/2: the stream reset `CANCEL`, the connection serving on;
/// HTTP/1.1: the connection closed), as a revoked connection's request
/// waiting for its head ends with nothing sent; the cut is hotproxy's, not
/// a cancellation of the client's (`in_flight` answered).
pub fn not_cut(
    resp: Response<ResponseBody>,
    in_flight: Unanswered,
) -> Result<(Response<ResponseBody>, Unanswered), h2::Error> {
    if !was_cut(&resp) {
        return Ok((resp, in_flight));
    }
    drop(in_flight.answered());
    Err(h2::Error::from(h2::Reason::CANCEL))
}

/// A response body ended with an error once its watch has fired.
struct HostCut {
    inner: ResponseBody,
    /// `None` once fired: the body has ended with its error.
    watch: Option<HostWatch>,
}

impl Body for HostCut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(watch) = self.watch.as_ref() else {
            return Poll::Ready(None);
        };
        if watch.poll_fired(cx).is_ready() {
            // Logged as the error goes to hyper: a chunk waiting for the
            // client's window or socket is not polled for, nor cut, before.
            watch.cut("response in flight");
            self.watch = None;
            let refused = "admission_rules_changed: the host's entry no longer admits the client";
            return Poll::Ready(Some(Err(refused.into())));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.watch.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
