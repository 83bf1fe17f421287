//! Validation of what Coworker's GitLab page submits. Plain functions over JSON values, so that
//! every rule is tested directly and every problem names its field.

use chrono::{DateTime, Utc};
use connector_store::connections::{ConnectionChanges, NewConnection};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{AnyOf, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use crate::error::FieldError;

pub const DEFAULT_GITLAB_URL: &str = "https://gitlab.com";
const MAX_GROUPS: usize = 100;
const MAX_PROJECTS: usize = 1000;
const MAX_TOKEN_LEN: usize = 1024;
/// A base URL is a host and at most a short path (a GitLab under a relative URL root).
const MAX_URL_LEN: usize = 2048;
/// The Unix epoch, where git's timestamps start: a start date before it would reach nothing.
const EARLIEST_START: DateTime<Utc> = DateTime::UNIX_EPOCH;

type Field<T> = Result<T, FieldError>;

/// What Coworker's GitLab page submits. Lists are comma-separated strings, as the page sends
/// them, or JSON arrays.
/// Serialized only to fingerprint the request for its `Idempotency-Key`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = crate::examples::create_connection_request)]
pub struct CreateConnectionRequest {
    /// A GitLab personal access token with scope `api`.
    #[schema(value_type = String, example = "glpat-xxxxxxxxxxxxxxxxxxxx")]
    pub access_token: Option<Value>,
    #[schema(schema_with = groups_list_schema, required = true)]
    pub groups_list: Option<Value>,
    #[schema(schema_with = projects_list_schema)]
    pub projects_list: Option<Value>,
    /// RFC 3339 with a time zone. Nothing older is synchronized.
    #[schema(value_type = String, example = "2024-01-01T00:00:00Z")]
    pub start_date: Option<Value>,
    /// Base URL of a self-managed GitLab; `https://gitlab.com` when absent.
    #[schema(value_type = Option<String>, example = "https://gitlab.com")]
    pub gitlab_url: Option<Value>,
    /// Let the connector rotate the token itself, 14 days before it expires (GitLab 16.10+):
    /// GitLab revokes the old token and the connection keeps the new one. `false` when absent.
    #[schema(value_type = Option<bool>)]
    pub rotate_token: Option<Value>,
    // Fields are raw JSON so that each problem is reported against its field; anything else
    // lands here and is refused by name.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Map<String, Value>,
}

/// Any subset of these, at least one. Changing any of them sends the connection back to
/// `pending`, to be validated again. `gitlab_url` cannot change.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = crate::examples::update_connection_request)]
pub struct UpdateConnectionRequest {
    #[schema(value_type = Option<String>)]
    pub access_token: Option<Value>,
    #[schema(schema_with = nullable_groups_list_schema)]
    pub groups_list: Option<Value>,
    #[schema(schema_with = projects_list_schema)]
    pub projects_list: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub start_date: Option<Value>,
    /// Turns the connector's rotation of the token on or off; alone, it does not validate the
    /// connection again.
    #[schema(value_type = Option<bool>)]
    pub rotate_token: Option<Value>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Map<String, Value>,
}

/// What [`groups_list`] accepts, as a schema: the string form limited to digits and commas, so
/// that every string outside it is also refused by the validation.
fn groups_list_schema() -> Schema {
    Schema::AnyOf(groups_list_any_of())
}

fn groups_list_any_of() -> AnyOf {
    let digits = |pattern: &str| ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern));
    AnyOfBuilder::new()
        .description(Some("One group id, or several separated by commas without spaces; or an array of ids."))
        .item(digits("^[0-9]+(,[0-9]+)*$").examples(["123,456"]))
        .item(ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))).minimum(Some(1)))
        .item(
            ArrayBuilder::new()
                .items(AnyOfBuilder::new().item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))).item(digits("^[0-9]+$")))
                .min_items(Some(1))
                .max_items(Some(MAX_GROUPS)),
        )
        .build()
}

fn nullable_groups_list_schema() -> Schema {
    let mut any_of = groups_list_any_of();
    any_of.items.push(ObjectBuilder::new().schema_type(Type::Null).into());
    Schema::AnyOf(any_of)
}

