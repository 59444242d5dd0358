//! What an HTTP/1.1 attempt keeps to send its request again: the head as written, or a copy.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri, Version};

use crate::proxy::body::{ClientBody, KeptBody};
use crate::proxy::failure::copy_of;
use crate::proxy::forward::StandInHost;
use crate::upstream::conn::H1;
use crate::upstream::io::SENT_HEAD_KEPT;

/// What an HTTP/1.1 attempt keeps to send its request again: hyper takes
/// the request it writes. A request without a body whose head is small is
/// sent again from its head as written ([`H1::sent_head`]), which costs no
/// copy of its fields per request; any other, from a copy taken before.
/// A request none of which reached the socket is sent again whatever its
/// method ([`Kept::unwritten`]): from its head as written and its `body`,
/// or, its head too big to be kept as written, from a copy.
pub(super) enum Kept {
    Copy(Box<Request<ClientBody>>),
    /// A copy sent again only if none of it reached the socket.
    Unwritten(Box<Request<ClientBody>>),
    Written {
        version: Version,
        stand_in: bool,
        /// `Some`: sent again only if never written, with this body.
        body: Option<KeptBody>,
    },
}

/// The largest head (its fields' bytes) sent again from what was written:
/// less than any socket takes in one write, so a head the connection
/// failed on was written whole.
const WRITTEN_HEAD_KEPT: usize = 2048;

/// What an HTTP/1.1 send reads of its request's fields, in one pass (a
/// hash and a probe for each of `Host` and `TE` cost more than reading
/// every name once): whether those are there, and the bytes of the
/// fields' lines ([`Kept::of`]).
pub(super) struct Fields {
    pub(super) host: bool,
    pub(super) te: bool,
    pub(super) bytes: usize,
}

impl Fields {
    pub(super) fn of(headers: &HeaderMap) -> Fields {
        let mut fields = Fields {
            host: false,
            te: false,
            bytes: 0,
        };
        for (name, value) in headers {
            fields.bytes += line(name, value);
            fields.host |= name == header::HOST;
            fields.te |= name == header::TE;
        }
        fields
    }

    /// [`crate::proxy::hop::name_te`], for a request with a `TE` only.
    pub(super) fn name_te(&self, headers: &mut HeaderMap) {
        if self.te {
            crate::proxy::hop::name_te(headers);
        }
    }
}

/// The largest head (as counted by [`head_size`]) sent again from what a
/// failed first write was given ([`Kept::unwritten`]): hyper hands a
/// socket its whole head in one buffer, kept whole up to
/// [`SENT_HEAD_KEPT`]; the rest leaves room for what `head_size` does not
/// count (the request line's spaces and version, the empty line, a
/// framing field hyper adds). A bigger head is copied before it is sent.
const UNWRITTEN_HEAD_KEPT: usize = SENT_HEAD_KEPT - 256;

/// `req`'s head, roughly: method, path and query, and its fields' bytes
/// (`fields`, or counted here).
fn head_size(req: &Request<ClientBody>, fields: Option<usize>) -> usize {
    let uri = req.uri();
    let fields = fields.unwrap_or_else(|| req.headers().iter().map(|(n, v)| line(n, v)).sum());
    req.method().as_str().len() + uri.path().len() + uri.query().map_or(0, str::len) + fields
}

/// Whether `req`'s head is no more than [`WRITTEN_HEAD_KEPT`], to be sent
/// again from what was written: the rest of [`crate::upstream::io`]'s
/// bound leaves room for the request line and what is added after (a
/// stand-in `Host`, a framing field).
fn small(req: &Request<ClientBody>, fields: Option<usize>) -> bool {
    head_size(req, fields) <= WRITTEN_HEAD_KEPT
}

/// A field's `name: value` line, as hyper writes it.
fn line(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + value.len() + 4
}

