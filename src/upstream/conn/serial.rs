//! TCP to a `host:port`: a name's addresses tried in turn, each with its share of the time left (Go's `dialSerial`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::upstream::lookup::Lookup;
use crate::upstream::resolve::to_dial;

/// The least time an address that is not the last gets (Go's
/// `saneMinimum` is 2 s; a dial's `connect_timeout` is often 1-5 s).
const FLOOR: Duration = Duration::from_millis(500);

/// How long the next of `left` addresses may take of `remaining`: an even
/// share, at least [`FLOOR`] (never more than `remaining`); the last
/// address gets all that remains.
pub(super) fn share(remaining: Duration, left: usize) -> Duration {
    let even = remaining / u32::try_from(left.max(1)).unwrap_or(u32::MAX);
    even.max(FLOOR).min(remaining)
}

/// TCP to the first of `addrs` that answers by `deadline`, each tried
/// with its [`share`] of the time left. One connect over all of them
/// spent the whole `connect_timeout` on the first: with
/// `resolve_interval: 0s`, a first address that drops SYNs made every
/// dial a `504` though the next one served. The first error is returned
/// (a timed-out address's as `TimedOut`) when none connects.
async fn each(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<TcpStream> {
    let mut first = None;
    for (k, addr) in addrs.iter().enumerate() {
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        if remaining.is_zero() {
            break;
        }
        let until = now + share(remaining, addrs.len() - k);
        let error = match tokio::time::timeout_at(until, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => e,
            Err(_) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            ),
        };
        first.get_or_insert(error);
    }
    Err(first.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into()))
}

/// TCP to `host:port`: an IP address as it is, a name through its
/// [`Lookup`] (joined if one runs, counted in the 64), its [`to_dial`]
/// addresses tried in turn ([`each`]: each its share of the
/// time left to `deadline`). Each dial by name ran a lookup of its own on
/// the blocking pool, outside the 64, and one whose dial timed out left
/// its thread blocked on a hung resolver: one more per dial. A lookup
/// refused a place fails the dial as any failed lookup ([`Lookup::failed_dial`]).
pub(super) async fn connect(
    host: &str,
    port: u16,
    deadline: Instant,
) -> std::io::Result<TcpStream> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return TcpStream::connect((ip, port)).await;
    }
    let lookup = Lookup::start(host, port);
    let addrs = (lookup.answer().await).map_err(|why| lookup.failed_dial(why))?;
    each(&to_dial(host, addrs)?, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two addresses in 4 s: 2 s each; three in 3 s: 1 s each; the last
    /// all that is left; never less than the floor, nor more than left.
    #[test]
    fn each_address_gets_its_share_of_the_time_left() {
        let s = Duration::from_secs;
        assert_eq!(share(s(4), 2), s(2));
        assert_eq!(share(s(3), 3), s(1));
        assert_eq!(share(s(3), 1), s(3));
        assert_eq!(share(s(1), 4), FLOOR);
        assert_eq!(
            share(Duration::from_millis(300), 2),
            Duration::from_millis(300)
        );
    }
}
