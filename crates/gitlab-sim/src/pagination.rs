//! GitLab's offset and keyset pagination, with its response headers.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{Result, SimError};

pub const DEFAULT_PER_PAGE: usize = 20;
pub const MAX_PER_PAGE: usize = 100;
/// Above this many records GitLab stops counting: no `x-total`, `x-total-pages`, `rel="last"`.
pub const COUNT_LIMIT: usize = 10_000;
/// `offset_pagination_limit`, enforced only where keyset is available.
pub const MAX_OFFSET: usize = 50_000;

const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The request's query string, order kept, so links can repeat it.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| matches!(v, "true" | "1" | "yes"))
    }

    pub fn number(&self, key: &str) -> Option<usize> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// The requested offset page, 1 when absent or invalid.
    pub fn page(&self) -> usize {
        self.number("page").filter(|p| *p >= 1).unwrap_or(1)
    }

    /// `base` + path + this query with the given keys replaced.
    fn link(&self, base: &str, replace: &[(&str, String)]) -> String {
        let mut pairs: Vec<(String, String)> = self.0.iter().filter(|(k, _)| !replace.iter().any(|(r, _)| r == k)).cloned().collect();
        pairs.extend(replace.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let query: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY), utf8_percent_encode(v, QUERY))).collect();
        format!("{base}?{}", query.join("&"))
    }
}

/// Where the request was addressed, for absolute links.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `scheme://host[:port]` as the client addressed the server.
    pub root: String,
    pub path: String,
}

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

pub fn per_page(params: &Params) -> usize {
    match params.number("per_page") {
        Some(n) if n >= 1 => n.min(MAX_PER_PAGE),
        _ => DEFAULT_PER_PAGE,
    }
}

/// One page of `items` by `page`/`per_page`, and GitLab's headers for it. `keyset_type` names
/// the record type when the endpoint also supports keyset, which caps the offset.
pub fn offset<'a, T>(items: &'a [T], params: &Params, origin: &Origin, keyset_type: Option<&'static str>) -> Result<(&'a [T], HeaderMap)> {
    let per_page = per_page(params);
    let page = params.page();
    let start = offset_start(params);
    if let Some(kind) = keyset_type
        && start >= MAX_OFFSET
    {
        return Err(SimError::OffsetLimit(kind));
    }
    let total = items.len();
    let slice = &items[start.min(total)..(start + per_page).min(total)];
    let total_pages = total.div_ceil(per_page).max(1);
    let has_next = start + per_page < total;
    let counted = total <= COUNT_LIMIT;

    let mut headers = HeaderMap::new();
    set(&mut headers, "x-page", page);
    set(&mut headers, "x-per-page", per_page);
    set(&mut headers, "x-next-page", if has_next { (page + 1).to_string() } else { String::new() });
    set(&mut headers, "x-prev-page", if page > 1 { (page - 1).to_string() } else { String::new() });
    if counted {
        set(&mut headers, "x-total", total);
        set(&mut headers, "x-total-pages", total_pages);
    }
    let base = format!("{}{}", origin.root, origin.path);
    let link = |p: usize| params.link(&base, &[("page", p.to_string()), ("per_page", per_page.to_string())]);
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    if has_next {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link(1)));
    if counted {
        links.push(format!("<{}>; rel=\"last\"", link(total_pages)));
    }
    set(&mut headers, "link", links.join(", "));
    Ok((slice, headers))
}

/// Index of the first record of the requested offset page.
pub fn offset_start(params: &Params) -> usize {
    (params.page() - 1).saturating_mul(per_page(params))
}

pub fn wants_keyset(params: &Params) -> bool {
    params.get("pagination") == Some("keyset")
}

/// Position of the last record a keyset page returned: its sort key and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub key: String,
    pub id: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::json!({"key": self.key, "id": self.id}).to_string())
    }

    pub fn decode(raw: &str) -> Result<Cursor> {
        let bad = || SimError::BadRequest("cursor is invalid".into());
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        Ok(Cursor { key: v["key"].as_str().ok_or_else(bad)?.to_string(), id: v["id"].as_u64().ok_or_else(bad)? })
    }
}

/// A keyset page over `items`, already sorted in the requested order. `after` finds where
/// the previous page ended; the `Link rel="next"` carries `next_param` built from the last item.
pub fn keyset<'a, T>(
    items: &'a [T],
    params: &Params,
    origin: &Origin,
    after: impl Fn(&T) -> bool,
    next_param: impl Fn(&T) -> (&'static str, String),
) -> (&'a [T], HeaderMap) {
    let per_page = per_page(params);
    let start = items.iter().position(after).unwrap_or(items.len());
    let end = (start + per_page).min(items.len());
    let slice = &items[start..end];
    let mut headers = HeaderMap::new();
    set(&mut headers, "x-per-page", per_page);
    if end < items.len()
        && let Some(last) = slice.last()
    {
        let (key, value) = next_param(last);
        let base = format!("{}{}", origin.root, origin.path);
        let mut drop: Vec<(&str, String)> = vec![(key, value)];
        drop.push(("per_page", per_page.to_string()));
        let url = params.link(&base, &drop);
        set(&mut headers, "link", format!("<{url}>; rel=\"next\""));
    }
    (slice, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { root: "http://sim.test".into(), path: "/api/v4/things".into() }
    }

    #[test]
    fn offset_headers_follow_gitlab() {
        let items: Vec<u32> = (0..45).collect();
        let params = Params(vec![("page".into(), "2".into()), ("state".into(), "all".into())]);
        let (page, h) = offset(&items, &params, &origin(), None).unwrap();
        assert_eq!(page, &items[20..40]);
        assert_eq!(h["x-total"], "45");
        assert_eq!(h["x-total-pages"], "3");
        assert_eq!(h["x-next-page"], "3");
        assert_eq!(h["x-prev-page"], "1");
        let link = h["link"].to_str().unwrap();
        assert!(link.contains("<http://sim.test/api/v4/things?state=all&page=3&per_page=20>; rel=\"next\""), "{link}");
        assert!(link.contains("rel=\"last\""));
    }

    #[test]
    fn offset_limit_only_where_keyset_exists() {
        let items: Vec<u32> = vec![];
        let params = Params(vec![("page".into(), "501".into()), ("per_page".into(), "100".into())]);
        assert!(offset(&items, &params, &origin(), None).is_ok());
        assert!(matches!(offset(&items, &params, &origin(), Some("Project")), Err(SimError::OffsetLimit("Project"))));
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor { key: "2024-01-01T00:00:00.000Z".into(), id: 9 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("!!").is_err());
    }
}
