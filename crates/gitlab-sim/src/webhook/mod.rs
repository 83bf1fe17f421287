//! Webhook delivery: which hooks an event reaches, the request GitLab would send, failure
//! counting and auto-disabling, and the log behind the hook events API.

pub mod payloads;
pub mod signing;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::model::{Hook, HookEvents, HookOwner};
use crate::state::{Simulator, lock, read, write};
use crate::time::{self, Ts};

/// The kinds of hook the simulator fires, named by their `X-Gitlab-Event` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Trigger {
    Push,
    TagPush,
    Issue,
    ConfidentialIssue,
    Note,
    ConfidentialNote,
    MergeRequest,
    Pipeline,
    Job,
    Member,
    Subgroup,
    Project,
    Release,
    Deployment,
}

impl Trigger {
    pub fn header(self) -> &'static str {
        match self {
            Trigger::Push => "Push Hook",
            Trigger::TagPush => "Tag Push Hook",
            Trigger::Issue => "Issue Hook",
            Trigger::ConfidentialIssue => "Confidential Issue Hook",
            Trigger::Note => "Note Hook",
            Trigger::ConfidentialNote => "Confidential Note Hook",
            Trigger::MergeRequest => "Merge Request Hook",
            Trigger::Pipeline => "Pipeline Hook",
            Trigger::Job => "Job Hook",
            Trigger::Member => "Member Hook",
            Trigger::Subgroup => "Subgroup Hook",
            Trigger::Project => "Project Hook",
            Trigger::Release => "Release Hook",
            Trigger::Deployment => "Deployment Hook",
        }
    }

    /// The `trigger` value in the hook events API (GitLab's hook scope names).
    pub fn scope(self) -> &'static str {
        match self {
            Trigger::Push => "push_hooks",
            Trigger::TagPush => "tag_push_hooks",
            Trigger::Issue => "issue_hooks",
            Trigger::ConfidentialIssue => "confidential_issue_hooks",
            Trigger::Note => "note_hooks",
            Trigger::ConfidentialNote => "confidential_note_hooks",
            Trigger::MergeRequest => "merge_request_hooks",
            Trigger::Pipeline => "pipeline_hooks",
            Trigger::Job => "job_hooks",
            Trigger::Member => "member_hooks",
            Trigger::Subgroup => "subgroup_hooks",
            Trigger::Project => "project_hooks",
            Trigger::Release => "release_hooks",
            Trigger::Deployment => "deployment_hooks",
        }
    }

    fn subscribed(self, e: &HookEvents) -> bool {
        match self {
            Trigger::Push => e.push_events,
            Trigger::TagPush => e.tag_push_events,
            Trigger::Issue => e.issues_events,
            Trigger::ConfidentialIssue => e.confidential_issues_events,
            Trigger::Note => e.note_events,
            Trigger::ConfidentialNote => e.confidential_note_events,
            Trigger::MergeRequest => e.merge_requests_events,
            Trigger::Pipeline => e.pipeline_events,
            Trigger::Job => e.job_events,
            Trigger::Member => e.member_events,
            Trigger::Subgroup => e.subgroup_events,
            Trigger::Project => e.project_events,
            Trigger::Release => e.releases_events,
            Trigger::Deployment => e.deployment_events,
        }
    }

    /// Events that only group hooks receive.
    fn group_only(self) -> bool {
        matches!(self, Trigger::Member | Trigger::Subgroup | Trigger::Project)
    }
}

/// Something that happened, ready to be delivered.
#[derive(Debug, Clone)]
pub struct Event {
    pub trigger: Trigger,
    pub payload: Value,
    /// The project the event belongs to (its hooks and its groups' hooks fire).
    pub project_id: Option<u64>,
    /// For group events: the group whose hooks (and ancestors' hooks) fire.
    pub group_id: Option<u64>,
    /// For pushes: the branch, checked against `push_events_branch_filter`.
    pub branch: Option<String>,
}

/// One delivery attempt, as the hook events API lists them.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: u64,
    pub hook_id: u64,
    pub kind: Trigger,
    pub event: &'static str,
    pub trigger: &'static str,
    pub url: String,
    pub idempotency_key: String,
    pub event_uuid: String,
    pub request_headers: BTreeMap<String, String>,
    pub request_body: String,
    pub response_status: Option<u16>,
    pub response_body: String,
    pub error: Option<String>,
    pub execution_duration: f64,
    pub created_at: Ts,
}

