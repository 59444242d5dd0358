//! A request's bookkeeping begun as hyper hands it over (HTTP/1.1) or as its future first runs (HTTP/2): logged and counted `499` if that future is dropped unpolled.
//!
//! hyper's HTTP/1.1 server calls the service as soon as it has a head, and
//! polls the future it got only after reading on: a client whose end of
//! sending (FIN, `close_notify`) came right behind its request ends the
//! connection there (hyper's `allow_half_close` is off), and the future is
//! dropped before it ever ran. Begun inside it, such a request had no line
//! and no count (SPEC §2 promises one line per request; nginx logs it
//! `499`). So the request's id and line begin here, in the service itself,
//! as the redirect listener's do (`front.rs`); [`Begun`] dropped before
//! `handle` takes it writes the `499`.
//!
//! Not so for HTTP/2 ([`Beginning`]): hyper's server calls the service on
//! the connection's task, stream after stream, and spawns each future it
//! returns, which is polled while the runtime runs (a stream reset before
//! then too: the future runs first, then hyper looks for the reset). Begun
//! in the service, every stream's bookkeeping would be done in turn on that
//! one task; it is begun in the stream's own future, as it always was. At
//! exit (`shutdown_grace` ended, or a second signal) the runtime drops the
//! tasks it never polled, and those spawned after it stopped, unpolled: the
//! request and its context are held in [`Unstarted`] until the future first
//! runs, whose drop begins the request then and writes its `499`.

use std::sync::Arc;
use std::time::Instant;

use http::Request;
use hyper::body::Incoming;
use tracing::debug;

use super::Listener;
use crate::proxy::edge::{CLIENT_GONE, Exchange, Sent};
use crate::proxy::forward::RequestContext;
use crate::proxy::request::{self, Named, Refused};

/// The fields a forwarded request usually gains: `Host` (from HTTP/2's
/// `:authority`), `X-Request-Id`, `X-Forwarded-For`, `-Proto`, `-Host`
/// and `Via`.
const ADDED_FIELDS: usize = 6;

/// What a request's head gave before routing, and its [`Exchange`] begun.
pub struct Taken {
    pub listener: Arc<Listener>,
    pub start: Instant,
    /// The names the head carries (`Upgrade`, ...), its `Connection`'s
    /// nominated fields already removed.
    pub named: Named,
    /// Refused by the first look at the head: too many fields, or a
    /// `Connection` naming more than a head may carry.
    pub checked: Result<(), Refused>,
    pub exchange: Exchange,
}

/// Where a request's bookkeeping begins: at once (HTTP/1.1), or where its
/// future first runs (HTTP/2, on the stream's task: see the module's doc).
enum Beginning {
    Now(Begun),
    InFuture(Arc<Listener>),
}

impl Beginning {
    /// Begin `req` now, or note the listener to begin it on later (`h2`).
    fn new(
        h2: bool,
        listener: &Arc<Listener>,
        ctx: &RequestContext,
        req: &mut Request<Incoming>,
    ) -> Beginning {
        match h2 {
            true => Beginning::InFuture(listener.clone()),
            false => Beginning::Now(Begun::new(listener.clone(), ctx, req)),
        }
    }

    /// In the request's future, as it first runs: the request begun.
    fn begun(self, ctx: &RequestContext, req: &mut Request<Incoming>) -> Begun {
        match self {
            Beginning::Now(begun) => begun,
            Beginning::InFuture(listener) => Begun::new(listener, ctx, req),
        }
    }
}

/// A request handed over with its future not yet run, held by that future:
/// dropped unpolled (an HTTP/2 stream's task the runtime drops at exit, or
/// spawned once it no longer runs any), it begins the request then, and
/// its [`Begun`] dropped writes the `499`. No allocation: what the future
/// holds anyway (the request, its context), held here until it runs.
pub struct Unstarted(Option<(Beginning, Arc<RequestContext>, Request<Incoming>)>);

impl Unstarted {
    /// `req` handed over on `listener`: begun now (HTTP/1.1) or held (`h2`).
    pub fn new(
        h2: bool,
        listener: &Arc<Listener>,
        ctx: Arc<RequestContext>,
        mut req: Request<Incoming>,
    ) -> Unstarted {
        let beginning = Beginning::new(h2, listener, &ctx, &mut req);
        Unstarted(Some((beginning, ctx, req)))
    }

    /// In the request's future, as it first runs: the request begun and
    /// taken over by `handle` at once (no await between), and what was
    /// held for it. Lent, not taken: moved, it copied the request again.
    pub fn start(&mut self) -> (Taken, Arc<RequestContext>, Request<Incoming>) {
        let (beginning, ctx, mut req) = self.0.take().expect("started once");
        let taken = beginning.begun(&ctx, &mut req).take();
        (taken, ctx, req)
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some((beginning, ctx, mut req)) = self.0.take() {
            drop(beginning.begun(&ctx, &mut req));
        }
    }
}

/// A request begun and not yet taken over by `handle`: dropped so (its
/// client went away before its future was first polled), it is counted
/// and logged `499`, with no upstream (it was never routed).
pub struct Begun(Option<Taken>);

impl Begun {
    /// Begin `req` on `listener`: its id settled, its line started (with
    /// the access log on), its fields as sent kept for the log.
    pub fn new(
        listener: Arc<Listener>,
        ctx: &RequestContext,
        req: &mut Request<Incoming>,
    ) -> Begun {
        let start = Instant::now();
        // Counted as received, before anything is removed or added.
        let crowded = request::crowded(req);
        // Room for the fields hotproxy adds, made while h2's map holds the
        // client's alone: grown later, near full, it rehashes and moves them
        // all (a short request's is full at its sixth field). hyper's HTTP/1.1
        // server parses into a map it reuses (the bench's requests never grew it).
        if req.version() == http::Version::HTTP_2 {
            req.headers_mut().reserve(ADDED_FIELDS);
        }
        let edge = listener.edge.load();
        // Before the hop-by-hop pass: the log has the fields as sent.
        let sent = Sent::of(&edge, req.headers());
        let (named, nominated) = Named::first_pass(req.headers_mut());
        let nominated = match nominated {
            Ok(names) if !names.is_empty() => {
                let names = crate::proxy::trailers::Nominated(names);
                req.extensions_mut().insert(names);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(refused) => Err(refused),
        };
        let checked = match crowded {
            true => Err(Refused::TooManyHeaders),
            false => nominated,
        };
        let exchange = Exchange::begin(&edge, ctx, req, start, named.request_id, sent);
        Begun(Some(Taken {
            listener,
            start,
            named,
            checked,
            exchange,
        }))
    }

    /// `handle` takes the request over: its line is the exchange's now.
    pub fn take(mut self) -> Taken {
        self.0.take().expect("taken once, by handle")
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        let Some(taken) = self.0.take() else {
            return;
        };
        debug!(listener = %taken.listener.name, "client went away before its request was routed");
        (taken.listener.unrouted).record(CLIENT_GONE, taken.start.elapsed());
        taken.exchange.gone_unrouted();
    }
}
