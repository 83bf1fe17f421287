//! The examples `openapi.yaml` shows for each schema: Rust values of the types the service
//! answers with, serialized by the same serde code, so an example cannot show a field the service
//! does not send or a shape it does not have. They tell one story: tenant acme's connection to
//! the group `acme/platform` (Premium, group hooks), live, its token expiring soon.

use chrono::{DateTime, NaiveDate, Utc};
use connector_store::connections::{HookMode, Status};
use connector_store::health::{HealthState, ReasonCode};
use connector_store::hooks::{HookScope, HookStatus};
use connector_store::read::{ChangeEntity, ChangeKey, ChangeOp, FeedPosition};
use connector_store::sync::Resource;
use serde_json::json;
use uuid::Uuid;

use crate::checks::{ConnectionCheck, GroupView, ProblemField, ProblemKind, ProblemView, ProjectRef, ProjectsView, TokenView, UserView};
use crate::connections::input::{CreateConnectionRequest, UpdateConnectionRequest};
use crate::connections::{
    ConnectionDetail, ConnectionList, ConnectionView, FailedJobView, HealthReasonView, HealthView, HookView, ProgressView, RecordCounts,
    RefetchScope, ResyncRequest, SkippedView,
};
use crate::data::{
    ChangeList, ChangeView, CommitList, CommitView, IssueList, IssueView, MergeRequestList, MergeRequestView, NoteList, NoteView,
    PipelineList, PipelineView, ProjectList, ProjectView, encode_cursor, feed_cursor,
};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail, FieldError};
use crate::objects::ObjectView;

const CONNECTION: Uuid = Uuid::from_u128(0x3f0c6a52_9d1e_4b7a_8c55_2e41d7a9b013);
const HOOK: Uuid = Uuid::from_u128(0x8a21f4c0_77b3_4e09_a1d2_5c6e9f0b4d27);
const GROUP: i64 = 123;
const PROJECT: i64 = 4567;
const PROJECT_PATH: &str = "acme/platform/backend";
const PROJECT_URL: &str = "https://gitlab.com/acme/platform/backend";
const SHA: &str = "6104942438c14ec7bd21c6cd5bd995272b3faff6";
const PARENT_SHA: &str = "ae73cb07c9eeaf35924a10f713b364d32b2dd34f";
const MERGE_SHA: &str = "1e4f5c1b3a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f";
const MR_IID: i64 = 17;
const ISSUE_IID: i64 = 42;
const NOTE: i64 = 305718;
const PIPELINE: i64 = 990451;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("examples' times are RFC 3339").to_utc()
}

fn day(text: &str) -> NaiveDate {
    text.parse().expect("examples' days are dates")
}

pub fn field_error() -> FieldError {
    FieldError::new("start_date", "must be an RFC 3339 time with a time zone, e.g. 2024-01-01T00:00:00Z")
}

pub fn error_detail() -> ErrorDetail {
    ErrorDetail {
        code: ErrorCode::ValidationFailed,
        message: "2 fields are missing or wrong".into(),
        field: Some("groups_list".into()),
        details: vec![FieldError::new("groups_list", "must be group ids separated by commas without spaces, e.g. 123,456"), field_error()],
    }
}

pub fn error_body() -> ErrorBody {
    ErrorBody { error: error_detail() }
}

pub fn create_connection_request() -> CreateConnectionRequest {
    CreateConnectionRequest {
        access_token: Some(json!("glpat-xxxxxxxxxxxxxxxxxxxx")),
        groups_list: Some(json!(GROUP.to_string())),
        projects_list: Some(json!("")),
        start_date: Some(json!("2024-01-01T00:00:00Z")),
        gitlab_url: Some(json!("https://gitlab.com")),
        rotate_token: Some(json!(true)),
        ..CreateConnectionRequest::default()
    }
}

pub fn update_connection_request() -> UpdateConnectionRequest {
    UpdateConnectionRequest { access_token: Some(json!("glpat-yyyyyyyyyyyyyyyyyyyy")), ..UpdateConnectionRequest::default() }
}

pub fn refetch_scope() -> RefetchScope {
    RefetchScope { project_id: Some(PROJECT), resource: Some(Resource::MergeRequests), ..RefetchScope::default() }
}

pub fn resync_request() -> ResyncRequest {
    ResyncRequest { refetch: Some(refetch_scope()), ..ResyncRequest::default() }
}

pub fn health_reason() -> HealthReasonView {
    HealthReasonView {
        code: ReasonCode::TokenExpiring,
        message: "the access token expires on 2026-12-16: replace it (PATCH access_token) or let the connector rotate it".into(),
        since: at("2026-12-02T06:00:00Z"),
    }
}

pub fn health() -> HealthView {
    HealthView { state: HealthState::Warning, reasons: vec![health_reason()] }
}

