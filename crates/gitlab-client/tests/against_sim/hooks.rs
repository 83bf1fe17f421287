//! Project and group hook administration, including GitLab's edition and plan rules.

use gitlab_client::ErrorKind;
use gitlab_client::api::hooks::{HookOwner, HookSpec};
use gitlab_sim::{Edition, Plan, SimConfig, SimHandle, TOKEN_OWNER};
use secrecy::SecretString;

use crate::common::{client, small, start};

fn spec(url: &str, secret: &str) -> HookSpec {
    HookSpec {
        url: url.into(),
        name: Some("Coworker".into()),
        token: Some(SecretString::from(secret.to_owned())),
        push_events: Some(true),
        merge_requests_events: Some(true),
        issues_events: Some(true),
        note_events: Some(true),
        ..HookSpec::default()
    }
}

fn top_group(sim: &SimHandle, plan: Plan) -> u64 {
    sim.sim
        .with_dataset(|ds| ds.groups.iter().find(|g| g.parent_id.is_none() && g.plan == plan).expect("a top-level group on that plan").id)
}

/// The secret as the simulator stored it: GitLab never returns it over the API.
fn stored_secret(sim: &SimHandle, hook_id: u64) -> Option<String> {
    sim.sim.with_dataset(|ds| ds.hooks.iter().find(|h| h.id == hook_id).and_then(|h| h.token.clone()))
}

/// Create, list, read, move to a new URL with the secret re-sent, delete.
async fn lifecycle(sim: &SimHandle, owner: HookOwner) {
    let gitlab = client(sim, TOKEN_OWNER);
    let created = gitlab.create_hook(&owner, &spec("https://coworker.example/hooks/a", "s3cret-a")).await.unwrap();
    assert_eq!(created.url, "https://coworker.example/hooks/a");
    assert!(created.push_events && created.merge_requests_events && created.note_events);
    assert!(!created.pipeline_events, "unset events keep GitLab's default");
    assert_eq!(created.token_present, Some(true));
    match &owner {
        HookOwner::Project(_) => assert_eq!(created.project_id, Some(1)),
        HookOwner::Group(_) => assert!(created.group_id.is_some()),
    }

    let listed = gitlab.hooks(&owner).await.unwrap();
    assert_eq!(listed, vec![created.clone()]);
    assert_eq!(gitlab.hook(&owner, created.id).await.unwrap(), created);

    let moved = gitlab.update_hook(&owner, created.id, &spec("https://coworker.example/hooks/b", "s3cret-b")).await.unwrap();
    assert_eq!((moved.id, moved.url.as_str()), (created.id, "https://coworker.example/hooks/b"));
    // GitLab drops the secret when the URL changes unless it comes with the update.
    assert_eq!(moved.token_present, Some(true));
    assert_eq!(stored_secret(sim, created.id).as_deref(), Some("s3cret-b"));

    gitlab.delete_hook(&owner, created.id).await.unwrap();
    assert!(gitlab.hooks(&owner).await.unwrap().is_empty());
    let err = gitlab.hook(&owner, created.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let err = gitlab.delete_hook(&owner, created.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "a repeated delete: {err:?}");
}

#[tokio::test]
async fn project_hook_lifecycle() {
    let sim = start(small(), SimConfig::default()).await;
    lifecycle(&sim, HookOwner::Project(1.into())).await;
}

#[tokio::test]
async fn premium_group_hook_lifecycle() {
    let sim = start(small(), SimConfig::default()).await;
    let group = top_group(&sim, Plan::Premium);
    lifecycle(&sim, HookOwner::Group(group.into())).await;
}

#[tokio::test]
async fn a_url_change_without_the_secret_loses_it() {
    // Why HookSpec insists on re-sending the token: this is what happens otherwise.
    let sim = start(small(), SimConfig::default()).await;
    let gitlab = client(&sim, TOKEN_OWNER);
    let owner = HookOwner::Project(1.into());
    let hook = gitlab.create_hook(&owner, &spec("https://coworker.example/hooks/a", "s3cret")).await.unwrap();
    let without_secret = HookSpec { url: "https://coworker.example/hooks/b".into(), ..HookSpec::default() };
    let moved = gitlab.update_hook(&owner, hook.id, &without_secret).await.unwrap();
    assert_eq!(moved.token_present, Some(false));
    assert_eq!(stored_secret(&sim, hook.id), None);
}

#[tokio::test]
async fn free_group_hooks_are_created_on_ee() {
    // GitLab accepts the hook on an EE instance whatever the plan; it only never fires.
    let sim = start(small(), SimConfig::default()).await;
    let free = top_group(&sim, Plan::Free);
    let owner = HookOwner::Group(free.into());
    let gitlab = client(&sim, TOKEN_OWNER);
    assert!(gitlab.metadata().await.unwrap().enterprise);
    let hook = gitlab.create_hook(&owner, &spec("https://coworker.example/hooks/free", "s3cret")).await.unwrap();
    assert_eq!(hook.group_id, Some(free));
    assert_eq!(gitlab.hooks(&owner).await.unwrap(), vec![hook]);
}

#[tokio::test]
async fn group_hooks_do_not_exist_on_ce() {
    let sim = start(small(), SimConfig::default()).await;
    sim.sim.with_dataset_mut(|ds| ds.instance.edition = Edition::Ce);
    let group = top_group(&sim, Plan::Premium);
    let gitlab = client(&sim, TOKEN_OWNER);
    assert!(!gitlab.metadata().await.unwrap().enterprise);

    let owner = HookOwner::Group(group.into());
    let err = gitlab.hooks(&owner).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let err = gitlab.create_hook(&owner, &spec("https://coworker.example/hooks/g", "s3cret")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    // The group itself is there; only the route is missing.
    assert_eq!(gitlab.group(group).await.unwrap().id, group);
    // Project hooks are a CE feature.
    lifecycle(&sim, HookOwner::Project(1.into())).await;
}
