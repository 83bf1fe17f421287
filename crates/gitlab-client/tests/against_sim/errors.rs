//! Every error class, produced by the simulator's real responses.

use gitlab_client::api::hooks::{HookOwner, HookSpec};
use gitlab_client::{Error, ErrorKind};
use gitlab_sim::{DEVELOPER_USER, SimConfig, TOKEN_DEVELOPER, TOKEN_EXPIRED, TOKEN_OWNER, TOKEN_OWNER_READ, TOKEN_REVOKED};

use crate::common::{assert_no_token, client, small, start};

const UNKNOWN_TOKEN: &str = "glpat-never-issued-7Hq2";

fn spec() -> HookSpec {
    HookSpec { url: "https://coworker.example/hooks/gitlab".into(), push_events: Some(true), ..HookSpec::default() }
}

#[tokio::test]
async fn token_problems_are_told_apart() {
    let sim = start(small(), SimConfig::default()).await;
    for (token, kind) in
        [(UNKNOWN_TOKEN, ErrorKind::TokenInvalid), (TOKEN_EXPIRED, ErrorKind::TokenExpired), (TOKEN_REVOKED, ErrorKind::TokenRevoked)]
    {
        let err = client(&sim, token).current_user().await.unwrap_err();
        assert_eq!(err.kind(), kind, "{token}: {err:?}");
        assert!(err.is_token_problem());
        assert_no_token(&err, token);
    }
}

#[tokio::test]
async fn a_read_api_token_cannot_create_hooks() {
    let sim = start(small(), SimConfig::default()).await;
    let gitlab = client(&sim, TOKEN_OWNER_READ);
    // Reads are fine with read_api; only the write is refused, and for the scope, not the role.
    assert_eq!(gitlab.current_user().await.unwrap().username, "owner");
    let err = gitlab.create_hook(&HookOwner::Project(1.into()), &spec()).await.unwrap_err();
    match &err {
        Error::InsufficientScope { required } => assert_eq!(required, "api read_api"),
        other => panic!("expected InsufficientScope, got {other:?}"),
    }
    assert!(err.is_token_problem());
    assert_no_token(&err, TOKEN_OWNER_READ);
    assert!(sim.sim.with_dataset(|ds| ds.hooks.is_empty()));
}

#[tokio::test]
async fn a_developer_cannot_administer_hooks() {
    let sim = start(small(), SimConfig::default()).await;
    let gitlab = client(&sim, TOKEN_DEVELOPER);
    // The developer can see project 1 (Developer in its group) but hooks need Maintainer.
    assert_eq!(gitlab.project(1).await.unwrap().id, 1);
    for owner in [HookOwner::Project(1.into()), HookOwner::Group(1.into())] {
        let err = gitlab.create_hook(&owner, &spec()).await.unwrap_err();
        assert!(matches!(&err, Error::Forbidden { message } if message == "403 Forbidden"), "{owner:?}: {err:?}");
        assert!(!err.is_token_problem(), "a role problem, not a token one");
        assert_no_token(&err, TOKEN_DEVELOPER);
    }
}

#[tokio::test]
async fn missing_and_invisible_resources_are_not_found() {
    let sim = start(small(), SimConfig::default()).await;
    let owner = client(&sim, TOKEN_OWNER);
    let mut errors = vec![
        owner.project(999_999).await.unwrap_err(),
        owner.project("no-such/project").await.unwrap_err(),
        owner.group(999_999).await.unwrap_err(),
        owner.namespace("no-such-group").await.unwrap_err(),
    ];
    for err in &errors {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    }
    assert!(matches!(&errors[0], Error::NotFound { message } if message == "404 Project Not Found"));
    assert!(matches!(&errors[2], Error::NotFound { message } if message == "404 Group Not Found"));

    // GitLab does not tell "missing" from "not yours": a private project outside the
    // developer's group is a 404, never a 403.
    let hidden = sim.sim.with_dataset(|ds| {
        ds.projects
            .iter()
            .find(|p| !ds.can_see_project(DEVELOPER_USER, p))
            .map(|p| p.id)
            .expect("the dataset has a project the developer cannot see")
    });
    let developer = client(&sim, TOKEN_DEVELOPER);
    let err = developer.project(hidden).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    errors.push(err);
    for err in &errors {
        assert_no_token(err, TOKEN_OWNER);
        assert_no_token(err, TOKEN_DEVELOPER);
    }
}
