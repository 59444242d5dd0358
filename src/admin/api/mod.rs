//! The /api/v1 handlers (SPEC §4): catalogue CRUD, rotation, listener client auth.
//!
//! Reads come from the snapshots the reloader publishes; every mutation is a
//! closure run on the reloader thread (the single writer), so mutations are
//! serialized and each one either fully applies or changes nothing.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use super::AdminBody;
use super::auth::{Refusal, Tokens, check_host};
use super::paths;
use crate::config::{ClientAuthConfig, ClientAuthMode, EntryKind, EntrySource, EntrySpec};
use crate::material::catalogue::{Entry, EntryView, Origin};
use crate::material::store::Definition;
use crate::material::{Loaded, pem};
use crate::reload::{Handle, Reloader};

/// Request bodies larger than this are refused (a CA bundle is well below).
const MAX_BODY: usize = 1 << 20;

/// A JSON error or success, built on the reloader thread or here.
type Reply = Result<(StatusCode, Value, Option<String>), (StatusCode, Value)>;

/// Serve one /api/v1 request: Host/Origin, token and role first.
pub async fn serve(
    handle: &Handle,
    tokens: &Tokens,
    req: Request<Incoming>,
    local: SocketAddr,
) -> Response<AdminBody> {
    if let Err(r) = check_host(
        req.headers(),
        req.uri().authority().map(|a| a.as_str()),
        local,
    ) {
        return refusal(r);
    }
    let role = match tokens.authorize(req.headers(), req.method()) {
        Ok(role) => role,
        Err(r) => return refusal(r),
    };
    // HEAD is GET without the body (RFC 9110 §9.3.2): same routes, same
    // status and headers; `super::route` drops the body.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let path = req.uri().path().to_owned();
    let segments: Vec<String> = path
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let headers = req.headers().clone();
    // Validation persists nothing: not a change worth an audit line.
    let changes = method != Method::GET && segs != ["certs", "validate"];
    let reply = route(handle, &method, &segs, &headers, req).await;
    if changes && matches!(&reply, Ok((s, _, _)) if s.is_success()) {
        info!(method = %method, path = %path, role = ?role, "admin API change applied");
    }
    respond(reply)
}

