//! Tests of session expiry (session IDs and tickets): by injected clocks, and under a rustls TLS 1.2 listener on a real socket.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

use super::*;

/// A clock the test moves forward; shared with the cache that reads it.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    fn new() -> Self {
        TestClock(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn cache(lifetime: Duration) -> (ExpiringSessions<TestClock>, TestClock) {
    let clock = TestClock::new();
    (
        ExpiringSessions::with_clock(8, lifetime, clock.clone()),
        clock,
    )
}

/// rustls's own cache answers a session of any age; this one answers it
/// until its lifetime has passed since it was put, then answers nothing
/// and forgets it.
#[test]
fn a_session_is_answered_until_its_lifetime_then_removed() {
    let (c, clock) = cache(LIFETIME);
    assert!(c.put(b"id".to_vec(), b"secret".to_vec()));
    assert_eq!(c.get(b"id").as_deref(), Some(&b"secret"[..]));
    clock.advance(LIFETIME - Duration::from_nanos(1));
    // Answered again: `get` is how rustls reads a session ID, every time.
    assert_eq!(c.get(b"id").as_deref(), Some(&b"secret"[..]));
    assert_eq!(c.get(b"id").as_deref(), Some(&b"secret"[..]));
    // A session put now is not aged by the older one.
    assert!(c.put(b"new".to_vec(), b"newer".to_vec()));
    clock.advance(Duration::from_nanos(1));
    assert_eq!(c.get(b"id"), None, "a session {LIFETIME:?} old");
    assert_eq!(c.inner.get(b"id"), None, "its secret is still held");
    assert_eq!(c.get(b"new").as_deref(), Some(&b"newer"[..]));
}

/// A session past its lifetime that no client offers again is taken out
/// of the cache at a later `put` (it stayed until newer ones pushed it
/// out, its master secret held); a younger one stays.
#[test]
fn a_put_removes_sessions_past_their_lifetime() {
    let (c, clock) = cache(LIFETIME);
    c.put(b"old".to_vec(), b"1".to_vec());
    clock.advance(LIFETIME / 2);
    c.put(b"young".to_vec(), b"2".to_vec());
    clock.advance(LIFETIME / 2);
    c.put(b"new".to_vec(), b"3".to_vec());
    assert_eq!(c.inner.get(b"old"), None, "its secret is still held");
    assert!(c.inner.get(b"young").is_some());
    assert!(c.inner.get(b"new").is_some());
    // A backlog goes, two a put.
    for n in 0..4u8 {
        c.put(vec![n], vec![n]);
    }
    clock.advance(LIFETIME);
    for key in [b"a", b"b", b"c"] {
        c.put(key.to_vec(), key.to_vec());
    }
    let held = (0..4u8).filter(|n| c.inner.get(&[*n]).is_some()).count();
    assert_eq!(held, 0, "expired sessions still held");
}

/// A session ID answered as absent (past its lifetime) went out of
/// rustls's cache but stayed in the sweep's queue, so the queue no longer
/// matched rustls's: a later put let the oldest key out of the queue while
/// rustls kept it (it was not full), and that session, its master secret
/// with it, was tracked by nothing, held until pushed out.
#[test]
fn a_session_answered_as_absent_leaves_no_other_untracked() {
    let clock = TestClock::new();
    let c = ExpiringSessions::with_clock(256, LIFETIME, clock.clone());
    let key = |n: u32| format!("K{n}").into_bytes();
    for n in 1..=256 {
        c.put(key(n), b"secret".to_vec());
    }
    clock.advance(LIFETIME);
    assert_eq!(c.get(&key(100)), None, "a session {LIFETIME:?} old");
    c.put(key(257), b"secret".to_vec());
    assert_eq!(c.inner.get(&key(1)), None, "its secret is still held");
    assert_eq!(c.inner.get(&key(2)), None, "its secret is still held");
    // The rest go as later puts sweep (two at each), none left behind.
    for n in 258..=400 {
        c.put(key(n), b"secret".to_vec());
    }
    let held = (1..=256)
        .filter(|n| c.inner.get(&key(*n)).is_some())
        .count();
    assert_eq!(held, 0, "expired sessions still held");
}

/// `take` (rustls's, for TLS 1.3 tickets where there is no ticket key)
/// answers an aged session as
/// absent too, and a fresh one once.
#[test]
fn take_answers_an_aged_session_as_absent() {
    let (c, clock) = cache(Duration::from_secs(60));
    c.put(b"old".to_vec(), b"1".to_vec());
    clock.advance(Duration::from_secs(30));
    c.put(b"young".to_vec(), b"2".to_vec());
    clock.advance(Duration::from_secs(30));
    assert_eq!(c.take(b"old"), None);
    assert_eq!(c.take(b"young").as_deref(), Some(&b"2"[..]));
    assert_eq!(c.take(b"young"), None);
}

/// The default lifetime is the tickets' (rustls's ticketer: 12 hours),
/// within RFC 5246 F.1.4's 24.
#[test]
fn the_lifetime_is_the_tickets() {
    let tickets = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    assert_eq!(LIFETIME, Duration::from_secs(tickets.lifetime().into()));
}

/// A CA and a `localhost` leaf it issued, made at runtime.
fn pki() -> (
    rustls_pki_types::CertificateDer<'static>,
    rustls_pki_types::CertificateDer<'static>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.clone().self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    (ca_cert.der().clone(), leaf.der().clone(), key.into())
}

/// Drive `conn`'s handshake over `sock` to its end.
fn shake<D>(conn: &mut rustls::ConnectionCommon<D>, sock: &mut TcpStream) -> std::io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    Ok(())
}

