//! Trailers both ways: what they may carry, and announced trailers over HTTP/1.1.

use std::sync::atomic::Ordering;

use crate::common::*;
use crate::support::*;

/// `req` over HTTP/2 with the body `abcd` and then `trailers`: what the
/// backend saw (its JSON, from a `200`) and the response body, read to its
/// end and left for its trailers.
async fn h2_upload(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    req: http::Request<()>,
    trailers: &[(&str, &str)],
) -> (serde_json::Value, h2::RecvStream) {
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"abcd"), false)
        .unwrap();
    let trailers: http::HeaderMap = trailers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
    stream.send_trailers(trailers).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    (serde_json::from_slice(&data).unwrap(), body)
}

/// The trailer section of a chunked body as on the wire (what follows
/// its last, empty chunk), as `name: value` lines.
fn trailer_section(wire: &str) -> Vec<&str> {
    wire.rsplit_once("\r\n0\r\n")
        .or_else(|| wire.strip_prefix("0\r\n").map(|t| ("", t)))
        .map(|(_, t)| t.split("\r\n").filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// Trailers pass as an application sends them (gRPC's `grpc-status` reaches
/// the client) but carry nothing the head's rules would stop: a client's
/// `ssl-client-verify`, `X-Forwarded-For` or `content-length` after its
/// body is dropped, whether the body was read whole first (it declared its
/// length) or streamed, as is a `content-length` after a response body.
#[tokio::test]
async fn trailers_carry_nothing_the_head_would_not() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
    let mut client = h2_to(&w, addr).await;
    for declared in [true, false] {
        let mut req = http::Request::post("https://a.example.com/pub/trailers/upload")
            .header("te", "trailers");
        if declared {
            req = req.header("content-length", "4");
        }
        let (seen, mut body) = h2_upload(
            &mut client,
            req.body(()).unwrap(),
            &[
                ("x-checksum", "crc32c=1"),
                ("content-length", "99"),
                ("ssl-client-verify", "SUCCESS"),
                ("x_client_cert_subject", "CN=admin"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        )
        .await;
        assert_eq!(seen["body_bytes"], 4, "{seen}");
        assert_eq!(
            seen["trailers"],
            serde_json::json!({ "x-checksum": "crc32c=1" }),
            "declared length: {declared}"
        );
        let trailers = body.trailers().await.unwrap().expect("response trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        assert_eq!(trailers.get("grpc-message").unwrap(), "done");
        assert!(trailers.get("content-length").is_none(), "{trailers:?}");
    }
    // A trailer section may have as many fields as a head, 100, as hyper
    // holds HTTP/1.1 trailers: more is the client's 400.
    for (fields, status) in [(100, 200), (101, 400)] {
        let req = http::Request::post("https://a.example.com/pub/upload")
            .body(())
            .unwrap();
        let (resp, mut stream) = client.send_request(req, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(b"abcd"), false)
            .unwrap();
        let trailers: http::HeaderMap = (0..fields)
            .map(|i| {
                let name = format!("x-t{i}");
                (name.parse().unwrap(), http::HeaderValue::from(i))
            })
            .collect();
        stream.send_trailers(trailers).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, "{fields} trailer fields");
    }
}

/// An HTTP/2 trailer value that starts or ends with a space or a tab makes
/// the request malformed (RFC 9113 §8.2.1), as it does in the head: the
/// client's `400` (`malformed request body`). It reached the upstream as
/// sent, and an HTTP/2 upstream that holds to the RFC refused the request:
/// a `502` counted against its endpoint. Whitespace inside a value passes.
#[tokio::test]
async fn h2_trailer_values_padded_with_whitespace_are_malformed() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
    let mut client = h2_to(&w, addr).await;
    for value in ["crc32c=1 ", " crc32c=1", "crc32c=1\t", "\tcrc32c=1", " "] {
        let req = http::Request::post("https://a.example.com/pub/upload")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, mut stream) = client.send_request(req, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(b"abcd"), false)
            .unwrap();
        let trailers: http::HeaderMap = [(
            http::HeaderName::from_static("x-checksum"),
            http::HeaderValue::from_str(value).unwrap(),
        )]
        .into_iter()
        .collect();
        stream.send_trailers(trailers).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        let status = resp.status();
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let data = String::from_utf8_lossy(&data);
        assert_eq!(status, 400, "{value:?}: {data}");
        assert!(data.contains("malformed request body"), "{value:?}: {data}");
    }
    let req = http::Request::post("https://a.example.com/pub/upload")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (seen, _) = h2_upload(&mut client, req, &[("x-checksum", "a b\tc")]).await;
    assert_eq!(seen["trailers"]["x-checksum"], "a b\tc", "{seen}");
}

/// Trailers an application announces (`Trailer`) pass over HTTP/1.1 as
/// over HTTP/2, cut as the head is: a client's chunked upload ends with an
/// `x-checksum` that reaches an HTTP/1.1 backend and an `ssl-client-verify`
/// that does not; the backend's `grpc-status` reaches an HTTP/1.1 client
/// that sent `TE: trailers`, and none reaches one that did not. hyper
/// writes an HTTP/1.1 trailer field only if the head announced it, and
/// hotproxy removed `Trailer` (and an HTTP/1.1 client's `TE`) as
/// hop-by-hop, so no trailer reached an HTTP/1.1 peer.
#[tokio::test]
async fn announced_trailers_pass_over_http1_both_ways() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let (_p, addr) = serve(&w.scene.one_upstream_config("h1", h1.addr, &[])).await;
    let upload = |te: &str| {
        format!(
            "POST /trailers/upload HTTP/1.1\r\nHost: a.example.com\r\nConnection: TE, close\r\n{te}\
             Trailer: x-checksum, ssl-client-verify, content-length\r\n\
             Transfer-Encoding: chunked\r\n\r\n\
             4\r\nabcd\r\n0\r\n\
             x-checksum: crc32c=1\r\nssl-client-verify: SUCCESS\r\ncontent-length: 99\r\n\r\n"
        )
    };
    let r = raw(&w, addr, upload("TE: trailers\r\n").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.json();
    assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
    assert_eq!(seen["body_bytes"], 4, "{seen}");
    assert_eq!(
        seen["trailers"],
        serde_json::json!({ "x-checksum": "crc32c=1" }),
        "{seen}"
    );
    assert_eq!(seen["headers"]["te"], "trailers", "{seen}");
    assert_eq!(seen["headers"]["trailer"], "x-checksum", "{seen}");
    let trailers = trailer_section(&r.wire);
    assert_eq!(
        trailers,
        ["grpc-status: 0", "grpc-message: done"],
        "{}\n{:?}",
        r.head,
        r.wire
    );
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("\r\ntrailer: grpc-status, grpc-message"),
        "{}",
        r.head
    );
    // A client that takes no trailers gets none.
    let r = raw(&w, addr, upload("").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["trailers"]["x-checksum"], "crc32c=1");
    assert_eq!(trailer_section(&r.wire), Vec::<&str>::new(), "{:?}", r.wire);

    // An HTTP/2 client's announced trailers reach the HTTP/1.1 backend too.
    let mut client = h2_to(&w, addr).await;
    let req = http::Request::post("https://a.example.com/trailers/upload")
        .header("te", "trailers")
        .header("trailer", "x-checksum, x-forwarded-for")
        .body(())
        .unwrap();
    let (seen, mut body) = h2_upload(
        &mut client,
        req,
        &[("x-checksum", "crc32c=1"), ("x-forwarded-for", "10.0.0.1")],
    )
    .await;
    assert_eq!(
        seen["trailers"],
        serde_json::json!({ "x-checksum": "crc32c=1" }),
        "{seen}"
    );
    let trailers = body.trailers().await.unwrap().expect("response trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert!(trailers.get("content-length").is_none(), "{trailers:?}");
    // Bodies that end in trailers, both ways, leave their upstream
    // connection reusable: hyper asks for nothing after a trailer section,
    // so waiting for the body's end closed each one (three dials here).
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 1);
}

