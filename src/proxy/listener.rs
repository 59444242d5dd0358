//! Accept loop, limits, TLS handshake and the hyper server (h1 or h2, as ALPN agreed) of one listener.
//!
//! Everything the reloader may change lives behind `ArcSwap` in [`Listener`]
//! and is loaded once per connection (TLS snapshot, limits) or once per
//! request (routes). A connection keeps the `ServerConfig` it shook hands
//! with for its whole life: that is "open connections keep their certificate".

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::{ClientAuthMode, Limits};
use crate::identity::gate::Gate;
use crate::metrics;
use crate::proxy::body::{self, Fault};
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::{self, Activity, Driver, TrackedBody};
use crate::proxy::edge::{EdgePolicy, UpstreamAddr};
use crate::proxy::forward::{RequestContext, ResponseBody, client_fault, error_response};
use crate::proxy::front::{self, Front};
use crate::proxy::headers::client_ip_value;
use crate::proxy::host_cut::{self, HostWatch};
use crate::proxy::lifetime::{Admissions, Lifetime};
use crate::proxy::readmit::{Admitted, Routed};
use crate::proxy::refused_head::protocol_error;
use crate::proxy::router::Router;
use crate::proxy::stall::{SentBody, Stalls};
use crate::proxy::tunnel::{self, TunnelLimits};
use crate::proxy::{cancels::Unanswered, refused_head, request, websocket};
use crate::upstream::members::InFlight;

mod begun;
mod handshake;
mod serve;
mod settings;
mod unanswered;
mod unrouted;
use begun::Unstarted;
pub use handshake::{Handshake, ServedCert};
pub use serve::{Heir, Inherited, Removal, Shutdown, Slot, Stop, bind, log_listening, serve};
pub use settings::{MAX_CONCURRENT_STREAMS, Settings};

/// Live state of one configured listener, shared by its accept loop, its
/// connections, the admin API and the reloader (the only writer).
pub struct Listener {
    pub name: Arc<str>,
    /// The TLS snapshot new connections handshake with, its mode, its
    /// per-entry configs and resolver: one value (see [`Handshake`]).
    pub tls: ArcSwap<Handshake>,
    pub router: ArcSwap<Router>,
    pub settings: ArcSwap<Settings>,
    /// PROXY protocol, trusted proxies, response headers, redirect (issue 16).
    pub front: ArcSwap<Front>,
    /// Bumped when `tls` is replaced with other served certificates or client CA certificates (a
    /// rotation: see [`Listener::set_tls`]); connections compare it with the generation they
    /// started with to honour `max_connection_lifetime`.
    pub generation: watch::Sender<u64>,
    /// Bumped when what the listener admits changed (see [`Listener::readmit`]).
    pub admission: watch::Sender<Admissions>,
    /// The generation of `router`, bumped when a reload changed the routes
    /// (see [`Listener::set_router`]): what open tunnels watch.
    pub routes: watch::Sender<u64>,
    /// Set once its accept loop stops: a reload removed the listener or bound it elsewhere, or the
    /// process is shutting down. Its connections close as at shutdown (requests in flight may
    /// finish within `runtime.shutdown_grace`; a removed listener's tunnels end at once, see
    /// `removed`): they would go on with its old routes and rules (nginx's old workers and Envoy's
    /// listener drain end them too). The one signal a connection's driver watches for both.
    pub closing: watch::Sender<bool>,
    /// Set when a reload removed the listener or bound it elsewhere (not at shutdown, when
    /// tunnels drain with the rest): its tunnels end. Set by [`Listener::set_removed`].
    pub removed: watch::Sender<bool>,
    /// `removed`'s value, read on every connection without the watch's lock.
    removed_now: Removal,
    /// Metadata of the served pairs, for `GET /api/v1/listeners/{name}/cert`.
    /// Each behind its own `Arc`, so a rotation copies pointers, not metadata.
    pub served: ArcSwap<Vec<Arc<ServedCert>>>,
    /// Open connections right now.
    pub active: AtomicUsize,
    /// Wakes the accept loop when `settings` changed (max_connections).
    limits_changed: tokio::sync::Notify,
    /// Request ids, client-certificate headers, access log (per request).
    pub edge: ArcSwap<EdgePolicy>,
    /// Its own series: the two counted on every connection, and those
    /// removed once the last listener of its name is gone.
    series: metrics::ListenerSeries,
    /// The request metrics of requests answered before routing (refused,
    /// 404): upstream `""`.
    pub unrouted: metrics::RouteMetrics,
}

