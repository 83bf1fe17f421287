//! `POST /personal_access_tokens/self/rotate`, as doc/api/personal_access_tokens.md describes it
//! ("Rotate a personal access token", "Self-rotate", "Automatic reuse detection"; GitLab 16.10+):
//!
//! - the token in the request is revoked and a new one with its name, description, scopes and
//!   user is created and returned once, with `token`; `200 OK`;
//! - `expires_at` (`YYYY-MM-DD`, in the JSON body or the query) sets the new expiry; without it
//!   the new token expires after one week; a date that is not one, not in the future or past
//!   the maximum lifetime (365 days) is a `400 Bad Request`, and nothing is rotated;
//! - only a token with scope `api` or `self_rotate` may rotate itself: else `403 Forbidden`;
//! - an unknown or expired token is a `401 Unauthorized`; a revoked one too, and presenting a
//!   revoked token for rotation revokes every active token of its family (each rotation links
//!   the new token to the old one): reuse of a rotated token is taken for a leak.
//!
//! The route authenticates itself rather than behind the common layer, which turns a revoked
//! token away before the family could be revoked.
//!
//! Two faults hold a rotation on either side of GitLab's work, for tests that cut the client off
//! there: `rotation_request_delay_ms` before anything is done, `rotation_answer_delay_ms` after.

use axum::extract::{Request, State};
use axum::response::IntoResponse;
use chrono::{Duration, NaiveDate, Utc};

use super::{ApiResult, json};
use crate::dataset::Ids;
use crate::error::SimError;
use crate::model::Token;
use crate::render;
use crate::state::{Simulator, lock, read, write};
use crate::time;

/// GitLab's default maximum lifetime of an access token.
const MAX_LIFETIME_DAYS: i64 = 365;
/// The new token's lifetime when the request names none.
const DEFAULT_LIFETIME_DAYS: i64 = 7;
/// The most of a request body read: a rotation's body is one date.
const MAX_BODY: usize = 4096;

pub async fn rotate_self(State(sim): State<Simulator>, req: Request) -> ApiResult {
    let hold = read(&sim.shared.config).faults.rotation_request_delay_ms;
    if hold > 0 {
        lock(&sim.shared.stats).rotation_requests_held += 1;
        tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
    }
    let presented = crate::auth::presented_token(&req).ok_or(SimError::Unauthorized)?;
    let query_date = req
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "expires_at").map(|(_, v)| v.into_owned()));
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| SimError::BadRequest("body too large".into()))?;
    let body_date = match body.is_empty() {
        true => None,
        false => serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|_| SimError::BadRequest("body is not JSON".into()))?
            .get("expires_at")
            .and_then(|v| v.as_str().map(str::to_owned)),
    };
    let today = Utc::now().date_naive();
    let expires_at = match body_date.or(query_date) {
        None => today + Duration::days(DEFAULT_LIFETIME_DAYS),
        Some(raw) => {
            let date = NaiveDate::parse_from_str(&raw, "%Y-%m-%d").map_err(|_| SimError::InvalidParam("expires_at"))?;
            if date <= today || date > today + Duration::days(MAX_LIFETIME_DAYS) {
                return Err(SimError::BadRequest(format!(
                    "Expiration date must be between tomorrow and {MAX_LIFETIME_DAYS} days from now"
                )));
            }
            date
        }
    };

    let answer = {
        let mut ds = write(&sim.shared.data);
        let Some(old) = ds.tokens.iter().find(|t| t.value == presented).cloned() else { return Err(SimError::Unauthorized) };
        if old.revoked {
            revoke_family(&mut ds.tokens, old.id);
            return Err(SimError::TokenRevoked);
        }
        if old.expires_at.is_some_and(|d| d <= today) {
            return Err(SimError::TokenExpired);
        }
        if !old.scopes.iter().any(|s| s == "api" || s == "self_rotate") {
            return Err(SimError::InsufficientScope);
        }
        let value = format!("glpat-{}", &lock(&sim.shared.rng).sha()[..20]);
        let new = Token {
            id: Ids::next(&mut ds.ids.token),
            value,
            created_at: time::now(),
            expires_at: Some(expires_at),
            revoked: false,
            rotated_from: Some(old.id),
            ..old.clone()
        };
        if let Some(t) = ds.tokens.iter_mut().find(|t| t.id == old.id) {
            t.revoked = true;
        }
        let mut answer = render::token(&new, true);
        answer["token"] = new.value.clone().into();
        ds.tokens.push(new);
        lock(&sim.shared.stats).token_rotations += 1;
        answer
    };
    let delay = read(&sim.shared.config).faults.rotation_answer_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    Ok(json(answer).into_response())
}

/// Revokes every token linked to `member` by rotation, before and after it.
fn revoke_family(tokens: &mut [Token], member: u64) {
    let root = |id: u64, tokens: &[Token]| {
        let mut at = id;
        while let Some(parent) = tokens.iter().find(|t| t.id == at).and_then(|t| t.rotated_from) {
            at = parent;
        }
        at
    };
    let family = root(member, tokens);
    let members: Vec<u64> = tokens.iter().filter(|t| root(t.id, tokens) == family).map(|t| t.id).collect();
    for t in tokens.iter_mut().filter(|t| members.contains(&t.id)) {
        t.revoked = true;
    }
}
