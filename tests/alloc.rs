//! The per-request path allocates only what it must: counted with a
//! counting global allocator (this test binary only; the library keeps
//! `forbid(unsafe_code)`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use std::time::Duration;

use hotproxy::metrics::{METRICS, RouteMetrics};
use hotproxy::proxy::forward::RequestContext;
use hotproxy::proxy::headers::client_ip_value;
use hotproxy::proxy::headers::rewrite_request_headers;
use hotproxy::proxy::path::normalise;
use hotproxy::proxy::request::{HostMemo, prepare};

struct Counting;

thread_local! {
    // Per thread: the test harness's main thread allocates now and then
    // while the test runs (seen under load: 4 allocations counted against
    // a header rewrite that makes 1). A const-initialised Cell has no
    // destructor, so the allocator may touch it at any time.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    // Bytes this thread holds (what it allocated, less what it freed),
    // and the most it held since `held_at_most` began.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

fn hold(bytes: isize) {
    let live = LIVE.with(|l| {
        l.set(l.get() + bytes);
        l.get()
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        hold(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        hold(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        hold(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The most `f` held at once beyond what was held before, in bytes
/// (what it returns included, until it is dropped).
fn held_at_most<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    (PEAK.with(Cell::get).abs_diff(before), out)
}

/// One test function, counted on its own thread.
#[test]
fn common_request_path_allocations() {
    // Checks before routing: nothing to rewrite, nothing allocated.
    let mut req = http::Request::get("/api/v1/users?page=2")
        .header("host", "app.example.com")
        .header("user-agent", "curl/8")
        .header("accept", "*/*")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let hosts = HostMemo::default();
    assert_eq!(allocations(|| prepare(&mut req, &hosts).unwrap()), 0);
    // An HTTP/2 request names its host in `:authority` alone: the `Host`
    // made from it is made once per connection, its next requests share it.
    let h2 = || {
        http::Request::get("https://app.example.com/api/v1/users")
            .version(http::Version::HTTP_2)
            .header("user-agent", "curl/8")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let (mut first, mut next) = (h2(), h2());
    prepare(&mut first, &hosts).unwrap();
    assert_eq!(allocations(|| prepare(&mut next, &hosts).unwrap()), 0);
    assert_eq!(next.headers()["host"], "app.example.com");
    assert_eq!(allocations(|| drop(normalise("/api/v1/users"))), 0);

    // Header rewriting: nothing allocated in the common case (header
    // names are static, X-Forwarded-For shares the connection's
    // preformatted client IP, X-Forwarded-Host shares Host's bytes, Via is
    // static).
    let mut ctx = RequestContext {
        listener: "public".into(),
        client_addr: "10.0.0.1:5555".parse().unwrap(),
        client_cert: None,
        tls_sni: None,
        served_from: Arc::new(hotproxy::tls::server::SniResolver::none()),
        served: None,
        trusted_proxy: false,
        tls_version: None,
        resumed: false,
        entry: None,
        body_read_timeout: std::time::Duration::from_secs(60),
        body_buffer_bytes: 16_384,
        max_body_bytes: 0,
        client_ip: client_ip_value("10.0.0.1:5555".parse().unwrap()),
        hosts: Default::default(),
    };
    let mut headers = req.headers().clone();
    headers.reserve(16);
    let n = allocations(|| rewrite_request_headers(&mut headers, &ctx, false, false));
    assert_eq!(n, 0, "{headers:?}");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1");
    // An application's own names with `_`, CGI-style (`HTTP_`) or not,
    // pass: telling them from the look-alikes hotproxy removes allocates
    // nothing (this runs for every such name of every request).
    let mut own = req.headers().clone();
    own.insert("api_key", http::HeaderValue::from_static("k"));
    own.insert("http_user_agent", http::HeaderValue::from_static("u"));
    own.reserve(16);
    let n = allocations(|| rewrite_request_headers(&mut own, &ctx, false, false));
    assert_eq!(n, 0, "{own:?}");
    assert_eq!(own["api_key"], "k");
    assert_eq!(own["http_user_agent"], "u");

    // Edge duties without a client certificate: removing client-sent
    // certificate headers that are not there, and keeping a well-formed
    // client request id, allocate nothing.
    use hotproxy::proxy::client_cert::{ForwardClientCert, apply};
    assert_eq!(
        allocations(
            || apply(&mut headers, ForwardClientCert::Headers, None, &|| {
                Arc::from([])
            })
        ),
        0
    );
    headers.insert("x-request-id", http::HeaderValue::from_static("req-1"));
    let kept = allocations(|| {
        hotproxy::proxy::request_id::settle(&mut headers, true);
    });
    assert_eq!(kept, 0);

    assert_eq!(headers["via"], "1.1 hotproxy");
    // A trusted proxy's own X-Forwarded-For is joined (anyone else's is
    // replaced): that one value is built.
    ctx.trusted_proxy = true;
    let mut joined = req.headers().clone();
    joined.insert("x-forwarded-for", "192.0.2.1".parse().unwrap());
    joined.reserve(16);
    let n = allocations(|| rewrite_request_headers(&mut joined, &ctx, false, false));
    assert_eq!(n, 1, "{joined:?}");
    assert_eq!(joined["x-forwarded-for"], "192.0.2.1, 10.0.0.1");

    // A response's `Connection: keep-alive` is stripped without building
    // a header name.
    let mut resp = http::HeaderMap::new();
    resp.insert("connection", "keep-alive".parse().unwrap());
    resp.insert("keep-alive", "timeout=5".parse().unwrap());
    resp.insert("content-length", "100".parse().unwrap());
    let n = allocations(|| {
        hotproxy::proxy::headers::strip_hop_by_hop(
            &mut resp,
            false,
            hotproxy::proxy::headers::Message::Response,
        );
    });
    assert_eq!(n, 0);
    assert_eq!(resp.len(), 1, "{resp:?}");

    // Request metrics: label handles resolved once per route; recording a
    // request (after its status code's first use) allocates nothing.
    let route = RouteMetrics::new("public", "app");
    route.record(200, Duration::from_millis(1));
    let n = allocations(|| {
        for _ in 0..100 {
            route.record(200, Duration::from_millis(1));
        }
    });
    assert_eq!(n, 0);
    assert!(METRICS.render().contains(
        r#"hotproxy_http_requests_total{listener="public",upstream="app",code="200"} 101"#
    ));
}

/// A configuration's problems cost what the file holds, not its square:
/// each problem the resolver found was matched against every problem of
/// the tree with two `format!`s per pair, so a generated file of 20,000
/// routes with a bad value and a missing upstream each took 100 s to
/// `check` (or to reject on a reload). Counted, twice the routes now make
/// about twice the allocations (four times, before).
#[test]
fn config_problems_cost_what_the_file_holds() {
    let parse = |routes: usize| {
        let routes: String = (0..routes)
            .map(|i| {
                format!("      - {{ path_prefix: /r{i}/, upstream: api, max_body_bytes: b{i} }}\n")
            })
            .collect();
        let text = format!(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:8443\n    tls:\n      \
             certs: [{{ cert_file: a.crt, key_file: a.key }}]\n    routes:\n{routes}"
        );
        let mut problems = 0;
        let n = allocations(|| {
            let e = hotproxy::config::parse(&text, std::path::Path::new("/etc/h/c.yaml"));
            problems = e.unwrap_err().problems.len();
        });
        (n, problems)
    };
    let (one, problems) = parse(1_000);
    assert_eq!(problems, 2_000);
    let (two, problems) = parse(2_000);
    assert_eq!(problems, 4_000);
    assert!(two < one * 3, "{one} then {two} allocations");
}

/// A request body in given pieces, of an exact declared length (what
/// hyper's `Incoming` says of a `Content-Length` body).
struct Pieces {
    frames: std::collections::VecDeque<hyper::body::Frame<bytes::Bytes>>,
    declared: u64,
}

impl Pieces {
    fn new(
        frames: impl IntoIterator<Item = hyper::body::Frame<bytes::Bytes>>,
        declared: u64,
    ) -> Pieces {
        Pieces {
            frames: frames.into_iter().collect(),
            declared,
        }
    }
}

impl hyper::body::Body for Pieces {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.declared)
    }
}

/// A body read whole first (`body_buffer_bytes`) holds its bytes and
/// little more, however many pieces it came in. A client sending a
/// `Content-Length: 16384` body a byte per TLS record (HTTP/1.1: a piece
/// per read) or per DATA frame (HTTP/2) made 16,384 pieces, each kept
/// with its bookkeeping until the last came (`Collected`): 512 KiB held
/// for 16 KiB, then copied once more. A body in one piece (the common
/// case) is kept as it came: no copy, no allocation.
#[test]
fn a_body_read_whole_holds_its_bytes_not_its_pieces() {
    use futures_util::FutureExt;
    use hotproxy::proxy::buffer::gather;

    const DECLARED: usize = 16_384;
    let wire = bytes::Bytes::from(
        (0..DECLARED)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    // As hyper hands them over: slices of the buffer they were read into.
    let body = Pieces::new(
        (0..DECLARED).map(|i| hyper::body::Frame::data(wire.slice(i..i + 1))),
        DECLARED as u64,
    );
    let (held, gathered) = held_at_most(|| gather(body, DECLARED).now_or_never());
    let (data, trailers) = gathered.expect("ready").expect("whole");
    assert_eq!(data, wire);
    assert!(trailers.is_none());
    assert!(
        held <= DECLARED + 1024,
        "{held} bytes held for a body of {DECLARED} in {DECLARED} pieces"
    );
    drop(data);

    // One piece: that piece, its trailers moved, nothing allocated.
    let mut t = http::HeaderMap::new();
    t.insert("x-checksum", http::HeaderValue::from_static("crc32c=1"));
    let body = Pieces::new(
        [
            hyper::body::Frame::data(wire.clone()),
            hyper::body::Frame::trailers(t),
        ],
        DECLARED as u64,
    );
    let mut gathered = None;
    let n = allocations(|| gathered = gather(body, DECLARED).now_or_never());
    let (data, trailers) = gathered.expect("ready").expect("whole");
    assert_eq!(n, 0, "allocations for a body in one piece");
    assert_eq!(data.as_ptr(), wire.as_ptr(), "the piece itself, not a copy");
    assert_eq!(trailers.expect("trailers")["x-checksum"], "crc32c=1");

    // More than declared is refused, not gathered past it.
    let body = Pieces::new(
        [b"ab", b"cd"].map(|p| hyper::body::Frame::data(bytes::Bytes::from_static(p))),
        3,
    );
    let over = gather(body, 3).now_or_never().expect("ready");
    assert!(over.is_err(), "{over:?}");
}