impl Listener {
    pub fn new(
        name: &str,
        tls: Handshake,
        router: Router,
        limits: Limits,
        served: Vec<Arc<ServedCert>>,
    ) -> Arc<Listener> {
        Arc::new(Listener {
            name: name.into(),
            tls: ArcSwap::from_pointee(tls),
            router: ArcSwap::from_pointee(router),
            settings: ArcSwap::new(Settings::new(limits)),
            front: ArcSwap::from_pointee(Front::default()),
            generation: watch::Sender::new(0),
            admission: watch::Sender::new(Admissions::default()),
            routes: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            removed: watch::Sender::new(false),
            removed_now: Removal::default(),
            served: ArcSwap::from_pointee(served),
            active: AtomicUsize::new(0),
            limits_changed: tokio::sync::Notify::new(),
            edge: ArcSwap::from_pointee(EdgePolicy::default()),
            series: metrics::ListenerSeries::new(name),
            unrouted: metrics::RouteMetrics::new(name, ""),
        })
    }

    /// Serve new connections with `tls` (whose client verifier is `gate`)
    /// from now on. When `rotated` (for some name, a certificate served or
    /// a client CA certificate trusted is no longer: the reloader's
    /// `rotation`), connections made before are made with rotated-out
    /// material: past `max_connection_lifetime`, they close. Any other
    /// change (CRLs, `alpn`, `min_version`, the same client auth set
    /// again, a CA added, a reorder that keeps each name's certificate)
    /// keeps the generation: revocation and the admission rules close what
    /// they must by checking each connection again ([`Listener::readmit`]),
    /// not by age.
    #[allow(clippy::too_many_arguments)]
    pub fn set_tls(
        &self,
        tls: Arc<ServerConfig>,
        mode: ClientAuthMode,
        gate: Option<Arc<Gate>>,
        served: Vec<Arc<ServedCert>>,
        per_name: Option<Arc<crate::tls::per_name::PerName>>,
        resolver: Arc<crate::tls::server::SniResolver>,
        rotated: bool,
    ) {
        // The reloader is the only writer: no other bump can come between.
        let generation = *self.generation.borrow() + u64::from(rotated);
        self.tls.store(Arc::new(Handshake {
            config: tls,
            mode,
            gate,
            generation,
            per_name,
            resolver,
        }));
        self.served.store(Arc::new(served));
        if rotated {
            self.generation.send_replace(generation);
        }
    }

    /// What the listener admits changed (client auth, CA or CRLs,
    /// `allow_from`, PROXY protocol, trusted proxies), already stored:
    /// connections admitted before are checked again under it and those
    /// it no longer admits close gracefully (`Lifetime`), as a removed
    /// listener's do, rather than serve a revoked client on. Unless
    /// `recheck` (the change is one they can be checked against exactly),
    /// they all close.
    pub fn readmit(&self, recheck: bool) {
        self.admission.send_modify(|a| {
            a.generation += 1;
            if !recheck {
                a.closes_all = a.generation;
            }
        });
    }

    /// Route requests with `router` from now on. When `changed` (its
    /// routes' configuration differs from the running one's), open tunnels
    /// check their route's `allow` and `allow_from` again under it and
    /// those now refused close ([`crate::proxy::readmit::Routed`]): a
    /// tunnel makes no request of its own to be checked by. Requests on
    /// open connections need nothing: each is routed, and checked, anew.
    pub fn set_router(&self, mut router: Router, changed: bool) {
        // The reloader is the only writer: no other bump can come between.
        let generation = *self.routes.borrow() + u64::from(changed);
        router.generation = generation;
        // Stored before the bump: a tunnel woken by it checks these routes.
        self.router.store(Arc::new(router));
        if changed {
            self.routes.send_replace(generation);
        }
    }

