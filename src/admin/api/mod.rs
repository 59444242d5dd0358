//! The /api/v1 handlers (SPEC §4): catalogue CRUD, rotation, listener client auth.
//!
//! Reads come from the snapshots the reloader publishes; every mutation is a
//! closure run on the reloader thread (the single writer), so mutations are
//! serialized and each one either fully applies or changes nothing.

mod certs;
mod client_auth;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::info;

use super::AdminBody;
use super::auth::{Refusal, Tokens, check_host, token_refused};
use super::paths;
use super::{BODY_READ_TIMEOUT, MAX_BODY, declares_too_much};
use crate::config::{EntryKind, EntrySpec};
use crate::material::catalogue::{Entry, EntryView, Origin};
use crate::material::store::Definition;
use crate::material::{Loaded, pem};
use crate::reload::{Handle, Reloader};
use certs::{create, delete, reload_many, reload_one, replace, strip_for_validate};
use client_auth::{ClientAuthChange, client_auth_view, set_client_auth};

/// A JSON error or success, built on the reloader thread or here.
pub(super) type Reply = Result<(StatusCode, Value, Option<String>), (StatusCode, Value)>;

/// Serve one /api/v1 request: Host/Origin (unless a bearer token is
/// carried), token and role first, then refused while the process shuts
/// down (`shutdown`).
pub async fn serve(
    handle: &Handle,
    tokens: &Tokens,
    shutdown: &watch::Receiver<bool>,
    req: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Response<AdminBody> {
    if let Err(r) = check_host(
        req.headers(),
        req.uri().authority().map(|a| a.as_str()),
        local,
    ) {
        // A bearer token is served through any name (SPEC §4): a port
        // forward's Host names its local port. `authorize` judges it.
        let waived = r.status == StatusCode::FORBIDDEN && tokens.token_decides(req.headers());
        if !waived {
            return refusal(r);
        }
    }
    let role = match tokens.authorize(req.headers(), req.method()) {
        Ok(role) => role,
        Err(r) => {
            if let Some(reason) = r.token {
                token_refused(peer, req.uri().path(), reason);
            }
            return refusal(r);
        }
    };
    // SPEC §4: a call made while the process shuts down is not carried
    // out. The admin listener still answers the few requests whose bytes
    // were waiting at SIGTERM, or were in flight then: a change among them
    // was applied during the drain (a client-auth PUT closing draining
    // connections), though nothing else is (§1). Checked again once a
    // body is read ([`body`]), once a validation's turn comes
    // ([`load_off_workers`]) and where a change is made ([`call`]), for
    // a call whose body came after the signal or that waited until then.
    if let Err(refused) = not_shutting_down(shutdown) {
        return respond(Err(refused));
    }
    // Before routing: the routes that read no body would act first.
    if declares_too_much(req.headers()) {
        return respond(Err(too_large()));
    }
    // HEAD is GET without the body (RFC 9110 §9.3.2): same routes, same
    // status and headers; `super::route` drops the body.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let path = req.uri().path().to_owned();
    // Once: trimming every repeat made `/api/v1/api/v1/certs/x` name `x`.
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return respond(not_found());
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let headers = req.headers().clone();
    // Validation persists nothing: not a change worth an audit line. Only
    // the POST is validation: a PUT or DELETE of an entry whose id is
    // `validate` is a change like any other.
    let validation = method == Method::POST && segs == ["certs", "validate"];
    let changes = method != Method::GET && !validation;
    let reply = route(handle, shutdown, &method, &segs, &headers, req).await;
    if changes && applied(&reply) {
        // The path is the client's text: a `&str` value, quoted in the
        // text log format, so it cannot pose as another field.
        info!(method = method.as_str(), path = path.as_str(), role = ?role, "admin API change applied");
    }
    respond(reply)
}

/// Whether `reply` answers a request that changed something: any 2xx, or
/// a refusal whose `entries` hold one `changed` (a listener rotation
/// refused after applying a pair: that pair is live, so it is audited).
fn applied(reply: &Reply) -> bool {
    match reply {
        Ok((status, _, _)) => status.is_success(),
        Err((_, body)) => body["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["result"] == "changed")),
    }
}

async fn route(
    handle: &Handle,
    shutdown: &watch::Receiver<bool>,
    method: &Method,
    segs: &[&str],
    headers: &HeaderMap,
    req: Request<Incoming>,
) -> Reply {
    // A value that is not text matches no ETag (412), as RFC 9110 §13.1.1
    // has it for any tag that is not current: never no condition at all.
    // `If-Match` is a list, and a list may come on several lines (RFC 9110
    // §5.3): all of them count, not the first alone.
    let mut if_match: Option<String> = None;
    for v in headers.get_all(header::IF_MATCH) {
        let tags = if_match.get_or_insert_with(String::new);
        if !tags.is_empty() {
            tags.push_str(", ");
        }
        tags.push_str(v.to_str().unwrap_or("\u{0}"));
    }
    match (method, segs) {
        (&Method::GET, ["certs"]) => {
            let entries = handle.shared.entry_views();
            Ok((
                StatusCode::OK,
                json!(entries.values().map(|v| &**v).collect::<Vec<_>>()),
                None,
            ))
        }
        (&Method::POST, ["certs"]) => {
            let def: Definition = body(req, shutdown).await?;
            let Some(id) = def.id.clone() else {
                return Err(problem(StatusCode::BAD_REQUEST, "field id is required"));
            };
            let spec = def.into_spec(&id).map_err(bad_request)?;
            // Refused here without waiting for the reloader; `create`
            // checks again against the roots in force when it runs.
            paths::check(&spec.source, &paths::roots(&handle.shared.config.load()))
                .map_err(bad_request)?;
            call(handle, move |r| create(r, spec)).await
        }
        (&Method::POST, ["certs", "validate"]) => {
            let def: Definition = body(req, shutdown).await?;
            let id = def.id.clone().unwrap_or_else(|| "validate".into());
            let spec = def.into_spec(&id).map_err(bad_request)?;
            validate(handle, shutdown, spec).await
        }
        (&Method::GET, ["certs", id]) => {
            let entries = handle.shared.entry_views();
            let view = entries.get(*id).ok_or_else(|| no_entry(id))?;
            Ok((StatusCode::OK, json!(&**view), Some(view.etag.clone())))
        }
        (&Method::PUT, ["certs", id]) => {
            // Looked up first: an unknown id is 404 whatever its name, and
            // a known one is never judged by the rule for new ids. `replace`
            // looks again on the reloader, in case it went meanwhile.
            if !handle.shared.entry_views().contains_key(*id) {
                return Err(no_entry(id));
            }
            let def: Definition = body(req, shutdown).await?;
            if def.id.as_deref().is_some_and(|b| b != *id) {
                return Err(bad_request(
                    "id: not the id in the path; ids are immutable (leave id out of a PUT)",
                ));
            }
            let id = id.to_string();
            let spec = def.into_existing_spec(&id).map_err(bad_request)?;
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
                // All or nothing (SPEC §4): every pair is read, once,
                // before any is applied, so one bad pair leaves the others
                // as they were too; the answer then names the bad ones.
                let results = r.rotate(&ids);
                // A pair not read for want of descriptors or memory is
                // hotproxy's shortage, not invalid material (SPEC §4).
                let short: Vec<String> = results
                    .iter()
                    .filter(|(id, res)| res.is_err() && r.is_short(id))
                    .filter_map(|(_, res)| res.clone().err())
                    .collect();
                let body = certs::outcomes(r, results);
                if !short.is_empty() {
                    let mut p = short_of_resources(&format!(
                        "listener {name}: {}; no pair changed",
                        short.join("; ")
                    ));
                    p.1["entries"] = body["entries"].clone();
                    return Err(p);
                }
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
                    StatusCode::OK,
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
            let change: ClientAuthChange = body(req, shutdown).await?;
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

/// POST /certs/validate of `spec`: its files read and parsed as a create
/// would, the entry shown as it would be, nothing kept. Refused here, before
/// waiting for its turn, when a path is outside the roots published now;
/// [`load_off_workers`] checks again right before it reads the files.
async fn validate(handle: &Handle, shutdown: &watch::Receiver<bool>, spec: EntrySpec) -> Reply {
    paths::check(&spec.source, &paths::roots(&handle.shared.config.load())).map_err(bad_request)?;
    let loaded = load_off_workers(handle, spec.clone(), shutdown).await?;
    let mut entry = Entry::new(spec, Origin::Store);
    entry.current = Some(std::sync::Arc::new(loaded));
    let mut view = json!(EntryView::of(&entry, Vec::new()));
    strip_for_validate(&mut view);
    Ok((StatusCode::OK, view, None))
}

/// One validation's files read at a time ([`load_off_workers`]).
static TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Read and parse an entry's files on tokio's blocking pool: never on a
/// worker that serves connections (a slow disk would stall them), never on
/// the reloader (rotations keep being served). Reads are bounded anyway
/// (regular files only, size-capped, non-blocking open). One at a time:
/// each may hold 8 MiB of files and their parse (a 1 MB CRL parses to
/// several), so concurrent calls multiplied the process's memory (64 of
/// them passed 1 GB) and took every core from the workers. A call whose
/// turn comes once shutdown has begun reads nothing (SPEC §4), nor does
/// one whose files the roots in force then forbid.
async fn load_off_workers(
    handle: &Handle,
    spec: EntrySpec,
    shutdown: &watch::Receiver<bool>,
) -> Result<Loaded, (StatusCode, Value)> {
    // Held until the blocking read ends, even if this caller goes away.
    let turn = TURN.acquire().await.expect("semaphore never closed");
    // Queued behind another validation when SIGTERM came: released
    // unused, rather than reading up to 8 MiB during the drain.
    not_shutting_down(shutdown)?;
    let shared = handle.shared.clone();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        // The roots bound what the API names when it is acted on (SPEC
        // §4): a reload that narrowed them while this call waited its
        // turn would otherwise have files opened and parsed that the
        // roots now forbid, the answer telling whether they exist and
        // what they hold. Checked here, right before the files are
        // opened, against the roots published now: checked on the
        // worker, a reload in the wait for a blocking thread got past it.
        paths::check(&spec.source, &paths::roots(&shared.config.load())).map_err(bad_request)?;
        pem::load(spec.kind, &spec.source).map_err(load_refused)
    })
    .await
    .map_err(|_| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the files failed",
        )
    })?
}

/// Run `f` on the reloader thread (the single writer), unless shutdown
/// has begun by then: judged there, where the change would be made, so a
/// call whose body came after SIGTERM, or that waited its turn behind
/// another until then, changes nothing either.
async fn call(handle: &Handle, f: impl FnOnce(&mut Reloader) -> Reply + Send + 'static) -> Reply {
    handle
        .call(move |r| (!r.shutting_down()).then(|| f(r)))
        .await
        .flatten()
        .unwrap_or_else(|| Err(shutting_down()))
}

/// `Err` with SPEC §4's 503 once shutdown has begun: a call that gets
/// this far then is not carried out, a read included.
fn not_shutting_down(shutdown: &watch::Receiver<bool>) -> Result<(), (StatusCode, Value)> {
    if *shutdown.borrow() {
        return Err(shutting_down());
    }
    Ok(())
}

/// SPEC §4's answer to any call made once shutdown has begun.
fn shutting_down() -> (StatusCode, Value) {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the proxy is shutting down",
    )
}

