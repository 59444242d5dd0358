//! Tests of ticket expiry: the wrapper by an injected wall clock, rustls listeners resuming by ticket on real sockets, and `tls::accept` carrying a TLS 1.3 session's birth.

use std::sync::atomic::{AtomicU64, Ordering};

use rustls::server::NoServerSessionStorage;

use super::*;

/// A wall clock the test moves forward.
#[derive(Clone)]
struct TestWall(Arc<AtomicU64>);

impl TestWall {
    fn new() -> Self {
        TestWall(Arc::new(AtomicU64::new(1_800_000_000)))
    }

    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl WallClock for TestWall {
    fn unix_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// rustls's rotating ticketer, behind the wrapper on `clock`.
fn tickets(clock: &TestWall) -> AgedTickets<TestWall> {
    let rotating = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    AgedTickets::with_clock(rotating, LIFETIME, clock.clone())
}

/// A TLS 1.2 session as rustls encodes it (SNI, version, suite, master
/// secret, then the rest), with master secret `secret` and `rest` after it.
fn tls12_session(secret: u8, rest: &[u8]) -> Vec<u8> {
    let mut plain = vec![1, 9];
    plain.extend_from_slice(b"localhost");
    plain.extend_from_slice(&[3, 3, 0xc0, 0x2b, 48]);
    plain.extend_from_slice(&[secret; 48]);
    plain.extend_from_slice(rest);
    plain
}

/// rustls's ticketer opens a ticket of any age while its key (or the one
/// before) lives, and a quiet listener rotates one step at a time; the
/// wrapper answers a ticket at its lifetime as none, and one younger with
/// the plaintext sealed.
#[test]
fn a_ticket_opens_until_its_lifetime() {
    let clock = TestWall::new();
    let t = tickets(&clock);
    let plain = tls12_session(1, b"rest");
    let ticket = t.encrypt(&plain).unwrap();
    assert_eq!(t.decrypt(&ticket).as_deref(), Some(&plain[..]));
    clock.advance(LIFETIME - Duration::from_secs(1));
    assert_eq!(t.decrypt(&ticket).as_deref(), Some(&plain[..]), "fresh");
    clock.advance(Duration::from_secs(1));
    assert_eq!(t.decrypt(&ticket), None, "a ticket {LIFETIME:?} old");
    // A ticket of the inner ticketer alone carries no birth: refused.
    let bare = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    let unstamped = AgedTickets::with_clock(bare.clone(), LIFETIME, clock.clone());
    assert_eq!(unstamped.decrypt(&bare.encrypt(b"1234567").unwrap()), None);
}

/// A ticket whose session is not in the encoding read here (another TLS
/// version, or a layout a rustls update changed) is refused: its
/// resumption's tickets could not keep the session's birth.
#[test]
fn a_ticket_of_an_unparseable_session_is_refused() {
    let clock = TestWall::new();
    let t = tickets(&clock);
    let mut other_version = tls12_session(1, b"rest");
    other_version[12] = 5;
    // A TLS 1.3 session cut inside its secret: no resumption data follows.
    let mut cut = tls12_session(1, b"");
    cut[12] = 4;
    cut.truncate(20);
    for plain in [&b"not a session"[..], &other_version, &cut, &[]] {
        let ticket = t.encrypt(plain).unwrap();
        assert_eq!(t.decrypt(&ticket), None, "{plain:?}");
    }
}

/// A TLS 1.3 session as rustls encodes it (no SNI, version, suite, secret,
/// EMS flag, no chain, no ALPN), with resumption data `data`.
fn tls13_session(data: &[u8]) -> Vec<u8> {
    let mut plain = vec![0, 3, 4, 0x13, 0x01, 32];
    plain.extend_from_slice(&[7; 32]);
    plain.extend_from_slice(&[0, 0, 0]);
    plain.extend_from_slice(&(data.len() as u16).to_be_bytes());
    plain.extend_from_slice(data);
    plain.extend_from_slice(&[0; 12]);
    plain
}

/// A listener's session IDs past their lifetime were swept only as new
/// ones were stored: at a TLS 1.2 full handshake without a ticket. One that
/// saw such a client, then only clients taking tickets (TLS 1.3), held that
/// session, its master secret with it, for as long as the process ran.
/// Sealing a ticket, which every other handshake does, sweeps them too.
#[test]
fn sealing_a_ticket_removes_session_ids_past_their_lifetime() {
    let clock = TestClock::new();
    let sessions = Arc::new(ExpiringSessions::with_clock(256, LIFETIME, clock.clone()));
    let wall = TestWall::new();
    let t = tickets(&wall).expiring(sessions.clone());
    sessions.put(b"old".to_vec(), b"1".to_vec());
    clock.advance(LIFETIME / 2);
    sessions.put(b"young".to_vec(), b"2".to_vec());
    assert!(t.encrypt(&tls13_session(b"")).is_some());
    assert!(sessions.inner.get(b"old").is_some(), "at half its lifetime");
    clock.advance(LIFETIME / 2);
    assert!(t.encrypt(&tls13_session(b"")).is_some());
    assert_eq!(sessions.inner.get(b"old"), None, "its secret is still held");
    assert!(
        sessions.inner.get(b"young").is_some(),
        "at half its lifetime"
    );
    clock.advance(LIFETIME / 2);
    assert!(t.encrypt(&tls13_session(b"")).is_some());
    assert_eq!(
        sessions.inner.get(b"young"),
        None,
        "its secret is still held"
    );
}

/// A HelloRetryRequest `tls::accept` did not foresee (its connection
/// marked so by `keep_tls13_birth`, and no ticketer of its own) gets no
/// ticket: whether it resumed, and what, is not known where it is sealed.
#[test]
fn a_retry_not_foreseen_is_issued_no_ticket() {
    let clock = TestWall::new();
    let t = tickets(&clock);
    assert_eq!(t.encrypt(&tls13_session(RETRY_MARK)), None);
    assert!(t.encrypt(&tls13_session(b"")).is_some());
}

/// The ticket a TLS 1.2 resumption issues (same master secret) keeps the
/// birth of the ticket it resumed; a full handshake's, after that
/// resumption on the same thread, is stamped now.
#[test]
fn a_reissued_ticket_keeps_its_sessions_birth() {
    let clock = TestWall::new();
    let t = tickets(&clock);
    let first = t.encrypt(&tls12_session(1, b"a")).unwrap();
    clock.advance(LIFETIME / 2);
    // Resumed: rustls opens the ticket, then issues one for the session.
    assert!(t.decrypt(&first).is_some());
    let reissued = t.encrypt(&tls12_session(1, b"later")).unwrap();
    // A resumption attempt the handshake did not take, then another
    // connection's full handshake (a new secret) on this thread.
    assert!(t.decrypt(&first).is_some());
    let full = t.encrypt(&tls12_session(2, b"a")).unwrap();
    clock.advance(LIFETIME / 2);
    assert_eq!(t.decrypt(&reissued), None, "re-issued at half its lifetime");
    assert!(t.decrypt(&full).is_some(), "a full handshake's, made then");
}

/// A session-ID resumption that issues a ticket (the client offers the
/// ticket extension too) gives it the session's age, not a new one.
#[test]
fn a_ticket_issued_on_a_session_id_resumption_keeps_its_age() {
    let (ids, mono) = cache(LIFETIME);
    let clock = TestWall::new();
    let t = tickets(&clock);
    let plain = tls12_session(3, b"id");
    ids.put(b"id".to_vec(), plain.clone());
    mono.advance(LIFETIME / 2);
    clock.advance(LIFETIME / 2);
    assert_eq!(ids.get(b"id").as_deref(), Some(&plain[..]));
    let ticket = t.encrypt(&plain).unwrap();
    clock.advance(LIFETIME / 2 - Duration::from_secs(1));
    assert!(t.decrypt(&ticket).is_some());
    clock.advance(Duration::from_secs(1));
    assert_eq!(t.decrypt(&ticket), None, "a session {LIFETIME:?} old");
}

/// A rustls TLS 1.2-only listener resuming by ticket alone, on a real
/// socket: a client resumes right after its full handshake, and at half
/// the lifetime (getting a re-issued ticket); at the lifetime since its
/// full handshake it gets a full handshake (rustls's ticketer resumed it,
/// and a re-issued ticket would have resumed it for ever), then resumes
/// the session made then.
#[test]
fn a_ticket_resumes_for_its_lifetime_on_a_real_socket() {
    let (ca, leaf, key) = pki();
    let clock = TestWall::new();
    let (mut server, mut client) = configs(&rustls::version::TLS12, ca, leaf, key);
    server.ticketer = Arc::new(tickets(&clock));
    // No session IDs: every resumption here is by ticket.
    server.session_storage = Arc::new(NoServerSessionStorage {});
    client.resumption =
        Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOrTickets);
    let client = Arc::new(client);

    let (addr, serving) = serve(Arc::new(server), 6);
    let kind = || handshake_kind(&client, addr);
    assert_eq!(kind(), HandshakeKind::Full);
    assert_eq!(kind(), HandshakeKind::Resumed, "right after its handshake");
    clock.advance(LIFETIME);
    assert_eq!(kind(), HandshakeKind::Full, "a ticket {LIFETIME:?} old");
    clock.advance(LIFETIME / 2);
    assert_eq!(kind(), HandshakeKind::Resumed, "half its lifetime on");
    clock.advance(LIFETIME / 2);
    assert_eq!(kind(), HandshakeKind::Full, "re-issued, {LIFETIME:?} on");
    assert_eq!(kind(), HandshakeKind::Resumed, "the session made then");
    serving.join().unwrap();
}

/// As `tls::accept` serves: rustls's Acceptor reads the ClientHello,
/// [`keep_tls13_birth`] sees the connection, then the handshake ends.
fn serve_accepting(
    server: Arc<ServerConfig>,
    connections: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    serve_with(connections, move |sock| {
        let mut acceptor = rustls::server::Acceptor::default();
        let accepted = loop {
            acceptor.read_tls(sock).unwrap();
            if let Some(accepted) = acceptor.accept().map_err(|(e, _)| e).unwrap() {
                break accepted;
            }
        };
        let mut conn = accepted
            .into_connection(server.clone())
            .map_err(|(e, _)| e)
            .unwrap();
        keep_tls13_birth(&mut conn);
        conn
    })
}

/// A rustls TLS 1.3 listener served as `tls::accept` serves, on a real
/// socket: the tickets a resumption issues (new secrets) keep the birth of
/// the session resumed, so a client resuming every half lifetime gets a
/// full handshake once its full handshake is a lifetime old (without
/// `keep_tls13_birth` the client resumed for ever).
#[test]
fn tls13_resumptions_do_not_lengthen_a_session_on_a_real_socket() {
    let (ca, leaf, key) = pki();
    let clock = TestWall::new();
    let (mut server, client) = configs(&rustls::version::TLS13, ca, leaf, key);
    server.ticketer = Arc::new(tickets(&clock));
    server.session_storage = Arc::new(NoServerSessionStorage {});
    let client = Arc::new(client);

    let (addr, serving) = serve_accepting(Arc::new(server), 6);
    let kind = || handshake_kind(&client, addr);
    assert_eq!(kind(), HandshakeKind::Full);
    assert_eq!(kind(), HandshakeKind::Resumed, "right after its handshake");
    clock.advance(LIFETIME / 2);
    assert_eq!(kind(), HandshakeKind::Resumed, "half its lifetime on");
    clock.advance(LIFETIME / 2);
    // rustls's client offers the newest ticket: the resumption's.
    assert_eq!(
        kind(),
        HandshakeKind::Full,
        "{LIFETIME:?} after the full one"
    );
    assert_eq!(kind(), HandshakeKind::Resumed, "the session made then");
    clock.advance(LIFETIME);
    assert_eq!(kind(), HandshakeKind::Full, "a ticket {LIFETIME:?} old");
    serving.join().unwrap();
}

/// Serve `connections` on 127.0.0.1 through `tls::accept` itself (tokio,
/// on this thread's runtime), each until the client's close_notify: what
/// each server side received as resumption data.
fn serve_through_accept(
    server: Arc<ServerConfig>,
    connections: usize,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<Vec<Option<Vec<u8>>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let serving = std::thread::spawn(move || {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let resolver = crate::tls::server::SniResolver::none();
            let mut received = Vec::new();
            for _ in 0..connections {
                let (sock, _) = listener.accept().await.unwrap();
                let seen = std::sync::OnceLock::new();
                let accepted =
                    crate::tls::accept::accept("tickets", &resolver, &server, None, sock, &seen);
                let Ok(mut accepted) = accepted.await else {
                    panic!("handshake refused");
                };
                let conn = accepted.tls.get_ref().1;
                received.push(conn.received_resumption_data().map(<[u8]>::to_vec));
                let mut rest = Vec::new();
                accepted.tls.read_to_end(&mut rest).await.unwrap();
                accepted.tls.shutdown().await.unwrap();
            }
            received
        })
    });
    (addr, serving)
}

