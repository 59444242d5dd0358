//! The mTLS front door end to end (issue 15): allow rules in the handshake and per route, rules
//! changed at runtime, resumption, what the backend is told, request ids and the access log.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod access_log;
mod forwarding;
mod gone_lines;
mod key_usage;
mod per_name;
mod rules;
mod san_patterns;
mod san_values;
mod spellings;
mod subject_values;
mod subjects;
mod text_uri_patterns;
