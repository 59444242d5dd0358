//! hyper's task sending a request body to an HTTP/2 upstream: kept with its body, and cut when an upstream that has answered takes no more of it.
//!
//! hyper's HTTP/2 client sends each request body from a task of its own,
//! spawned through the connection's executor. Waiting for flow-control
//! window it holds a piece of the body and reads no more of it, so
//! `body_read_timeout`, which runs in the body's reads, does not fire
//! there; and once the response is in, nothing in hyper ends that task. An
//! upstream that answered early and then neither opened the stream's
//! window nor reset it kept the client's body, and with it an HTTP/1.1
//! client's whole connection, for good (`idle_timeout` waits for the
//! body too), and the stream open upstream after the pool had counted it
//! ended (nginx bounds this with `proxy_send_timeout`, Envoy with its
//! stream idle timeout).
//!
//! So the executor ([`Exec`]) keeps the handle of each such task with the
//! body it sends; when the response has ended, the stream stays counted
//! until the task ends ([`watch`]), and a body that does not move for
//! `body_read_timeout` is cut: the task is dropped, and with it hyper's
//! side of the stream (h2 resets it, `CANCEL`) and the client's body (the
//! client's connection goes on as after any body left unread: HTTP/1.1
//! closes, HTTP/2 resets that stream). After a response that failed the
//! task is dropped at once.
//!
//! Which body a task sends is not in what hyper hands the executor. hyper
//! polls a body first in the connection's own task and spawns the task
//! right after, only for a body not through by then; so the body polled
//! there last ([`polled`], within [`scope`]) is the one.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;

use tracing::debug;

use crate::proxy::body::BodySent;

thread_local! {
    /// Polling an HTTP/2 connection's hyper client, in its own task.
    static IN_CONN: Cell<bool> = const { Cell::new(false) };
    /// The request body polled there last.
    static POLLED: RefCell<Option<BodySent>> = const { RefCell::new(None) };
}

/// Poll an HTTP/2 upstream connection's hyper client (`poll`): the bodies
/// it polls say so ([`polled`]) for the tasks it spawns meanwhile.
pub fn scope<T>(poll: impl FnOnce() -> T) -> T {
    /// Ends the scope also when `poll` panics.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            IN_CONN.set(false);
            POLLED.take();
        }
    }
    IN_CONN.set(true);
    let _scope = Scope;
    poll()
}

/// Whether a body polled now is polled in a connection's [`scope`].
pub fn inline() -> bool {
    IN_CONN.get()
}

/// `body` was polled in a connection's [`scope`]: a task spawned next
/// sends it.
pub fn polled(body: BodySent) {
    POLLED.set(Some(body));
}

/// The executor of hyper's HTTP/2 client connections: tokio's, keeping the
/// handle of a task that sends a request body with that body.
#[derive(Clone, Copy)]
pub struct Exec;

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let task = tokio::spawn(fut);
        if let Some(body) = POLLED.take() {
            body.sent_by(task);
        }
    }
}

/// How the response to a request whose body hyper may still send ended,
/// for [`watch`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Read to its end, or dropped by the client.
    Over,
    /// Failed: no piece of its body for `read_timeout` (the connection is
    /// retired), an error from the upstream, or refused by hotproxy (too
    /// many header fields, `502`).
    Failed,
}

/// A response from an HTTP/2 upstream has ended (or was dropped) while
/// hyper's task still sends the request's body: keep `stream` counted in
/// the pool until that task ends (an `Upgrade` request's connection, whose
/// task sends its body as it does: [`crate::upstream::conn::upgrade_conn`],
/// holds nothing here; its slot goes with the connection). A response that `Failed` ends the task
/// at once: nobody reads an answer to that body any more, and a retired
/// connection closes only when its last stream is let go, so a body
/// waiting for window there held the connection and its server slot
/// until the cut below, one to two `body_read_timeout`s later. Otherwise
/// the task is ended when the body has not moved for `body_read_timeout`
/// (looked at once each `body_read_timeout`, so the cut comes between one
/// and two times it) and the client is not the one that owes the next
/// piece (its own `body_read_timeout` ends that).
pub fn watch<H: Send + 'static>(
    sent: BodySent,
    stream: H,
    upstream: &Arc<str>,
    response: Response,
) {
    let Some((mut task, limit)) = sent.task() else {
        return;
    };
    if task.is_finished() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let upstream = upstream.clone();
    runtime.spawn(async move {
        // Counted until the body is through, or cut.
        let _stream = stream;
        if response == Response::Failed {
            task.abort();
            let _ = task.await;
            debug!(upstream = %upstream, "request body cut: its response failed");
            return;
        }
        loop {
            let moved = sent.moved();
            if tokio::time::timeout(limit, &mut task).await.is_ok() {
                return;
            }
            if sent.moved() != moved || sent.waiting() {
                continue;
            }
            task.abort();
            let _ = task.await;
            debug!(upstream = %upstream, timeout = ?limit, "request body cut: the upstream took no more of it after its response");
            return;
        }
    });
}
