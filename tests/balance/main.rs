//! Issue 16, endpoints: per-request balancing (round robin, least request) over pods on
//! 127.0.0.1/.2/.3, passive health (a killed pod ejected, no client request failing thanks to
//! retries, re-admitted once back, kept across an edit of the upstream; at most half ejected, panic mode below half in service), an
//! HTTP/2 pod refusing streams (sent elsewhere), names a test DNS server answers, and their metrics.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod budget;
mod dns;
mod edits;
mod gone;
mod health;
mod late;
mod names;
mod nameserver;
mod panic;
mod refusing;
mod removed;
mod retries;
mod serial;
mod series;
mod skipped;
mod streams;