/// Read a JSON body of at most [`MAX_BODY`] bytes, all of it within
/// [`BODY_READ_TIMEOUT`]: a client that announces a body and sends none
/// must not hold one of the admin listener's few connections for ever.
/// A body that came once shutdown had begun is not looked at: its call
/// gets the 503 (SPEC §4), whatever the body, and nothing is done with it
/// (a validation read and parsed the files it names during the drain).
async fn body<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
    shutdown: &watch::Receiver<bool>,
) -> Result<T, (StatusCode, Value)> {
    let read = Limited::new(req.into_body(), MAX_BODY).collect();
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read).await;
    not_shutting_down(shutdown)?;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => return Err(bad_request("the request body could not be read")),
        Err(_) => {
            return Err(problem(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    // serde's derived structs also take an array (the fields by position):
    // `["none"]` must not pass for `{"mode": "none"}`. JSON's whitespace
    // is these four bytes (RFC 8259 §2).
    if bytes.iter().find(|b| !b" \t\r\n".contains(b)) != Some(&b'{') {
        return Err(bad_request(
            "invalid JSON body: it must be a JSON object ({\"field\": value, ...})",
        ));
    }
    parse_json(&bytes).map_err(bad_request)
}

/// Parse a whole JSON body into `T`. The error names the field's path
/// (`allow[1].cn`): serde's own words say what was wrong, not where, and a
/// body holds lists of rules. Values are never repeated ([`without_values`]).
fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let message = e.inner().to_string();
        let inner = without_values(&message);
        match error_path(e.path(), &message).as_str() {
            // The body itself: a missing field or a syntax error, whose
            // words already say what.
            "." => format!("invalid JSON body: {inner}"),
            path if name_like(path) => format!("invalid JSON body at {path}: {inner}"),
            _ => format!("invalid JSON body at …: {inner}"),
        }
    })?;
    // Trailing bytes after the object, as `serde_json::from_slice` refuses.
    de.end()
        .map_err(|e| format!("invalid JSON body: {}", without_values(&e.to_string())))?;
    Ok(parsed)
}

