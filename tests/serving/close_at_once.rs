//! A close at once from outside (SIGTERM) on a connection that was served, answered 431 by HTTP/2 itself, or part way into a frame: what was answered still reaches the client.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

const DATA: u8 = 0;
const PING: u8 = 6;
/// The body of the response the client does not read before the close.
const BODY: usize = 256 * 1024;

/// An HTTP/2 connection closed at once by SIGTERM part way into a header
/// block, after a response handed whole to the kernel but not read yet
/// (the client's receive buffer small: most of it waits in the proxy's
/// socket), is closed with the lingering close, not fully: the client
/// must send the block's CONTINUATION before anything else, and a closed
/// socket answers it with a reset, which throws away what of the response
/// and of the `GOAWAY` the proxy's socket still held (SPEC §1: the
/// streams in flight are served to their end). Seen from the client: the
/// whole response, the `GOAWAY` naming stream 1, the TLS close, no
/// reset. (It was closed fully: the client read some KiB, then a reset.)
#[tokio::test]
async fn a_served_h2_connection_closed_at_once_mid_header_block_keeps_its_answer() {
    let (w, mut p, addr, log) = serve_logged("").await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(addr).await.unwrap();
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("a.example.com").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let port = local_port(&s);
    // Windows wide open: the whole body goes to the socket at once. Then
    // stream 3's HEADERS, its CONTINUATION to come.
    let next = hpack_get("/api");
    let mut out = PREFACE.to_vec();
    out.extend(h2_frame(SETTINGS, 0, 0, &[0, 4, 0x40, 0, 0, 0]));
    out.extend(h2_frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    out.extend(h2_frame(
        HEADERS,
        0x5,
        1,
        &hpack_get(&format!("/kib/{}", BODY / 1024)),
    ));
    out.extend(h2_frame(HEADERS, 0x1, 3, &next[..3]));
    s.write_all(&out).await.unwrap();
    // The body ended on the proxy's side; the close at once (logged)
    // comes only once its end is on the socket too.
    wait_access_log(&log, 1, WAIT).await;
    p.signal("TERM");
    p.wait_log("the close at once", |v| {
        v["message"] == "closing connection: shutting down before its next request"
            && peer_is(v, port)
    })
    .await;
    s.write_all(&h2_frame(CONTINUATION, 0x4, 3, &next[3..]))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let (got, error) = read_all(&mut s).await;
    let (body, ended) = body_of_stream_1(&got);
    assert!(
        error.is_none() && ended && body == BODY,
        "{body} of {BODY} bytes, ended: {ended}, then {error:?}"
    );
    assert_eq!(h2_goaway(&got), Some((1, 0)));
}

/// An HTTP/2 connection whose only stream was answered `431` by h2
/// itself (a header list over `max_header_bytes`: the service never took
/// it, no request began), closed at once by SIGTERM while the client is
/// not reading (its receive window closed by PING answers: what follows
/// waits in the proxy's socket), gets the lingering close, not the full
/// one: its `GOAWAY` names that stream (SPEC §1), and the client's next
/// frame, reaching a closed socket, would be answered with a reset that
/// throws away what that socket still held, the `GOAWAY` and the TLS
/// close. Seen from the client: the PING answers, the `GOAWAY` naming
/// stream 1, the TLS close, no reset. (It was closed fully: a reset.)
#[tokio::test]
async fn an_h2_connection_answered_431_alone_closed_at_once_keeps_its_goaway() {
    let (w, mut p, addr) = serve("max_header_bytes: 1024").await;
    let mut s = small_window_h2(&w, addr).await;
    let port = local_port(&s);
    // GET /api with a 3,000-byte x-big: over the limit, within four times it.
    let mut block = hpack_get("/api");
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0xb9, 0x16]); // length 3,000
    block.extend(std::iter::repeat_n(b'v', 3000));
    let mut out = [PREFACE, EMPTY_SETTINGS].concat();
    out.extend(h2_frame(HEADERS, 0x5, 1, &block));
    s.write_all(&out).await.unwrap();
    // The 431 written: read.
    while next_frame(&mut s).await.0 != HEADERS {}
    close_window_with_ping_answers(&mut s, addr).await;
    p.signal("TERM");
    // The lingering close holds the drain, the process with it, until the
    // client closes: the line is seen before the exit. (Closed fully, the
    // process may exit first.)
    p.wait_log("the close at once, the process still lingering", |v| {
        v["message"] == "closing connection: shutting down before its first request"
            && peer_is(v, port)
    })
    .await;
    s.write_all(&h2_frame(PING, 0, 0, b"at close"))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let (got, error) = read_all(&mut s).await;
    assert!(error.is_none(), "{} bytes, then {error:?}", got.len());
    assert_eq!(h2_goaway(&got), Some((1, 0)));
    assert_eq!(
        w.backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// An HTTP/2 connection closed at once by SIGTERM before its first
/// request, while its client is part way into a HEADERS frame's 9-byte
/// header (2 bytes of it come in their own TLS record: its type, the 4th
/// byte, not yet), gets the lingering close, not the full one: the rest of
/// that frame comes next, and a closed socket answers it with a reset
/// that throws away what the socket still held (the client not reading:
/// PING answers, the `GOAWAY`, the TLS close), so the client's first
/// request dies with no sign it was not processed. Seen from the client:
/// the `GOAWAY` naming no stream, the TLS close, no reset. (It was closed
/// fully: the frame's type not read yet, the walk still took the last
/// frame's, a PING's, and no header block was begun.)
#[tokio::test]
async fn an_h2_connection_closed_at_once_mid_frame_header_keeps_its_goaway() {
    let (w, mut p, addr) = serve("").await;
    let mut s = small_window_h2(&w, addr).await;
    let port = local_port(&s);
    s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    close_window_with_ping_answers(&mut s, addr).await;
    let headers = h2_frame(HEADERS, 0x5, 1, &hpack_get("/api"));
    s.write_all(&headers[..2]).await.unwrap();
    s.flush().await.unwrap();
    p.signal("TERM");
    p.wait_log("the close at once", |v| {
        v["message"] == "closing connection: shutting down before its first request"
            && peer_is(v, port)
    })
    .await;
    s.write_all(&headers[2..]).await.unwrap();
    s.flush().await.unwrap();
    let (got, error) = read_all(&mut s).await;
    assert!(error.is_none(), "{} bytes, then {error:?}", got.len());
    assert_eq!(h2_goaway(&got), Some((0, 0)));
    assert_eq!(
        w.backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// An HTTP/2 (ALPN) TLS connection to `addr` whose client socket has a
/// 4 KiB receive buffer: a few KiB unread close its window.
async fn small_window_h2(w: &World, addr: std::net::SocketAddr) -> Tls {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(addr).await.unwrap();
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("a.example.com").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// PINGs on `s` (its preface sent) whose answers, not read, close the
/// client's window: awaited until the proxy at `addr` read them all and
/// its answers wait in its socket (its zero window probe's timer on).
async fn close_window_with_ping_answers(s: &mut Tls, addr: std::net::SocketAddr) {
    let raw = s.get_ref().0.local_addr().unwrap();
    let pings: Vec<u8> = (0..1000u32)
        .flat_map(|i| h2_frame(PING, 0, 0, &u64::from(i).to_be_bytes()))
        .collect();
    s.write_all(&pings).await.unwrap();
    s.flush().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let proxy = tcp_row(addr, raw).expect("the proxy's socket");
        let client = tcp_row(raw, addr).expect("the client's socket");
        // All read by the proxy, and its zero window probe's timer on.
        if proxy.rx == 0 && client.tx == 0 && proxy.timer == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client's window never closed: {proxy:?} {client:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// A row of Linux's `/proc/net/tcp`, for the socket from `local` to `remote`.
#[derive(Debug)]
struct Row {
    /// Bytes not acknowledged by the peer, sent or not.
    tx: u32,
    /// Bytes received, not read.
    rx: u32,
    /// 1: retransmission; 4: zero window probe (the peer's window closed).
    timer: u8,
}

fn tcp_row(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<Row> {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => {
            let ip = u32::from_le_bytes(v4.ip().octets());
            format!("{ip:08X}:{:04X}", v4.port())
        }
        _ => panic!("/proc/net/tcp is IPv4 only: {a}"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 5 && f[1] == local && f[2] == remote).then(|| {
            let (tx, rx) = f[4].split_once(':').unwrap();
            let timer = f[5].split(':').next().unwrap();
            Row {
                tx: u32::from_str_radix(tx, 16).unwrap(),
                rx: u32::from_str_radix(rx, 16).unwrap(),
                timer: timer.parse().unwrap(),
            }
        })
    })
}

/// What `s` reads until its end, and the error that ended it, if one did.
async fn read_all(s: &mut Tls) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match within_deadline("the server's close", s.read(&mut buf)).await {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// The DATA bytes of stream 1 among the frames `bytes` hold, and whether
/// its END_STREAM came.
fn body_of_stream_1(mut bytes: &[u8]) -> (usize, bool) {
    let (mut body, mut ended) = (0, false);
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let Some(payload) = bytes.get(9..9 + len) else {
            break;
        };
        let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) & 0x7fff_ffff;
        if stream == 1 && bytes[3] == DATA {
            body += payload.len();
            ended |= bytes[4] & 0x1 != 0;
        }
        bytes = &bytes[9 + len..];
    }
    (body, ended)
}
