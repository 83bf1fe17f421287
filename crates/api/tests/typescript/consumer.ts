// The connection page as the Coworker frontend writes it against the generated types: every
// response type is read, the closed sets are switched on exhaustively (a value the schema adds
// and this code does not handle fails to compile), and the nested objects are read by field.
import type { components, paths } from "./generated/api";

type Schemas = components["schemas"];
type Status = Schemas["Status"];

function never(value: never): never {
  throw new Error(`unhandled ${String(value)}`);
}

export function statusLabel(status: Status): string {
  switch (status) {
    case "pending":
      return "Waiting to start";
    case "validating":
      return "Checking the token and groups";
    case "installing_hooks":
      return "Installing webhooks";
    case "backfilling":
      return "Importing history";
    case "live":
      return "Up to date";
    case "needs_reauth":
      return "Needs a new token";
    case "invalid":
      return "Needs a fix";
    case "failed":
      return "Failed";
    case "deleting":
      return "Disconnecting";
    case "paused":
      return "Paused";
    default:
      return never(status);
  }
}

export function healthBadge(health: Schemas["HealthView"]): string {
  const reasons = health.reasons.map((r: Schemas["HealthReasonView"]) => `${reasonText(r.code)} since ${r.since}: ${r.message}`);
  switch (health.state) {
    case "healthy":
      return "OK";
    case "warning":
      return `Attention: ${reasons.join("; ")}`;
    case "degraded":
      return `Behind: ${reasons.join("; ")}`;
    default:
      return never(health.state);
  }
}

function reasonText(code: Schemas["ReasonCode"]): string {
  switch (code) {
    case "hook_failing":
    case "hook_disabled":
    case "hook_missing":
      return "webhook";
    case "deliveries_refused":
    case "deliveries_backlog":
      return "deliveries";
    case "sync_failing":
    case "sync_behind":
      return "sync";
    case "token_expiring":
      return "token";
    default:
      return never(code);
  }
}

function hookLine(hook: Schemas["HookView"]): string {
  const scope: string = hook.scope === "group" ? "group" : hook.scope === "project" ? "project" : never(hook.scope);
  let state: string;
  switch (hook.status) {
    case "pending":
    case "active":
    case "failing":
    case "disabled":
    case "missing":
      state = hook.status;
      break;
    default:
      state = never(hook.status);
  }
  const id: number | null | undefined = hook.gitlab_hook_id;
  return `${scope} ${hook.target_id} (${id ?? "not installed"}): ${state}${hook.signed ? ", signed" : ""}`;
}

function hookMode(mode: Schemas["HookMode"] | null | undefined): string {
  switch (mode) {
    case "group":
    case "project":
    case "mixed":
      return mode;
    case null:
    case undefined:
      return "not yet";
    default:
      return never(mode);
  }
}

export function detailPage(detail: Schemas["ConnectionDetail"]): string[] {
  // Every field of an answer is sent, an unknown one as null: never undefined.
  const username: string | null = detail.gitlab_username;
  const expires: string | null = detail.token_expires_at;
  const p: Schemas["ProgressView"] = detail.progress;
  const r: Schemas["RecordCounts"] = p.records;
  const total: number = r.commits + r.merge_requests + r.issues + r.pipelines;
  const left: number | null | undefined = p.estimated_seconds_left;
  return [
    `${detail.gitlab_url} (${detail.token_hint}, ${username ?? "unvalidated"}, expiry ${expires ?? "none known"}): ${statusLabel(detail.status)} ${detail.status_message ?? ""}`,
    healthBadge(detail.health),
    `hooks: ${hookMode(detail.hook_mode)}`,
    `${p.projects_done}/${p.projects_total} projects, ${p.streams_done}/${p.streams_total} streams, ${total} records, ${left ?? "?"} s left`,
    ...detail.hooks.map(hookLine),
    ...detail.skipped.map((s: Schemas["SkippedView"]) => `skipped ${s.resource} of ${s.project_id}: ${s.reason}`),
    ...detail.failed_jobs.map((j: Schemas["FailedJobView"]) => `${j.job} failed after ${j.attempts}: ${j.reason}`),
  ];
}

