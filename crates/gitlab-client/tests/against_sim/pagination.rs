//! Offset and keyset pagination through the simulator's real headers and links, past
//! GitLab's 10,000-record counting limit, and resumed from a stored checkpoint.

use std::collections::HashSet;

use gitlab_client::api::commits::Commit;
use gitlab_client::api::issues::{Issue, IssuePagination};
use gitlab_client::api::projects::Project;
use gitlab_client::{PER_PAGE, PageRequest};
use gitlab_sim::{SimConfig, TOKEN_OWNER};

use crate::common::{HEAVY_COMMITS, client, large, start, walk};

/// The generator gives the heavy counts to the first project.
const HEAVY: u64 = 1;

#[tokio::test]
async fn group_projects_include_subgroups_across_pages() {
    let sim = start(large(), SimConfig::default()).await;
    let (root, expected, in_subgroups) = sim.sim.with_dataset(|ds| {
        let root = ds.groups.iter().find(|g| g.parent_id.is_none()).unwrap().id;
        let below = ds.descendants(root);
        let projects: Vec<_> = ds.projects.iter().filter(|p| below.contains(&p.namespace_id)).collect();
        let in_subgroups = projects.iter().filter(|p| p.namespace_id != root).count();
        (root, projects.iter().map(|p| p.id).collect::<Vec<_>>(), in_subgroups)
    });
    assert!(expected.len() > PER_PAGE as usize && in_subgroups > 0);

    let gitlab = client(&sim, TOKEN_OWNER);
    let (projects, pages) = walk::<Project>(&gitlab, PageRequest::group_projects(root)).await;
    let ids: Vec<u64> = projects.iter().map(|p| p.id).collect();
    // Ordered by id as requested, so the sequence (not just the set) must match.
    assert_eq!(ids, expected);
    assert_eq!(pages, expected.len().div_ceil(PER_PAGE as usize));
}

#[tokio::test]
async fn commits_of_all_branches_since_a_date_span_several_offset_pages() {
    let sim = start(large(), SimConfig::default()).await;
    let (since, expected, off_default) = sim.sim.with_dataset(|ds| {
        let repo = &ds.project(HEAVY).unwrap().repository;
        let mut dates: Vec<_> = repo.commits.iter().map(|c| c.committed_date).collect();
        dates.sort_unstable_by(|a, b| b.cmp(a));
        let since = dates[349];
        let expected: HashSet<String> = repo.commits.iter().filter(|c| c.committed_date >= since).map(|c| c.id.clone()).collect();
        let default_head = repo.resolve(&ds.project(HEAVY).unwrap().default_branch).unwrap();
        let on_default: HashSet<usize> = repo.reachable(&[default_head], false).into_iter().collect();
        let off_default = (0..repo.commits.len()).filter(|i| !on_default.contains(i)).count();
        (since, expected, off_default)
    });
    // `all=true` is only observable if some commits live on other branches only.
    assert!(off_default > 0);

    let gitlab = client(&sim, TOKEN_OWNER);
    let (commits, pages) = walk::<Commit>(&gitlab, PageRequest::commits(HEAVY, Some(&since))).await;
    let ids: HashSet<String> = commits.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), commits.len(), "no commit twice");
    assert_eq!(ids, expected);
    assert!(pages >= 4, "{pages} pages");
    assert!(commits.iter().all(|c| c.committed_date.unwrap() >= since));
}

