//! PROXY protocol v1/v2 before TLS: required from `proxy_protocol.from`, refused from everyone else.
//!
//! A TCP load balancer in front of hotproxy (AWS NLB, GCP, HAProxy in TCP
//! mode) hides the client's address; with PROXY protocol it sends it first,
//! in a header HAProxy's specification defines. Parsing is the `ppp`
//! crate's; this module only reads exactly the header's bytes off the
//! socket (so the TLS handshake that follows starts at its first byte) and
//! decides who may send one:
//!
//! - a peer inside `from` must start with a v1 or v2 header; without one
//!   the connection is refused (else the load balancer's address would be
//!   taken for the client's);
//! - a peer outside `from` that starts with a header is refused (else
//!   anyone could claim any address);
//! - the header's source address is the client address from then on; a v2
//!   `LOCAL` command (the balancer's own health check), a v2 `UNSPEC` or
//!   `UNIX` family, or a v1 `UNKNOWN` keeps the real peer address, as the
//!   specification says; a v2 family and protocol byte it does not list
//!   (`0x10`, `0x20`, `0x13`) is refused as malformed.
//!
//! The whole read is bounded by the listener's `header_read_timeout`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll, Waker};

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The v2 signature (12 bytes).
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// What a v1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most 107 bytes (specification §2.1).
const V1_MAX: usize = 107;
/// A v2 header is 16 bytes plus addresses and TLVs; beyond this (HAProxy's
/// default buffer) a peer is not a load balancer we want to talk to.
const V2_MAX: usize = 16 * 1024;
/// The v2 family and protocol bytes the specification lists (§2.2):
/// UNSPEC, then STREAM and DGRAM over INET, INET6 and UNIX. Any other
/// "must be rejected as invalid".
const V2_FAMILIES: [u8; 7] = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];

/// Why a connection was refused before TLS.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no PROXY protocol header from a proxy_protocol.from peer")]
    Missing,
    #[error("PROXY protocol header from a peer outside proxy_protocol.from")]
    NotAllowed,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("no complete PROXY protocol header within header_read_timeout")]
    Timeout,
    #[error("connection closed before the PROXY protocol header ended")]
    Closed,
    /// Closed or reset before a byte came: a load balancer's TCP health
    /// check, counted as [`Refused::Closed`] but logged as no refusal.
    #[error("connection closed before sending a byte")]
    Hangup,
    /// A peer outside `from` closed after only the start of a signature
    /// (`PRO`, `\r\n`): a client gone before its handshake, counted as
    /// `client_closed` with no access-log line, as one that closes before
    /// a byte (SPEC §7).
    #[error("connection closed after only the start of a PROXY signature")]
    Gone,
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Refused {
    /// The `reason` label: `hotproxy_tls_handshakes_total{result="proxy_protocol_<reason>"}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Missing => "proxy_protocol_missing",
            Refused::NotAllowed => "proxy_protocol_not_allowed",
            Refused::Malformed(_) => "proxy_protocol_malformed",
            Refused::Timeout => "proxy_protocol_timeout",
            Refused::Closed | Refused::Hangup | Refused::Io(_) => "proxy_protocol_closed",
            // Not a PROXY failure: the peer was never asked for a header.
            Refused::Gone => "client_closed",
        }
    }

    /// Whether the refusal gets an access-log line: not a health check
    /// that connects and hangs up (SPEC: as `client_closed`).
    pub fn logged(&self) -> bool {
        !matches!(self, Refused::Hangup | Refused::Gone)
    }
}

/// Whether `ip` is in one of `nets` (an IPv4 peer seen on an IPv6 socket,
/// `::ffff:10.1.2.3`, is matched as IPv4).
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// The client address a `proxy_protocol.from` peer names in the PROXY
/// header it must send, read by `deadline`. Consumes exactly the header's
/// bytes.
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<SocketAddr, Refused> {
    tokio::time::timeout_at(deadline, read_client(stream, peer))
        .await
        .unwrap_or(Err(Refused::Timeout))
}

/// For a peer outside `proxy_protocol.from`: refuse it if it starts with
/// a PROXY header (anyone could claim any address), else leave its first
/// bytes for TLS (or HTTP). Undecided by `deadline`: [`Refused::Timeout`],
/// which the caller reports as a client that sent nothing, not as a
/// PROXY failure (the peer was never asked for a header). Closed after
/// only the start of a signature: [`Refused::Gone`], a client gone.
pub async fn refuse_header(stream: &TcpStream, deadline: Instant) -> Result<(), Refused> {
    match tokio::time::timeout_at(deadline, starts_with_header(stream)).await {
        Ok(Start::Header) => Err(Refused::NotAllowed),
        Ok(Start::Other) => Ok(()),
        Ok(Start::Gone) => Err(Refused::Gone),
        Err(_) => Err(Refused::Timeout),
    }
}

