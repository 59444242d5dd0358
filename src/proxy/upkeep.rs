//! An upstream's life outside any one request: put in service, kept fresh (names re-resolved, idle connections swept, active checks, ejections ended on time), retired.
//!
//! The background tasks hold the upstream weakly: they end once the
//! reloader and every request in flight have let go of it; re-resolution,
//! active checks and the end of ejections end as soon as it is retired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::Request;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use tracing::debug;

use crate::config::ActiveHealth;
use crate::proxy::body::ClientBody;
use crate::proxy::failure::Failure;
use crate::proxy::forward::{BoxError, ResponseBody, Upstream};
use crate::upstream::conn::DialError;
use crate::upstream::lookup::place_freed;
use crate::upstream::members::{CheckFailure, Publishing};
use crate::upstream::resolve::{REFUSED_WAIT, Refreshed};

impl Upstream {
    /// Out of service (replaced by an edit with `successor`, or removed):
    /// close its idle connections, stop sharing its HTTP/2 ones, and close
    /// busy ones as their requests end. A removed upstream's series go
    /// too; a replaced one's go for the endpoints its successor does not
    /// have (an edit that drops a server), and stay for those it shares.
    pub fn retire(&self, successor: Option<&Upstream>) {
        // Before the gauge goes: a request still in flight on it must not
        // write it back (nor, replaced, over its successor's).
        self.resolution.publishing.retire();
        // Against a re-resolution storing a new set meanwhile: it sees the
        // retirement, or this sees its set (see `re_resolve`).
        std::sync::atomic::fence(Ordering::SeqCst);
        let members = self.members.load();
        for m in &members.members {
            // For good: a request still in flight that dials here now
            // closes its connection after its response.
            m.endpoint.pool.retire();
        }
        match successor {
            None => members.forget(),
            Some(next) => {
                let kept = next.members.load();
                for m in &members.members {
                    if !kept.members.iter().any(|k| k.label == m.label) {
                        m.forget_requests(&self.name);
                    }
                }
            }
        }
    }

    /// Put the upstream in service: publish its endpoints' gauge and start
    /// re-resolution and active checks, if configured (once; they end when
    /// the upstream is replaced or removed).
    pub fn start_background(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        self.members.load().publish();
        if self.resolution.has_names() {
            rt.spawn(re_resolve(Arc::downgrade(self)));
        }
        if let Some(active) = self.config.health.active.clone() {
            rt.spawn(active_checks(Arc::downgrade(self), active));
        }
        rt.spawn(sweep_idle(Arc::downgrade(self)));
        rt.spawn(end_ejections(
            Arc::downgrade(self),
            self.resolution.publishing.clone(),
        ));
    }
}

/// Put each endpoint back in service as its ejection runs out, also when
/// no request comes to find it so: logged (`upstream endpoint back in
/// service`) and the gauge written then, as Envoy's outlier detection
/// un-ejects on its timer. Sleeps until the next ejection ends, or until
/// an ejection is made or the upstream retired (`publishing` is told of
/// both); ends once the upstream is retired or gone.
async fn end_ejections(upstream: std::sync::Weak<Upstream>, publishing: Arc<Publishing>) {
    loop {
        let next = {
            let Some(u) = upstream.upgrade() else { return };
            if publishing.retired() {
                return;
            }
            u.members.load().settle_ejections()
        };
        // A notice given since (an ejection just made) is kept for this
        // wait: it returns at once.
        let told = publishing.ejections.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = told => {}
                }
            }
            None => told.await,
        }
    }
}

/// Re-resolve an upstream's server names every `resolve_interval` while it
/// is configured (the task ends once the reloader and every request have
/// let go of it). Each name on its own, beside the others: one whose
/// lookups hang (5 s each) delays no other's fresh addresses. They were
/// looked up one after another, each waiting for those before it.
async fn re_resolve(upstream: std::sync::Weak<Upstream>) {
    let Some(names) = upstream.upgrade().map(|u| u.resolution.names()) else {
        return;
    };
    let each = names
        .into_iter()
        .map(|i| re_resolve_name(upstream.clone(), i));
    futures_util::future::join_all(each).await;
}