async fn route(
    handle: &Handle,
    method: &Method,
    segs: &[&str],
    headers: &HeaderMap,
    req: Request<Incoming>,
) -> Reply {
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (method, segs) {
        (&Method::GET, ["certs"]) => {
            let entries = handle.shared.entries.load();
            Ok((
                StatusCode::OK,
                json!(entries.values().map(|v| &**v).collect::<Vec<_>>()),
                None,
            ))
        }
        (&Method::POST, ["certs"]) => {
            let def: Definition = body(req).await?;
            let Some(id) = def.id.clone() else {
                return Err(problem(StatusCode::BAD_REQUEST, "field id is required"));
            };
            let spec = def.into_spec(&id).map_err(bad_request)?;
            paths::check(&spec.source, &paths::roots(&handle.shared.config.load()))
                .map_err(bad_request)?;
            call(handle, move |r| create(r, spec)).await
        }
        (&Method::POST, ["certs", "validate"]) => {
            let def: Definition = body(req).await?;
            let id = def.id.clone().unwrap_or_else(|| "validate".into());
            let spec = def.into_spec(&id).map_err(bad_request)?;
            paths::check(&spec.source, &paths::roots(&handle.shared.config.load()))
                .map_err(bad_request)?;
            let loaded = load_off_workers(spec.clone()).await?;
            let mut entry = Entry::new(spec, Origin::Store);
            entry.current = Some(std::sync::Arc::new(loaded));
            let mut view = json!(EntryView::of(&entry, Vec::new()));
            strip_for_validate(&mut view);
            Ok((StatusCode::OK, view, None))
        }
        (&Method::GET, ["certs", id]) => {
            let entries = handle.shared.entries.load();
            let view = entries.get(*id).ok_or_else(|| no_entry(id))?;
            Ok((StatusCode::OK, json!(&**view), Some(view.etag.clone())))
        }
        (&Method::PUT, ["certs", id]) => {
            let def: Definition = body(req).await?;
            if def.id.as_deref().is_some_and(|b| b != *id) {
                return Err(bad_request(format!(
                    "ids are immutable: the body names {:?}, the path {id:?}",
                    def.id.unwrap_or_default()
                )));
            }
            let id = id.to_string();
            let spec = def.into_spec(&id).map_err(bad_request)?;
            call(handle, move |r| replace(r, spec, if_match.as_deref())).await
        }
        (&Method::DELETE, ["certs", id]) => {
            let id = id.to_string();
            call(handle, move |r| delete(r, &id, if_match.as_deref())).await
        }
        (&Method::POST, ["certs", id, "reload"]) => {
            let id = id.to_string();
            call(handle, move |r| reload_one(r, &id)).await
        }
        (&Method::POST, ["cacerts", "reload"]) => {
            call(handle, |r| {
                let ids = r
                    .entry_ids()
                    .into_iter()
                    .filter(|(_, kind)| *kind == EntryKind::CaBundle)
                    .map(|(id, _)| id)
                    .collect();
                reload_many(r, ids)
            })
            .await
        }
        (&Method::POST, ["rotate"]) => {
            call(handle, |r| {
                // Entries nothing uses are skipped: rotating them serves nobody.
                let ids = r
                    .entry_ids()
                    .into_iter()
                    .map(|(id, _)| id)
                    .filter(|id| !r.references_to(id).is_empty())
                    .collect();
                reload_many(r, ids)
            })
            .await
        }
        (&Method::GET, ["listeners"]) => {
            let listeners = handle.shared.listeners.load();
            let list: Vec<Value> = listeners
                .values()
                .map(|l| {
                    json!({
                        "name": l.name,
                        "bind": l.bind.to_string(),
                        "entries": l.entries,
                        "client_auth": {
                            "mode": l.client_auth.mode.as_str(),
                            "ca": l.client_auth.ca,
                            "allow": l.client_auth.allow.as_ref().map(|a| &a.rules),
                        },
                        "active_connections": l.live.active.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            Ok((StatusCode::OK, json!(list), None))
        }
        (&Method::GET, ["listeners", name, "cert"]) => {
            let listeners = handle.shared.listeners.load();
            let l = listeners.get(*name).ok_or_else(|| no_listener(name))?;
            let served = l.live.served.load();
            Ok((
                StatusCode::OK,
                json!({ "listener": l.name, "certs": served.iter().map(|s| &**s).collect::<Vec<_>>() }),
                None,
            ))
        }
        (&Method::POST, ["listeners", name, "rotate"]) => {
            let name = name.to_string();
            call(handle, move |r| {
                let ids = r
                    .listener_entries(&name)
                    .ok_or_else(|| no_listener(&name))?;
                let (status, body, _) = reload_many(r, ids)?;
                if body["failed"].as_array().is_some_and(|f| !f.is_empty()) {
                    let mut p = problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "listener {name}: new material is invalid; the previous material stays"
                        ),
                    );
                    p.1["entries"] = body["entries"].clone();
                    return Err(p);
                }
                Ok((
                    status,
                    json!({ "listener": name, "entries": body["entries"] }),
                    None,
                ))
            })
            .await
        }
        (&Method::GET, ["listeners", name, "client-auth"]) => {
            let name = name.to_string();
            call(handle, move |r| {
                client_auth_view(r, &name).map(|v| (StatusCode::OK, v, None))
            })
            .await
        }
        (&Method::PUT, ["listeners", name, "client-auth"]) => {
            let change: ClientAuthChange = body(req).await?;
            let name = name.to_string();
            call(handle, move |r| set_client_auth(r, &name, change)).await
        }
        (_, ["certs"]) => method_not_allowed("GET, HEAD, POST"),
        (_, ["listeners"]) => method_not_allowed("GET, HEAD"),
        (_, ["certs", "validate"] | ["cacerts", "reload"] | ["rotate"]) => {
            method_not_allowed("POST")
        }
        (_, ["certs", _]) => method_not_allowed("GET, HEAD, PUT, DELETE"),
        (_, ["certs", _, "reload"] | ["listeners", _, "rotate"]) => method_not_allowed("POST"),
        (_, ["listeners", _, "cert"]) => method_not_allowed("GET, HEAD"),
        (_, ["listeners", _, "client-auth"]) => method_not_allowed("GET, HEAD, PUT"),
        _ => not_found(),
    }
}

/// Read and parse an entry's files on tokio's blocking pool: never on a
/// worker that serves connections (a slow disk would stall them), never on
/// the reloader (rotations keep being served). Reads are bounded anyway
/// (regular files only, size-capped, non-blocking open).
async fn load_off_workers(spec: EntrySpec) -> Result<Loaded, (StatusCode, Value)> {
    tokio::task::spawn_blocking(move || pem::load(spec.kind, &spec.source))
        .await
        .map_err(|_| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the files failed",
            )
        })?
        .map_err(|e| bad_request(e.to_string()))
}

