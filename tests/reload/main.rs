//! Live reload from outside: every writer, every material kind, bad material never wins.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod config_file;
mod config_wait;
mod handed_over;
mod inotify;
mod kept_side;
mod left_out;
mod listeners;
mod material;
mod midway;
mod pasted;
mod refused;
mod restart_only;
mod rotations;
mod sans;
