//! Resumable pagination: a page request is a checkpoint.
//!
//! A [`PageRequest`] holds only the path and query of a list call relative to the API root
//! (`/projects/7/issues?...`), never a host or a token. The worker stores `page.next` in the
//! same transaction as the page's rows; after a crash it hands the stored request back to
//! [`crate::GitLabClient::page`]. Because the host always comes from the client's base URL, a
//! stored or server-supplied checkpoint cannot send the token anywhere else.

use reqwest::header::{HeaderMap, LINK};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// GitLab's maximum page size; used for every list call.
pub const PER_PAGE: u32 = 100;

/// One list call: path and query relative to the API root (`.../api/v4`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageRequest {
    path: String,
}

impl PageRequest {
    /// A request for `path` (already percent-encoded where needed, starting with `/`).
    pub fn new(path: impl Into<String>) -> Self {
        PageRequest { path: path.into() }
    }

    /// Appends a query parameter, percent-encoding it.
    pub fn query(mut self, key: &str, value: impl AsRef<str>) -> Self {
        let pair = url::form_urlencoded::Serializer::new(String::new()).append_pair(key, value.as_ref()).finish();
        self.path.push(if self.path.contains('?') { '&' } else { '?' });
        self.path.push_str(&pair);
        self
    }

    /// The stored form: path and query relative to the API root.
    pub fn path_and_query(&self) -> &str {
        &self.path
    }

    /// The path without the query, for logs.
    pub fn path(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.path.split_once('?').map(|(_, q)| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
    }

    /// Keyset requests follow only `Link rel="next"`; offset page numbers mean nothing there.
    pub fn is_keyset(&self) -> bool {
        self.query_pairs().iter().any(|(k, v)| k == "pagination" && v == "keyset")
    }

    /// Same request with `key` set to `value`, replacing earlier values.
    pub(crate) fn with_param(&self, key: &str, value: &str) -> PageRequest {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.query_pairs().iter().filter(|(k, _)| k != key) {
            query.append_pair(k, v);
        }
        query.append_pair(key, value);
        PageRequest { path: format!("{}?{}", self.path(), query.finish()) }
    }

    /// The absolute URL under `api_base`, refusing anything that would leave its origin or
    /// API prefix (a tampered checkpoint, `..` segments).
    pub(crate) fn to_url(&self, api_base: &Url) -> Result<Url> {
        if !self.path.starts_with('/') || self.path.starts_with("//") || self.path.contains('#') {
            return Err(Error::Blocked { reason: format!("invalid API path {:?}", self.path()) });
        }
        let base = api_base.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{}", self.path))
            .map_err(|e| Error::Blocked { reason: format!("invalid API path {:?}: {e}", self.path()) })?;
        relative_to_base(&url, api_base)?;
        Ok(url)
    }
}

/// One page of a collection and the request for the next one (`None` at the end).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageRequest>,
}

/// The request for the page after `current`, from the response headers.
///
/// `Link rel="next"` wins whenever present (it carries keyset cursors). Offset requests fall
/// back to `X-Next-Page`. Totals (`X-Total`, `rel="last"`) are never consulted: GitLab omits
/// them past 10,000 records.
pub(crate) fn next_request(current: &PageRequest, headers: &HeaderMap, api_base: &Url) -> Result<Option<PageRequest>> {
    let link_next = headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).find_map(link_next);
    let next = if let Some(target) = link_next {
        let url = api_base.join(&target).map_err(|e| Error::Protocol { message: format!("malformed Link next URL: {e}") })?;
        Some(PageRequest::new(relative_to_base(&url, api_base)?))
    } else if current.is_keyset() {
        None
    } else {
        match headers.get("x-next-page").and_then(|v| v.to_str().ok()).map(str::trim) {
            None | Some("") => None,
            Some(page) => {
                let page: u64 = page.parse().map_err(|_| Error::Protocol { message: format!("malformed X-Next-Page {page:?}") })?;
                Some(current.with_param("page", &page.to_string()))
            }
        }
    };
    if next.as_ref() == Some(current) {
        return Err(Error::Protocol { message: format!("pagination of {} points back at itself", current.path()) });
    }
    Ok(next)
}

/// The `rel="next"` target of one `Link` header value.
fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let is_next = rest[close + 1..params_end].split(';').any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_end_matches(',')
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = &rest[params_end..];
    }
    None
}

/// `url`'s path and query relative to `api_base`, or `Blocked` when it lies elsewhere.
fn relative_to_base(url: &Url, api_base: &Url) -> Result<String> {
    if url.origin() != api_base.origin() {
        return Err(Error::Blocked {
            reason: format!(
                "pagination link leaves {} for {}",
                api_base.origin().ascii_serialization(),
                url.origin().ascii_serialization()
            ),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Blocked { reason: "pagination link carries credentials".into() });
    }
    let prefix = api_base.path().trim_end_matches('/');
    let rest = url
        .path()
        .strip_prefix(prefix)
        .filter(|rest| rest.starts_with('/'))
        .ok_or_else(|| Error::Blocked { reason: format!("pagination link leaves the API prefix {prefix}") })?;
    Ok(match url.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::link_next;

    #[test]
    fn finds_next_among_other_relations() {
        let header = r#"<https://g.example/api/v4/x?page=1>; rel="first", <https://g.example/api/v4/x?page=3>; rel="next", <https://g.example/api/v4/x?page=9>; rel="last""#;
        assert_eq!(link_next(header).as_deref(), Some("https://g.example/api/v4/x?page=3"));
    }

    #[test]
    fn accepts_unquoted_and_multi_valued_rel() {
        assert_eq!(link_next("<a>; rel=next").as_deref(), Some("a"));
        assert_eq!(link_next(r#"<b>;rel="prev next""#).as_deref(), Some("b"));
        assert_eq!(link_next(r#"<c>; REL="Next""#).as_deref(), Some("c"));
    }

    #[test]
    fn ignores_headers_without_next() {
        assert_eq!(link_next(r#"<a>; rel="prev", <b>; rel="first""#), None);
        assert_eq!(link_next(""), None);
        assert_eq!(link_next("<unterminated; rel=next"), None);
    }
}
