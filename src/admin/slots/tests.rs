//! Unit tests of the admin slots: evictions, and connections served through the admin's driver and streams.

use super::*;
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::{Driver, Ended};
use crate::proxy::linger::{LINGER_TIME, linger};

/// A timeout never reached here.
const LONG: Duration = Duration::from_secs(60);

/// The connection of `listener`'s next client, in a slot of its own
/// `Slots`, its streams the admin listener's: the slots, the client's
/// address, its `Conn`, and the stream to serve.
async fn accept_as_the_admin(
    listener: &tokio::net::TcpListener,
) -> (Arc<Slots>, SocketAddr, Arc<Conn>, ClientIo<SlotIo>) {
    let slots = Arc::new(Slots::default());
    let (peer, conn, io) = accept_into(listener, &slots).await;
    (slots, peer, conn, io)
}

/// As [`accept_as_the_admin`], in a slot of `slots`.
async fn accept_into(
    listener: &tokio::net::TcpListener,
    slots: &Arc<Slots>,
) -> (SocketAddr, Arc<Conn>, ClientIo<SlotIo>) {
    let (stream, peer) = listener.accept().await.unwrap();
    let slot = slots.take(peer).await.unwrap();
    let conn = slot.conn().clone();
    let activity = conn.activity().clone();
    let io = SlotIo::new(stream, conn.clone());
    let io = ClientIo::new(Box::new(io), activity, true, LONG, Box::new(slot));
    (peer, conn, io)
}

/// `svc` serving `io` (HTTP/1.1) as the admin listener serves a
/// connection from `peer` (its driver; every timeout [`LONG`]; no
/// shutdown), on a task of its own.
fn serve_as_the_admin<S, B>(
    io: ClientIo<SlotIo>,
    svc: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
) -> tokio::task::JoinHandle<()>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn_http = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _shutdown = shutdown;
        let driver = Driver {
            name: "admin",
            peer,
            activity: &activity,
            header_read_timeout: LONG,
            idle_timeout: LONG,
            shutdown: rx,
            also_close_grace: LONG,
            process: None,
            answer_first: false,
            handed_over: None,
            answer_unbegun: true,
            stalls: None,
            send_timeout: LONG,
        };
        driver
            .run(
                conn_http,
                |c| c.graceful_shutdown(),
                futures_util::stream::pending(),
            )
            .await;
    })
}

fn peer(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, (n / MAX_CONNECTIONS_PER_CLIENT) as u8], 1))
}

/// A lingering close holds its slot (it holds a descriptor) but is
/// evicted first: its reads fail, it ends, the slot is the newcomer's;
/// connections with a request in flight keep theirs. The newcomer's
/// wait is half the linger: a slot freed by the linger's own end would
/// come only after it.
#[tokio::test]
async fn a_lingering_close_makes_room_and_requests_in_flight_keep_theirs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, from) = listener.accept().await.unwrap();
    let slots = Arc::new(Slots::default());
    let slot = slots.take(from).await.unwrap();
    // Its request was answered.
    drop(slot.conn().activity().begin(false));
    let io = SlotIo::new(stream, slot.conn().clone());
    // The client neither sends nor closes: the linger waits on it.
    let lingering = tokio::spawn(async move {
        linger(io, false).await;
        drop(slot);
    });
    let mut busy = Vec::new();
    for n in 1..MAX_CONNECTIONS {
        let slot = slots.take(peer(n)).await.unwrap();
        let in_flight = slot.conn().activity().begin(false);
        busy.push((slot, in_flight));
    }
    let newcomer = tokio::time::timeout(LINGER_TIME / 2, slots.take(peer(MAX_CONNECTIONS)))
        .await
        .expect("a slot for the newcomer while a lingering close held the last one");
    assert!(newcomer.is_some());
    lingering.await.unwrap();
    assert!(
        busy.iter()
            .all(|(s, _)| !s.conn().evicted.load(Ordering::SeqCst)),
        "a request in flight was evicted"
    );
}