#[tokio::test]
async fn more_than_ten_thousand_commits_are_walked_without_totals() {
    let sim = start(large(), SimConfig::default()).await;
    let expected: HashSet<String> = sim.sim.with_dataset(|ds| {
        let repo = &ds.project(HEAVY).unwrap().repository;
        repo.commits.iter().map(|c| c.id.clone()).collect()
    });
    assert!(expected.len() >= HEAVY_COMMITS);

    // GitLab stops counting past 10,000 records; the client must not need the totals.
    let first = reqwest::Client::new()
        .get(format!("{}/api/v4/projects/{HEAVY}/repository/commits?all=true&per_page=100", sim.base_url))
        .header("PRIVATE-TOKEN", TOKEN_OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let headers = first.headers();
    assert!(headers.get("x-total").is_none() && headers.get("x-total-pages").is_none());
    assert!(!headers["link"].to_str().unwrap().contains("rel=\"last\""));

    let gitlab = client(&sim, TOKEN_OWNER);
    let (commits, pages) = walk::<serde_json::Value>(&gitlab, PageRequest::commits(HEAVY, None)).await;
    let ids: HashSet<String> = commits.iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(commits.len(), expected.len(), "every commit exactly once");
    assert_eq!(ids, expected);
    assert_eq!(pages, expected.len().div_ceil(PER_PAGE as usize));
}

#[tokio::test]
async fn keyset_issues_by_creation_and_keyset_projects() {
    let sim = start(large(), SimConfig::default()).await;
    let (issues_expected, projects_expected) = sim.sim.with_dataset(|ds| {
        let mut issues: Vec<_> = ds.project(HEAVY).unwrap().issues.iter().collect();
        issues.sort_by_key(|i| (i.created_at, i.id));
        (issues.iter().map(|i| i.id).collect::<Vec<_>>(), ds.projects.iter().map(|p| p.id).collect::<Vec<_>>())
    });
    let gitlab = client(&sim, TOKEN_OWNER);

    let keyset = PageRequest::issues(HEAVY, None, IssuePagination::Keyset);
    assert!(keyset.is_keyset());
    let (issues, pages) = walk::<Issue>(&gitlab, keyset).await;
    assert_eq!(issues.iter().map(|i| i.id).collect::<Vec<_>>(), issues_expected);
    assert_eq!(pages, issues_expected.len().div_ceil(PER_PAGE as usize));
    assert!(issues.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    // The offset fallback for older instances lists the same issues in the same order.
    let (offset, _) = walk::<Issue>(&gitlab, PageRequest::issues(HEAVY, None, IssuePagination::Offset)).await;
    assert_eq!(offset, issues);

    let projects = PageRequest::new("/projects").query("pagination", "keyset").query("order_by", "id").query("sort", "asc");
    let (projects, pages) = walk::<Project>(&gitlab, projects).await;
    assert_eq!(projects.iter().map(|p| p.id).collect::<Vec<_>>(), projects_expected);
    assert_eq!(pages, projects_expected.len().div_ceil(PER_PAGE as usize));
}

#[tokio::test]
async fn a_stored_checkpoint_resumes_in_a_fresh_client() {
    let sim = start(large(), SimConfig::default()).await;
    let requests = [
        PageRequest::issues(HEAVY, None, IssuePagination::Keyset),
        // The first top-level group (id 1) holds more than a page of projects.
        PageRequest::group_projects(1),
    ];
    for first in requests {
        let (all, _) = walk::<serde_json::Value>(&client(&sim, TOKEN_OWNER), first.clone()).await;

        let before_crash = client(&sim, TOKEN_OWNER);
        let page = before_crash.page::<serde_json::Value>(&first).await.unwrap();
        let stored = serde_json::to_string(&page.next.expect("more than one page")).unwrap();
        drop(before_crash);
        // A checkpoint is path and query only: neither the host nor the token is stored.
        assert!(!stored.contains("127.0.0.1") && !stored.contains(TOKEN_OWNER), "{stored}");

        let resumed: PageRequest = serde_json::from_str(&stored).unwrap();
        let (rest, _) = walk::<serde_json::Value>(&client(&sim, TOKEN_OWNER), resumed).await;
        assert_eq!(page.items.len() + rest.len(), all.len(), "{}", first.path());
        assert_eq!(&all[page.items.len()..], &rest[..], "{}", first.path());
    }
}
