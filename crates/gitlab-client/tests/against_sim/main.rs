//! The real client against the real simulator on 127.0.0.1: every client behaviour checked
//! against a server that answers the way GitLab does, not against hand-written stubs.

mod common;
mod errors;
mod faults;
mod hooks;
mod pagination;
mod rate_limits;
mod url_policy;