/// serde_json quotes offending string values in its messages; a body can
/// carry a key, so keep the field names and drop the values. serde writes
/// a value in Debug form, so inside it `\"` is a quote of the value (a
/// JSON-encoded PEM is full of them) and `\\` a backslash: neither ends it.
/// Other values are in backticks (``integer `5` ``): a backticked token is
/// shown only where serde names a field of its own (``missing field `id` ``,
/// ``duplicate field `id` ``, the list after `expected`). An unknown field's
/// or variant's name is the body's own text, which may hold backticks
/// itself (ending serde's quotes early): never shown, cut up to serde's
/// last words after it.
fn without_values(message: &str) -> String {
    for lead in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = message.strip_prefix(lead) {
            let end = ["`, expected ", "`, there are no "]
                .iter()
                .filter_map(|m| rest.rfind(m))
                .max();
            return match end {
                Some(end) => format!("{lead}…`{}", backticked_names(&rest[end + 1..])),
                None => format!("{lead}…`"),
            };
        }
    }
    backticked_names(message)
}

/// [`without_values`] past an unknown name: values dropped, serde's own
/// field names kept.
fn backticked_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if quoted && c == '\\' {
            chars.next();
        } else if c == '`' && !quoted {
            let name: String = chars.by_ref().take_while(|&c| c != '`').collect();
            let serdes = out.ends_with("missing field ")
                || out.ends_with("duplicate field ")
                || out.contains("expected");
            out.push('`');
            out.push_str(if serdes && name_like(&name) {
                &name
            } else {
                "…"
            });
            out.push('`');
        } else if c == '"' {
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

/// The path of a parse error as shown: for an unknown field, the object
/// holding it (the key is the body's text, not a field's name).
fn error_path(path: &serde_path_to_error::Path, message: &str) -> String {
    let segments: Vec<_> = path.iter().collect();
    let unknown = message.strip_prefix("unknown field `").is_some_and(|rest| {
        segments
            .last()
            .is_some_and(|s| rest.starts_with(&format!("{s}`")))
    });
    let kept = if unknown {
        &segments[..segments.len() - 1]
    } else {
        &segments[..]
    };
    if kept.is_empty() {
        return ".".to_owned();
    }
    let mut shown = String::new();
    for (i, segment) in kept.iter().enumerate() {
        if i > 0 && !matches!(segment, serde_path_to_error::Segment::Seq { .. }) {
            shown.push('.');
        }
        shown.push_str(&segment.to_string());
    }
    shown
}

/// A field name or path a message may repeat: short, of the characters
/// hotproxy's own field names and paths are made of.
fn name_like(text: &str) -> bool {
    text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b))
}