    /// A reload removed the listener or bound it elsewhere: its tunnels
    /// end, and a connection starting now is one its removal came before.
    pub fn set_removed(&self, handed_over: bool) {
        self.removed_now.set(handed_over);
        self.removed.send_replace(true);
    }

    /// Whether a reload removed the listener or bound it elsewhere.
    pub fn is_removed(&self) -> bool {
        self.removed_now.removed()
    }

    /// Whether its socket was handed over (a rename, a port swap).
    pub fn handed_over(&self) -> bool {
        self.removed_now.handed_over()
    }

    pub fn set_limits(&self, limits: Limits) {
        if self.settings.load().limits != limits {
            self.settings.store(Settings::new(limits));
            // The accept loop may be waiting for a slot under the old
            // max_connections: it looks again (a stored wake-up if not).
            self.limits_changed.notify_one();
        }
    }
}

/// `step`, or `None` if the process shuts down first (`quit` is its signal).
/// A step already done wins: a handshake that ended with the client's
/// request already sent was done before the signal (SPEC §1 drops only a
/// request completed after it), and dropping it would reset the client.
async fn until_quit<T>(quit: &mut Shutdown, step: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        out = step => Some(out),
        _ = quit.wait_for(|s| *s) => None,
    }
}

/// What the peeked first byte says about a new connection.
async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match stream.peek(&mut b).await {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// One client connection, from accept to close. Its future is spawned as a task, and tokio moves a
/// task's future several times on spawn and on completion: each phase whose future is kilobytes
/// (the handshake, the HTTP connection, the rare plain-HTTP answers) is boxed, so what moves is a
/// few hundred bytes rather than 15 KB. `accepted`: when `accept()` returned it, which its
/// `header_read_timeout` counts from (a connection from the queue of a socket given up may wait
/// for its slot after that). `answer_first`: its listener's removal came before it was accepted
/// (it was taken from the queue of the socket given up), told by the caller at accept: read when
/// the task starts, a removal between the accept and then made one accepted before it a queued
/// client, its first request answered, where the listener's other open connections with none yet
/// close at once (SPEC §3; unless handed over).
async fn connection(
    listener: Arc<Listener>,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    accepted: Instant,
    answer_first: bool,
) {
    let _ = stream.set_nodelay(true);
    let settings = listener.settings.load_full();
    let limits = &settings.limits;
    // Read before any rule is: a change stored after this has the
    // connection checked again even if it was checked under the new rules
    // (harmless), never one checked under the old rules that it missed.
    let admitted = listener.admission.borrow().generation;
    // A PROXY header and the handshake share the header read budget: a
    // client that connects and sends nothing must not hold a slot forever.
    let head_deadline = tokio::time::Instant::from_std(accepted + limits.header_read_timeout);
    // The process's shutdown ends every step before the first request at
    // once (the PROXY header, the peek, the handshake; then the driver's
    // `process`): a client that has sent nothing, or part of a header or
    // ClientHello, has nothing to finish, and waited for would hold the
    // drain for its header_read_timeout. A listener's removal does not end
    // them (its `closing` is not watched here): those it took from its
    // queue are answered first (see `Driver::answer_first`); others close
    // once the handshake ends (below).
    let mut quit = slot.shutdown();
    // Before TLS: the PROXY header's client address and `allow_from`,
    // then the plain-HTTP redirect listener (src/proxy/front.rs).
    let front = listener.front.load_full();
    let client = front::client_before_tls(
        &listener,
        &front,
        &mut stream,
        peer,
        accepted,
        head_deadline,
    );
    let Some(Some(peer)) = until_quit(&mut quit, Box::pin(client)).await else {
        return;
    };
    if let Some(port) = front.redirect_https {
        return Box::pin(front::redirect_connection(
            listener.clone(),
            stream,
            peer,
            front,
            limits.clone(),
            port,
            accepted,
            slot.clone(),
            answer_first,
        ))
        .await;
    }
    // A TLS connection starts with a handshake record (0x16); a letter is
    // an HTTP method sent in the clear.
    let peeked = tokio::time::timeout_at(head_deadline, first_byte(&stream));
    match until_quit(&mut quit, peeked).await {
        None => return,
        Some(Ok(Some(b))) if b.is_ascii_alphabetic() => {
            return Box::pin(front::refuse_plain_http(&listener, stream, peer, accepted)).await;
        }
        Some(Ok(_)) => {}
        Some(Err(_)) => {
            metrics::handshake(&listener.name, "timeout");
            crate::proxy::edge::handshake_refused(&listener, peer, "timeout", None, accepted);
            debug!(listener = %listener.name, peer = %peer, "TLS handshake timed out");
            return;
        }
    }
    // Loaded after the peek, which can wait up to header_read_timeout: a
    // reload in between then applies to this connection as a whole. One
    // load gives the listener-wide config and the per-entry ones of the
    // same reload (see `Handshake`).
    let handshake = listener.tls.load_full();
    let generation = handshake.generation;
    let mode = handshake.mode;
    // With per-entry client auth, the ClientHello picks the config.
    let per_name = handshake.per_name.clone();
    let resolver = handshake.resolver.clone();
    // The ClientHello's SNI, for the access-log line of a handshake that
    // fails (or times out) after it.
    let sni = std::sync::OnceLock::new();
    let accept = Box::pin(async {
        crate::tls::accept::accept(
            &listener.name,
            &resolver,
            &handshake.config,
            per_name.as_deref(),
            stream,
            &sni,
        )
        .await
        .map(|a| (Box::new(a.tls), a.entry, a.served))
    });
    let accept = tokio::time::timeout_at(head_deadline, accept);
    let (tls_stream, entry, served) = match until_quit(&mut quit, accept).await {
        None => return,
        Some(Ok(Ok(s))) => s,
        Some(Ok(Err(refused))) => {
            let e = &refused.error;
            // Per connection and triggered by any client: debug, not info.
            // The metric label carries the cause at every log level.
            let reason = crate::tls::server::handshake_failure(e);
            metrics::handshake(&listener.name, reason);
            crate::proxy::edge::handshake_refused(
                &listener,
                peer,
                reason,
                sni.get().cloned(),
                accepted,
            );
            debug!(listener = %listener.name, peer = %peer, reason, error = %e, "TLS handshake failed");
            // A client refused for its certificate may be sending its first
            // request already (TLS 1.3): close as after an error response,
            // so it reads the alert, not a reset.
            if let Some(stream) = refused.stream
                && crate::tls::server::refused_client_cert(reason)
            {
                crate::proxy::linger::linger(stream, false).await;
            }
            return;
        }
        Some(Err(_)) => {
            metrics::handshake(&listener.name, "timeout");
            crate::proxy::edge::handshake_refused(
                &listener,
                peer,
                "timeout",
                sni.get().cloned(),
                accepted,
            );
            debug!(listener = %listener.name, peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    listener.series.handshakes_ok.inc();
    // Exactly the protocol agreed on: h2, or HTTP/1.1, whose limits apply
    // to every byte (`speaks_h2` says which a client without ALPN gets).
    let is_h2 =
        crate::tls::server::speaks_h2(&handshake.config, tls_stream.get_ref().1.alpn_protocol());
    // Removed meanwhile (not one from its queue, nor handed over: then its first request is its
    // last, as nginx serves one an old worker took; handed over later, the driver answers it so):
    // closed before any HTTP is read, its late first request unanswered (SPEC §3; sent with its
    // Finished, TLS 1.3, the driver would serve it), as at shutdown (`GOAWAY` first, no reset).
    // Not `closing`, set at shutdown too (§1 decides).
    let answer_first = answer_first || listener.handed_over();
    if !answer_first && listener.is_removed() {
        debug!(listener = %listener.name, peer = %peer, "closing connection: its listener was removed during its TLS handshake");
        unanswered::close(tls_stream, is_h2).await;
        return;
    }
    let (_, session) = tls_stream.get_ref();
    // The mode and gate of the config it shook hands under.
    let (mode, gate) = match (&per_name, entry) {
        (Some(p), Some(at)) => (p.modes[at], p.gates.get(at).and_then(Option::as_ref)),
        _ => (mode, handshake.gate.as_ref()),
    };
    let client_cert = if mode.verifies() {
        session
            .peer_certificates()
            .and_then(|chain| crate::identity::gate::take(chain, gate.map(|g| &**g)))
    } else {
        None
    };
    if let Some(id) = &client_cert {
        // Its lines name the URI SAN the listener's rules let it in by.
        crate::access_log::LoggedIdentity::settle(id, gate.and_then(|g| g.allow.as_deref()));
    }
    // The snapshot let go: its verifiers hold the CA's parsed CRLs (some 30 MB for a large one),
    // kept per CRL change for as long as a connection made under it stayed open.
    let served_from = per_name.as_ref().map_or(resolver, |p| p.resolver.clone());
    let entry = per_name.map(|p| p.entries.clone()).zip(entry);
    drop(handshake);
    let ctx = Arc::new(RequestContext {
        listener: listener.name.clone(),
        client_addr: peer,
        client_cert,
        tls_sni: session.server_name().map(Arc::from),
        served_from,
        served,
        trusted_proxy: front.trusts(peer.ip()),
        tls_version: session.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLSv1.2",
        }),
        resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        entry,
        body_read_timeout: limits.body_read_timeout,
        body_buffer_bytes: limits.body_buffer_bytes,
        max_body_bytes: limits.max_body_bytes,
        client_ip: client_ip_value(peer),
        hosts: Default::default(),
    });
    // The first request (HTTP/1 head, or HTTP/2 preface and first stream) is due within
    // header_read_timeout of accept: a client that connects and idles or dribbles must not hold a
    // slot for idle_timeout. `idle_timeout: 0s` is keep-alive off (nginx's `keepalive_timeout 0`).
    // So it is for a connection its listener's removal came before (one from the queue of the
    // socket it gave up, or handed over): its first request is answered, as its last.
    let idle_timeout = match answer_first {
        true => Duration::ZERO,
        false => limits.idle_timeout,
    };
    let keep_alive = !idle_timeout.is_zero();
    let activity = if keep_alive {
        Activity::new(accepted, true)
    } else {
        Activity::without_keep_alive(accepted, true)
    };
    let io = ClientIo::new(
        tls_stream,
        activity.clone(),
        !is_h2,
        limits.send_timeout,
        Box::new(slot.clone()),
    );
    let grace = slot.drain.grace();
    let recheck = Admitted {
        listener: listener.clone(),
        ctx: ctx.clone(),
        mode,
    };
    let lifetime = Lifetime::new(
        accepted,
        limits.max_connection_lifetime,
        generation,
        &listener.generation,
        admitted,
        &listener.admission,
        Arc::new(move |generation| recheck.still(generation)),
    );
    let stalls = is_h2.then(Stalls::new);
    let conn_ctx = ctx.clone();
    let svc = {
        let listener = listener.clone();
        let activity = activity.clone();
        let stalls = stalls.clone();
        let tunnel = Arc::new(TunnelLimits::new(
            limits,
            lifetime.clone(),
            listener.removed.subscribe(),
        ));
        service_fn(move |mut req: Request<Incoming>| {
            let tunnel = tunnel.clone();
            let ctx = ctx.clone();
            let slot = slot.clone();
            let front = front.clone();
            // HTTP/2, closing, its PING unanswered in time: refused, not begun. HTTP/1.1: begun
            // here, not in the future hyper may drop unpolled; HTTP/2: in it (`begun`).
            // HTTP/2's held (`Unstarted`) until then, begun if the future is dropped unpolled.
            let refused = activity.refuses();
            let head = req.method() == Method::HEAD;
            let mut begun = match refused {
                true => Err(req), // dropped with the future, as a request begun
                false => {
                    let in_flight = Unanswered::new(body::begin(&activity, &mut req));
                    Ok((in_flight, Unstarted::new(is_h2, &listener, ctx, req)))
                }
            };
            // HTTP/1.1: the connection's last request (keep-alive off, or
            // the look at a close from outside found it: SPEC §1).
            let last = !keep_alive || activity.answers_last();
            let stalls = stalls.clone();
            // Boxed: the request's future is kilobytes (routing, forwarding, the upstream
            // exchange), and hyper moves what the service returns (HTTP/2 into a task of its
            // own) several times. Written into an allocation made first: `Box::pin` built it
            // on the stack and copied all of it (some 5 KB) into the box.
            Box::into_pin(Box::write(Box::new_uninit(), async move {
                // hyper resets the stream with the reason of the h2 error
                // among the service error's causes; the connection goes on.
                // Lent, not moved: each move copied the request and its guards.
                let Ok((in_flight, unstarted)) = &mut begun else {
                    return Err(h2::Error::from(h2::Reason::REFUSED_STREAM));
                };
                let mut resp = handle(unstarted, &slot, &tunnel, in_flight).await;
                host_cut::not_cut(&resp, in_flight)?;
                front.set_response_headers(resp.headers_mut());
                if is_h2 {
                    crate::proxy::date::never_indexed(resp.headers_mut()); // no HPACK walk
                } else if last && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                    // hyper closes the connection after a response that says so.
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                // A response to HEAD has no content (RFC 9110 §9.3.2), nor
                // has a `204` or `304` (§6.4.1), whatever the upstream or an
                // error page would send: hyper's HTTP/2 server would send
                // it (and give a `204` the `content-length` of DATA an
                // HTTP/2 upstream sent after it), a malformed response
                // nghttp2's clients reset; an upstream h2 stream that does
                // errors and resets the client's.
                let status = resp.status();
                if head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                    resp = resp.map(|_| Empty::new().map_err(|never| match never {}).boxed());
                }
                let body = resp.map(|b| TrackedBody::new(b, in_flight.answered()));
                Ok::<_, h2::Error>(match &stalls {
                    Some(s) => body.map(|b| s.watch(b)),
                    None => body.map(SentBody::Plain),
                })
            }))
        })
    };
    let driver = Driver {
        name: &listener.name,
        peer,
        activity: &activity,
        header_read_timeout: limits.header_read_timeout,
        idle_timeout,
        shutdown: listener.closing.subscribe(),
        also_close_grace: grace,
        process: Some(quit),
        answer_first,
        handed_over: Some(&|| listener.handed_over()),
        answer_unbegun: false,
        stalls: stalls.as_deref().map(|s| (s, limits.send_timeout)),
        send_timeout: limits.send_timeout,
    };
    let lifetime_over = futures_util::StreamExt::inspect(lifetime.overs(), |over| {
        debug!(listener = %listener.name, peer = %peer, reason = over.reason(), "closing connection: made with rotated-out material, or no longer admitted under rules since changed");
    });
    // The connection is built inside the block that boxes it: a local
    // still in scope at the `await` would be kept in this future.
    let outcome = if is_h2 {
        let run = {
            let conn = settings.h2.serve_connection(TokioIo::new(io), svc);
            Box::pin(driver.run(conn, |c| c.graceful_shutdown(), lifetime_over))
        };
        run.await
    } else {
        let run = {
            let conn = settings
                .h1
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            Box::pin(driver.run(conn, |c| c.graceful_shutdown(), lifetime_over))
        };
        run.await
    };
    // A head hyper refused (and answered), or one cut at
    // header_read_timeout, is a request to the operator.
    if let Some((status, took)) = refused_head::refused(&outcome, &activity) {
        debug!(listener = %listener.name, peer = %peer, status = status.as_u16(), "request head refused");
        let edge = listener.edge.load();
        refused_head::record(&listener.unrouted, &edge, &conn_ctx, status, took);
    } else if outcome.by == conn::Ended::ByClient
        && !activity.asked()
        && !outcome.error.as_ref().is_some_and(protocol_error)
    {
        // The client went away without a request: with TLS 1.3 a client
        // that refuses our certificate (a name mismatch, judged after the
        // handshake as curl does) does so after our side of the handshake
        // is done, and this is all the server sees of it.
        metrics::closed_before_request(&listener.name);
    }
}

/// Route one request (`unstarted`'s) and forward it (`in_flight` told at an endpoint), with its metrics;
/// the edge duties (request id, route `allow`, client-certificate headers, access log) are [`Exchange`]'s,
/// begun with it. A `101` to a tunnelled upgrade starts the tunnel, which keeps `slot`, writes the request's
/// line when it ends, and is checked again against its route's rules when the routes change.
async fn handle(
    unstarted: &mut Unstarted,
    slot: &Arc<Slot>,
    tunnel: &TunnelLimits,
    in_flight: &mut Unanswered,
) -> Response<ResponseBody> {
    let (taken, ctx, mut req) = unstarted.start();
    let begun::Taken {
        listener,
        start,
        named,
        checked,
        mut exchange,
    } = taken;
    let (listener, ctx) = (&listener, &ctx);
    let prepared = checked.and_then(|()| request::prepare(&mut req, &ctx.hosts));
    if let Err(refused) = prepared {
        return unrouted::refuse(listener, ctx, exchange, refused, start);
    }
    let host_entry = match exchange.misdirected(ctx, &req, listener) {
        Ok(host_entry) => host_entry,
        Err(misdirected) => {
            listener.unrouted.record(421, start.elapsed());
            return exchange.finish(*misdirected);
        }
    };
    let (route, routes_generation) = {
        let router = listener.router.load();
        let route = router
            .matched(request::authority(&req), req.uri().path())
            .map(|r| r.map(|r| (r.upstream.clone(), r.policy.clone(), r.metrics.clone())));
        (route, router.generation)
    };
    let route = match route {
        Ok(route) => route,
        Err(refused) => return unrouted::refuse(listener, ctx, exchange, refused, start),
    };
    let Some((upstream, policy, route_metrics)) = route else {
        return unrouted::no_route(listener, exchange, start);
    };
    // A refusal of the route's names its upstream, as its count does
    // (`upstream="<name>"`); no endpoint, no head: `upstream_addr` and
    // `upstream_ms` stay `null`.
    let edge = listener.edge.load();
    if let Some(denied) = exchange.admit(&policy, &edge, ctx, &mut req) {
        exchange.upstream(&upstream.name, None);
        route_metrics.record(403, start.elapsed());
        return exchange.finish(denied);
    }
    // Not held across the forwarding's awaits: a guard kept there holds
    // one of arc-swap's few debt slots per thread for the request's
    // lifetime, and the loads of other requests go on searching past it.
    drop(edge);
    // A declared length over the limit is refused before anything is
    // sent upstream (nginx's client_max_body_size); a body of unknown
    // length is counted on its way ([`crate::proxy::body`]).
    let max_body = policy.max_body_bytes.unwrap_or(ctx.max_body_bytes);
    if max_body > 0 && req.body().size_hint().exact().is_some_and(|n| n > max_body) {
        exchange.upstream(&upstream.name, None);
        route_metrics.record(413, start.elapsed());
        let h2 = req.version() == http::Version::HTTP_2;
        let too_large = client_fault(ctx, &upstream.name, &Fault::TooLarge, h2);
        return exchange.refused("body_too_large").finish(too_large);
    }
    // A tunnelled upgrade is a WebSocket handshake or a `400` (a `503` on a closing
    // connection, which would cut it at once); its `101` must carry the key's accept.
    let handshake = named.tunnelled(&req).then(|| {
        websocket::handshake(req.headers()).and_then(|a| {
            (!tunnel.ends_at_once())
                .then_some(a)
                .ok_or(websocket::Refused::Closing)
        })
    });
    if let Some(Err(refused)) = handshake {
        debug!(listener = %listener.name, peer = %ctx.client_addr, error = refused.message(), "websocket handshake refused");
        exchange.upstream(&upstream.name, None);
        route_metrics.record(refused.status().as_u16(), start.elapsed());
        return exchange.refused(refused.authz()).finish(refused.response());
    }
    let client_upgrade = handshake.and_then(Result::ok).map(|accept| {
        // What the tunnel's route (and another entry's host) is checked
        // again by when the rules change: the request is gone by then.
        let routed = Routed::new(listener, ctx, &req, routes_generation, host_entry);
        (hyper::upgrade::on(&mut req), routed, accept)
    });
    let forwarding = exchange.forwarding(&route_metrics, &upstream.name);
    let accept = client_upgrade.as_ref().map(|(_, _, accept)| accept);
    // Another entry's host: watched from now, head or no head, body too (`host_cut`).
    let watch = host_entry.map(|h| HostWatch::start(listener, ctx, &mut req, h, slot.grace()));
    let abandoned = forwarding.abandoned();
    // Pinned where it is made, and lent: passed by value, or bound first,
    // the forward future (kilobytes) was copied again on every request.
    let mut resp = {
        let forward = pin!(upstream.forward(req, ctx, max_body, in_flight, accept, abandoned));
        host_cut::forwarded(watch.as_ref(), forward).await
    };
    if watch.is_some() && host_cut::was_cut(&resp) {
        return resp; // `forwarding` dropped: its `499` line
    }
    let head_came = forwarding.abandoned().answered();
    if !head_came && crate::proxy::drain::cutting() {
        // Cut by the shutdown, which is dropping every task: dropped, this one logs
        // `499` (`forwarding`) and its connection closes with nothing sent. Returned,
        // the `502` of an upstream task dropped first went to the client (two workers).
        // Its line names the endpoint tried, as one cut in flight does (SPEC §2).
        if let Some(tried) = resp.extensions_mut().remove::<UpstreamAddr>() {
            forwarding.abandoned().at(tried);
        }
        return std::future::pending().await;
    }
    let mut exchange = forwarding.answered();
    exchange.upstream(&upstream.name, head_came.then(|| start.elapsed()));
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        match client_upgrade {
            Some((client, routed, accept))
                if tunnel::switched_to_tunnelled(resp.headers(), &accept) =>
            {
                route_metrics.record(101, start.elapsed());
                let line = exchange.tunnelled(&mut resp);
                tunnel::spawn(
                    listener.name.clone(),
                    client,
                    hyper::upgrade::on(&mut resp),
                    TunnelLimits::clone(tunnel),
                    routed,
                    // Its request counted in flight on its endpoint until it ends.
                    (
                        slot.clone(),
                        resp.extensions_mut().remove::<Arc<InFlight>>(),
                    ),
                    line,
                );
                return resp;
            }
            // A switch nobody asked for (to another protocol, or without
            // the key's accept) would carry bytes past routing: refuse it.
            _ => {
                metrics::upstream_error(&upstream.name, "protocol");
                warn!(upstream = %upstream.name, reason = "protocol", error = "101 Switching Protocols not answering the request's upgrade (protocol, Sec-WebSocket-Accept)", "upstream request failed");
                // The 502 is the endpoint's: its line names it too.
                let refused = error_response(StatusCode::BAD_GATEWAY, "upstream unavailable");
                resp = UpstreamAddr::carried(resp, refused);
            }
        }
    }
    route_metrics.record(resp.status().as_u16(), start.elapsed());
    if let Some(watch) = watch {
        resp = watch.on_body(resp);
    }
    exchange.finish(resp)
}

#[cfg(test)]
mod tests {
    /// A step already done when the signal is already set is its result.
    #[tokio::test]
    async fn a_step_done_when_the_signal_came_is_not_dropped() {
        let (_tx, mut quit) = tokio::sync::watch::channel(true);
        assert_eq!(super::until_quit(&mut quit, async { 7 }).await, Some(7));
    }
}