impl Kept {
    /// `fields`: the bytes of `req`'s fields' lines ([`Fields`]), when
    /// known: read before a stand-in `Host` or a `te` in `Connection` was
    /// added, they are not (`None`: counted here).
    pub(super) fn of(req: &Request<ClientBody>, fields: Option<usize>) -> Kept {
        if hyper::body::Body::is_end_stream(req.body()) && small(req, fields) {
            return Kept::Written {
                version: req.version(),
                stand_in: req.extensions().get::<StandInHost>().is_some(),
                body: None,
            };
        }
        Kept::Copy(Box::new(copy_of(req)))
    }

    /// A request on a `reused` connection that [`Kept::of`] does not keep
    /// (any method, or no send again allowed), whose body can be sent
    /// twice: kept to go again only if none of it reaches the socket (the
    /// upstream reset the idle connection, the reset not yet read, and
    /// the write failed). hyper hands back no request it has taken, and
    /// such a `POST` got a `502` the upstream never saw a byte of. Costs
    /// no copy: the head comes from what hyper meant to write, a body
    /// read whole shares its bytes. A head too big to be kept as written
    /// ([`UNWRITTEN_HEAD_KEPT`]: big cookies, a forwarded client
    /// certificate) is kept in a copy: none of it kept, such a `POST` got
    /// the `502` all the same.
    /// `fields`: as for [`Kept::of`].
    pub(super) fn unwritten(
        req: &Request<ClientBody>,
        reused: bool,
        fields: Option<usize>,
    ) -> Option<Kept> {
        if !reused {
            return None;
        }
        let body = req.body().kept()?;
        // Not `small`: that bound is for a head written whole over maybe
        // several writes; here the first write failed, given all of it.
        if head_size(req, fields) > UNWRITTEN_HEAD_KEPT {
            return Some(Kept::Unwritten(Box::new(copy_of(req))));
        }
        Some(Kept::Written {
            version: req.version(),
            stand_in: req.extensions().get::<StandInHost>().is_some(),
            body: Some(body),
        })
    }

    /// The request again, from the head hyper wrote or tried to write (a
    /// write that failed keeps what it was given, [`H1::sent_head`]: hyper
    /// hands back no request it has taken); `None` if hyper never began
    /// to write it (then it hands the request back itself), or if it is
    /// kept only unwritten ([`Kept::unwritten`]) and some of it was. And
    /// whether none of it reached the socket: then it was never sent.
    pub(super) fn request(
        self,
        c: &H1,
        path: &PathAndQuery,
    ) -> Option<(Request<ClientBody>, bool)> {
        // Whether none of it reached the socket, whether or not its head
        // was small enough to be kept as written.
        let none_reached = c.head.unreached();
        let (version, stand_in, body) = match self {
            Kept::Copy(req) => return Some((*req, none_reached)),
            Kept::Unwritten(req) => return none_reached.then_some((*req, true)),
            Kept::Written {
                version,
                stand_in,
                body,
            } => (version, stand_in, body),
        };
        let (head, unwritten) = c.sent_head()?;
        if body.is_some() && !unwritten {
            return None;
        }
        let (method, headers) = crate::proxy::failure::parse_written_head(&head)?;
        let mut req = Request::new(body.map_or_else(ClientBody::empty, KeptBody::body));
        *req.method_mut() = method;
        *req.uri_mut() = Uri::from(path.clone());
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        if stand_in {
            req.extensions_mut().insert(StandInHost);
        }
        Some((req, unwritten))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::proxy::body::ClientBody;
    use crate::proxy::forward::Upstream;

    /// `req` sent to `endpoint` as forwarding sends it (10 s to answer, no
    /// retry elsewhere); the failure's status, reason and cause if not.
    async fn sent(
        upstream: &Upstream,
        endpoint: &Arc<crate::upstream::endpoint::Endpoint>,
        req: http::Request<ClientBody>,
        path: &'static str,
    ) -> Result<http::Response<crate::proxy::forward::ResponseBody>, String> {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let path = http::uri::PathAndQuery::from_static(path);
        let timed_out = AtomicBool::new(false);
        let sent = upstream
            .send(
                endpoint,
                req,
                path,
                false,
                &|| false,
                &timed_out,
                &AtomicBool::new(false),
                until,
                false,
                &mut None,
            )
            .await;
        sent.map_err(|(failure, _)| {
            let (reason, cause, status) = crate::proxy::failure::diagnose(&failure);
            format!("{status} {reason}: {cause}")
        })
    }

    /// Whether the IPv4 socket bound to `local` is ESTABLISHED, by the
    /// kernel's table (not by reading the socket, which is what the test
    /// is about).
    fn established(local: std::net::SocketAddr) -> bool {
        crate::upstream::conn::tests::tcp_state_is(local, "01")
    }

    /// A request head, and its body of `content-length` bytes, read from `s`.
    async fn read_request(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.unwrap(), 1, "no request");
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        (head, body)
    }