/// Re-resolve server `i`'s name `resolve_interval` after its last lookup
/// ended, for [`re_resolve`].
async fn re_resolve_name(upstream: std::sync::Weak<Upstream>, i: usize) {
    let mut refused = false;
    loop {
        let Some(interval) = upstream.upgrade().map(|u| u.resolution.interval()) else {
            return;
        };
        tokio::time::sleep(interval).await;
        if std::mem::take(&mut refused) {
            // Refused a place: at least 1 s in all, unless one frees.
            let rest = REFUSED_WAIT.saturating_sub(interval);
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = place_freed() => {}
            }
        }
        let Some(u) = upstream.upgrade() else { return };
        if u.resolution.publishing.retired() {
            // Replaced or removed; a request in flight keeps it alive.
            return;
        }
        // Retired meanwhile (past `refresh`'s own check, which drops an
        // answer that comes after): its requests still in flight keep
        // the endpoints it had when retired, their pools drained.
        match u.resolution.refresh(i).await {
            Refreshed::Changed if !u.resolution.publishing.retired() => {}
            Refreshed::Refused => {
                refused = true;
                continue;
            }
            _ => continue,
        }
        // From the set in service now, with no wait before it is stored:
        // another name's answer may have replaced the one there before
        // this lookup, or be applied by its own task this very instant
        // (one at a time: see `Resolution::apply`).
        let next = u.resolution.apply(&u.members);
        // Retired between the check and the store: the retirement may
        // have retired the pools of the set before this one, and a
        // retry in flight picks from this one (see `retry_pick`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if u.resolution.publishing.retired() {
            for m in &next.members {
                m.endpoint.pool.retire();
            }
        }
    }
}

/// Close pooled connections idle past `idle_timeout`, every half of it
/// (so between 1 and 1.5 times it; at most every 100 ms, see
/// [`sweep_every`]), also on endpoints no request reaches.
async fn sweep_idle(upstream: std::sync::Weak<Upstream>) {
    loop {
        let Some(every) = upstream
            .upgrade()
            .map(|u| sweep_every(u.config.idle_timeout))
        else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(u) = upstream.upgrade() else { return };
        for m in &u.members.load().members {
            m.endpoint.pool.sweep();
        }
    }
}

/// `health.active`: GET `path` on every endpoint each `interval`, over the
/// upstream's pools and TLS (the same client certificate as requests; past
/// `max_connections_per_server` on a connection of its own if need be);
/// 2xx and 3xx pass. `unhealthy_after` failures in a row take an endpoint
/// out, `healthy_after` passes bring it back. The checks end when the
/// upstream is retired (replaced or removed by a reload), as re-resolution
/// does: a request in flight may hold it for up to `request_timeout`, and
/// its checks went on beside its successor's, on connections pooled again
/// after the drain, their verdicts logged under the same name.
async fn active_checks(upstream: std::sync::Weak<Upstream>, active: ActiveHealth) {
    let mut tick = tokio::time::interval(active.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(u) = upstream.upgrade() else { return };
        if u.resolution.publishing.retired() {
            return;
        }
        let members = u.members.load_full();
        let (u, members, active) = (&u, &members, &active);
        let checks = members.members.iter().map(|m| {
            let path = &active.path;
            async move {
                let mut req = Request::get(path.as_str())
                    .body(ClientBody::empty())
                    .expect("valid");
                if let Ok(host) = HeaderValue::from_str(m.endpoint.authority.as_str()) {
                    req.headers_mut().insert(header::HOST, host);
                }
                let pq = PathAndQuery::try_from(path.as_str())
                    .unwrap_or_else(|_| PathAndQuery::from_static("/"));
                // An unanswered check retires its HTTP/2 connection, as an
                // unanswered request does: checks find a silent one first.
                let timed_out = AtomicBool::new(false);
                // Neither requests' dials nor their slots hold a check back
                // (`Want::Check`): to a dead endpoint that still gets
                // traffic dials are always in progress, and to one that
                // holds every request unanswered its slots are always
                // taken; every check ended with no verdict, and the
                // endpoint stayed in service. With every slot taken it
                // dials one connection of its own past the limit. Only
                // when that one is taken too (the last check's connection
                // not closed yet) is the endpoint busy here, which says
                // nothing of its health: no verdict.
                let busy = AtomicBool::new(false);
                let starved = AtomicBool::new(false);
                // One deadline for both: a check that waited all of it for
                // a connection ends as busy, not as timed out.
                let until = tokio::time::Instant::now() + active.timeout;
                // The status received, once a head came: a timeout after
                // it is the body's.
                let status = std::sync::OnceLock::new();
                // Active health judges it: no step in the passive run.
                let step = AtomicBool::new(false);
                let probe = async {
                    let resp = match u
                        .send(&m.endpoint, req, pq, false, &|| false, &timed_out, &step, until, true, &mut None)
                        .await
                    {
                        Ok(resp) => resp,
                        Err((Failure::Dial(DialError::Limit(_)), _)) => {
                            busy.store(true, Ordering::Release);
                            return Err(failed("busy", None, None));
                        }
                        // The proxy out of descriptors: no verdict either.
                        Err((Failure::Dial(DialError::LocalResources(_)), _)) => {
                            starved.store(true, Ordering::Release);
                            return Err(failed("local_resources", None, None));
                        }
                        Err((e, _)) => {
                            let (cause, error, _) = crate::proxy::failure::diagnose(&e);
                            return Err(failed(cause, None, Some(error)));
                        }
                    };
                    let code = resp.status();
                    let _ = status.set(code.as_u16());
                    let got = Some(code.as_u16());
                    if let Err(e) = drain_check_body(resp.into_body()).await {
                        return Err(failed("body_error", got, Some(e.to_string())));
                    }
                    if code.is_success() || code.is_redirection() {
                        Ok(())
                    } else {
                        Err(failed("status", got, None))
                    }
                };
                let result = {
                    let mut probe = std::pin::pin!(probe);
                    let r = tokio::time::timeout_at(until, probe.as_mut()).await;
                    timed_out.store(r.is_err(), Ordering::Release);
                    r.unwrap_or_else(|_| {
                        Err(match status.get() {
                            None => failed("timeout", None, None),
                            got => failed("body_timeout", got.copied(), None),
                        })
                    })
                };
                if busy.load(Ordering::Acquire) {
                    debug!(upstream = %u.name, endpoint = %m.label, "active check skipped: every connection to the endpoint is taken");
                    return;
                }
                if starved.load(Ordering::Acquire) {
                    debug!(upstream = %u.name, endpoint = %m.label, "active check skipped: the proxy is out of descriptors");
                    return;
                }
                // Retired while it ran: its successor's checks judge.
                if u.resolution.publishing.retired() {
                    return;
                }
                members.checked(m, result, active);
            }
        });
        futures_util::future::join_all(checks).await;
    }
}

