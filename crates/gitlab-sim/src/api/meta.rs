//! Instance, current user and token endpoints.

use axum::extract::Path;
use serde_json::json;

use super::{ApiResult, Ctx, json};
use crate::error::SimError;
use crate::model::{Edition, OWNER};
use crate::render;
use crate::state::read;

pub async fn version(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    Ok(json(json!({"version": ds.instance.version, "revision": ds.instance.revision})))
}

pub async fn metadata(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let plain = ds.instance.version.split('-').next().unwrap_or_default().to_string();
    Ok(json(json!({
        "version": ds.instance.version,
        "revision": ds.instance.revision,
        "kas": {"enabled": false, "externalUrl": null, "externalK8sProxyUrl": null, "version": plain},
        "enterprise": ds.instance.edition == Edition::Ee,
    })))
}

pub async fn user(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let u = ds.user(ctx.caller.user_id).ok_or(SimError::Unauthorized)?;
    Ok(json(render::current_user(u, &ctx.base)))
}

pub async fn token_self(ctx: Ctx) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let t = ds.tokens.iter().find(|t| t.id == ctx.caller.token_id).ok_or(SimError::Unauthorized)?;
    Ok(json(render::token(t, true)))
}

pub async fn namespace(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let g = ds.group_by_ref(&id).filter(|g| ds.can_see_group(ctx.caller.user_id, g)).ok_or(SimError::NotFound("Namespace"))?;
    let owner = ds.group_access(ctx.caller.user_id, g.id).is_some_and(|l| l >= OWNER);
    Ok(json(render::namespace(&ds, g, &ctx.base, owner)))
}