/// Run `f` on the reloader thread (the single writer).
async fn call(handle: &Handle, f: impl FnOnce(&mut Reloader) -> Reply + Send + 'static) -> Reply {
    handle.call(f).await.unwrap_or_else(|| {
        Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the proxy is shutting down",
        ))
    })
}

/// Read a JSON body of at most [`MAX_BODY`] bytes.
async fn body<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, (StatusCode, Value)> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        bad_request(format!(
            "invalid JSON body: {}",
            without_values(&e.to_string())
        ))
    })
}

/// serde_json quotes offending string values in its messages; a body can
/// carry a key, so keep the field names and drop the values.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn bad_request(message: impl Into<String>) -> (StatusCode, Value) {
    problem(StatusCode::BAD_REQUEST, message)
}

fn no_entry(id: &str) -> (StatusCode, Value) {
    problem(StatusCode::NOT_FOUND, format!("no entry {id:?}"))
}

fn no_listener(name: &str) -> (StatusCode, Value) {
    problem(StatusCode::NOT_FOUND, format!("no listener {name:?}"))
}

fn method_not_allowed(allow: &str) -> Reply {
    let mut p = problem(StatusCode::METHOD_NOT_ALLOWED, format!("allowed: {allow}"));
    p.1["allow"] = json!(allow);
    Err(p)
}

/// 412 unless `If-Match` (when given) names the entry's current ETag.
fn check_if_match(
    r: &Reloader,
    id: &str,
    if_match: Option<&str>,
) -> Result<EntryView, (StatusCode, Value)> {
    let view = r.entry_view(id).ok_or_else(|| no_entry(id))?;
    if let Some(want) = if_match
        && want.trim() != "*"
        && !want.split(',').any(|t| t.trim() == view.etag)
    {
        return Err(problem(
            StatusCode::PRECONDITION_FAILED,
            format!("entry {id} changed since that ETag was read; GET it again"),
        ));
    }
    Ok(view)
}

fn entry_reply(r: &Reloader, id: &str, status: StatusCode) -> Reply {
    let view = r.entry_view(id).ok_or_else(|| no_entry(id))?;
    let etag = view.etag.clone();
    Ok((status, json!(view), Some(etag)))
}

/// POST /certs: load, persist, then apply; a failure leaves store and
/// catalogue as they were.
fn create(r: &mut Reloader, spec: EntrySpec) -> Reply {
    let id = spec.id.clone();
    if r.entry_spec(&id).is_some() {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("entry {id} already exists"),
        ));
    }
    let Some(store) = r.store() else {
        return Err(bad_request(
            "no store is configured: entries created through the API must persist (add store: { path, key_file })",
        ));
    };
    pem::load(spec.kind, &spec.source).map_err(|e| bad_request(e.to_string()))?;
    let before = r.stored_entries();
    let mut after = before.clone();
    after.push(spec.clone());
    store.save(&after).map_err(store_failed)?;
    if let Err(e) = r.put_entry(spec, Origin::Store) {
        restore(r, &before);
        return Err(bad_request(e));
    }
    info!(entry = %id, "certificate entry created");
    entry_reply(r, &id, StatusCode::CREATED)
}

