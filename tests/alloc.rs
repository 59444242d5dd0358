//! The per-request path allocates only what it must: counted with a
//! counting global allocator (this test binary only; the library keeps
//! `forbid(unsafe_code)`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use hotproxy::proxy::forward::RequestContext;
use hotproxy::proxy::headers::rewrite_request_headers;
use hotproxy::proxy::path::normalise;
use hotproxy::proxy::request::prepare;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// One test function: no other test thread allocates meanwhile.
#[test]
fn common_request_path_allocations() {
    // Checks before routing: nothing to rewrite, nothing allocated.
    let mut req = http::Request::get("/api/v1/users?page=2")
        .header("host", "app.example.com")
        .header("user-agent", "curl/8")
        .header("accept", "*/*")
        .body(())
        .unwrap();
    assert_eq!(allocations(|| prepare(&mut req).unwrap()), 0);
    assert_eq!(allocations(|| drop(normalise("/api/v1/users"))), 0);

    // Header rewriting: the X-Forwarded-For value is the one allocation
    // (header names are static, the client address is formatted on the
    // stack, X-Forwarded-Host shares Host's bytes, Via is static).
    let ctx = RequestContext {
        listener: "public".into(),
        client_addr: "10.0.0.1:5555".parse().unwrap(),
        client_cert: None,
        tls_sni: None,
        tls_version: None,
        resumed: false,
        entry: None,
    };
    let mut headers = req.headers().clone();
    headers.reserve(16);
    let n = allocations(|| rewrite_request_headers(&mut headers, &ctx, false, false));
    assert_eq!(n, 1, "{headers:?}");
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1");

    // Edge duties without a client certificate: removing client-sent
    // certificate headers that are not there, and keeping a well-formed
    // client request id, allocate nothing.
    use hotproxy::proxy::client_cert::{ForwardClientCert, apply};
    assert_eq!(
        allocations(|| apply(&mut headers, ForwardClientCert::Headers, None)),
        0
    );
    headers.insert("x-request-id", http::HeaderValue::from_static("req-1"));
    let kept = allocations(|| {
        hotproxy::proxy::request_id::settle(&mut headers, true);
    });
    assert_eq!(kept, 0);
}
