//! hotproxy: a TLS reverse proxy that serves new certificates the moment they land on disk.
//!
//! # Layout
//!
//! - `config`: the checked configuration types; `load`/`read`/`parse` (file -> `Config`).
//!   - `upstream`: an upstream's checked types (servers, TLS, timeouts, pool
//!     limits, `http2_keepalive`, balancing, health).
//!   - `raw`: the YAML as written (serde structs, unknown keys refused): where a
//!     field is parsed.
//!   - `resolve`: raw -> checked, each problem with its location; shared helpers
//!     (paths, durations, addresses) and runtime, admin, store, watch.
//!     - `entry`: `certs:`, `ref:`s, direct file fields as anonymous entries.
//!     - `listener`: bind, TLS (pairs, client auth, ALPN, min version), routes, limits.
//!     - `front`: PROXY protocol sources, trusted proxies, `allow_from`, response
//!       headers, the HTTPS redirect.
//!     - `hosts`: route hosts, path prefixes and `server_names` as the router and
//!       SNI compare them; routes an earlier route covering their host shadows
//!       (refused) or takes part of (warned about).
//!     - `upstream`: server URLs, upstream TLS, timeouts, pool size and idle
//!       time, `http2_keepalive`, health.
//!     - `binds`: listening addresses that overlap on one port (`0.0.0.0` and
//!       `[::]` included), refused before a bind would fail.
//!   - `duration`: `250ms`, `1m30s`, ...; `env`: `${NAME}` expansion.
//!   - `tests`: the file read, parsed and resolved as a whole (FIFOs, syntax,
//!     aliases, defaults); the `MINIMAL` configuration resolve's tests start from.
//!   - `crl_files`: a ca-bundle's CRL file list, bounded and each file once (file and API).
//!   - `listing`: problems listed to an operator, at most 100 and a count of the rest.
//!   - `withhold`: what a problem's message may show: no pasted PEM, multi-line or
//!     `${ENV}` value, at most 300 bytes.
//!   - `bare`: a withheld value a message shows bare, cut or in a quoted piece
//!     replaced, outside the labels already there; a short `${ENV}` value where
//!     it stands as a token.
//!   - `block_scalar`: whether a text value was written as a YAML block scalar
//!     (`|`, `>`: a pasted key or token), read back from the file's text.
//!   - `tree`: the YAML as a tree with lines, read into `raw` recording every
//!     unknown key, wrong type and missing field (check lists them all).
//!     - `read`: the deserializer over the tree that records a problem and keeps going
//!       (a required field, once found missing, filled in wherever else it is).
//!     - `near`: an unknown key's message: the keys allowed, the one likely meant.
//!     - `prepare`: the tree before it is read: keys over 256 bytes refused,
//!       `${NAME}` expanded, pasted values found, each by node for `read` to place;
//!       a key as paths and messages show it (escaped, cut, or withheld).
//!     - `tags`: a YAML tag the parser cannot read its node with (`!!int` on an
//!       address): blanked, parsed again, put back on the node for `read` to refuse;
//!       a tag on a merge value (`<<: !custom {...}`), which the parser drops.
//! - `yaml_hint`: YAML syntax errors in an operator's words (indentation slips).
//! - `secret`: a string type that never prints (keys, tokens).
//! - `material`: TLS material.
//!   - `pem`: read + parse + validate an entry's files (consistent re-read, key match).
//!   - `error`: why material did not load (`MaterialError`: the file's, or hotproxy's
//!     own shortage), and which step of a writer's work a passing problem is (`Step`).
//!   - `bundle`: a CA bundle's certificates (each a usable trust anchor) and CRLs, counted per file;
//!     its CRLs chosen again once one dated in the future is issued.
//!   - `crls`: a bundle's CRLs as webpki is given them: of an issuer's, the newest, newest first;
//!     the bundle's CA certificates they revoke (no trust anchors); those rolled back to older ones;
//!     its unit tests in `crls/tests.rs`.
//!   - `der`: DER read by hand: a signature checked as webpki checks it (a leaf's against its issuer), Must-Staple.
//!   - `keys`: a private key's kind and size, named when hotproxy cannot sign with it.
//!   - `info`: certificate metadata (subject, issuer, SANs, validity, fingerprint).
//!   - `dn`: distinguished names as ASCII text (ours, and OpenSSL's RFC 2253 form that nginx and Envoy send), values escaped.
//!     - `short_names`: OpenSSL's names for DN attribute types.
//!   - `catalogue`: entries by id, live material, last reload result, references.
//!   - `store`: API-created entries persisted encrypted (AES-256-GCM), atomic
//!     writes; the request/stored entry definition; a read-only preview for `check`.
//! - `tls`: rustls configurations built from material.
//!   - `server`: listener `ServerConfig` (SNI resolver, client-auth modes); its
//!     unit tests in `server/tests.rs`.
//!   - `accept`: the listener handshake: the ClientHello read first, an SNI miss counted once, then the config.
//!   - `session_cache`: a listener's session expiry (12 hours from the full
//!     handshake): its TLS 1.2 session-ID cache and its ticketer's wrapper, and
//!     (`session_cache/retry.rs`) one handshake's own ticketer after a
//!     HelloRetryRequest; its tests in `session_cache/tests.rs` and
//!     `session_cache/tests/tickets.rs`.
//!   - `verifiers`: the client verifiers a client-auth mode builds: webpki's against a CA
//!     bundle, or any certificate.
//!   - `full_crl`: an issuer's full CRL read on webpki's path beside a newer scoped CRL.
//!   - `per_name`: client auth per certificate entry: a config per entry, chosen by SNI.
//!   - `client`: upstream `ClientConfig` (CA bundle or system roots, client pair).
//!   - `names`: `verify_names` (DNS, URI, `spiffe://td/**`) and their verifier.
//!   - `provider`: the crypto provider every config is built with (aws-lc-rs,
//!     AES-128-GCM suites first).
//!   - `sent`: a TLS stream's socket counting what is written to it, the progress
//!     of a flush that waits (the send timeouts').
//! - `watch`: directory watches + stat poll + debounce -> "subject X may have changed";
//!   the public `Watcher` and `Subject`. One watcher per process, the
//!   reloader's: the configuration file, the entries' files, the admin token files.
//!   - `events`: which filesystem events matter, by kind and by path: notify's
//!     callback drops those for files no chain holds before they wake the thread.
//!   - `state`: the watcher thread's state machine: events, debounce, poll
//!     scheduling, re-arming, reporting due subjects (`fire_due`); its tests
//!     in `state/tests.rs`.
//!     - `placed`: chains a watch came too late for (a directory gone, or a
//!       name waited for come, before it was placed): walked again.
//!   - `stat`: a path's symlink chain, link by link, and each link's stat signature.
//! - `reload`: the single writer: entry and config changes, snapshot rebuilds, retries.
//!   - `mod`: the reloader thread, its `Command`s, the `Handle`, the published
//!     views (`Shared`), `start`, the run loop and retry scheduling.
//!   - `entry`: one entry's reload happens here: re-read, offer, refuse, retry
//!     with back-off; its logs and metrics.
//!   - `warnings`: what material taken into service warns about: expired, not yet
//!     valid, rolled back (a certificate expiring earlier, an older CRL), its notes.
//!   - `apply`: a config field is applied here: config reload and apply,
//!     listener and upstream start/stop, runtime client auth.
//!   - `watching`: which files the watcher watches for what: the configuration,
//!     each entry's files, the admin token files.
//!   - `config_file`: when the configuration file may be read (still for a moment,
//!     not changed by a writer during the read, naming entry files that load);
//!     what a configuration reload did (`ConfigOutcome`).
//!   - `shortage`: reads that found hotproxy out of file descriptors or memory
//!     (EMFILE, ENFILE, ENOMEM): said as its own shortage, read again with
//!     back-off, nothing of the files judged or counted.
//!   - `snapshot`: listener and upstream TLS snapshots and the keys of their inputs.
//!   - `keep`: names a renewal moves between a listener's entries, kept with the
//!     entry whose client_auth they had (added, dropped, answered by resolution).
//!   - `rotation`: what `max_connection_lifetime` counts as a rotation: name by
//!     name, a certificate no longer served, a client CA certificate no longer trusted.
//!   - `changes`: what a config reload changed, for the line that confirms it.
//!   - `handover`: the socket a new listener serves on: its own kept, one a
//!     running listener gives up (a rename, a swap), bound anew, or beside an
//!     overlapping one; running listeners indexed by address, and the new ones by
//!     name and address (the overrides set through the API kept or renamed), once
//!     per reload.
//!   - `rebind`: a new address bound, listening only once nothing refuses the reload;
//!     a new address bound beside an overlapping
//!     one a listener gives up; a listener stopped, its socket handed over or given up.
//!   - `api`: the catalogue queries and mutations the admin API runs.
//!   - `tests`: the reloader's state driven by calls on real files and sockets, its
//!     thread not started (a CA bundle's CRLs chosen again, a listener stopped).
//!     - `open_mtls`: open mTLS connections across CRL changes: what they keep
//!       of the snapshot they shook hands under, how often their chains are verified.
//!     - `refused_ports`: reloads refused after their new addresses were planned:
//!       no new port listens meanwhile, no access log file is created.
//! - `proxy`: serving.
//!   - `listener`: accept loop, limits, TLS handshake, hyper server (h1 or h2, as ALPN agreed).
//!     - `settings`: a listener's limits and the hyper h1/h2 server builders made from them.
//!     - `begun`: an HTTP/1.1 request's id and line begun as hyper hands it over, before its
//!       future first runs: logged and counted `499` if hyper drops that future unpolled (a
//!       FIN right behind the request); an HTTP/2 request's in its future, on its stream's task
//!       (begun and logged `499` if the runtime drops that task unpolled at exit).
//!     - `handshake`: the TLS snapshot new connections handshake with (one value,
//!       swapped as one) and the server pairs it serves.
//!     - `serve`: the accept loop (`max_connections` taken before accept), the `Slot`
//!       each connection holds, and a socket given up kept from new connections (a SYN
//!       filter), its queue taken before it closes, then served
//!       (each by the listener bound beside it on the address it was queued for, if any).
//!     - `unanswered`: a connection closed right after its TLS handshake, none of its
//!       HTTP read (its listener removed during it): HTTP/2's preface and `GOAWAY`
//!       first, then a lingering close (no reset).
//!   - `conn`: a connection's activity: head/idle timing; its tests in
//!     `conn/tests.rs`; `conn/ends.rs` walks the bytes read for where a head ends.
//!     - `driver`: runs one hyper connection to its end: its idle and header-read
//!       deadlines, the graceful close at shutdown, a listener's removal or its
//!       lifetime's end, and the cut after the grace; its tests, on real TLS
//!       connections over loopback, in `conn/driver/tests.rs`, those on an
//!       HTTP/2 connection whose socket's send buffer is full in
//!       `conn/driver/unsent_tests.rs`, the one whose socket every read
//!       tries, as if always found readable, in `conn/driver/readable_tests.rs`,
//!       and those on a request the look's own poll begins in
//!       `conn/driver/look_tests.rs`.
//!     - `frames`: HTTP/2 frames walked as they are read, for a header block begun
//!       and not ended (a request part way in, closed at once at shutdown), and
//!       as they are written, for the responses begun whose end has not
//!       left h2 (nor their stream been reset, before or after their head
//!       was written).
//!   - `client_io`: the client's stream as hyper sees it: bytes told to `conn`, the send
//!     timeout, the hand-off to a lingering close.
//!   - `plain`: a plain TCP client stream (the redirect listener's, the admin
//!     listener's) that reads the bytes the driver's look at a close found on its
//!     socket itself, into a buffer its reads return first.
//!   - `linger`: lingering close (read and discard what the client still sends, bounded).
//!   - `cancels`: requests a client cancels before their answer, within 1 s of their
//!     start; most of them closes an HTTP/2 connection (rapid reset).
//!   - `drain`: the process's open client connections, counted so a shutdown can wait for them.
//!   - `refused_head`: heads refused before they became requests (hyper's 400/414/431,
//!     408 at `header_read_timeout`), counted and logged as requests.
//!   - `stall`: HTTP/2 responses held up by a shut flow-control window, cut after send_timeout.
//!   - `written`: HTTP/2: a response body's failure held back until the connection has
//!     written what its stream had queued, so the stream's reset cannot drop its head.
//!   - `tunnel`: Upgrade tunnels (websocket only), bounded by slot, tunnel_idle_timeout,
//!     the connection's lifetime and its route's rules as reloads change them.
//!   - `websocket`: the WebSocket handshake a tunnel needs: the request's key and version
//!     (else `400`), the `101`'s `Sec-WebSocket-Accept` (else `502`).
//!   - `relay`: a tunnel's byte copy, ended when either side closes (nginx's "upgraded done").
//!   - `on_read`: a stream calling hooks with the bytes read from it and written to it (a tunnel's idle clock and byte counts).
//!   - `lifetime`: when a connection (or its tunnel) ends: made with rotated-out material
//!     (`max_connection_lifetime`), or no longer admitted under rules since changed; `Woken`,
//!     the wait for such rarely-ready signals that is polled only when its own wake-up came.
//!   - `readmit`: an open connection checked again under its listener's changed admission
//!     rules (chain, `allow`, `allow_from`), an open tunnel under its listener's changed
//!     routes (the route's `allow`, `allow_from`), and one to another `certs` entry's host
//!     under its changed admission rules (that entry's): kept if still admitted.
//!   - `host_cut`: a request in flight for another `certs` entry's host, head come or not,
//!     its body too (also after an early answer), cut `shutdown_grace` after changed rules
//!     stop admitting its client there.
//!   - `accept`: accept with back-off on EMFILE/ENFILE, for listeners and the admin listener.
//!   - `proxy_protocol`: PROXY v1/v2 before TLS, from `proxy_protocol.from` only.
//!   - `front`: what is in front of a listener: PROXY sources, `allow_from`, trusted proxies,
//!     response headers, the `redirect_https` listener (run by `conn`'s driver; its tests,
//!     on real sockets over loopback, in `front/tests.rs`), the 400 to plain HTTP on a TLS one.
//!   - `request`: checks before routing: `CONNECT` and `TRACE` 405, one authority per
//!     request (`Host`), the normalised path.
//!   - `path`: path normalisation (dot segments, `%2e`; `%2f` refused).
//!   - `router`: host / path-prefix -> upstream.
//!   - `headers`: the header policy: forwarding headers, identity, and `hop`'s.
//!   - `hop`: hop-by-hop headers (and those `Connection` names), removed at each hop.
//!   - `trailers`: fields after a body: none a trailer may not carry, and on a
//!     request none `headers` sets or strips, and no more than a head's 100.
//!   - `padding`: an HTTP/2 upstream's values padded with whitespace, trimmed as HTTP/1.1's.
//!   - `body`: the client's request body, remembering whether the client broke it,
//!     stalled it (`body_read_timeout`) or sent too much (`max_body_bytes`), whether it
//!     waits on the client, and whether it went upstream whole (a connection answered
//!     early is still busy).
//!   - `buffer`: small request bodies read whole before an upstream is chosen.
//!   - `forward`: forwarding one request over an endpoint's pool, retry when
//!     nothing was lost.
//!   - `body_answers`: the answer to a request whose body failed on the client's
//!     side: 400 (broken), 408 (stalled), 413 (too large), 499 (the client gone).
//!   - `kept`: what an HTTP/1.1 attempt keeps to send its request again: the head
//!     as written, or a copy.
//!   - `resends`: how often one attempt sends its request again to its own
//!     endpoint: on new connections, and on any (a refused stream).
//!   - `framing`: an upstream HTTP/1.1 response a client could read otherwise than hyper
//!     did (`Content-Length` beside `Transfer-Encoding`, a coding not `chunked`) or any with
//!     more than one `Content-Length`: a 502; none on a 1xx or 204.
//!   - `attempts`: a request's attempts: the endpoint each goes to, another
//!     one when the last lost nothing, what each outcome counts for.
//!   - `budget`: an upstream's retry budget: its retries to other endpoints in
//!     flight, bounded by a share of its requests in flight.
//!   - `upkeep`: an upstream's life outside any one request: put in
//!     service, names re-resolved, idle connections swept, active checks,
//!     ejections ended on time, retired by a reload.
//!   - `failure`: why a forwarded request got no response (its 502/504 and
//!     reason), and whether it may be sent again.
//!   - `slots`: connection slots per upstream server (`max_connections_per_server`).
//!   - `edge`: per-request edge duties: request id, route `allow` (403), 421,
//!     client-certificate headers, the access-log line.
//!   - `client_cert`: `forward_client_cert` modes and their header encoders.
//!   - `request_id`: `X-Request-Id` keep/generate, the `traceparent` trace id.
//!   - `date`: the `date` of a response to an HTTP/2 client, never indexed by HPACK.
//! - `upstream`: upstream connections on hyper's conn API.
//!   - `endpoint`: one server address: its pool and slots, leasing a
//!     connection to a request and getting it back when the response ends.
//!     - `early`: what of a response body came with its head, read before
//!       the head is handed on: a body broken there is a 502.
//!     - `tests`: its unit tests: leasing under the slot and dial bounds,
//!       an active check's connection past the limit.
//!   - `pool`: idle HTTP/1.1 connections, shared HTTP/2 ones, bounded dials.
//!   - `conn`: dialling (TCP, TLS snapshot, slot) and the h1/h2 handles;
//!     an h2 connection is retired when a request on it goes unanswered.
//!     - `stream`: one stream of a shared h2 connection: counted out (the
//!       connection closed at its last one when due), retiring it.
//!   - `io`: one connection's bytes (plain or TLS), its slot, and the switch
//!     that closes a retired HTTP/2 connection from outside hyper's task.
//!     - `frames`: the HTTP/2 frames an upstream sends, followed by their
//!       headers: SETTINGS applied, header-block floods, a reset or
//!       `GOAWAY` with `NO_ERROR` that would end a response as if whole;
//!       and the streams hotproxy resets itself, from what it writes.
//!   - `members`: an upstream's endpoints: picking one per request, passive
//!     health (never ejecting the last), per-endpoint metrics.
//!   - `balance`: round robin, least request (power of two choices).
//!   - `health`: one endpoint's consecutive failures, ejection, back-off.
//!   - `read_timeout`: the longest wait for the next piece of a response body.
//!   - `pipe`: hyper's task sending a request body to an HTTP/2 upstream,
//!     kept with its body and cut when the upstream has answered and takes
//!     no more of it for `body_read_timeout`, or at once when the response
//!     failed; an `Upgrade` request's own HTTP/1.1 connection task alike.
//!   - `resolve`: server hostnames to endpoints, one per address, re-resolved
//!     every `resolve_interval`; a failed lookup keeps the last good set;
//!     names' changed answers are applied one at a time (unit tests in
//!     `resolve/tests.rs`).
//!   - `lookup`: one blocking lookup of a `host:port`, joined by all in the
//!     process who ask for it while it runs (re-resolutions, each upstream
//!     built, a rejected reload's too, dials by name); at most 64 at once.
//! - `admin`: the admin listener (probes, metrics, /api/v1).
//!   - `auth`: bearer tokens and roles (constant-time), Host/Origin check.
//!   - `slots`: the 64 connections, 16 per client address; when all are
//!     taken, a new one evicts the one waiting on its client longest; its
//!     unit tests in `slots/tests.rs`.
//!   - `api`: the /api/v1 router, auth order, JSON bodies and replies; mutations
//!     run on the reloader thread.
//!     - `certs`: entries: create, replace, delete, rotate, validate.
//!     - `client_auth`: a listener's client auth: view and runtime change.
//!   - `paths`: which files the API may name (`store.file_roots`), decided
//!     without opening them (a root's `..` resolved as the kernel would).
//! - `identity`: who a client is (issue 15).
//!   - `record`: the verified client certificate parsed once per connection.
//!   - `allow`: `allow` rules (fields, globs) and their matcher.
//!     - `pattern`: `cn`, `ou` and SAN patterns no value could match, refused.
//!   - `gate`: the client verifier applying a listener's rules in the handshake.
//!   - `rechecks`: a gate's verdicts on open connections' chains after a change of
//!     the rules: each distinct chain verified once per change.
//! - `access_log`: one line per request and refused handshake, off the request path.
//!   - `body`: byte-counting bodies that submit the line when a response ends.
//!   - `format`: JSON and nginx `combined`.
//!   - `tunnel`: a tunnelled request's line, written when the tunnel ends, with the bytes relayed.
//!   - `writer`: the writer thread: batched writes, lines it cannot write dropped
//!     and counted, reopen on SIGUSR1.
//!   - `tests`: the module's tests: real FIFOs and files, queue bounds, writers
//!     replaced and shut down.
//! - `metrics`: the metric names of SPEC §5.
//! - `process_metrics`: `process_*` (CPU, memory, fds, start time) from `/proc`, per scrape.
//! - `server`: `hotproxy run`: runtime, reloader, admin listener, signals, drain.
//! - `nofile`: the open-file limit: the soft one raised to the hard one at start, and
//!   compared (by `run` and `check`) with what the listeners may hold open.
//! - `check`: `hotproxy check` and `certs inspect`: the report operators read;
//!   applies `run`'s startup checks (admin tokens and bind, store, every listener's and upstream's TLS) without side effects.
//! - `devpki`: a throwaway CA, server pair and client pair.
//! - `fsutil`: atomic writes and bounded, regular-file-only reads (store, dev PKI, PEM).
//! - `logging`: tracing to stderr, text or JSON.
//! - `log_writer`: the log's stderr writer, queued and lossy when stderr stalls.
//! - `stdio`: `outln!`/`errln!`: command output that ends quietly on a closed pipe.
//! - `shell`: a word quoted for a POSIX shell (`shlex.quote`; `$'\xHH'` for control
//!   bytes and bytes not UTF-8), for the commands printed for an operator to paste.
//! - `demo`: `hotproxy demo`.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod check;
pub mod config;
pub mod demo;
pub mod devpki;
pub mod fsutil;
pub mod identity;
pub mod log_writer;
pub mod logging;
pub mod material;
pub mod metrics;
pub mod nofile;
pub mod process_metrics;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod server;
pub mod shell;
pub mod stdio;
pub mod tls;
pub mod upstream;
pub mod watch;
pub mod yaml_hint;