/// How a peer outside `from` starts.
#[derive(Debug, PartialEq)]
enum Start {
    /// With a PROXY signature.
    Header,
    /// With anything else, or nothing (closed or reset before a byte: TLS,
    /// or HTTP, then finds the connection ended).
    Other,
    /// With the start of a signature, then its end of stream: it can send
    /// nothing more, so nothing will tell.
    Gone,
}

/// Whether the first bytes are a PROXY header's, without consuming them.
/// Looks only as far as needed to tell (`P` may start `POST` on a plain
/// HTTP listener, so up to `PROXY `); bounded by the caller. A peer that
/// closes or resets first sends no header: TLS (or HTTP) then finds the
/// connection ended, as on a listener without PROXY protocol (SPEC §7), a
/// client gone (`client_closed`), not a PROXY failure. One that closes
/// after the start of a signature is gone too ([`Start::Gone`]).
async fn starts_with_header(stream: &TcpStream) -> Start {
    let mut buf = [0u8; 12];
    loop {
        // What the socket says of the peer's side is taken before the
        // peek: a FIN it reports came after every byte the peek sees.
        let Ok(ready) = stream.ready(Interest::READABLE).await else {
            return Start::Other;
        };
        // A prefix of a signature and nothing more yet: a peek would
        // return the same bytes at once (the socket stays readable), and
        // the FIN that follows them never shows in a peek. So the peek
        // runs in `try_io`: undecided, it clears the readiness it was
        // given (an event after that, more bytes or the FIN, is kept), and
        // the next wait is for the peer to send or close. It used to sleep
        // and peek again until header_read_timeout, even after a FIN.
        let seen = stream.try_io(Interest::READABLE, || {
            let mut peeked = ReadBuf::new(&mut buf);
            let mut cx = Context::from_waker(Waker::noop());
            match stream.poll_peek(&mut cx, &mut peeked) {
                Poll::Ready(Ok(_)) => {
                    decide(peeked.filled()).ok_or(io::ErrorKind::WouldBlock.into())
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        });
        match seen {
            Ok(start) => return start,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if ready.is_read_closed() {
                    return Start::Gone;
                }
            }
            // Reset: TLS (or HTTP) finds it ended.
            Err(_) => return Start::Other,
        }
    }
}

/// What the bytes `seen` so far say, `None` while they are the start of a
/// signature.
fn decide(seen: &[u8]) -> Option<Start> {
    let sig = match seen.first() {
        None => return Some(Start::Other),
        Some(b'\r') => V2_SIGNATURE,
        Some(b'P') => V1_PREFIX,
        Some(_) => return Some(Start::Other),
    };
    let k = seen.len().min(sig.len());
    if seen[..k] != sig[..k] {
        return Some(Start::Other);
    }
    (k == sig.len()).then_some(Start::Header)
}

/// Read a v1 or v2 header, exactly, and return its source address.
/// The header's source address; an IPv4 client named by its mapped IPv6
/// form (a dual-stack balancer's `::ffff:10.1.2.3`) is its IPv4 address,
/// as on a dual-stack socket ([`crate::proxy::accept`]).
async fn read_client(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    let source = read_source(stream, peer).await?;
    Ok(SocketAddr::new(source.ip().to_canonical(), source.port()))
}

async fn read_source(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    let mut first = [0u8; 1];
    // Zero bytes, then a FIN or (HAProxy's checks) an RST.
    if !matches!(stream.peek(&mut first).await, Ok(1)) {
        return Err(Refused::Hangup);
    }
    let mut buf = Vec::with_capacity(128);
    match first[0] {
        b'\r' => {
            // 16 fixed bytes, the last two the length of what follows.
            read_upto(stream, &mut buf, 16, |_| false).await?;
            if buf[..12] != *V2_SIGNATURE {
                return Err(Refused::Missing);
            }
            let total = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
            if total > V2_MAX {
                return Err(Refused::Malformed(format!(
                    "v2 header of {total} bytes (at most {V2_MAX})"
                )));
            }
            read_upto(stream, &mut buf, total, |_| false).await?;
            // Version 2, command LOCAL (the balancer's own check): it names
            // no client, so its family, addresses and TLVs are not read
            // (HAProxy ignores them too; a `TCP4` LOCAL of length 0 is a
            // health check ppp would refuse for its missing addresses).
            if buf[12] == 0x20 {
                return Ok(peer);
            }
            // ppp takes `0x10` (INET, no protocol), `0x20`, `0x01`, `0x30`:
            // an address with no transport, or a transport with no
            // address, names no client of this TCP connection.
            if !V2_FAMILIES.contains(&buf[13]) {
                return Err(Refused::Malformed(format!(
                    "v2 family and protocol byte {:#04x}, not one the specification lists",
                    buf[13]
                )));
            }
            let header = ppp::v2::Header::try_from(buf.as_slice())
                .map_err(|e| Refused::Malformed(e.to_string()))?;
            // A PROXY command's TLVs are ignored, but must fit the header,
            // and its addresses must be a stream's: HAProxy refuses both,
            // and either names no client of this TCP connection. A LOCAL
            // header (the balancer's own check) names no client: what
            // follows its command is not read, as HAProxy does not.
            let proxied = header.command == ppp::v2::Command::Proxy;
            if proxied && let Some(Err(e)) = header.tlvs().find(Result::is_err) {
                return Err(Refused::Malformed(format!("v2 TLVs: {e}")));
            }
            if proxied && header.protocol == ppp::v2::Protocol::Datagram {
                return Err(Refused::Malformed(
                    "v2 header for a UDP (DGRAM) flow, not a TCP connection".into(),
                ));
            }
            // Only a stream over INET or INET6 (`0x11`, `0x21`) names the
            // client; UNSPEC and UNIX keep the peer's address, as HAProxy.
            let stream = proxied && header.protocol == ppp::v2::Protocol::Stream;
            Ok(match header.addresses {
                ppp::v2::Addresses::IPv4(a) if stream => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                ppp::v2::Addresses::IPv6(a) if stream => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                // LOCAL (the balancer's own check), UNSPEC, UNIX: the peer.
                _ => peer,
            })
        }
        b'P' => {
            read_upto(stream, &mut buf, V1_MAX, |b| b.ends_with(b"\n")).await?;
            if !buf.starts_with(V1_PREFIX) {
                return Err(Refused::Missing);
            }
            if !buf.ends_with(b"\r\n") {
                return Err(Refused::Malformed(format!(
                    "v1 header without CRLF within {V1_MAX} bytes"
                )));
            }
            let header = ppp::v1::Header::try_from(buf.as_slice())
                .map_err(|e| Refused::Malformed(e.to_string()))?;
            Ok(match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Unknown => peer,
            })
        }
        _ => Err(Refused::Missing),
    }
}

