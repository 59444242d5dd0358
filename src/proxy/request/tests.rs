//! Request preparation's unit tests: authority, path and framing checks on requests built in memory.

use super::*;

type NoBody = http_body_util::Empty<bytes::Bytes>;

fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<NoBody> {
    let mut b = Request::builder().version(version).uri(uri);
    for h in hosts {
        b = b.header("host", *h);
    }
    b.body(NoBody::new()).unwrap()
}

fn prepared(mut r: Request<NoBody>) -> Result<(Option<String>, String), Refused> {
    prepare(&mut r, &HostMemo::default())?;
    Ok((
        authority(&r).map(Into::into),
        r.uri().path_and_query().unwrap().to_string(),
    ))
}

/// The first pass notes what it finds, and takes out what
/// `Connection` names before anything else reads the request.
#[test]
fn the_first_pass_notes_the_names_and_strips_the_nominated() {
    let mut h = http::HeaderMap::new();
    h.insert("host", HeaderValue::from_static("a.test"));
    assert_eq!(Named::first_pass(&mut h).0, Named::default());
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("x-request-id", HeaderValue::from_static("abc"));
    h.insert("connection", HeaderValue::from_static("Upgrade, x-b"));
    h.insert("x-b", HeaderValue::from_static("1"));
    let named = Named::first_pass(&mut h).0;
    assert!(named.connection && named.upgrade && named.request_id);
    assert!(!h.contains_key("x-b") && h.contains_key("upgrade"), "{h:?}");
    let r = req(Version::HTTP_11, "/", &["a.test"]);
    assert!(!named.tunnelled(&r) && !Named::default().tunnelled(&r));
}

#[test]
fn one_spelling_of_a_host() {
    assert_eq!(without_root_dot("a.test."), Some("a.test".into()));
    assert_eq!(without_root_dot("a.test.:8443"), Some("a.test:8443".into()));
    assert_eq!(without_root_dot("a.test"), None);
    assert_eq!(without_root_dot("a.test:8443"), None);
    assert_eq!(without_root_dot("[::1]:443"), None);
    assert_eq!(
        without_root_dot("[2001:DB8:0:0::10]:443"),
        Some("[2001:db8::10]:443".into())
    );
    assert_eq!(
        without_root_dot("[2001:0db8::10]"),
        Some("[2001:db8::10]".into())
    );
    assert_eq!(without_root_dot("[2001:db8::10]"), None);
    assert_eq!(
        prepared(req(Version::HTTP_11, "/x", &["[2001:db8:0:0::10]:8443"])),
        Ok((Some("[2001:db8::10]:8443".into()), "/x".into()))
    );
    assert_eq!(without_root_dot("."), None);
    assert!(!valid_authority(b"a..test"));
    assert!(!valid_authority(b"a.test..:443"));
    assert!(!valid_authority(b".a.test"));
    assert!(!valid_authority(b".a.test.:443"));
    assert!(!valid_authority(b"."));
    assert!(!valid_authority(b".:443"));
    assert!(valid_authority(b"a.test.:443"));
    assert_eq!(
        prepared(req(Version::HTTP_11, "/x", &[".a.test"])),
        Err(Refused::InvalidHost)
    );
    assert_eq!(
        prepared(req(Version::HTTP_2, "https://.a.test/x", &[])),
        Err(Refused::InvalidHost)
    );
    assert!(valid_authority(b"[::1]:443"));
    assert_eq!(
        prepared(req(Version::HTTP_11, "http://b.test./x", &["a.test"])),
        Ok((Some("b.test".into()), "/x".into()))
    );
    assert_eq!(
        prepared(req(Version::HTTP_11, "b.test:443", &["b.test"])),
        Err(Refused::AuthorityForm)
    );
}

