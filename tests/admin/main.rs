//! The admin API over real HTTP against the real proxy: roles, Host checks,
//! catalogue CRUD with the encrypted store, rotation, runtime client auth.

#[path = "../support/mod.rs"]
mod support;

mod common;

// The tests, by theme.
mod catalogue;
mod client_auth;
mod roles;
mod rotation;
mod shutdown;