/// Append bytes to `buf` until it holds `limit` bytes or `done(buf)`,
/// never reading past either: peek what has arrived, then read only the
/// part that belongs to the header. Once everything peeked is consumed the
/// next peek waits for new bytes, so a slow sender never makes this spin.
async fn read_upto(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    done: impl Fn(&[u8]) -> bool,
) -> Result<(), Refused> {
    let mut chunk = [0u8; 512];
    while buf.len() < limit && !done(buf) {
        let want = (limit - buf.len()).min(chunk.len());
        let n = stream.peek(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        // Up to and including a line end, if the caller waits for one.
        let old = buf.len();
        let mut take = n;
        for (i, b) in chunk[..n].iter().enumerate() {
            buf.push(*b);
            if done(buf) {
                take = i + 1;
                break;
            }
        }
        buf.truncate(old);
        buf.resize(old + take, 0);
        stream.read_exact(&mut buf[old..]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_waits_only_on_the_start_of_a_signature() {
        assert_eq!(decide(b""), Some(Start::Other));
        assert_eq!(decide(b"PRO"), None);
        assert_eq!(decide(b"\r\n\r\n"), None);
        assert_eq!(decide(b"PROXY "), Some(Start::Header));
        assert_eq!(decide(V2_SIGNATURE), Some(Start::Header));
        assert_eq!(decide(b"POST"), Some(Start::Other));
        assert_eq!(decide(b"\x16\x03\x01"), Some(Start::Other));
    }

    #[test]
    fn contains_maps_ipv4_in_ipv6() {
        let nets = vec!["10.0.0.0/8".parse::<IpNet>().unwrap()];
        assert!(contains(&nets, "10.1.2.3".parse().unwrap()));
        assert!(contains(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!contains(&nets, "11.0.0.1".parse().unwrap()));
    }
}