export function listPage(list: Schemas["ConnectionList"]): string[] {
  const more: string | null = list.next_cursor;
  return list.items.map((c: Schemas["ConnectionView"]) => `${c.id} ${statusLabel(c.status)} ${c.groups_list.join(",")}`).concat(more ? ["more"] : []);
}

/** What a change means to the page: which object to re-read. */
export function changeTarget(change: Schemas["ChangeView"]): string {
  const k: Schemas["ChangeKey"] = change.key;
  let what: string;
  switch (change.entity) {
    case "project":
      what = `project ${k.gitlab_id}`;
      break;
    case "commit":
      what = `commit ${k.project_id}/${k.sha}`;
      break;
    case "merge_request":
    case "issue":
      what = `${change.entity} ${k.project_id}!${k.iid}`;
      break;
    case "note":
    case "pipeline":
      what = `${change.entity} ${k.project_id}/${k.gitlab_id}`;
      break;
    case "event":
      what = `${k.kind} ${k.object_key} ${k.action ?? ""}`;
      break;
    case "connection":
      what = `connection ${k.connection_id}`;
      break;
    default:
      what = never(change.entity);
  }
  const op: string = change.op === "insert" ? "new" : change.op === "update" ? "changed" : change.op === "delete" ? "gone" : never(change.op);
  return `${change.cursor}: ${what} ${op} at ${change.changed_at} (${change.connection_id})`;
}

export function feed(list: Schemas["ChangeList"]): string[] {
  return list.items.map(changeTarget);
}

/** Every error the API answers is shown by its code, which the page handles one by one. */
export function errorText(body: Schemas["ErrorBody"]): string {
  const e: Schemas["ErrorDetail"] = body.error;
  const fields = (e.details ?? []).map((d: Schemas["FieldError"]) => `${d.field}: ${d.message}`);
  switch (e.code) {
    case "validation_failed":
    case "unknown_parameter":
    case "idempotency_key_reused":
    case "bad_request":
    case "invalid_json":
      return `Fix ${e.field ?? "the request"}: ${fields.join("; ") || e.message}`;
    case "unauthorized":
      return "Sign in again";
    case "not_found":
    case "method_not_allowed":
      return "Not found";
    case "precondition_failed":
      return "Someone else changed this connection; reload it";
    case "conflict":
    case "limit_reached":
      return e.message;
    case "payload_too_large":
    case "unsupported_media_type":
    case "uri_too_long":
    case "headers_too_large":
      return "The request was not accepted";
    case "rate_limited":
    case "timeout":
    case "not_ready":
    case "internal":
      return "Try again later";
    default:
      return never(e.code);
  }
}

type Json<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 200: { content: { "application/json": infer B } } };
}
  ? B
  : never;

/** The data views, each read through its operation's own response type. */
export function dataViews(
  projects: Json<"/v1/connections/{id}/projects", "get">,
  commits: Json<"/v1/connections/{id}/commits", "get">,
  mrs: Json<"/v1/connections/{id}/merge_requests", "get">,
  issues: Json<"/v1/connections/{id}/issues", "get">,
  notes: Json<"/v1/connections/{id}/notes", "get">,
  pipelines: Json<"/v1/connections/{id}/pipelines", "get">,
): string[] {
  return [
    ...projects.items.map((p: Schemas["ProjectView"]) => `${p.id} ${p.path_with_namespace}`),
    ...commits.items.map((c: Schemas["CommitView"]) => `${c.sha} ${c.title} ${c.committed_at ?? ""}`),
    ...mrs.items.map((m: Schemas["MergeRequestView"]) => `!${m.iid} ${m.title} ${m.state}`),
    ...issues.items.map((i: Schemas["IssueView"]) => `#${i.iid} ${i.title} ${i.state}`),
    ...notes.items.map((n: Schemas["NoteView"]) => `${n.id} ${n.noteable_type}`),
    ...pipelines.items.map((p: Schemas["PipelineView"]) => `${p.id} ${p.status}`),
  ];
}

