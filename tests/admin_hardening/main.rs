//! The admin API against hostile input: raw bytes in paths, scheme case,
//! HEAD, files that are not files, paths outside `store.file_roots`, how
//! often a change reads its files, a planted temp file, a store directory
//! that cannot be written, a store key that could not be written whole,
//! clients that hold every connection.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod bodies;
mod files;
mod reads;
mod requests;
mod slots;
mod store;
mod store_key;
