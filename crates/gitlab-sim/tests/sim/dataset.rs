use chrono::TimeZone;
use gitlab_sim::*;

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

#[test]
fn same_seed_same_bytes_and_different_seed_differs() {
    let a = Dataset::generate_until(42, Size::Small, at()).to_json().unwrap();
    let b = Dataset::generate_until(42, Size::Small, at()).to_json().unwrap();
    let c = Dataset::generate_until(43, Size::Small, at()).to_json().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(Dataset::generate(5, Size::Small).to_json().unwrap(), Dataset::generate(5, Size::Small).to_json().unwrap());
}

#[test]
fn save_and_load_round_trip() {
    let ds = Dataset::generate_until(1, Size::Small, at());
    let path = std::env::temp_dir().join(format!("gitlab-sim-{}.json", std::process::id()));
    ds.save(&path).unwrap();
    let back = Dataset::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.to_json().unwrap(), ds.to_json().unwrap());
    let p = &back.projects[0];
    let head = &p.repository.branch(&p.default_branch).unwrap().commit;
    assert!(p.repository.commit(head).is_some(), "commit index is rebuilt on load");
}

#[test]
fn small_dataset_has_the_promised_shape() {
    let ds = Dataset::generate_until(9, Size::Small, at());
    let tops: Vec<_> = ds.groups.iter().filter(|g| g.parent_id.is_none()).collect();
    assert_eq!(tops.len(), 2);
    assert_eq!(tops[0].plan, Plan::Premium);
    assert_eq!(tops[1].plan, Plan::Free);
    assert!(ds.groups.len() >= 4);
    assert_eq!(ds.projects.len(), 8);
    assert!(ds.projects.iter().any(|p| !p.issues_enabled && p.issues.is_empty()));
    assert!(ds.projects.iter().any(|p| !p.jobs_enabled && p.pipelines.is_empty()));
    let all_text: String = ds.users.iter().map(|u| u.name.clone()).collect();
    assert!(!all_text.is_ascii(), "names include non-ASCII text");
    let states: Vec<_> = ds.projects.iter().flat_map(|p| p.merge_requests.iter().map(|m| m.state)).collect();
    for s in [MrState::Opened, MrState::Merged, MrState::Closed] {
        assert!(states.contains(&s), "{s:?} missing");
    }
    for p in &ds.projects {
        assert!(p.repository.branches.len() >= 2);
        for c in &p.repository.commits {
            assert_eq!(c.id.len(), 40);
            assert!(c.committed_date <= at());
            for parent in &c.parent_ids {
                assert!(p.repository.commit(parent).is_some(), "parents exist");
            }
        }
        for m in p.merge_requests.iter().filter(|m| m.state == MrState::Merged) {
            let merge = p.repository.commit(m.merge_commit_sha.as_ref().unwrap()).unwrap();
            assert_eq!(merge.parent_ids.len(), 2);
            assert_eq!(merge.parent_ids[1], m.sha);
        }
    }
    let span = ds.projects[0].repository.commits.first().unwrap().committed_date;
    assert!(at() - span > chrono::Duration::days(365), "history spans years");
    assert!(ds.tokens.iter().any(|t| t.value == TOKEN_OWNER));
}

#[test]
fn custom_size_scales_to_a_heavy_project() {
    let mut spec = Size::Small.spec();
    spec.projects = 150;
    spec.top_groups = 1;
    spec.subgroups_per_group = 0;
    spec.commits_per_project = 3;
    spec.merge_requests_per_project = 1;
    spec.issues_per_project = 1;
    spec.pipelines_per_project = 1;
    spec.heavy_project = Some(HeavyProject { commits: 12_000, merge_requests: 50, issues: 10, pipelines: 5 });
    let ds = Dataset::generate_until(3, Size::Custom(spec), at());
    assert_eq!(ds.projects.len(), 150);
    assert!(ds.projects.iter().all(|p| p.namespace_id == 1));
    let heavy = &ds.projects[0];
    let head = heavy.repository.branch(&heavy.default_branch).unwrap().commit.clone();
    assert!(heavy.repository.reachable(&[head], true).len() >= 11_950);
}

#[test]
fn realistic_has_nested_subgroups() {
    let ds = Dataset::generate_until(2, Size::Realistic, at());
    let deepest = ds.groups.iter().map(|g| ds.ancestry(g.id).len()).max().unwrap();
    assert!(deepest >= 3);
    assert_eq!(ds.projects.len(), 40);
}