/** The create form: what it sends, and the answer it reads. */
export function createRequest(token: string, groups: string): Schemas["CreateConnectionRequest"] {
  return { access_token: token, groups_list: groups, start_date: "2024-01-01T00:00:00Z" };
}

export type Created = paths["/v1/connections"]["post"]["responses"][201]["content"]["application/json"];
export type Idempotency = NonNullable<paths["/v1/connections"]["post"]["parameters"]["header"]>["Idempotency-Key"];

/** The form's check before saving: each problem shown under its field, with what to do. */
export function checkPanel(check: Json<"/v1/connection-checks", "post">): Map<string, string[]> {
  const byField = new Map<string, string[]>();
  for (const p of check.problems as Schemas["ProblemView"][]) {
    const field: Schemas["ProblemField"] = p.field;
    const label = (() => {
      switch (p.kind) {
        case "invalid":
          return "Fix";
        case "needs_reauth":
          return "New token needed";
        case "unavailable":
          return "Check again";
        default:
          return never(p.kind);
      }
    })();
    byField.set(field, [...(byField.get(field) ?? []), `${label}: ${p.message}`]);
  }
  const t: Schemas["TokenView"] | null = check.token;
  const u: Schemas["UserView"] | null = check.user;
  const summary = [
    check.ok ? `Ready: ${hookMode(check.hook_mode)}` : "Not ready",
    t ? `token ${t.scopes.join(",")} expires ${t.expires_at ?? "never"}${t.expires_soon ? " (soon)" : ""}` : "token not accepted",
    u ? `as ${u.username} (${u.id})` : "",
    ...check.groups.map((g: Schemas["GroupView"]) => `${g.full_path} ${g.plan ?? "plan unknown"} ${g.role}: ${g.hooks} hooks, ${g.why}`),
    `${check.projects.count}${check.projects.complete ? "" : "+"} projects: ${check.projects.first.map((p: Schemas["ProjectRef"]) => p.path_with_namespace).join(", ")}`,
    check.notice ?? "",
  ];
  byField.set("summary", summary);
  return byField;
}

/** A change read with `include=object`: its object's state now, or gone. */
export function embedded(change: Schemas["ChangeView"]): string {
  const o: Schemas["ObjectView"] | null = change.object;
  if (o === null) {
    return `${changeTarget(change)}: nothing to show`;
  }
  return `${changeTarget(change)}: ${JSON.stringify(o)}`;
}

/** One object read by the key a change names, each through its operation's own type. */
export function objectViews(
  project: Json<"/v1/connections/{id}/projects/{project_id}", "get">,
  commit: Json<"/v1/connections/{id}/projects/{project_id}/commits/{sha}", "get">,
  mr: Json<"/v1/connections/{id}/projects/{project_id}/merge_requests/{iid}", "get">,
  issue: Json<"/v1/connections/{id}/projects/{project_id}/issues/{iid}", "get">,
  note: Json<"/v1/connections/{id}/projects/{project_id}/notes/{note_id}", "get">,
  pipeline: Json<"/v1/connections/{id}/projects/{project_id}/pipelines/{pipeline_id}", "get">,
): string[] {
  return [
    project.path_with_namespace,
    `${commit.sha} ${commit.authored_at ?? ""}`,
    `!${mr.iid} ${mr.commit_shas.length} commits, merged ${mr.merged_at ?? "no"}`,
    `#${issue.iid} ${issue.labels.join(",")}`,
    `${note.id} on ${note.noteable_type} ${note.noteable_iid ?? note.commit_sha ?? ""}`,
    `${pipeline.id} ${pipeline.duration_seconds ?? 0}s`,
  ];
}