/// Serve `connections` TLS connections on 127.0.0.1 with `server`, one
/// after another, each until the client's close_notify.
fn serve(
    server: Arc<ServerConfig>,
    connections: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    serve_with(connections, move |_| {
        ServerConnection::new(server.clone()).unwrap()
    })
}

/// Serve `connections` connections on 127.0.0.1, one after another, each
/// made by `open` from its socket and served until the client's close_notify.
fn serve_with(
    connections: usize,
    open: impl Fn(&mut TcpStream) -> ServerConnection + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        for sock in listener.incoming().take(connections) {
            let mut sock = sock.unwrap();
            let mut conn = open(&mut sock);
            shake(&mut conn, &mut sock).unwrap();
            close(&mut conn, &mut sock);
        }
    });
    (addr, serving)
}

/// Send our close_notify and read to the peer's: the handshake is complete
/// on both sides before the next connection is made, and a TLS 1.3 client
/// takes the tickets sent after it on the way.
fn close<C, S>(conn: &mut C, sock: &mut TcpStream)
where
    C: std::ops::DerefMut + std::ops::Deref<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    conn.send_close_notify();
    let mut rest = Vec::new();
    rustls::Stream::new(conn, sock)
        .read_to_end(&mut rest)
        .unwrap();
}

/// A server config serving `leaf` and a client config trusting `ca`, both
/// of rustls's `version` alone under the proxy's crypto provider.
fn configs(
    version: &'static rustls::SupportedProtocolVersion,
    ca: rustls_pki_types::CertificateDer<'static>,
    leaf: rustls_pki_types::CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> (ServerConfig, ClientConfig) {
    let provider = crate::tls::provider::get();
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

/// Connect to `addr` as `localhost`, handshake, close: which kind it was.
fn handshake_kind(client: &Arc<ClientConfig>, addr: std::net::SocketAddr) -> HandshakeKind {
    let mut sock = TcpStream::connect(addr).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(client.clone(), name).unwrap();
    shake(&mut conn, &mut sock).unwrap();
    close(&mut conn, &mut sock);
    conn.handshake_kind().unwrap()
}

/// A TLS 1.2 listener keeping its session IDs in an expiring cache, on a
/// real socket: a client offering its session ID alone resumes right
/// after its full handshake, and after the lifetime has passed gets a
/// full handshake (rustls's own cache resumed it), after which its new
/// session resumes.
#[test]
fn an_aged_session_id_is_not_resumed_on_a_real_socket() {
    let (ca, leaf, key) = pki();
    let clock = TestClock::new();
    let sessions = Arc::new(ExpiringSessions::with_clock(256, LIFETIME, clock.clone()));
    let (mut server, mut client) = configs(&rustls::version::TLS12, ca, leaf, key);
    server.session_storage = sessions;
    let server = Arc::new(server);
    client.resumption =
        Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOnly);
    let client = Arc::new(client);

    let (addr, serving) = serve(server, 4);
    let kind = || handshake_kind(&client, addr);
    assert_eq!(kind(), HandshakeKind::Full);
    assert_eq!(kind(), HandshakeKind::Resumed, "right after its handshake");
    clock.advance(LIFETIME);
    assert_eq!(kind(), HandshakeKind::Full, "a session {LIFETIME:?} old");
    assert_eq!(kind(), HandshakeKind::Resumed, "the session made then");
    serving.join().unwrap();
}

mod tickets;