/// PUT /certs/{id}: stored entries get their definition replaced and
/// persisted; entries of the configuration file take new material only
/// (it stays until their files change again or they are rotated).
fn replace(r: &mut Reloader, spec: EntrySpec, if_match: Option<&str>) -> Reply {
    let id = spec.id.clone();
    check_if_match(r, &id, if_match)?;
    let (current, origin) = r
        .entry_spec(&id)
        .map(|(s, o)| (s.clone(), o))
        .ok_or_else(|| no_entry(&id))?;
    // New paths must be under store.file_roots; a configuration entry's
    // own paths (unchanged) are the operator's.
    if spec.source != current.source {
        paths::check(&spec.source, &paths::roots(r.config())).map_err(bad_request)?;
    }
    if current.kind != spec.kind {
        return Err(bad_request(format!(
            "entry {id} is a {}; its type cannot change to {}",
            current.kind.as_str(),
            spec.kind.as_str()
        )));
    }
    let loaded = pem::load(spec.kind, &spec.source).map_err(|e| bad_request(e.to_string()))?;
    match origin {
        Origin::Store => {
            let store = r.store().expect("stored entries exist only with a store");
            let before = r.stored_entries();
            let after: Vec<EntrySpec> = before
                .iter()
                .map(|s| if s.id == id { spec.clone() } else { s.clone() })
                .collect();
            store.save(&after).map_err(store_failed)?;
            if let Err(e) = r.put_entry(spec, Origin::Store) {
                restore(r, &before);
                return Err(bad_request(e));
            }
        }
        Origin::Config => {
            if !spec.source.is_inline() && spec.source != current.source {
                return Err(bad_request(format!(
                    "entry {id} is defined in the configuration file; change its paths there (the API can replace its material inline)"
                )));
            }
            r.offer(&id, loaded).map_err(bad_request)?;
            r.mark_from_api(&id);
        }
    }
    info!(entry = %id, "certificate entry replaced");
    entry_reply(r, &id, StatusCode::OK)
}

/// DELETE /certs/{id}: never touches files; refused while referenced.
fn delete(r: &mut Reloader, id: &str, if_match: Option<&str>) -> Reply {
    let view = check_if_match(r, id, if_match)?;
    if !view.referenced_by.is_empty() {
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is still referenced; change those first"),
        );
        p.1["references"] = json!(view.referenced_by);
        return Err(p);
    }
    if view.origin == Origin::Config {
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is defined in the configuration file; remove it there"),
        );
        p.1["references"] = json!([]);
        return Err(p);
    }
    let store = r.store().expect("stored entries exist only with a store");
    let after: Vec<EntrySpec> = r
        .stored_entries()
        .into_iter()
        .filter(|s| s.id != id)
        .collect();
    store.save(&after).map_err(store_failed)?;
    if let Err(refs) = r.remove_entry(id) {
        // Unreachable while the check above holds; keep the store truthful.
        restore(r, &r.stored_entries());
        let mut p = problem(
            StatusCode::CONFLICT,
            format!("entry {id} is still referenced"),
        );
        p.1["references"] = json!(refs);
        return Err(p);
    }
    info!(entry = %id, "certificate entry deleted (files on disk untouched)");
    Ok((StatusCode::OK, json!({ "id": id, "deleted": true }), None))
}

/// The store could not be written (a full disk, a read-only directory):
/// nothing was changed, and the operator needs to know beyond this caller.
fn store_failed(e: String) -> (StatusCode, Value) {
    tracing::warn!(error = %e, "cannot write the store; the change was not applied");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{e}; nothing was changed"),
    )
}

/// Put the store back as it was after a failed apply.
fn restore(r: &Reloader, entries: &[EntrySpec]) {
    if let Some(store) = r.store()
        && let Err(e) = store.save(entries)
    {
        tracing::error!(error = %e, "could not restore the store after a refused change");
    }
}