/// What [`projects_list`] accepts, as a schema.
fn projects_list_schema() -> Schema {
    AnyOfBuilder::new()
        .description(Some(
            "Optional project ids or full paths (`group/sub/project`), comma-separated or an array.\n\
             Empty or absent: every project in the groups and their subgroups.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::String).examples(["12,my-group/my-project"]))
        .item(ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))))
        .item(
            ArrayBuilder::new()
                .items(
                    AnyOfBuilder::new()
                        .item(ObjectBuilder::new().schema_type(Type::Integer))
                        .item(ObjectBuilder::new().schema_type(Type::String)),
                )
                .max_items(Some(MAX_PROJECTS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// Collects every field's problem, so one answer names them all.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn take<T>(&mut self, result: Field<T>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    fn required<T>(&mut self, field: &str, result: Option<Field<T>>) -> Option<T> {
        match result {
            Some(result) => self.take(result),
            None => {
                self.0.push(FieldError::new(field, "is required"));
                None
            }
        }
    }

    fn finish<T>(mut self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => {
                self.0.sort_by(|a, b| a.field.cmp(&b.field));
                Err(self.0)
            }
        }
    }
}

/// What a create asks: the connection, and whether the connector rotates its token.
#[derive(Debug)]
pub struct Create {
    pub connection: NewConnection,
    pub rotate_token: bool,
}

/// Parses a create request, or every problem with it.
pub fn parse_create(req: &CreateConnectionRequest, now: DateTime<Utc>) -> Result<Create, Vec<FieldError>> {
    let mut p = Problems(unknown_fields(&req.unknown, "access_token, groups_list, projects_list, start_date, gitlab_url, rotate_token"));
    let access_token = p.required("access_token", req.access_token.as_ref().map(access_token));
    let groups_list = p.required("groups_list", req.groups_list.as_ref().map(groups_list));
    let start_date = p.required("start_date", req.start_date.as_ref().map(|v| start_date(v, now)));
    let projects_list = p.take(projects_list(req.projects_list.as_ref().unwrap_or(&Value::Null)));
    let gitlab_url = p.take(gitlab_url(req.gitlab_url.as_ref().unwrap_or(&Value::Null)));
    let rotate = p.take(req.rotate_token.as_ref().map(rotate_token).transpose());
    let create = (|| {
        Some(Create {
            connection: NewConnection {
                gitlab_url: gitlab_url?,
                groups_list: groups_list?,
                projects_list: projects_list?,
                start_date: start_date?,
                access_token: access_token?,
            },
            rotate_token: rotate?.unwrap_or(false),
        })
    })();
    p.finish(create)
}

/// What a PATCH asks: changes to what is synced, and the rotation setting.
#[derive(Debug)]
pub struct Update {
    pub changes: ConnectionChanges,
    pub rotate_token: Option<bool>,
}

/// Parses a PATCH: any of the create fields but `gitlab_url`, at least one.
pub fn parse_update(req: &UpdateConnectionRequest, now: DateTime<Utc>) -> Result<Update, Vec<FieldError>> {
    let mut unknown = req.unknown.clone();
    let mut p = Problems::default();
    if unknown.remove("gitlab_url").is_some() {
        p.0.push(FieldError::new(
            "gitlab_url",
            "cannot be changed: a connection belongs to one GitLab instance; create a new connection instead",
        ));
    }
    p.0.extend(unknown_fields(&unknown, "access_token, groups_list, projects_list, start_date, rotate_token"));
    let changes = ConnectionChanges {
        access_token: req.access_token.as_ref().map(access_token).and_then(|r| p.take(r)),
        groups_list: req.groups_list.as_ref().map(groups_list).and_then(|r| p.take(r)),
        projects_list: req.projects_list.as_ref().map(projects_list).and_then(|r| p.take(r)),
        start_date: req.start_date.as_ref().map(|v| start_date(v, now)).and_then(|r| p.take(r)),
    };
    let rotate_token = req.rotate_token.as_ref().map(rotate_token).and_then(|r| p.take(r));
    if p.0.is_empty() && changes.is_empty() && rotate_token.is_none() {
        p.0.push(FieldError::new(
            "body",
            "nothing to change: give at least one of access_token, groups_list, projects_list, start_date, rotate_token",
        ));
    }
    p.finish(Some(Update { changes, rotate_token }))
}

fn rotate_token(value: &Value) -> Field<bool> {
    value.as_bool().ok_or_else(|| FieldError::new("rotate_token", "must be true or false"))
}