/// An admin connection whose `GET /metrics` is on its socket, unread,
/// when the process's shutdown (SIGTERM) comes is answered, as its
/// last (`Connection: close`), and then closed: the bytes sent before
/// the signal began a request (SPEC §1). Answered within the look's
/// own poll, that response had gone out keep-alive: the close came
/// only after it.
/// The look at the close found them (one byte, as far as it could
/// tell) but could not read them: the admin stream took none (plain
/// TCP had no `pull`), so no head's byte was read and the connection
/// was closed at once, the request dropped unanswered. The client
/// writes, and the signal is set, within one poll of the runtime's one
/// thread, the driver's next: the runtime has not seen the socket
/// readable when the driver looks. This driver looks, as a
/// listener's does (`answer_unbegun` off): the admin's own answers a
/// first request after the signal without looking, and the look
/// through `SlotIo` is what is tested here.
#[tokio::test]
async fn a_request_unread_at_the_shutdown_is_answered() {
    use std::io::{Read, Write};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, told) = std::sync::mpsc::channel::<()>();
    let (sent, written) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LONG)).unwrap();
        told.recv().unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        sent.send(()).unwrap();
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got);
        got
    });
    let (_slots, peer, conn, io) = accept_as_the_admin(&listener).await;
    let activity = conn.activity().clone();
    let answering = activity.clone();
    // As the admin listener's service: the last response says so.
    let svc = hyper::service::service_fn(move |_req| {
        let in_flight = answering.begin(false);
        let last = answering.answers_last();
        async move {
            drop(in_flight);
            let body = http_body_util::Full::new(bytes::Bytes::from_static(b"ok"));
            let mut resp = hyper::Response::new(body);
            super::super::say_last(&mut resp, last);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let driver = Driver {
        name: "admin",
        peer,
        activity: &activity,
        header_read_timeout: LONG,
        idle_timeout: LONG,
        shutdown: rx.clone(),
        also_close_grace: LONG,
        process: Some(rx),
        answer_first: false,
        handed_over: None,
        answer_unbegun: false,
        stalls: None,
        send_timeout: LONG,
    };
    let mut run = std::pin::pin!(driver.run(
        conn,
        |c| c.graceful_shutdown(),
        futures_util::stream::pending()
    ));
    let mut polls = 0;
    let outcome = std::future::poll_fn(|cx| {
        // The driver's first poll left hyper waiting to read; before
        // its second, the request is on the socket and the signal set.
        if polls == 1 {
            go.send(()).unwrap();
            written.recv().unwrap();
            shutdown.send_replace(true);
        }
        polls += 1;
        let out = run.as_mut().poll(cx);
        if polls == 1 {
            cx.waker().wake_by_ref();
        }
        out
    })
    .await;
    let got = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(
        got.starts_with("http/1.1 200")
            && got.contains("\r\nconnection: close\r\n")
            && got.ends_with("ok"),
        "{got:?}"
    );
    assert_eq!(outcome.by, Ended::ByUs);
}

/// A client that reads each answer and sends its next request at once
/// (as one that pipelines `GET /metrics`, reads slowly, and now and
/// then drains its answers and sends the next batch at once) lets its
/// connection rest only for a round trip between two: each such rest
/// ended its run of requests without a token, so however long it went
/// on none of its requests counted as waiting on it, and a newcomer,
/// looking every 100 ms, seldom found it between two. A rest shorter
/// than [`REST`] now leaves the run going: once it has lasted
/// [`STALLED`], the connection may be evicted even while one of its
/// requests is served. Served as the admin listener serves (its
/// driver, its streams, its service's bookkeeping).
#[tokio::test]
async fn a_brief_rest_does_not_end_a_run_of_requests_without_a_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
            if tcp.write_all(req).await.is_err() {
                return;
            }
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\nok") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        }
    });
    let (_slots, peer, conn, io) = accept_as_the_admin(&listener).await;
    let activity = conn.activity().clone();
    let (evictable, mut seen) = tokio::sync::mpsc::unbounded_channel();
    // As the admin listener's service; and, while each request is
    // served, a look as a newcomer's.
    let svc = {
        let (activity, conn) = (activity.clone(), conn.clone());
        hyper::service::service_fn(move |_req| {
            conn.request(false);
            let in_flight = activity.begin(false);
            if conn.waiting_since(Instant::now(), false).is_some() {
                let _ = evictable.send(());
            }
            async move {
                let body = http_body_util::Full::new(bytes::Bytes::from_static(b"ok"));
                let body = crate::proxy::conn::TrackedBody::new(body, in_flight);
                Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
            }
        })
    };
    let serving = serve_as_the_admin(io, svc, peer, activity);
    tokio::time::timeout(STALLED * 4, seen.recv()).await.expect(
        "a request of a run without a token that went on for 5 s counts as waiting on its client",
    );
    serving.abort();
    client.abort();
}

