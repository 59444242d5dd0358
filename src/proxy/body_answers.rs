//! hotproxy's own answer to a request whose body failed on the client's side: 400, 408, 413, 499, or cut for its host.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tracing::debug;

use crate::proxy::body::Fault;
use crate::proxy::forward::{RequestContext, ResponseBody, error_response};

/// The answer to a request whose body the client broke (400), stalled
/// (408, as nginx's `client_body_timeout`) or left part way (499, logged
/// and counted; no client reads it). None counts against the
/// endpoint. An HTTP/1.1 connection closes after it: the rest of the body
/// is not read. A body cut for its host ([`Fault::Cut`]) that failed the
/// attempt before the watch's own cut was seen ends as that cut does.
pub fn client_fault(
    ctx: &RequestContext,
    upstream: &str,
    fault: &Fault,
    h2_client: bool,
) -> Response<ResponseBody> {
    let mut resp = match fault {
        Fault::Malformed(cause) => {
            debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream, error = %cause, "client request body failed");
            error_response(StatusCode::BAD_REQUEST, "malformed request body")
        }
        Fault::Stalled => {
            debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream, "client request body stalled");
            error_response(StatusCode::REQUEST_TIMEOUT, "request body timed out")
        }
        Fault::TooLarge => {
            debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream, "client request body over max_body_bytes");
            body_too_large()
        }
        Fault::Gone => {
            debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream, "client went away during its request body");
            client_gone()
        }
        Fault::Cut => return crate::proxy::host_cut::cut_before_head(),
    };
    if !h2_client {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// What a client that went away during its request body is counted and
/// logged as: nginx's `499`, with no body (nobody is there to read one;
/// the access log's `bytes_out` stays 0).
fn client_gone() -> Response<ResponseBody> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() =
        StatusCode::from_u16(crate::proxy::edge::CLIENT_GONE).expect("499 is a valid status code");
    resp
}

/// `413` for a request body over `max_body_bytes` (nginx's wording).
fn body_too_large() -> Response<ResponseBody> {
    error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}