fn too_large() -> (StatusCode, Value) {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY} bytes"),
    )
}

/// What `Retry-After` a [`short_of_resources`] answer carries, in
/// seconds: the reloader reads a short entry again within 2 s.
const SHORT_RETRY_AFTER: u64 = 1;

/// A load's refusal: `400` for the files, or [`short_of_resources`]'s
/// `503` when hotproxy was out of descriptors or memory to read them.
pub(super) fn load_refused(e: pem::MaterialError) -> (StatusCode, Value) {
    match e.is_out_of_resources() {
        true => short_of_resources(&e.to_string()),
        false => bad_request(e.to_string()),
    }
}

/// SPEC §4's `503` with `Retry-After` for a call whose files hotproxy
/// could not read for want of file descriptors or memory (`why` names
/// the file and the errno): its own shortage, which says nothing of the
/// caller's files; nothing was changed.
pub(super) fn short_of_resources(why: &str) -> (StatusCode, Value) {
    let mut p = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}; nothing was changed, try again later"),
    );
    p.1["retry_after"] = json!(SHORT_RETRY_AFTER);
    p
}

pub(super) fn bad_request(message: impl Into<String>) -> (StatusCode, Value) {
    problem(StatusCode::BAD_REQUEST, message)
}

pub(super) fn no_entry(id: &str) -> (StatusCode, Value) {
    problem(StatusCode::NOT_FOUND, format!("no entry {id:?}"))
}