/// `tls::accept` gives a resumed TLS 1.3 connection its session's birth:
/// a client resuming the ticket a resumption issued brings it back (with
/// `into_stream`, without the hook, its tickets were stamped as new).
#[test]
fn tls_accept_carries_the_birth_into_a_resumptions_tickets() {
    let (ca, leaf, key) = pki();
    let (mut server, client) = configs(&rustls::version::TLS13, ca, leaf, key);
    let rotating = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    server.ticketer = Arc::new(AgedTickets::new(rotating, LIFETIME));
    server.session_storage = Arc::new(NoServerSessionStorage {});
    let client = Arc::new(client);

    let (addr, serving) = serve_through_accept(Arc::new(server), 3);
    let kinds: Vec<_> = (0..3).map(|_| handshake_kind(&client, addr)).collect();
    let received = serving.join().unwrap();
    use HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, [Full, Resumed, Resumed]);
    let third = received[2].as_deref().unwrap_or_default();
    assert!(
        third.starts_with(BIRTH_DATA),
        "the third connection's resumption data: {third:?}"
    );
}

/// A TLS 1.3 client trusting `ca` with only these key exchange groups,
/// in this order, its sessions kept in `store`.
fn with_groups(
    ca: &rustls_pki_types::CertificateDer<'static>,
    groups: &[rustls::NamedGroup],
    store: &Arc<rustls::client::ClientSessionMemoryCache>,
) -> Arc<ClientConfig> {
    let mut provider = (*crate::tls::provider::get()).clone();
    provider.kx_groups = groups
        .iter()
        .map(|g| {
            *provider
                .kx_groups
                .iter()
                .find(|kx| kx.name() == *g)
                .expect("a group the provider has")
        })
        .collect();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = Resumption::store(store.clone());
    Arc::new(client)
}