/// POST /certs/{id}/reload.
fn reload_one(r: &mut Reloader, id: &str) -> Reply {
    let (spec, _) = r.entry_spec(id).ok_or_else(|| no_entry(id))?;
    if spec.source.is_inline() {
        return Err(bad_request(format!(
            "entry {id} is inline: there is nothing on disk to re-read (PUT new material instead)"
        )));
    }
    match r.reload_entry(id) {
        Ok(changed) => {
            let (status, mut body, etag) = entry_reply(r, id, StatusCode::OK)?;
            body["changed"] = json!(changed);
            Ok((status, body, etag))
        }
        Err(e) => Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; the previous material stays"),
        )),
    }
}

/// Re-read file-backed `ids`; inline ones are skipped. Always 200 with
/// what changed and what failed (failures keep their old material).
fn reload_many(r: &mut Reloader, ids: Vec<String>) -> Reply {
    let mut entries = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        if r.entry_spec(&id).is_none_or(|(s, _)| s.source.is_inline()) {
            continue;
        }
        let result = r.reload_entry(&id);
        let fingerprint = r.entry_view(&id).and_then(|v| v.fingerprint_sha256);
        match result {
            Ok(changed) => entries.push(json!({
                "id": id, "result": if changed { "changed" } else { "unchanged" },
                "fingerprint_sha256": fingerprint,
            })),
            Err(e) => {
                entries.push(json!({
                    "id": id, "result": "failed", "error": e,
                    "fingerprint_sha256": fingerprint,
                }));
                failed.push(id);
            }
        }
    }
    Ok((
        StatusCode::OK,
        json!({ "entries": entries, "failed": failed }),
        None,
    ))
}

/// `{mode, ca, crl}` of a listener as it runs now.
fn client_auth_view(r: &Reloader, name: &str) -> Result<Value, (StatusCode, Value)> {
    let ca = r.client_auth(name).ok_or_else(|| no_listener(name))?;
    let crl: Vec<String> = ca
        .ca
        .as_deref()
        .and_then(|id| r.entry_spec(id))
        .map(|(spec, _)| match &spec.source {
            EntrySource::CaFiles { crl_files, .. } => {
                crl_files.iter().map(|p| p.display().to_string()).collect()
            }
            EntrySource::CaInline {
                crl_pem: Some(_), ..
            } => vec!["inline".into()],
            _ => Vec::new(),
        })
        .unwrap_or_default();
    let allow = ca.allow.as_ref().map(|a| a.rules.clone());
    Ok(json!({
        "listener": name,
        "mode": ca.mode.as_str(),
        "ca": ca.ca,
        "crl": crl,
        "allow": allow,
        "allow_expired_crl": ca.allow_expired_crl,
    }))
}

/// PUT body of /listeners/{name}/client-auth.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientAuthChange {
    mode: String,
    /// An entry id, `{"ref": id}`, or absent to keep the current CA.
    #[serde(default)]
    ca: Option<CaRef>,
    /// Absent keeps the listener's current setting.
    #[serde(default)]
    allow_expired_crl: Option<bool>,
    /// Absent: keep the current rules (dropped when the new mode does not
    /// verify); `null`: no rules; a list: these rules.
    #[serde(default, deserialize_with = "present")]
    allow: Option<Option<Vec<crate::identity::AllowRule>>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CaRef {
    Id(String),
    Ref {
        #[serde(rename = "ref")]
        id: String,
    },
}