impl Delivery {
    pub fn ok(&self) -> bool {
        self.response_status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Deliveries kept for inspection; the oldest go first past the cap.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    pub deliveries: Vec<Delivery>,
    next_id: u64,
    /// Hooks whose deliveries fail, without being sent, with this probability (1.0 = always),
    /// as if the receiver were down.
    pub failing_hooks: std::collections::HashMap<u64, f64>,
}

const LOG_CAP: usize = 20_000;

impl DeliveryLog {
    fn add(&mut self, mut d: Delivery) -> u64 {
        self.next_id += 1;
        d.id = self.next_id;
        if self.deliveries.len() >= LOG_CAP {
            self.deliveries.drain(..LOG_CAP / 10);
        }
        self.deliveries.push(d);
        self.next_id
    }

    pub fn for_hook(&self, hook_id: u64) -> impl Iterator<Item = &Delivery> {
        self.deliveries.iter().filter(move |d| d.hook_id == hook_id)
    }
}

fn executable(hook: &Hook, now: Ts) -> bool {
    hook.alert_status(now) == "executable"
}

/// `*` wildcards as in `push_events_branch_filter` with the `wildcard` strategy.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

fn branch_matches(hook: &Hook, branch: Option<&str>) -> bool {
    let (Some(filter), Some(branch)) = (hook.push_events_branch_filter.as_deref(), branch) else {
        return true;
    };
    match hook.branch_filter_strategy.as_str() {
        "all_branches" => true,
        _ if filter.is_empty() => true,
        // No regex engine here: a regex filter matches only its literal text.
        "regex" => filter == branch,
        _ => wildcard(filter, branch),
    }
}

/// The hooks an event reaches now, with the ones skipped counted.
fn targets(sim: &Simulator, event: &Event) -> Vec<Hook> {
    let ds = read(&sim.shared.data);
    let now = time::now();
    let group_chain: Vec<u64> = match (event.project_id.and_then(|id| ds.project(id)), event.group_id) {
        (Some(p), _) => ds.ancestry(p.namespace_id).iter().map(|g| g.id).collect(),
        (None, Some(g)) => ds.ancestry(g).iter().map(|g| g.id).collect(),
        (None, None) => Vec::new(),
    };
    let licensed = group_chain.first().is_some_and(|g| ds.group_hooks_licensed(*g));
    let mut out = Vec::new();
    let mut suppressed = 0;
    for hook in &ds.hooks {
        let reaches = match hook.owner {
            HookOwner::Project(id) => !event.trigger.group_only() && Some(id) == event.project_id,
            HookOwner::Group(id) => group_chain.contains(&id),
        };
        if !reaches || !event.trigger.subscribed(&hook.events) {
            continue;
        }
        if event.trigger == Trigger::Push && !branch_matches(hook, event.branch.as_deref()) {
            continue;
        }
        // EE gates group hook execution on the license, not hook creation.
        let allowed = matches!(hook.owner, HookOwner::Project(_)) || licensed;
        if allowed && executable(hook, now) {
            out.push(hook.clone());
        } else {
            suppressed += 1;
        }
    }
    lock(&sim.shared.stats).webhooks_suppressed += suppressed;
    out
}

/// Fires an event at every hook it reaches, in the background.
pub(crate) fn dispatch(sim: &Simulator, events: Vec<Event>) -> JoinHandle<()> {
    let sim = sim.clone();
    let planned: Vec<(Hook, Event)> = events.into_iter().flat_map(|e| targets(&sim, &e).into_iter().map(move |h| (h, e.clone()))).collect();
    tokio::spawn(async move {
        let config = read(&sim.shared.config).delivery.clone();
        let mut tasks = Vec::new();
        for (hook, event) in planned {
            let delay = if config.out_of_order_ms > 0 {
                config.delay_ms + lock(&sim.shared.rng).range(0, config.out_of_order_ms)
            } else {
                config.delay_ms
            };
            let idempotency_key = uuid::Uuid::new_v4().to_string();
            let event_uuid = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_string(&event.payload).unwrap_or_default();
            let sim = sim.clone();
            let copies = if config.duplicate { 2 } else { 1 };
            let task = async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                for _ in 0..copies {
                    deliver(&sim, &hook, event.trigger, &body, &idempotency_key, &event_uuid).await;
                }
            };
            // With reordering, hooks' requests race; otherwise they go one after another.
            if config.out_of_order_ms > 0 {
                tasks.push(tokio::spawn(task));
            } else {
                task.await;
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Sends one request and records it; returns the delivery's id.
pub(crate) async fn deliver(sim: &Simulator, hook: &Hook, trigger: Trigger, body: &str, idempotency_key: &str, event_uuid: &str) -> u64 {
    let (version, instance) = {
        let ds = read(&sim.shared.data);
        (ds.instance.version.clone(), sim.base_url())
    };
    let timeout = read(&sim.shared.config).delivery.timeout_ms;
    let timestamp = chrono::Utc::now().timestamp();
    let mut headers: Vec<(String, String)> = hook.custom_headers.clone();
    let fixed = [
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", format!("GitLab/{version}")),
        ("X-Gitlab-Event", trigger.header().to_string()),
        ("X-Gitlab-Webhook-UUID", uuid::Uuid::new_v4().to_string()),
        ("X-Gitlab-Instance", instance),
        ("X-Gitlab-Event-UUID", event_uuid.to_string()),
        ("Idempotency-Key", idempotency_key.to_string()),
        ("webhook-id", idempotency_key.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    // Custom headers cannot override the delivery headers.
    headers.retain(|(k, _)| !fixed.iter().any(|(f, _)| f.eq_ignore_ascii_case(k)));
    headers.extend(fixed.iter().map(|(k, v)| (k.to_string(), v.clone())));
    if let Some(token) = &hook.token {
        headers.push(("X-Gitlab-Token".into(), token.replace(['\r', '\n'], "")));
    }
    if let Some(sig) = hook.signing_token.as_deref().and_then(|t| signing::sign(t, idempotency_key, timestamp, body.as_bytes())) {
        headers.push(("webhook-signature".into(), sig));
    }
    let started = Instant::now();
    let fail_rate = lock(&sim.shared.deliveries).failing_hooks.get(&hook.id).copied().unwrap_or(0.0);
    let forced = fail_rate > 0.0 && lock(&sim.shared.rng).chance(fail_rate);
    let (status, response_body, error) = if forced {
        (None, String::new(), Some("simulated failure".to_string()))
    } else {
        let mut req = sim.shared.http.post(&hook.url).timeout(Duration::from_millis(timeout)).body(body.to_string());
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (Some(status), text.chars().take(2_000).collect(), None)
            }
            Err(e) => (None, String::new(), Some(e.to_string())),
        }
    };
    let delivery = Delivery {
        id: 0,
        hook_id: hook.id,
        kind: trigger,
        event: trigger.header(),
        trigger: trigger.scope(),
        url: hook.url.clone(),
        idempotency_key: idempotency_key.to_string(),
        event_uuid: event_uuid.to_string(),
        request_headers: headers.into_iter().collect(),
        request_body: body.to_string(),
        response_status: status,
        response_body,
        error,
        execution_duration: started.elapsed().as_secs_f64(),
        created_at: time::now(),
    };
    let ok = delivery.ok();
    {
        let mut stats = lock(&sim.shared.stats);
        stats.webhooks_sent += 1;
        if !ok {
            stats.webhooks_failed += 1;
        }
    }
    record_outcome(sim, hook.id, ok);
    lock(&sim.shared.deliveries).add(delivery)
}

/// GitLab's WebHooks::AutoDisabling: 4 consecutive failures disable the hook for a minute,
/// doubling each time up to a day; 40 disable it for good. A success clears everything.
const TEMPORARY_THRESHOLD: u32 = 4;
const PERMANENT_THRESHOLD: u32 = 40;
const MAX_BACKOFF_SECS: i64 = 24 * 3600;

fn record_outcome(sim: &Simulator, hook_id: u64, ok: bool) {
    let auto_disable = read(&sim.shared.config).delivery.auto_disable;
    let mut ds = write(&sim.shared.data);
    let Some(hook) = ds.hooks.iter_mut().find(|h| h.id == hook_id) else {
        return;
    };
    if ok {
        hook.recent_failures = 0;
        hook.backoff_count = 0;
        hook.disabled_until = None;
        hook.permanently_disabled = false;
        return;
    }
    hook.recent_failures = hook.recent_failures.saturating_add(1);
    if !auto_disable {
        return;
    }
    if hook.recent_failures >= PERMANENT_THRESHOLD {
        hook.permanently_disabled = true;
        hook.disabled_until = None;
    } else if hook.recent_failures >= TEMPORARY_THRESHOLD {
        let secs = (60i64 << hook.backoff_count.min(20)).min(MAX_BACKOFF_SECS);
        hook.backoff_count += 1;
        hook.disabled_until = Some(time::now() + chrono::Duration::seconds(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_filters() {
        assert!(wildcard("main", "main"));
        assert!(!wildcard("main", "maint"));
        assert!(wildcard("feature/*", "feature/日本語"));
        assert!(wildcard("*-stable", "16-stable"));
        assert!(!wildcard("release/*", "feature/x"));
    }
}