pub fn connection() -> ConnectionView {
    ConnectionView {
        id: CONNECTION,
        status: Status::Live,
        status_message: None,
        gitlab_url: "https://gitlab.com".into(),
        groups_list: vec![GROUP],
        projects_list: Vec::new(),
        start_date: at("2024-01-01T00:00:00Z"),
        token_hint: "x7Qz".into(),
        created_at: at("2026-11-30T09:12:44Z"),
        updated_at: at("2026-11-30T09:31:05Z"),
        gitlab_username: Some("jdoe".into()),
        token_expires_at: Some(day("2026-12-16")),
        rotate_token: false,
        hook_mode: Some(HookMode::Group),
        project_count: Some(12),
        last_synced_at: Some(at("2026-12-02T08:00:13Z")),
        health: health(),
    }
}

pub fn connection_list() -> ConnectionList {
    ConnectionList { items: vec![connection()], next_cursor: None }
}

pub fn record_counts() -> RecordCounts {
    RecordCounts { commits: 18342, merge_requests: 1207, issues: 960, pipelines: 5411 }
}

pub fn progress() -> ProgressView {
    ProgressView {
        projects_total: 12,
        projects_done: 12,
        records: record_counts(),
        streams_done: 48,
        streams_total: 48,
        estimated_seconds_left: None,
    }
}

pub fn hook() -> HookView {
    HookView {
        id: HOOK,
        scope: HookScope::Group,
        target_id: GROUP,
        gitlab_hook_id: Some(80112),
        status: HookStatus::Active,
        status_message: None,
        signed: true,
        last_delivery_at: Some(at("2026-12-02T08:41:27Z")),
    }
}

pub fn skipped() -> SkippedView {
    SkippedView {
        project_id: PROJECT,
        resource: Resource::Issues,
        reason: "issues are switched off in this project".into(),
        recorded_at: at("2026-11-30T09:20:51Z"),
    }
}

pub fn failed_job() -> FailedJobView {
    FailedJobView {
        job: "install_hooks".into(),
        attempts: 5,
        reason: "GitLab answered 403 Forbidden to adding a hook to project 4570: the token's user needs the Maintainer role there".into(),
        failed_at: at("2026-11-30T09:25:02Z"),
    }
}

pub fn connection_detail() -> ConnectionDetail {
    ConnectionDetail {
        connection: connection(),
        progress: progress(),
        hooks: vec![hook()],
        skipped: vec![skipped()],
        failed_jobs: vec![failed_job()],
    }
}

pub fn token() -> TokenView {
    TokenView { scopes: vec!["api".into()], expires_at: Some(day("2026-12-16")), expires_soon: true }
}

pub fn user() -> UserView {
    UserView { id: 1001, username: "jdoe".into() }
}

pub fn group() -> GroupView {
    GroupView {
        id: GROUP,
        full_path: "acme/platform".into(),
        plan: Some("premium".into()),
        role: "the Owner role".into(),
        hooks: HookScope::Group,
        why: "the group's plan has group webhooks and the user may add them".into(),
    }
}

pub fn project_ref() -> ProjectRef {
    ProjectRef { id: PROJECT as u64, path_with_namespace: PROJECT_PATH.into() }
}

pub fn projects_found() -> ProjectsView {
    ProjectsView { count: 12, complete: true, first: vec![project_ref()] }
}

pub fn problem() -> ProblemView {
    ProblemView {
        field: ProblemField::GroupsList,
        kind: ProblemKind::Invalid,
        message: "group 124 was not found, or the token's user cannot see it: check the id, or add the user to the group".into(),
    }
}

pub fn connection_check() -> ConnectionCheck {
    ConnectionCheck {
        ok: false,
        token: Some(token()),
        user: Some(user()),
        groups: vec![group()],
        hook_mode: None,
        projects: projects_found(),
        notice: Some("the token expires on 2026-12-16".into()),
        problems: vec![problem()],
    }
}

pub fn project() -> ProjectView {
    ProjectView {
        id: PROJECT,
        path_with_namespace: PROJECT_PATH.into(),
        name: "backend".into(),
        namespace_id: Some(GROUP),
        default_branch: Some("main".into()),
        visibility: Some("private".into()),
        web_url: Some(PROJECT_URL.into()),
        archived: false,
        created_at: Some(at("2023-05-11T14:02:09Z")),
        last_activity_at: Some(at("2026-12-02T08:41:20Z")),
        deleted_at: None,
        synced_at: at("2026-12-02T08:41:27Z"),
    }
}

pub fn commit() -> CommitView {
    CommitView {
        project_id: PROJECT,
        sha: SHA.into(),
        title: "Retry the export when the bucket answers 503".into(),
        message: "Retry the export when the bucket answers 503\n\nThe nightly export failed twice last week.\n".into(),
        author_name: Some("Jane Doe".into()),
        author_email: Some("jane@acme.example".into()),
        authored_at: Some(at("2026-12-01T16:20:31Z")),
        committer_name: Some("Jane Doe".into()),
        committer_email: Some("jane@acme.example".into()),
        committed_at: Some(at("2026-12-01T16:22:04Z")),
        parent_ids: vec![PARENT_SHA.into()],
        web_url: Some(format!("{PROJECT_URL}/-/commit/{SHA}")),
        synced_at: at("2026-12-01T16:22:09Z"),
    }
}

