//! GitLab's timestamp formats. The REST API and the hooks use different ones.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub type Ts = DateTime<Utc>;

/// REST API format: `2024-03-01T10:20:30.123Z`.
pub fn api(ts: &Ts) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn api_opt(ts: &Option<Ts>) -> serde_json::Value {
    ts.as_ref().map_or(serde_json::Value::Null, |t| api(t).into())
}

/// Hook payload format for most object attributes: `2024-03-01 10:20:30 UTC`.
pub fn hook(ts: &Ts) -> String {
    ts.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn hook_opt(ts: &Option<Ts>) -> serde_json::Value {
    ts.as_ref().map_or(serde_json::Value::Null, |t| hook(t).into())
}

/// Commit timestamps in hooks carry an offset: `2024-03-01T12:20:30+02:00`.
pub fn commit(ts: &Ts) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Member/subgroup/project hooks use second precision with `Z`.
pub fn zulu(ts: &Ts) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Wall-clock now, truncated to milliseconds so it survives a JSON round trip unchanged.
pub fn now() -> Ts {
    let now = Utc::now();
    Utc.timestamp_millis_opt(now.timestamp_millis()).single().unwrap_or(now)
}

/// Parses the ISO 8601 forms clients send in `since`, `updated_after`, ...
pub fn parse(value: &str) -> Option<Ts> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}