/// A response body without end, each chunk ready at once.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let chunk = bytes::Bytes::from_static(&[b'x'; 16 * 1024]);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// The other 63 slots, each a token holder's request in flight: the
/// slots and their requests (ended by dropping them).
async fn token_holders_in_flight(slots: &Arc<Slots>) -> Vec<(Slot, crate::proxy::conn::InFlight)> {
    let mut busy = Vec::new();
    for n in 1..MAX_CONNECTIONS {
        let slot = slots.take(peer(n)).await.unwrap();
        slot.conn().request(true);
        let in_flight = slot.conn().activity().begin(false);
        busy.push((slot, in_flight));
    }
    busy
}

/// Clients without a token that pipeline requests and read the answers
/// steadily for 4.5 s, then drain them and rest half a second (a run of
/// their own each time), hold every slot: none stalls 5 s nor waits for a
/// request while busy, so a probe landing in the busy part waited up to
/// 4.5 s for the rest. Once a newcomer has waited [`IMPATIENT`], a
/// connection whose run without a token has lasted [`RUN`] makes room.
/// Here the run is one request whose answer never ends, read at speed,
/// served as the admin listener serves (its driver, its streams, its
/// service's bookkeeping); the 63 other slots hold token holders' requests
/// in flight. Before, the newcomer had its slot only once the run had
/// lasted [`STALLED`] (nothing else could make it evictable).
#[tokio::test]
async fn a_newcomer_that_waited_takes_the_slot_of_a_run_without_a_token() {
    let slots = Arc::new(Slots::default());
    let (conn, serving, client) = an_endless_scrape(&slots).await;
    let _busy = token_holders_in_flight(&slots).await;
    let newcomer = slots.take(peer(MAX_CONNECTIONS)).await;
    assert!(newcomer.is_some());
    assert!(conn.evicted.load(Ordering::SeqCst), "another was evicted");
    let run = conn.began + Duration::from_millis(conn.run_ms.load(Ordering::SeqCst));
    assert!(
        run.elapsed() < STALLED,
        "the newcomer had its slot only once the run had lasted {:?}",
        run.elapsed()
    );
    serving.abort();
    client.abort();
}

/// A client without a token whose `GET /metrics` answer never ends, read
/// at speed, served in a slot of `slots` as the admin listener serves
/// (its driver, its streams, its service's bookkeeping): its `Conn`, and
/// the tasks serving and reading it, once the answer's first bytes have
/// been read (its run has begun).
async fn an_endless_scrape(
    slots: &Arc<Slots>,
) -> (
    Arc<Conn>,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reading, mut read) = tokio::sync::mpsc::unbounded_channel();
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
        tcp.write_all(req).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(1..) = tcp.read(&mut buf).await {
            let _ = reading.send(());
        }
    });
    let (from, conn, io) = accept_into(&listener, slots).await;
    let activity = conn.activity().clone();
    let svc = {
        let (activity, conn) = (activity.clone(), conn.clone());
        hyper::service::service_fn(move |_req| {
            conn.request(false);
            let in_flight = activity.begin(false);
            async move {
                let body = crate::proxy::conn::TrackedBody::new(Endless, in_flight);
                Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
            }
        })
    };
    let serving = serve_as_the_admin(io, svc, from, activity);
    read.recv().await.expect("the answer's first bytes");
    (conn, serving, client)
}