fn set_client_auth(r: &mut Reloader, name: &str, change: ClientAuthChange) -> Reply {
    let current = r.client_auth(name).ok_or_else(|| no_listener(name))?;
    let mode = ClientAuthMode::parse(&change.mode).ok_or_else(|| {
        bad_request(format!(
            "mode {:?} is unknown: use none, request, require_any, verify_if_given or require_and_verify",
            change.mode
        ))
    })?;
    let ca = match change.ca {
        Some(CaRef::Id(id) | CaRef::Ref { id }) => {
            let (spec, _) = r
                .entry_spec(&id)
                .ok_or_else(|| bad_request(format!("ca: no entry {id:?}")))?;
            if spec.kind != EntryKind::CaBundle {
                return Err(bad_request(format!(
                    "ca: entry {id} is a {}, not a ca-bundle",
                    spec.kind.as_str()
                )));
            }
            Some(id)
        }
        None => current.ca,
    };
    if matches!(
        mode,
        ClientAuthMode::VerifyIfGiven | ClientAuthMode::RequireAndVerify
    ) && ca.is_none()
    {
        return Err(bad_request(format!(
            "mode {} verifies client certificates and needs a ca (a ca-bundle entry)",
            mode.as_str()
        )));
    }
    let allow = match change.allow {
        None if mode.verifies() => current.allow,
        None | Some(None) => None,
        Some(Some(rules)) if rules.is_empty() => {
            return Err(bad_request(
                "allow: an empty list would refuse every client; send null to remove the rules"
                    .to_owned(),
            ));
        }
        Some(Some(_)) if !mode.verifies() => {
            return Err(bad_request(format!(
                "allow rules need a verified identity: use mode verify_if_given or require_and_verify, not {}",
                mode.as_str()
            )));
        }
        Some(Some(rules)) => Some(std::sync::Arc::new(crate::identity::AllowList { rules })),
    };
    let allow_expired_crl = change
        .allow_expired_crl
        .unwrap_or(current.allow_expired_crl);
    r.set_client_auth(
        name,
        ClientAuthConfig {
            mode,
            ca,
            allow,
            allow_expired_crl,
        },
    )
    .map_err(bad_request)?;
    client_auth_view(r, name).map(|v| (StatusCode::OK, v, None))
}

/// Validation reports metadata only; bookkeeping fields mean nothing there.
fn strip_for_validate(view: &mut Value) {
    if let Some(m) = view.as_object_mut() {
        for k in [
            "origin",
            "last_reload",
            "referenced_by",
            "etag",
            "anonymous",
        ] {
            m.remove(k);
        }
        m.insert("valid".into(), json!(true));
    }
}

fn not_found() -> Reply {
    Err(problem(StatusCode::NOT_FOUND, "no such endpoint"))
}

/// `{"error": "<Status text>", "message": ...}`.
fn problem(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
    (
        status,
        json!({
            "error": status.canonical_reason().unwrap_or("Error"),
            "message": message.into(),
        }),
    )
}

fn refusal(r: Refusal) -> Response<AdminBody> {
    let mut resp = respond(Err(problem(r.status, r.message)));
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"hotproxy\""),
        );
    }
    resp
}

fn respond(reply: Reply) -> Response<AdminBody> {
    let (status, body, etag) = match reply {
        Ok(ok) => ok,
        Err((status, body)) => (status, body, None),
    };
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&body).expect("JSON values serialize"),
    )));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // RFC 9110 §15.5.6: a 405 names the allowed methods in `Allow`.
    if let Some(allow) = body["allow"]
        .as_str()
        .filter(|_| status == StatusCode::METHOD_NOT_ALLOWED)
        .and_then(|a| header::HeaderValue::from_str(a).ok())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    if let Some(tag) = etag.and_then(|t| header::HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// Path segments arrive percent-encoded (anonymous ids hold `[` and `]`).
/// Works on bytes: a `%` followed by anything but two hex digits (a
/// multi-byte character, the end) is kept as it is, never sliced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are decoded byte-wise: `%` before a multi-byte character, a
    /// trailing `%` or `%a` never panic (they once sliced inside a char).
    #[test]
    fn percent_decode_never_slices_a_char() {
        assert_eq!(percent_decode("%5Bx%5d"), "[x]");
        assert_eq!(percent_decode("%a\u{e9}"), "%a\u{e9}");
        assert_eq!(percent_decode("%\u{e9}"), "%\u{e9}");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    proptest::proptest! {
        /// Any path text decodes without a panic, and encoding every byte
        /// as `%XX` round-trips.
        #[test]
        fn percent_decode_any_text(s in proptest::prelude::any::<String>()) {
            let _ = percent_decode(&s);
            let encoded: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
            proptest::prop_assert_eq!(percent_decode(&encoded), s);
        }
    }
}