pub fn merge_request() -> MergeRequestView {
    MergeRequestView {
        project_id: PROJECT,
        iid: MR_IID,
        id: 310224,
        title: "Retry the export on 503".into(),
        description: Some("Closes #42".into()),
        state: "merged".into(),
        author_id: Some(1001),
        author_username: Some("jdoe".into()),
        source_branch: Some("export-retry".into()),
        target_branch: Some("main".into()),
        sha: Some(SHA.into()),
        merge_commit_sha: Some(MERGE_SHA.into()),
        commit_shas: vec![SHA.into()],
        web_url: Some(format!("{PROJECT_URL}/-/merge_requests/{MR_IID}")),
        created_at: Some(at("2026-12-01T16:25:40Z")),
        updated_at: at("2026-12-02T08:41:20Z"),
        merged_at: Some(at("2026-12-02T08:41:19Z")),
        closed_at: None,
        synced_at: at("2026-12-02T08:41:27Z"),
    }
}

pub fn issue() -> IssueView {
    IssueView {
        project_id: PROJECT,
        iid: ISSUE_IID,
        id: 188930,
        issue_type: "issue".into(),
        title: "Nightly export fails when the bucket is busy".into(),
        description: Some("Seen on 2026-11-24 and 2026-11-26.".into()),
        state: "closed".into(),
        author_id: Some(1002),
        author_username: Some("asmith".into()),
        labels: vec!["bug".into(), "export".into()],
        confidential: false,
        web_url: Some(format!("{PROJECT_URL}/-/issues/{ISSUE_IID}")),
        created_at: Some(at("2026-11-26T10:03:12Z")),
        updated_at: at("2026-12-02T08:41:21Z"),
        closed_at: Some(at("2026-12-02T08:41:21Z")),
        synced_at: at("2026-12-02T08:41:27Z"),
    }
}

pub fn note() -> NoteView {
    NoteView {
        project_id: PROJECT,
        id: NOTE,
        noteable_type: "MergeRequest".into(),
        noteable_iid: Some(MR_IID),
        commit_sha: None,
        body: "Looks good; could the retry count be a setting?".into(),
        author_id: Some(1002),
        author_username: Some("asmith".into()),
        system: false,
        created_at: Some(at("2026-12-01T17:02:55Z")),
        updated_at: at("2026-12-01T17:02:55Z"),
        synced_at: at("2026-12-01T17:03:01Z"),
    }
}

pub fn pipeline() -> PipelineView {
    PipelineView {
        project_id: PROJECT,
        id: PIPELINE,
        iid: Some(3120),
        status: "success".into(),
        source: Some("merge_request_event".into()),
        git_ref: Some("refs/merge-requests/17/head".into()),
        sha: Some(SHA.into()),
        web_url: Some(format!("{PROJECT_URL}/-/pipelines/{PIPELINE}")),
        created_at: Some(at("2026-12-01T16:25:44Z")),
        updated_at: at("2026-12-01T16:31:10Z"),
        finished_at: Some(at("2026-12-01T16:31:10Z")),
        duration_seconds: Some(318.0),
        synced_at: at("2026-12-01T16:31:15Z"),
    }
}

pub fn object() -> ObjectView {
    ObjectView::MergeRequest(merge_request())
}

fn feed_position() -> FeedPosition {
    FeedPosition { xid: 8812034, seq: 2 }
}

pub fn change() -> ChangeView {
    ChangeView {
        cursor: feed_cursor(feed_position()),
        connection_id: CONNECTION,
        entity: ChangeEntity::MergeRequest,
        op: ChangeOp::Update,
        key: ChangeKey { project_id: Some(PROJECT), iid: Some(MR_IID), ..ChangeKey::default() },
        changed_at: at("2026-12-02T08:41:27Z"),
        object: Some(object()),
    }
}

pub fn change_list() -> ChangeList {
    ChangeList { items: vec![change()], next_cursor: feed_cursor(feed_position()) }
}

// A page that is not the last: its cursor is the one the service would hand out after its item.

pub fn project_list() -> ProjectList {
    ProjectList { items: vec![project()], next_cursor: Some(encode_cursor("projects", PROJECT)) }
}

pub fn commit_list() -> CommitList {
    CommitList { items: vec![commit()], next_cursor: None }
}

pub fn merge_request_list() -> MergeRequestList {
    MergeRequestList { items: vec![merge_request()], next_cursor: None }
}

pub fn issue_list() -> IssueList {
    IssueList { items: vec![issue()], next_cursor: None }
}

pub fn note_list() -> NoteList {
    NoteList { items: vec![note()], next_cursor: None }
}

pub fn pipeline_list() -> PipelineList {
    PipelineList { items: vec![pipeline()], next_cursor: None }
}
