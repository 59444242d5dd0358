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
//! (logged `499`, the endpoint tried named). So is the request's body,
//! which holds the watch too: one still streaming upstream after an early
//! answer (a `413` or `401` sent before the upload was read, the client
//! sending on) outlives its response, and went on to the host's upstream
//! for as long as the client sent it once the response, and the watch
//! with it, were over. It ends with an error at the same deadline (the
//! upstream's stream reset, the client's HTTP/2 stream reset or its
//! HTTP/1.1 connection closed). Requests for the connection's own entry
//! get no watch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::task::AbortHandle;
use tracing::debug;

use crate::proxy::body::BodyInFlight;
use crate::proxy::cancels::Unanswered;
use crate::proxy::forward::{BoxError, RequestContext, ResponseBody};
use crate::proxy::listener::Listener;
use crate::proxy::readmit::host_refused;

/// One request's watch on its host's entry: fires `grace` after a change
/// under which that entry no longer admits the client. The watch's task is
/// aborted when the last holder (the request waiting for its head, then
/// its response body; its own body until read to its end) is gone.
#[derive(Clone)]
pub struct HostWatch(Arc<Guard>);

/// The watch's task, aborted on drop, and what it tells.
struct Guard {
    fired: Arc<Fired>,
    task: AbortHandle,
    listener: Arc<Listener>,
    ctx: Arc<RequestContext>,
}

/// Set once the deadline has passed; the two that may wait at once woken.
#[derive(Default)]
struct Fired {
    done: AtomicBool,
    /// For the head, then on the response body (never both at once).
    waker: AtomicWaker,
    /// The request's body, polled by whoever sends it upstream (the
    /// upstream connection's task, or hyper's task sending it to an HTTP/2
    /// upstream), before and after the response alike.
    body: AtomicWaker,
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
    /// `since`) for `ctx`'s client on `listener`, from now on; `req`'s
    /// body, if it has one, is cut by the watch too ([`HostWatch::body_cut`]).
    pub fn start(
        listener: &Arc<Listener>,
        ctx: &Arc<RequestContext>,
        req: &mut Request<Incoming>,
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
            f.body.wake();
        });
        let watch = HostWatch(Arc::new(Guard {
            fired,
            task: task.abort_handle(),
            listener: listener.clone(),
            ctx: ctx.clone(),
        }));
        if let Some(body) = req.extensions_mut().get_mut::<BodyInFlight>() {
            body.watched(watch.clone());
        }
        watch
    }

    /// Ready once the deadline has passed.
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        Self::fired_for(&self.0.fired.waker, &self.0.fired.done, cx)
    }

    /// Ready once the deadline has passed, `waker` to be woken then.
    fn fired_for(waker: &AtomicWaker, done: &AtomicBool, cx: &mut Context<'_>) -> Poll<()> {
        waker.register(cx.waker());
        match done.load(Ordering::Acquire) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// Whether the request's body, asked for its next piece, is to end
    /// now with an error ([`crate::proxy::body::Fault::Cut`]): the
    /// deadline has passed. Otherwise its reader is woken when it does,
    /// also while the body waits on the client.
    pub fn body_cut(&self, cx: &mut Context<'_>) -> bool {
        let fired = &self.0.fired;
        let cut = Self::fired_for(&fired.body, &fired.done, cx).is_ready();
        if cut {
            self.cut("request body in flight");
        }
        cut
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
                cut_before_head()
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

/// [`HostWatch::before_head`]'s marker: also the forwarder's answer when
/// the request's body, cut at the same deadline, failed its attempt first.
pub fn cut_before_head() -> Response<ResponseBody> {
    use http_body_util::{BodyExt, Empty};
    let empty = Empty::new().map_err(|never| match never {}).boxed();
    let mut resp = Response::new(empty);
    resp.extensions_mut().insert(CutBeforeHead);
    resp
}

/// Whether `resp` is [`HostWatch::before_head`]'s marker.
pub fn was_cut(resp: &Response<ResponseBody>) -> bool {
    resp.extensions().get::<CutBeforeHead>().is_some()
}

/// The service's answer to `resp`: a request cut before its head is an
/// error (HTTP/2: the stream reset `CANCEL`, the connection serving on;
/// HTTP/1.1: the connection closed), as a revoked connection's request
/// waiting for its head ends with nothing sent; the cut is hotproxy's, not
/// a cancellation of the client's (`in_flight` answered). Checked in
/// place: every request's response and guard would be moved through it.
pub fn not_cut(resp: &Response<ResponseBody>, in_flight: &mut Unanswered) -> Result<(), h2::Error> {
    if !was_cut(resp) {
        return Ok(());
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
