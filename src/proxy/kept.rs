//! What an HTTP/1.1 attempt keeps to send its request again: the head as written, or a copy.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri, Version};

use crate::proxy::body::ClientBody;
use crate::proxy::failure::copy_of;
use crate::proxy::forward::StandInHost;
use crate::upstream::conn::H1;

/// What an HTTP/1.1 attempt keeps to send its request again: hyper takes
/// the request it writes. A request without a body whose head is small is
/// sent again from its head as written ([`H1::sent_head`]), which costs no
/// copy of its fields per request; any other, from a copy taken before.
pub(super) enum Kept {
    Copy(Box<Request<ClientBody>>),
    Written { version: Version, stand_in: bool },
}

/// The largest head (its fields' bytes) sent again from what was written:
/// less than any socket takes in one write, so a head the connection
/// failed on was written whole.
const WRITTEN_HEAD_KEPT: usize = 2048;

/// What an HTTP/1.1 send reads of its request's fields, in one pass (a
/// hash and a probe for each of `Host` and `TE` cost more than reading
/// every name once): whether those are there, and the bytes of the
/// fields' lines ([`Kept::of`]).
pub(super) struct Fields {
    pub(super) host: bool,
    pub(super) te: bool,
    pub(super) bytes: usize,
}

impl Fields {
    pub(super) fn of(headers: &HeaderMap) -> Fields {
        let mut fields = Fields {
            host: false,
            te: false,
            bytes: 0,
        };
        for (name, value) in headers {
            fields.bytes += line(name, value);
            fields.host |= name == header::HOST;
            fields.te |= name == header::TE;
        }
        fields
    }

    /// [`crate::proxy::hop::name_te`], for a request with a `TE` only.
    pub(super) fn name_te(&self, headers: &mut HeaderMap) {
        if self.te {
            crate::proxy::hop::name_te(headers);
        }
    }
}

/// A field's `name: value` line, as hyper writes it.
fn line(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + value.len() + 4
}

impl Kept {
    /// `fields`: the bytes of `req`'s fields' lines ([`Fields`]), when
    /// known: read before a stand-in `Host` or a `te` in `Connection` was
    /// added, they are not (`None`: counted here).
    pub(super) fn of(req: &Request<ClientBody>, fields: Option<usize>) -> Kept {
        if hyper::body::Body::is_end_stream(req.body()) {
            let uri = req.uri();
            let fields =
                fields.unwrap_or_else(|| req.headers().iter().map(|(n, v)| line(n, v)).sum());
            let size = req.method().as_str().len()
                + uri.path().len()
                + uri.query().map_or(0, str::len)
                + fields;
            if size <= WRITTEN_HEAD_KEPT {
                return Kept::Written {
                    version: req.version(),
                    stand_in: req.extensions().get::<StandInHost>().is_some(),
                };
            }
        }
        Kept::Copy(Box::new(copy_of(req)))
    }

    /// The request again, from the head hyper wrote or tried to write (a
    /// write that failed keeps what it was given, [`H1::sent_head`]: hyper
    /// hands back no request it has taken); `None` if hyper never began
    /// to write it (then it hands the request back itself).
    pub(super) fn request(self, c: &H1, path: &PathAndQuery) -> Option<Request<ClientBody>> {
        let (version, stand_in) = match self {
            Kept::Copy(req) => return Some(*req),
            Kept::Written { version, stand_in } => (version, stand_in),
        };
        let head = c.sent_head()?;
        let (method, headers) = crate::proxy::failure::parse_written_head(&head)?;
        let mut req = Request::new(ClientBody::empty());
        *req.method_mut() = method;
        *req.uri_mut() = Uri::from(path.clone());
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        if stand_in {
            req.extensions_mut().insert(StandInHost);
        }
        Some(req)
    }
}