pub(crate) fn unknown_fields(unknown: &Map<String, Value>, expected: &str) -> Vec<FieldError> {
    unknown.keys().map(|k| FieldError::new(k, format!("unknown field; expected one of {expected}"))).collect()
}

pub fn access_token(value: &Value) -> Field<SecretString> {
    let err = |m: &str| FieldError::new("access_token", m);
    let Value::String(token) = value else { return Err(err("must be a string")) };
    if token.is_empty() {
        return Err(err("must not be empty"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("must not contain spaces, line breaks or control characters; paste the token alone"));
    }
    // GitLab's tokens are printable ASCII; anything else (a zero-width space, a letter from
    // another alphabet) came with the paste, and an HTTP header could not carry it.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err("must be printable ASCII, as GitLab's tokens are: a zero-width or non-ASCII character came with the paste"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(err("is too long to be a GitLab access token"));
    }
    Ok(SecretString::from(token.clone()))
}

/// `"123"`, `"123,456"` or `[123, "456"]`: positive group ids, no duplicates.
pub fn groups_list(value: &Value) -> Field<Vec<i64>> {
    let field = "groups_list";
    let items = list_items(field, value, "group ids", "123,456")?;
    if items.is_empty() {
        return Err(FieldError::new(field, "must name at least one group id"));
    }
    if items.len() > MAX_GROUPS {
        return Err(FieldError::new(field, format!("names more than {MAX_GROUPS} groups")));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = match &item {
            Item::Number(n) => Some(*n),
            Item::Text(s) => numeric_id(s),
        }
        .filter(|n| *n > 0)
        .ok_or_else(|| FieldError::new(field, format!("{item} is not a group id; group ids are positive whole numbers")))?;
        if ids.contains(&id) {
            return Err(FieldError::new(field, format!("group {id} is listed twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Empty, `"12,group/sub/project"` or `[12, "group/project"]`: project ids or full paths.
pub fn projects_list(value: &Value) -> Field<Vec<String>> {
    let field = "projects_list";
    if value.is_null() {
        return Ok(Vec::new());
    }
    let items = list_items(field, value, "project ids or full paths", "12,my-group/my-project")?;
    if items.len() > MAX_PROJECTS {
        return Err(FieldError::new(field, format!("names more than {MAX_PROJECTS} projects")));
    }
    let mut projects: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let project = match &item {
            Item::Number(n) => Some(n.to_string()),
            Item::Text(s) if numeric_id(s).is_some() || is_project_path(s) => Some(s.clone()),
            Item::Text(_) => None,
        }
        .ok_or_else(|| {
            FieldError::new(field, format!("{item} is neither a project id nor a full project path like group/subgroup/project"))
        })?;
        if projects.contains(&project) {
            return Err(FieldError::new(field, format!("{project} is listed twice")));
        }
        projects.push(project);
    }
    Ok(projects)
}

pub fn start_date(value: &Value, now: DateTime<Utc>) -> Field<DateTime<Utc>> {
    let err = |m: String| FieldError::new("start_date", m);
    let Value::String(text) = value else { return Err(err("must be a string".into())) };
    let date = DateTime::parse_from_rfc3339(text)
        .map_err(|_| err(format!("{text:?} is not an RFC 3339 date-time with a time zone; use e.g. 2024-01-01T00:00:00Z")))?
        .with_timezone(&Utc);
    if date > now {
        return Err(err("is in the future; nothing would be synchronized".into()));
    }
    if date < EARLIEST_START {
        return Err(err(format!("is before {EARLIEST_START}; no GitLab data is older (use 1970-01-01T00:00:00Z for everything)")));
    }
    Ok(date)
}

/// The instance's base URL, normalized without a trailing slash. Whether the address may be
/// reached at all is the GitLab client's decision, made on the resolved address.
pub fn gitlab_url(value: &Value) -> Field<String> {
    let err = |m: &str| FieldError::new("gitlab_url", m);
    let text = match value {
        Value::Null => return Ok(DEFAULT_GITLAB_URL.to_owned()),
        Value::String(s) if s.is_empty() => return Ok(DEFAULT_GITLAB_URL.to_owned()),
        Value::String(s) => s,
        _ => return Err(err("must be a string")),
    };
    if text.len() > MAX_URL_LEN {
        return Err(err(&format!("is longer than {MAX_URL_LEN} characters; give the instance's base URL")));
    }
    let url = url::Url::parse(text).map_err(|_| err("is not a URL; use e.g. https://gitlab.example.com"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(err("must be an https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("must not contain credentials; the token goes in access_token"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("must be the instance's base URL, without ?query or #fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

enum Item {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Number(n) => write!(f, "{n}"),
            Item::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A comma-separated string (as Coworker's page sends it) or a JSON array.
fn list_items(field: &str, value: &Value, what: &str, example: &str) -> Field<Vec<Item>> {
    match value {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => {
            if s.chars().any(char::is_whitespace) {
                return Err(FieldError::new(field, format!("must be {what} separated by commas without spaces, e.g. {example}")));
            }
            s.split(',')
                .map(|part| {
                    if part.is_empty() {
                        Err(FieldError::new(
                            field,
                            format!("has an empty entry; must be {what} separated by single commas, e.g. {example}"),
                        ))
                    } else {
                        Ok(Item::Text(part.to_owned()))
                    }
                })
                .collect()
        }
        Value::Number(n) => {
            n.as_i64().map(|n| vec![Item::Number(n)]).ok_or_else(|| FieldError::new(field, format!("must be {what}, e.g. {example}")))
        }
        Value::Array(values) => values
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_i64().map(Item::Number),
                Value::String(s) if !s.is_empty() && !s.chars().any(char::is_whitespace) => Some(Item::Text(s.clone())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| FieldError::new(field, format!("must hold only {what}, without spaces"))),
        _ => Err(FieldError::new(field, format!("must be a string of {what} separated by commas, e.g. {example}, or an array"))),
    }
    .and_then(|items| match items.iter().find(|i| matches!(i, Item::Number(n) if *n <= 0)) {
        Some(bad) => Err(FieldError::new(field, format!("{bad} is not a valid id; ids are positive"))),
        None => Ok(items),
    })
}

fn numeric_id(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

/// `group/project` or deeper; each part as GitLab allows in paths.
fn is_project_path(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 255
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !p.starts_with(['-', '.'])
                && !p.ends_with(".git")
                && !p.ends_with(".atom")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    fn req(v: Value) -> CreateConnectionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn upd(v: Value) -> UpdateConnectionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn create_accepts_what_the_page_sends() {
        let body = json!({
            "access_token": "glpat-abcdefghijklmnop1234",
            "groups_list": "123,456",
            "projects_list": "12,my-group/sub.group/my_project",
            "start_date": "2024-01-01T00:00:00Z",
        });
        let c = parse_create(&req(body), now()).unwrap().connection;
        assert_eq!(c.access_token.expose_secret(), "glpat-abcdefghijklmnop1234");
        assert_eq!(c.groups_list, vec![123, 456]);
        assert_eq!(c.projects_list, vec!["12", "my-group/sub.group/my_project"]);
        assert_eq!(c.start_date, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(c.gitlab_url, "https://gitlab.com");
    }

    #[test]
    fn create_accepts_arrays_single_ids_and_offsets() {
        let body = json!({
            "access_token": "glpat-abcdefghijklmnop1234",
            "groups_list": [123, "456"],
            "projects_list": [7, "a/b"],
            "start_date": "2024-01-01T02:00:00+02:00",
            "gitlab_url": "https://gitlab.example.com/gitlab/",
        });
        let c = parse_create(&req(body), now()).unwrap().connection;
        assert_eq!(c.groups_list, vec![123, 456]);
        assert_eq!(c.projects_list, vec!["7", "a/b"]);
        assert_eq!(c.start_date, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(c.gitlab_url, "https://gitlab.example.com/gitlab");

        let single = json!({"access_token": "t", "groups_list": "9", "start_date": "2024-01-01T00:00:00Z", "projects_list": ""});
        let c = parse_create(&req(single), now()).unwrap().connection;
        assert_eq!(c.groups_list, vec![9]);
        assert!(c.projects_list.is_empty());
    }

    #[test]
    fn create_names_every_bad_field() {
        let body = json!({
            "access_token": "glpat abc",
            "groups_list": "123, 456",
            "projects_list": "not a path",
            "start_date": "2024-01-01",
            "gitlab_url": "ftp://x",
            "extra": 1,
        });
        let errors = parse_create(&req(body), now()).unwrap_err();
        let mut got = fields(&errors);
        got.sort();
        assert_eq!(got, ["access_token", "extra", "gitlab_url", "groups_list", "projects_list", "start_date"]);
        let msg = |f: &str| errors.iter().find(|e| e.field == f).unwrap().message.clone();
        assert!(msg("groups_list").contains("without spaces"));
        assert!(msg("start_date").contains("time zone"));
        assert!(msg("access_token").contains("spaces"));
    }

    #[test]
    fn create_requires_its_fields() {
        let errors = parse_create(&req(json!({})), now()).unwrap_err();
        assert_eq!(fields(&errors), ["access_token", "groups_list", "start_date"]);
        assert!(errors.iter().all(|e| e.message == "is required"));
    }

    #[test]
    fn token_rules() {
        assert!(access_token(&json!("")).is_err());
        assert!(access_token(&json!("abc\n")).is_err());
        assert!(access_token(&json!(" abc")).is_err());
        assert!(access_token(&json!(12)).is_err());
        assert!(access_token(&json!("x".repeat(2000))).is_err());
        // Messages never echo the token.
        let e = access_token(&json!("glpat secret")).unwrap_err();
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn group_rules() {
        for bad in [
            json!(""),
            json!("a"),
            json!("1,,2"),
            json!("1,1"),
            json!("-1"),
            json!("0"),
            json!([1.5]),
            json!([" 1"]),
            json!({}),
            json!("99999999999999999999"),
            json!([0]),
        ] {
            assert!(groups_list(&bad).is_err(), "{bad} accepted");
        }
        assert_eq!(groups_list(&json!(5)).unwrap(), vec![5]);
        let e = groups_list(&json!("12,abc")).unwrap_err();
        assert!(e.message.contains("\"abc\""), "{}", e.message);
    }

    #[test]
    fn project_rules() {
        for bad in [
            json!("group"),
            json!("a//b"),
            json!("a/b,a/b"),
            json!("/a/b"),
            json!("a/b/"),
            json!("a/-b"),
            json!("a/b.git"),
            json!("a b/c"),
            json!([true]),
        ] {
            assert!(projects_list(&bad).is_err(), "{bad} accepted");
        }
        assert_eq!(projects_list(&json!(null)).unwrap(), Vec::<String>::new());
        assert_eq!(projects_list(&json!([])).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn date_rules() {
        for bad in ["2024-01-01", "2024-01-01T00:00:00", "01/01/2024", "2024-13-01T00:00:00Z", "2027-01-01T00:00:00Z"] {
            assert!(start_date(&json!(bad), now()).is_err(), "{bad} accepted");
        }
        assert!(start_date(&json!("2026-06-01T00:00:00Z"), now()).is_ok());
    }

    #[test]
    fn url_rules() {
        for bad in
            ["gitlab.com", "ftp://gitlab.com", "https://user:pw@gitlab.com", "https://gitlab.com/?a=1", "https://gitlab.com/#x", "https://"]
        {
            assert!(gitlab_url(&json!(bad)).is_err(), "{bad} accepted");
        }
        assert_eq!(gitlab_url(&json!("https://GitLab.Example.com/")).unwrap(), "https://gitlab.example.com");
    }

    #[test]
    fn update_rules() {
        let Update { changes: c, rotate_token } = parse_update(&upd(json!({"projects_list": ""})), now()).unwrap();
        assert_eq!(c.projects_list, Some(vec![]));
        assert!(c.groups_list.is_none() && c.access_token.is_none() && c.start_date.is_none() && rotate_token.is_none());
        let only = parse_update(&upd(json!({"rotate_token": true})), now()).unwrap();
        assert!(only.changes.is_empty() && only.rotate_token == Some(true));
        assert_eq!(fields(&parse_update(&upd(json!({"rotate_token": "yes"})), now()).unwrap_err()), ["rotate_token"]);
        assert_eq!(fields(&parse_update(&upd(json!({})), now()).unwrap_err()), ["body"]);
        let errors = parse_update(&upd(json!({"gitlab_url": "https://x.example"})), now()).unwrap_err();
        assert_eq!(fields(&errors), ["gitlab_url"]);
        assert!(errors[0].message.contains("cannot be changed"));
        assert_eq!(fields(&parse_update(&upd(json!({"groups_list": "1 2"})), now()).unwrap_err()), ["groups_list"]);
    }
}
