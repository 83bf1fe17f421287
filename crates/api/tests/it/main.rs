//! The API's integration tests: the real server on port 0, a fresh database per test.

mod auth;
mod checks;
mod common;
mod connections;
mod data;
mod isolation;
mod openapi;
mod secrets;
mod ssrf;