    /// What the upstream gets on the new connections of [`reset_idle`]:
    /// each request's head and body.
    type Seen = tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>;

    /// An upstream named `name` with one pooled connection that carried a
    /// request, which the upstream reset while it was idle, after the
    /// pool found it ready (the reset in the kernel, not yet in tokio's
    /// readiness: hyper's idle read sees nothing, its next write fails).
    /// Every new connection answers `done`.
    async fn reset_idle(
        name: &str,
    ) -> (
        Arc<Upstream>,
        Arc<crate::upstream::endpoint::Endpoint>,
        Seen,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Arc::new(crate::upstream::endpoint::tests::endpoint(port, false, 4));
        let mut config = crate::upstream::endpoint::tests::config(4, Duration::from_secs(2));
        config.name = name.into();
        let tls = crate::tls::client::build(None, None, &[]).unwrap();
        let upstream = Upstream::new(config, tls, None);
        // A connection that carried one request, answered keep-alive.
        let mut c = crate::upstream::pool::tests::h1(&listener).await;
        let (mut server, client) = listener.accept().await.unwrap();
        let req = http::Request::get("/").body(ClientBody::empty()).unwrap();
        let answer = async {
            read_request(&mut server).await;
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
            server.write_all(ok).await.unwrap();
        };
        let (resp, ()) = tokio::join!(c.send(req), answer);
        let mut body = resp.map_err(|e| e.into_error()).unwrap().into_body();
        std::future::poll_fn(|cx| {
            c.poll_conn(cx);
            hyper::body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
                .map(|f| assert!(f.is_none()))
        })
        .await;
        drop(body);
        // Idle and read to the end (tokio's readiness cleared): pooled.
        assert!(c.ready().await, "the used connection is not ready");
        endpoint.pool.put(c);
        // The upstream resets it (SO_LINGER 0). Awaited in the kernel's
        // table without yielding: tokio's IO driver has not seen it.
        socket2::SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while established(client) {
            assert!(std::time::Instant::now() < deadline, "the reset never came");
            std::thread::yield_now();
        }
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let request = read_request(&mut s).await;
                    seen_tx.send(request).unwrap();
                    let done = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone";
                    s.write_all(done).await.unwrap();
                    // Kept open: the answer is not cut by a close.
                    let _ = s.read(&mut [0u8; 1]).await;
                });
            }
        });
        (upstream, endpoint, seen)
    }

    /// A `POST /x` with body `hello`, and a `cookie` of `cookie` bytes.
    fn post(cookie: usize) -> http::Request<ClientBody> {
        let (body, _) = ClientBody::whole(Bytes::from_static(b"hello"), None, Duration::ZERO);
        let mut req = http::Request::post("/x").body(body).unwrap();
        let headers = req.headers_mut();
        headers.insert(http::header::HOST, "app.example.com".parse().unwrap());
        headers.insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
        if cookie > 0 {
            let value = format!("s={}", "c".repeat(cookie - 2));
            headers.insert(http::header::COOKIE, value.parse().unwrap());
        }
        req
    }

    /// [`post`] sent on [`reset_idle`]'s connection of upstream `name`:
    /// answered from a new connection, which got it once (the head it got
    /// checked by `head`), and counted as sent again.
    async fn post_is_sent_again(name: &str, cookie: usize, head: impl Fn(&str) -> bool) {
        let (upstream, endpoint, mut seen) = reset_idle(name).await;
        let resp = sent(&upstream, &endpoint, post(cookie), "/x")
            .await
            .unwrap_or_else(|e| panic!("not sent again: {e}"));
        assert_eq!(resp.status(), http::StatusCode::OK);
        let answer = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&answer[..], b"done");
        let (got, body) = seen.recv().await.unwrap();
        assert!(got.starts_with("POST /x HTTP/1.1\r\n"), "{got}");
        assert!(head(&got), "{got}");
        assert_eq!(body, b"hello");
        assert!(seen.try_recv().is_err(), "the upstream got it twice");
        // Sent again after a failed write (counted), not dialled anew by
        // a pool that saw the reset (the race this test is about).
        let resends = format!("hotproxy_upstream_resends_total{{upstream=\"{name}\"}} 1");
        let metrics = crate::metrics::METRICS.render();
        assert!(metrics.lines().any(|l| l == resends), "{metrics}");
    }

    /// A `POST` whose body was read whole, taken by a pooled connection
    /// the upstream reset while it was idle, before any byte of the
    /// request reached its socket ([`reset_idle`]). hyper hands back no
    /// request it has taken, and only an idempotent one was kept to send
    /// again: the `POST` got a `502`, counted against the endpoint, which
    /// never saw a byte of it (SPEC: a request never written is sent
    /// again, whatever its method). It is sent again on a new connection:
    /// the upstream gets it once, the client its answer.
    #[tokio::test]
    async fn a_post_a_reused_connection_never_wrote_is_sent_again() {
        post_is_sent_again("kept-post-unwritten", 0, |_| true).await;
    }

    /// As above, with a head over the 4 KiB kept as written (a big
    /// cookie; a forwarded client certificate): none of it kept, whether
    /// any of it reached the socket went unasked, and such a `POST` got
    /// the `502` (`protocol`, counted against the endpoint: five ejected
    /// a healthy one) the SPEC's resend promise rules out.
    #[tokio::test]
    async fn a_post_with_a_big_head_a_reused_connection_never_wrote_is_sent_again() {
        let cookie = |head: &str| {
            head.lines()
                .any(|l| l.len() > 6000 && l.starts_with("cookie: s=c"))
        };
        post_is_sent_again("kept-big-post-unwritten", 6144, cookie).await;
    }

    /// As above, with a head of 3 KiB (two JWT cookies): over the 2 KiB
    /// a head written whole is sent again from, within the 4 KiB a failed
    /// first write keeps of what it was given. It is sent again from
    /// that, with no copy taken per request; a copy was taken for every
    /// such `POST` on a reused connection.
    #[tokio::test]
    async fn a_post_with_a_3_kib_head_a_reused_connection_never_wrote_is_sent_again() {
        let kept = super::Kept::unwritten(&post(3072), true, None);
        assert!(matches!(kept, Some(super::Kept::Written { .. })), "copied");
        let big = super::Kept::unwritten(&post(6144), true, None);
        assert!(matches!(big, Some(super::Kept::Unwritten(_))), "not copied");
        let cookie = |head: &str| {
            head.lines()
                .any(|l| l.len() > 3000 && l.starts_with("cookie: s=c"))
        };
        post_is_sent_again("kept-3k-post-unwritten", 3072, cookie).await;
    }

    /// A `GET` with a head over the 4 KiB kept as written, on
    /// [`reset_idle`]'s connection, with no send again to its endpoint
    /// left: none of it reached the socket, so it was never processed
    /// ([`crate::proxy::failure::h1_spent`]'s `IdleClosed`), kept for
    /// another endpoint. Its copy was kept, but whether it was written
    /// was read from the head kept as written: a `protocol` failure
    /// counted against an endpoint that never saw a byte of it.
    #[tokio::test]
    async fn a_big_get_a_reused_connection_never_wrote_is_no_failure_of_the_endpoint() {
        use crate::proxy::failure::{diagnose, h1_spent, never_processed};
        let (_upstream, endpoint, _seen) = reset_idle("kept-big-get-spent").await;
        let mut c = endpoint
            .pool
            .take_oldest_idle()
            .expect("the pooled connection");
        let cookie = format!("s={}", "c".repeat(6142));
        let req = http::Request::get("/x")
            .header(http::header::COOKIE, cookie)
            .body(ClientBody::empty())
            .unwrap();
        let kept = super::Kept::of(&req, None);
        assert!(matches!(kept, super::Kept::Copy(_)), "a big head is copied");
        let sent = tokio::time::timeout(Duration::from_secs(5), c.send(req)).await;
        let e = sent.expect("no answer").expect_err("answered");
        assert!(e.message().is_none(), "handed back: {:?}", e.error());
        let path = http::uri::PathAndQuery::from_static("/x");
        let copy = kept.request(&c, &path);
        let (failure, again) = h1_spent(e, copy, c.reused());
        let (reason, cause, _) = diagnose(&failure);
        assert!(never_processed(&failure), "counted: {reason}, {cause}");
        assert!(again.is_some(), "the request kept for another endpoint");
    }

    /// A `POST` whose body the upstream stops reading once it has
    /// answered (keep-alive, before the body's end): hyper took the last
    /// of the body (`BodySent::done`) but its socket did not, and the
    /// connection was pooled with the body's tail unflushed. The next
    /// request taken on it waited behind that tail for `request_timeout`
    /// (a `504` counted against the endpoint). Closed instead, the next
    /// request goes on a new connection.
    #[tokio::test]
    async fn a_connection_whose_request_body_is_unflushed_is_not_pooled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Arc::new(crate::upstream::endpoint::tests::endpoint(port, false, 4));
        let mut config = crate::upstream::endpoint::tests::config(4, Duration::from_secs(2));
        config.name = "kept-unflushed".into();
        let tls = crate::tls::client::build(None, None, &[]).unwrap();
        let upstream = Upstream::new(config, tls, None);
        // The first connection: its request answered at its head, its
        // body never read. Every later one answered after the body.
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut stopped_tx = Some(stopped_tx);
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let first = stopped_tx.take();
                tokio::spawn(async move {
                    if let Some(stopped_tx) = first {
                        let mut head = Vec::new();
                        while !head.ends_with(b"\r\n\r\n") {
                            let mut b = [0u8; 1];
                            assert_eq!(s.read(&mut b).await.unwrap(), 1, "no request");
                            head.push(b[0]);
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        s.write_all(ok).await.unwrap();
                        let _ = stopped_tx.send(());
                        // Holds the connection, reading nothing more.
                        std::future::pending::<()>().await;
                    }
                    loop {
                        read_request(&mut s).await;
                        let done = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone";
                        s.write_all(done).await.unwrap();
                    }
                });
            }
        });
        let send = |req: http::Request<ClientBody>, path: &'static str| {
            let (upstream, endpoint) = (upstream.clone(), endpoint.clone());
            async move {
                let resp = sent(&upstream, &endpoint, req, path).await;
                let resp = resp.unwrap_or_else(|e| panic!("{e}"));
                resp.into_body().collect().await.unwrap().to_bytes()
            }
        };
        // More than any pair of loopback socket buffers holds.
        let big = Bytes::from(vec![b'x'; 64 << 20]);
        let (body, _) = ClientBody::whole(big, None, Duration::ZERO);
        let mut req = http::Request::post("/up").body(body).unwrap();
        let len = (64usize << 20).to_string().parse().unwrap();
        req.headers_mut().insert(http::header::CONTENT_LENGTH, len);
        assert_eq!(&send(req, "/up").await[..], b"");
        stopped.await.unwrap();
        let req = http::Request::get("/next")
            .body(ClientBody::empty())
            .unwrap();
        // Pooled, it waited behind the tail for good (here, with no
        // `request_timeout` around `send`): bounded, to fail, not hang.
        let next = tokio::time::timeout(Duration::from_secs(10), send(req, "/next"));
        let next = next
            .await
            .expect("the GET waited behind the POST's unsent tail");
        assert_eq!(&next[..], b"done");
    }
}