/// Connect to `addr` as `localhost`, handshake, close: which kind it was,
/// and the key exchange group it ended with.
fn handshake_group(
    client: &Arc<ClientConfig>,
    addr: std::net::SocketAddr,
) -> (HandshakeKind, rustls::NamedGroup) {
    let mut sock = TcpStream::connect(addr).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(client.clone(), name).unwrap();
    shake(&mut conn, &mut sock).unwrap();
    let group = conn.negotiated_key_exchange_group().unwrap().name();
    close(&mut conn, &mut sock);
    (conn.handshake_kind().unwrap(), group)
}

/// A client can provoke a HelloRetryRequest: it resumes offering a key
/// share for a group it does not list first (P-256, as a client whose
/// session was made on P-256 does; the server picks X25519, the client's
/// first). The tickets that resumption issued were stamped as new (the
/// ticket it resumed is opened with the second ClientHello, after
/// `keep_tls13_birth`), so a client doing so every few hours resumed its
/// session for ever; through `tls::accept` they keep the birth of the full
/// handshake, and its lifetime ends the session.
#[test]
fn a_resumption_after_a_hello_retry_keeps_the_sessions_birth() {
    use rustls::NamedGroup::{X25519, secp256r1};
    use rustls::client::ClientSessionStore;
    let (ca, leaf, key) = pki();
    let clock = TestWall::new();
    let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(8));
    let client = with_groups(&ca, &[X25519, secp256r1], &store);
    let (mut server, _) = configs(&rustls::version::TLS13, ca, leaf, key);
    server.ticketer = Arc::new(tickets(&clock));
    server.session_storage = Arc::new(NoServerSessionStorage {});
    let localhost = rustls_pki_types::ServerName::try_from("localhost").unwrap();

    let (addr, serving) = serve_through_accept(Arc::new(server), 4);
    let kind = || handshake_group(&client, addr);
    assert_eq!(kind(), (HandshakeKind::Full, X25519));
    clock.advance(LIFETIME / 2);
    // P-256's share alone, X25519 picked: a retry, then the resumption.
    store.set_kx_hint(localhost.clone(), secp256r1);
    assert_eq!(
        kind(),
        (HandshakeKind::Resumed, X25519),
        "half its lifetime on, after a retry"
    );
    clock.advance(LIFETIME / 2);
    // rustls's client offers the newest ticket: the retried resumption's.
    assert_eq!(
        kind().0,
        HandshakeKind::Full,
        "{LIFETIME:?} after the full one"
    );
    assert_eq!(kind().0, HandshakeKind::Resumed, "the session made then");
    serving.join().unwrap();
}