/// A failed check's cause, for its log line.
fn failed(cause: &'static str, status: Option<u16>, error: Option<String>) -> CheckFailure {
    CheckFailure {
        cause,
        status,
        error,
    }
}

/// What an active check reads of its response's body. The status decides,
/// once the body has ended (or been cut here) within `timeout`: one that
/// does not end by then fails the check, as in Envoy. The body is read
/// (and dropped) so that an HTTP/1.1 connection goes back to the pool. A longer one is cut there: its connection is closed
/// (an HTTP/2 stream reset), and a `/healthz` that streams a report or a
/// mistaken path on a download costs at most this much per check.
const CHECK_BODY_BYTES: usize = 64 * 1024;

/// Read a check's response body to its end, dropping it as it comes, or
/// stop at [`CHECK_BODY_BYTES`] (dropping the body closes its connection).
async fn drain_check_body(mut body: ResponseBody) -> Result<(), BoxError> {
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read += data.len();
            if read > CHECK_BODY_BYTES {
                break;
            }
        }
    }
    Ok(())
}

/// The shortest wait between two idle sweeps of an upstream.
const MIN_SWEEP: std::time::Duration = std::time::Duration::from_millis(100);

/// How often [`sweep_idle`] looks: every half `idle_timeout`, and at most
/// every [`MIN_SWEEP`]. A tiny `idle_timeout` (`1ms`) made the sweep a
/// timer firing every millisecond, busy or idle, for as long as the
/// upstream was configured; its connections are still never reused past
/// it (the pool checks their age when it hands one out), only closed up
/// to `MIN_SWEEP` later.
fn sweep_every(idle_timeout: std::time::Duration) -> std::time::Duration {
    (idle_timeout / 2).max(MIN_SWEEP)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::sweep_every;

    /// A tiny `idle_timeout` (`1ms`, `1us`: accepted, more than 0s) must
    /// not make the sweep a timer firing every millisecond for as long as
    /// the upstream is configured, busy or idle: an idle proxy with such
    /// an upstream used several percent of a core doing nothing.
    #[test]
    fn the_idle_sweep_never_spins() {
        assert_eq!(
            sweep_every(Duration::from_secs(90)),
            Duration::from_secs(45)
        );
        assert_eq!(
            sweep_every(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        for tiny in [
            Duration::from_nanos(1),
            Duration::from_micros(1),
            Duration::from_millis(1),
        ] {
            assert_eq!(sweep_every(tiny), super::MIN_SWEEP, "{tiny:?}");
        }
    }
}