/// One reading of host and port for the router and the backend.
#[test]
fn authority_grammar() {
    for ok in [
        "a.test",
        "a.test:443",
        "a.test:",
        "A.Test:99999",
        "[::1]",
        "[::1]:443",
        "[2001:db8::7]:8443",
        "127.0.0.1:8443",
        "",
    ] {
        assert!(valid_authority(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "a.test:443:1",
        "a.test:x",
        "a.test:443x",
        ":443",
        "[::1]x",
        "[::1]:1:2",
        "[::1",
        "[]:443",
        "[a.test]",
        "[10.0.0.1]",
        "[cafe.be]",
        "[v1.x]",
        "a.test]",
        "a[b]",
        "u@a.test",
        "a test",
        "a.test,",
        "a.test,b.test",
        "a.test;x",
        "a%2ctest",
        "a!b",
        "a~b",
        "a+b:443",
    ] {
        assert!(!valid_authority(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn cookie_fields_count_as_one() {
    let with = |cookies: usize, others: usize| {
        let mut b = Request::builder().version(Version::HTTP_2);
        for i in 0..cookies {
            b = b.header("cookie", format!("c{i}=v"));
        }
        for i in 0..others {
            b = b.header(format!("x-h{i}"), "v");
        }
        b.body(NoBody::new()).unwrap()
    };
    assert!(!crowded(&with(0, 100)));
    assert!(crowded(&with(0, 101)));
    assert!(!crowded(&with(500, 99)));
    assert!(crowded(&with(2, 100)));
}

#[test]
fn transfer_codings_are_chunked_once() {
    let te = |values: &[&str]| {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(header::TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        transfer_codings(&h)
    };
    assert_eq!(te(&[]), Ok(()));
    assert_eq!(te(&["chunked"]), Ok(()));
    assert_eq!(te(&["Chunked"]), Ok(()));
    assert_eq!(te(&["gzip, chunked"]), Err(Refused::TransferCoding));
    assert_eq!(te(&["gzip", "chunked"]), Err(Refused::TransferCoding));
    assert_eq!(te(&["chunked, chunked"]), Err(Refused::ChunkedTwice));
    assert_eq!(te(&["chunked", "chunked"]), Err(Refused::ChunkedTwice));
    assert_eq!(
        Refused::TransferCoding.status(),
        StatusCode::NOT_IMPLEMENTED
    );
}

#[test]
fn one_authority() {
    use Version as V;
    let ok = |v, uri, hosts: &[&str]| prepared(req(v, uri, hosts));
    assert_eq!(
        ok(V::HTTP_11, "/x", &["a.test"]),
        Ok((Some("a.test".into()), "/x".into()))
    );
    // Absolute-form wins; Host is replaced.
    assert_eq!(
        ok(V::HTTP_11, "http://b.test/x", &["a.test"]),
        Ok((Some("b.test".into()), "/x".into()))
    );
    assert_eq!(
        ok(V::HTTP_11, "/x", &["a.test", "b.test"]),
        Err(Refused::DuplicateHost)
    );
    assert_eq!(ok(V::HTTP_11, "/x", &[]), Err(Refused::MissingHost));
    assert_eq!(
        ok(V::HTTP_11, "http://b.test/x", &[]),
        Err(Refused::MissingHost)
    );
    assert_eq!(ok(V::HTTP_10, "/x", &[]), Ok((None, "/x".into())));
    assert_eq!(
        ok(V::HTTP_11, "/x", &["a.test/evil"]),
        Err(Refused::InvalidHost)
    );
    assert_eq!(
        ok(V::HTTP_11, "/x", &["u@a.test"]),
        Err(Refused::InvalidHost)
    );
    // h2: :authority alone, or with an equal Host; a different Host is malformed.
    assert_eq!(
        ok(V::HTTP_2, "https://a.test:8443/x", &[]),
        Ok((Some("a.test:8443".into()), "/x".into()))
    );
    assert_eq!(
        ok(V::HTTP_2, "https://a.test/x", &["A.test"]),
        Ok((Some("A.test".into()), "/x".into()))
    );
    assert_eq!(
        ok(V::HTTP_2, "https://a.test/x", &["b.test"]),
        Err(Refused::HostMismatch)
    );
    assert!(same_entity(b"A.test:443", b"a.test", Some("https")));
    assert!(same_entity(b"[::1]", b"[::1]:80", Some("http")));
    assert!(!same_entity(b"a.test:80", b"a.test", Some("https")));
    assert_eq!(
        ok(V::HTTP_11, "/pub/%2e%2e/secret?q=%2e%2e", &["a"]),
        Ok((Some("a".into()), "/secret?q=%2e%2e".into()))
    );
    assert_eq!(
        ok(V::HTTP_11, "/pub/..%2fsecret", &["a"]),
        Err(Refused::Path(PathError::EncodedSeparator))
    );
    // A path must start with `/`; an absolute-form target's empty
    // path is `/`.
    assert_eq!(
        ok(V::HTTP_2, "https://a.test?x", &[]),
        Err(Refused::Path(PathError::NoLeadingSlash))
    );
    assert_eq!(
        ok(V::HTTP_11, "http://a.test?x", &["a.test"]),
        Ok((Some("a.test".into()), "/?x".into()))
    );
    let with = |method: Method, uri: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(NoBody::new())
            .unwrap()
    };
    assert_eq!(
        prepared(with(Method::CONNECT, "a.test:443", "a.test:443")),
        Err(Refused::Connect)
    );
    assert_eq!(
        prepared(with(Method::TRACE, "/x", "a.test")),
        Err(Refused::Trace)
    );
    assert_eq!(
        prepared(with(Method::GET, "*", "a.test")),
        Err(Refused::AsteriskForm)
    );
    assert_eq!(
        prepared(with(Method::OPTIONS, "*", "a.test")),
        Ok((Some("a.test".into()), "*".into()))
    );
}

/// An HTTP/2 field value with a space or tab at either end is
/// malformed (RFC 9113 §8.2.1); inside, or over HTTP/1.1 (whose parser
/// trims it), it passes.
#[test]
fn padded_h2_values_are_malformed() {
    let with = |version: Version, value: &'static str| {
        let mut r = req(version, "https://a.test/x", &[]);
        r.headers_mut()
            .append("x-a", HeaderValue::from_static("plain"));
        r.headers_mut()
            .append("x-a", HeaderValue::from_static(value));
        prepared(r).map(|_| ())
    };
    for value in [" v", "v ", "\tv", "v\t", " ", "\t"] {
        assert_eq!(
            with(Version::HTTP_2, value),
            Err(Refused::PaddedValue),
            "{value:?}"
        );
    }
    for value in ["v", "a b\tc", ""] {
        assert_eq!(with(Version::HTTP_2, value), Ok(()), "{value:?}");
    }
    let mut r = req(Version::HTTP_11, "/x", &["a.test"]);
    r.headers_mut()
        .insert("x-a", HeaderValue::from_static(" v"));
    assert_eq!(prepared(r).map(|_| ()), Ok(()));
}