pub(super) fn no_listener(name: &str) -> (StatusCode, Value) {
    problem(StatusCode::NOT_FOUND, format!("no listener {name:?}"))
}

pub(super) fn method_not_allowed(allow: &str) -> Reply {
    let mut p = problem(StatusCode::METHOD_NOT_ALLOWED, format!("allowed: {allow}"));
    p.1["allow"] = json!(allow);
    Err(p)
}

fn not_found() -> Reply {
    Err(problem(StatusCode::NOT_FOUND, "no such endpoint"))
}

/// `{"error": "<Status text>", "message": ...}`.
pub(super) fn problem(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
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
    // RFC 9110 §10.2.3: a 503 for hotproxy's own shortage says when to
    // try again.
    if let Some(after) = body["retry_after"]
        .as_u64()
        .filter(|_| status == StatusCode::SERVICE_UNAVAILABLE)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(after));
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

    /// A parse error names where (`allow[1].cn`), never the value; bytes
    /// after the object are refused as before.
    #[test]
    fn parse_errors_name_the_path_not_the_value() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            #[serde(default)]
            list: Vec<bool>,
        }
        let e = parse_json::<Body>(br#"{"name": "n", "list": [true, "hidden"]}"#).unwrap_err();
        assert!(e.starts_with("invalid JSON body at list[1]: "), "{e}");
        assert!(!e.contains("hidden"), "{e}");
        // serde writes the value in Debug form: a `\"` inside it does not
        // end it, and a `\\` before the closing `"` does not keep it open.
        for value in [r#""x\"TAIL""#, r#""x\\\"TAIL""#, r#""TAIL\\""#] {
            let body = format!(r#"{{"name": "n", "list": [{value}]}}"#);
            let e = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert!(e.starts_with("invalid JSON body at list[0]: "), "{e}");
            assert!(!e.contains("TAIL"), "{value}: {e}");
            assert!(e.contains("expected a boolean"), "{value}: {e}");
        }
        // A key is the body's, too: an unknown one is not repeated, a PEM
        // sent as a key (behind a backtick too) nor a plain name (a token
        // is one), in the message or its path; the fields taken are.
        // The marker is put together here, so that no file holds a key's.
        let pem_as_key = format!(
            r#"{{"name": "n", "-----BEGIN {}-----\nMIIEvQ": 1}}"#,
            "PRIVATE KEY"
        );
        let e = parse_json::<Body>(pem_as_key.as_bytes()).unwrap_err();
        assert!(!e.contains("MIIEvQ") && !e.contains("BEGIN"), "{e}");
        assert!(e.contains("unknown field `…`, expected"), "{e}");
        let backticked = format!(
            r#"{{"name": "n", "x`-----BEGIN {}-----MIIEvQ": 1}}"#,
            "PRIVATE KEY"
        );
        let e = parse_json::<Body>(backticked.as_bytes()).unwrap_err();
        assert!(!e.contains("MIIEvQ") && !e.contains("BEGIN"), "{e}");
        let e = parse_json::<Body>(br#"{"name": "n", "colour": 1}"#).unwrap_err();
        assert!(
            e.starts_with("invalid JSON body: unknown field `…`, expected `name` or `list`"),
            "{e}"
        );
        // Numbers are values as strings are.
        let e = parse_json::<Body>(br#"{"name": 12345}"#).unwrap_err();
        assert!(
            e.starts_with(
                "invalid JSON body at name: invalid type: integer `…`, expected a string"
            ),
            "{e}"
        );
        let e = parse_json::<Body>(br#"{"list": []}"#).unwrap_err();
        assert!(
            e.starts_with("invalid JSON body: missing field `name`"),
            "{e}"
        );
        let e = parse_json::<Body>(br#"{"name": "n"} {}"#).unwrap_err();
        assert!(e.contains("trailing characters"), "{e}");
        assert_eq!(parse_json::<Body>(br#"{"name": "n"}"#).unwrap().name, "n");
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
