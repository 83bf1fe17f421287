//! Integration tests: the simulator over real HTTP on 127.0.0.1.

mod api;
mod auth;
mod common;
mod control;
mod dataset;
mod history;
mod hooks;
mod limits;
mod pagination;
mod webhooks;
