//! Integration tests of the GitLab client against a stub on 127.0.0.1.

mod endpoints;
mod errors;
mod fixtures;
mod pagination;
mod rate_limits;
mod retries;
mod stub;
mod url_policy;
