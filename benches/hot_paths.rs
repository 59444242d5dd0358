//! Criterion benchmarks of the hot paths: SNI resolution, header rewriting, config parse.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hotproxy::material::{CertInfo, Pair};
use hotproxy::proxy::forward::{RequestContext, rewrite_request_headers};
use hotproxy::tls::server::{ServedPair, SniResolver};
use rustls::sign::CertifiedKey;

/// One real key shared by every pair: SNI lookup cost does not depend on it.
fn pairs(n: usize) -> Vec<Pair> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bench.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let signing = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(der)
        .unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
    (0..n)
        .map(|i| Pair {
            key: certified.clone(),
            leaf: CertInfo {
                subject: String::new(),
                issuer: String::new(),
                sans: vec![],
                dns_names: vec![
                    format!("host{i}.example.com"),
                    format!("*.w{i}.example.com"),
                ],
                serial: String::new(),
                not_before: 0,
                not_after: 0,
                fingerprint_sha256: String::new(),
                is_ca: false,
            },
        })
        .collect()
}

fn sni(c: &mut Criterion) {
    let mut g = c.benchmark_group("sni_resolution");
    for n in [1usize, 100, 10_000] {
        let pairs = pairs(n);
        let served: Vec<ServedPair> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| ServedPair {
                entry: if i == 0 { "first" } else { "other" },
                pair: p,
                server_names: None,
            })
            .collect();
        let resolver = SniResolver::new(&served).unwrap();
        let exact = format!("host{}.example.com", n - 1);
        let wildcard = format!("a.w{}.example.com", n / 2);
        g.bench_with_input(BenchmarkId::new("exact", n), &exact, |b, name| {
            b.iter(|| black_box(resolver.resolve_name(Some(black_box(name)))))
        });
        g.bench_with_input(BenchmarkId::new("wildcard", n), &wildcard, |b, name| {
            b.iter(|| black_box(resolver.resolve_name(Some(black_box(name)))))
        });
        g.bench_with_input(
            BenchmarkId::new("unknown", n),
            "nope.example.org",
            |b, name| b.iter(|| black_box(resolver.resolve_name(Some(black_box(name))))),
        );
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let ctx = RequestContext {
        listener: "public".into(),
        client_addr: "10.0.0.1:5555".parse().unwrap(),
        client_cert: None,
        tls_sni: None,
    };
    let mut base = http::HeaderMap::new();
    base.insert("host", "app.example.com".parse().unwrap());
    base.insert("user-agent", "bench/1.0".parse().unwrap());
    base.insert("accept", "*/*".parse().unwrap());
    base.insert("connection", "keep-alive".parse().unwrap());
    c.bench_function("rewrite_request_headers", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                rewrite_request_headers(&mut h, &ctx, Some("app.example.com"), false, false);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn config(c: &mut Criterion) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml")).unwrap();
    let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"));
    c.bench_function("config_parse", |b| {
        b.iter(|| hotproxy::config::parse(black_box(&text), file).unwrap())
    });
}

criterion_group!(benches, sni, headers, config);
criterion_main!(benches);