/// Wakes counted: whether a future polled by hand was woken.
struct Woken(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A 17th connection from an address whose 16 are all spared, not read
/// yet, waits for them; once one of them is read and found empty, the
/// newcomer looks again at once. Before, turning dry told no one: the
/// newcomer slept the whole [`LOOK_AGAIN`], and the accept loop, serial,
/// accepted nothing else meanwhile. The newcomer is polled by hand: its
/// wake-up is seen, not timed. The read comes once [`SPARE_FLOOR`] has
/// passed, which spares a connection found empty until then.
#[tokio::test]
async fn a_connection_found_empty_wakes_the_newcomer_waiting_on_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slots = Arc::new(Slots::default());
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
        // The client sends nothing.
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, from) = listener.accept().await.unwrap();
        let slot = slots.take(from).await.unwrap();
        let io = SlotIo::new(stream, slot.conn().clone());
        held.push((client, io, slot));
    }
    tokio::time::sleep_until((held[0].2.conn().began + SPARE_FLOOR).into()).await;
    let newcomer = slots.take(SocketAddr::from(([127, 0, 0, 1], 1)));
    let mut newcomer = std::pin::pin!(newcomer);
    let woken = Arc::new(Woken(std::sync::atomic::AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(
        newcomer.as_mut().poll(&mut cx).is_pending(),
        "the newcomer waits for the 16 not read yet"
    );
    // One of them is read: nothing on its socket.
    let (_, io, slot) = &mut held[0];
    let mut buf = [0u8; 16];
    let mut buf = ReadBuf::new(&mut buf);
    let noop = Waker::noop();
    let read = Pin::new(io).poll_read(&mut Context::from_waker(noop), &mut buf);
    assert!(read.is_pending());
    assert!(!slot.conn().spared());
    assert!(
        woken.0.load(Ordering::SeqCst) > 0,
        "the newcomer was not woken when a connection it waited on was found empty"
    );
    // Its look now evicts that one.
    assert!(newcomer.as_mut().poll(&mut cx).is_pending());
    assert!(slot.conn().evicted.load(Ordering::SeqCst));
}

/// The accept loop is serial: newcomers queued in the backlog behind
/// one that waited [`IMPATIENT`] for its slot have waited as long, and a
/// run of requests without a token that has lasted [`RUN`] makes room
/// for the next at its first look. Before, each newcomer's patience
/// began with its own look, so each waited another quarter of a second.
/// The 64 slots hold such runs (their requests in flight, over real
/// sockets' slots); the second newcomer is polled by hand, once.
#[tokio::test]
async fn newcomers_queued_behind_an_impatient_one_are_impatient_at_once() {
    let slots = Arc::new(Slots::default());
    let mut conns = Vec::new();
    for n in 0..MAX_CONNECTIONS {
        let slot = slots.take(peer(n)).await.unwrap();
        let conn = slot.conn().clone();
        conn.request(false);
        let in_flight = conn.activity().begin(false);
        conns.push(conn.clone());
        // Evicted: its task ends, the slot is given back.
        tokio::spawn(async move {
            conn.evicted().await;
            drop((in_flight, slot));
        });
    }
    let last = conns.last().unwrap().began;
    tokio::time::sleep_until((last + RUN).into()).await;
    let evicted = || {
        conns
            .iter()
            .filter(|c| c.evicted.load(Ordering::SeqCst))
            .count()
    };
    let first = slots.take(peer(MAX_CONNECTIONS)).await;
    assert!(first.is_some());
    assert_eq!(evicted(), 1);
    let next = slots.take(peer(MAX_CONNECTIONS + 1));
    let mut next = std::pin::pin!(next);
    let noop = Waker::noop();
    let _ = next.as_mut().poll(&mut Context::from_waker(noop));
    assert_eq!(
        evicted(),
        2,
        "the newcomer queued behind an impatient one evicted nothing at its first look"
    );
}

/// Newcomers that each evict an idle connection at their first look were
/// held back by no one: a stream of them, each within [`BEHIND`] of the
/// last, made the next impatient at once and cut a token-less run of a
/// second (a `/metrics` scrape mid-body) though idle connections were
/// there to take. Only a newcomer that found nothing to evict starts the
/// shared patience.
#[tokio::test]
async fn newcomers_evicting_idle_connections_at_once_cut_no_run() {
    let slots = Arc::new(Slots::default());
    let keep = |slot: Slot| {
        let conn = slot.conn().clone();
        tokio::spawn(async move {
            conn.evicted().await;
            drop(slot);
        });
    };
    // The scrape: a request without a token in flight, its run begun.
    let slot = slots.take(peer(0)).await.unwrap();
    let scrape = slot.conn().clone();
    scrape.request(false);
    let in_flight = scrape.activity().begin(false);
    keep(slot);
    // Keep-alive clients between requests: idle, the first to make room.
    for n in 1..MAX_CONNECTIONS {
        let slot = slots.take(peer(n)).await.unwrap();
        slot.conn().request(false);
        drop(slot.conn().activity().begin(false));
        keep(slot);
    }
    tokio::time::sleep_until((scrape.began + RUN).into()).await;
    let mut admitted = Vec::new();
    // Over twice IMPATIENT, each newcomer well within BEHIND of the last.
    for n in 0..10 {
        admitted.push(slots.take(peer(MAX_CONNECTIONS + n)).await.unwrap());
        assert!(
            !scrape.evicted.load(Ordering::SeqCst),
            "newcomer {n}, which evicted an idle connection at its first look, cut the run"
        );
        tokio::time::sleep(BEHIND / 2).await;
    }
    drop(in_flight);
}

/// A newcomer queued behind one held back (impatient at once) found a
/// keep-alive connection idle and a `/metrics` scrape whose run without
/// a token had lasted a second, mid-body: it cut the scrape, whose run
/// began before the idle connection's last request ended. A run that
/// short makes room only when nothing idle (or stalled) can: the idle
/// connection is evicted, the scrape goes on. The scrape is served over
/// real sockets; the other 63 slots hold token holders' requests, one of
/// which ends to leave its connection idle; the newcomers are polled by
/// hand.
#[tokio::test]
async fn an_impatient_newcomer_takes_an_idle_connection_before_a_run() {
    let slots = Arc::new(Slots::default());
    let (scrape, serving, client) = an_endless_scrape(&slots).await;
    let mut busy = token_holders_in_flight(&slots).await;
    let run = scrape.began + Duration::from_millis(scrape.run_ms.load(Ordering::SeqCst));
    tokio::time::sleep_until((run + RUN).into()).await;
    let noop = Waker::noop();
    let mut cx = Context::from_waker(noop);
    // Every slot is being served: the first newcomer, not impatient yet,
    // is held back.
    let first = slots.take(peer(MAX_CONNECTIONS));
    let mut first = std::pin::pin!(first);
    assert!(first.as_mut().poll(&mut cx).is_pending());
    let arrived = Instant::now();
    // A request ends and its connection closes: the first has its slot,
    // having waited a quarter of a second.
    drop(busy.pop());
    tokio::time::sleep_until((arrived + IMPATIENT).into()).await;
    let Poll::Ready(Some(_first)) = first.as_mut().poll(&mut cx) else {
        panic!("the first newcomer had no slot once one was given back");
    };
    // Another's request ends: its connection is idle.
    let (idle, in_flight) = busy.pop().unwrap();
    drop(in_flight);
    // The next, queued behind the first, is impatient at once.
    let next = slots.take(peer(MAX_CONNECTIONS + 1));
    let mut next = std::pin::pin!(next);
    let _ = next.as_mut().poll(&mut cx);
    assert!(
        !scrape.evicted.load(Ordering::SeqCst),
        "a scrape mid-body was cut while an idle connection was there to take"
    );
    assert!(idle.conn().evicted.load(Ordering::SeqCst));
    drop(idle);
    serving.abort();
    client.abort();
}
