//! What an operator is told (issue 18): times people read are RFC 3339, a
//! change that is waited for shows as pending at once, every applied
//! configuration and every SIGHUP is logged and counted, and a kubelet swap
//! logs nothing above INFO.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod bundles;
mod chains;
mod entries;
mod logging;
mod status;
mod unsettled;