/// Fields an HTTP/1.1 client's `Connection` names are hop-by-hop as
/// trailer fields too (RFC 9110 §7.6.1: a proxy removes the header or
/// trailer fields it names): `Connection: x-hop` with `Trailer: x-hop,
/// x-checksum` and a chunked body ending in both reaches an HTTP/1.1 and an
/// HTTP/2 backend with `x-checksum` alone, announced and sent. `Trailer`
/// was cut before the nominated fields went, so `x-hop` stayed announced,
/// and the trailers lost only fixed names: `x-hop: v` reached the backend.
#[tokio::test]
async fn trailer_fields_named_in_connection_do_not_pass() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let h2 = Backend::start("h2", &w.backend_pair, None).await;
    for (name, backend) in [("h1", &h1), ("h2", &h2)] {
        let (_p, addr) = serve(&w.scene.one_upstream_config(name, backend.addr, &[])).await;
        let upload = "POST /trailers/upload HTTP/1.1\r\nHost: a.example.com\r\n\
             Connection: x-hop, TE, close\r\nTE: trailers\r\n\
             Trailer: x-hop, x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nabcd\r\n0\r\nx-hop: v\r\nx-checksum: crc32c=1\r\n\r\n";
        let r = raw(&w, addr, upload.as_bytes()).await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let seen = r.json();
        assert_eq!(seen["body_bytes"], 4, "{name}: {seen}");
        assert_eq!(
            seen["trailers"],
            serde_json::json!({ "x-checksum": "crc32c=1" }),
            "{name}: {seen}"
        );
        if name == "h1" {
            assert_eq!(seen["headers"]["trailer"], "x-checksum", "{seen}");
        } else {
            let trailer = &seen["headers"]["trailer"];
            assert!(trailer.is_null() || trailer == "x-checksum", "{seen}");
        }
    }
}

/// A head naming thousands of fields in `Connection` and announcing
/// thousands in `Trailer`, in 96 fields (1 MiB heads allowed), is
/// answered: each announced name was looked for among every nominated one
/// (~10¹⁰ comparisons on the connection's task before routing: minutes),
/// then each `Trailer` field made a set of every nominated copy (~4·10⁷
/// inserts). Now linear in the head.
#[tokio::test]
async fn a_head_naming_thousands_in_connection_and_trailer_is_answered() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let cfg = w.scene.one_upstream_config("h1", h1.addr, &[]);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "    routes:",
        "    limits: { max_header_bytes: 1048576 }\n    routes:",
        1,
    );
    write(&cfg, &text);
    let (_p, addr) = serve(&cfg).await;
    let nominated = vec!["a"; 450_000].join(",");
    // And the announcement in many fields: each `Trailer` field once
    // made a set of every nominated name, copies included.
    let announced = vec!["b"; 20_000].join(",") + &"\r\nTrailer: b".repeat(95);
    let upload = format!(
        "POST /trailers/upload HTTP/1.1\r\nHost: a.example.com\r\n\
         Connection: {nominated}, close\r\nTrailer: {announced}\r\n\
         Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    );
    let r = raw(&w, addr, upload.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body_bytes"], 4);
}
