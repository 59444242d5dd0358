//! A connection closed right after its TLS handshake, none of its HTTP read (its listener removed during it): HTTP/2's preface and `GOAWAY` first, then a lingering close.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::proxy::conn::frames;
use crate::proxy::linger::{LINGER_TIME, linger};

/// An empty `SETTINGS` frame: the server's connection preface, which must
/// be its first frame on the connection, a `GOAWAY` too (RFC 9113 §3.4).
const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Close `stream`, done with TLS and none of its HTTP read, as a close at
/// once at shutdown closes a connection with no request yet (SPEC §1):
/// an HTTP/2 one (`h2`) is sent the server's preface and a `GOAWAY`,
/// `NO_ERROR`, last stream 0 (nothing was processed: the client may send
/// its requests again on a new connection); then, either protocol,
/// `close_notify` and a lingering close, so that a request the client sent
/// behind its Finished, come after the handshake's last read, meets no
/// reset that would destroy what was sent before it. The write is bounded
/// as `ClientIo`'s `GOAWAY` is, before the lingering close's own bound.
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, h2: bool) {
    if h2 {
        let mut out = [0u8; 26];
        out[..9].copy_from_slice(&SETTINGS);
        out[9..].copy_from_slice(&frames::goaway(0));
        let _ = tokio::time::timeout(LINGER_TIME, stream.write_all(&out)).await;
    }
    linger(stream, false).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::time::Duration;

    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;

    /// HTTP/2's client preface, an empty SETTINGS and a HEADERS frame on
    /// stream 1 ending its block and stream: `GET https://localhost/`.
    const H2_GET: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\x00\x00\x0e\x01\x05\x00\x00\x00\x01\x82\x87\x84\x01\x09localhost";

    /// TLS 1.3 server and client configs for `localhost` (self-signed,
    /// trusted by the client), both offering only `alpn`.
    fn configs(alpn: &[u8]) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = pair.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
        let provider = crate::tls::provider::get();
        let tls13 = &[&rustls::version::TLS13];
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls13)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        server.alpn_protocols = vec![alpn.to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(tls13)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    /// What a client that sends `first` behind its Finished (in the same
    /// write, as curl does) reads, and how its read ended, when the server
    /// closes the connection with [`super::close`] once its handshake is
    /// done, `first` on its socket or in its TLS buffer, unread.
    async fn closed(
        alpn: &'static [u8],
        first: &'static [u8],
    ) -> (Vec<u8>, std::io::Result<usize>) {
        let (server, client) = configs(alpn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut tls =
                rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
            // Held until the handshake ends, then sent with its Finished.
            tls.writer().write_all(first).unwrap();
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).unwrap();
            }
            while tls.wants_write() {
                tls.write_tls(&mut tcp).unwrap();
            }
            let mut stream = rustls::StreamOwned::new(tls, tcp);
            let mut got = Vec::new();
            // Closed without close_notify, or reset: an error, what came
            // before it kept.
            let ended = stream.read_to_end(&mut got);
            (got, ended)
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        super::close(tls, alpn == b"h2").await;
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap()
    }

    /// HTTP/2: the server's preface (SETTINGS, the first frame), then a
    /// `GOAWAY`, `NO_ERROR`, last stream 0 (its request not processed),
    /// then a clean end (`close_notify`): no reset, whatever the client
    /// sent behind its Finished.
    #[tokio::test]
    async fn an_h2_connection_closed_after_its_handshake_is_sent_goaway_and_closed_cleanly() {
        let (got, ended) = closed(b"h2", H2_GET).await;
        assert!(ended.is_ok(), "not a clean close: {ended:?}, after {got:?}");
        let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(got, [&super::SETTINGS[..], &goaway].concat());
    }

    /// HTTP/1.1: nothing, then a clean end (`close_notify`), not a reset.
    #[tokio::test]
    async fn an_h1_connection_closed_after_its_handshake_ends_cleanly_unanswered() {
        let (got, ended) = closed(b"http/1.1", b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
        assert!(ended.is_ok(), "not a clean close: {ended:?}, after {got:?}");
        assert!(
            got.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&got)
        );
    }
}
