use chrono::TimeZone;
use gitlab_sim::*;

use crate::common::{start, start_with};

fn link(r: &crate::common::Reply, rel: &str) -> Option<String> {
    let header = r.headers.get("link")?.to_str().ok()?.to_string();
    header.split(", ").find(|p| p.ends_with(&format!("rel=\"{rel}\""))).map(|p| p[1..p.find('>').unwrap()].to_string())
}

#[tokio::test]
async fn offset_headers_and_links_use_the_request_host() {
    let sim = start(SimConfig::default()).await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?per_page=5&page=2").await;
    let total: usize = r.headers["x-total"].to_str().unwrap().parse().unwrap();
    assert_eq!(r.headers["x-page"], "2");
    assert_eq!(r.headers["x-per-page"], "5");
    assert_eq!(r.headers["x-prev-page"], "1");
    assert_eq!(r.headers["x-next-page"], "3");
    assert_eq!(r.headers["x-total-pages"].to_str().unwrap(), total.div_ceil(5).to_string());
    let next = link(&r, "next").unwrap();
    assert!(next.starts_with(&sim.handle.base_url), "{next}");
    assert!(next.contains("page=3") && next.contains("per_page=5"));
    assert!(link(&r, "last").is_some() && link(&r, "first").is_some());
    let r = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?per_page=1000").await;
    assert_eq!(r.headers["x-per-page"], "100", "per_page is capped at 100");
}

#[tokio::test]
async fn over_ten_thousand_records_omit_totals_and_walk_by_next_link() {
    let mut spec = Size::Small.spec();
    spec.projects = 2;
    spec.heavy_project = Some(HeavyProject { commits: 10_050, merge_requests: 0, issues: 1, pipelines: 1 });
    let at = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut config = SimConfig::default();
    config.rate_limit.enabled = false;
    let sim = start_with(Dataset::generate_until(5, Size::Custom(spec), at), config).await;
    let first = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?per_page=100").await;
    assert!(first.headers.get("x-total").is_none());
    assert!(first.headers.get("x-total-pages").is_none());
    assert!(link(&first, "last").is_none());
    let mut seen = first.body.as_array().unwrap().len();
    let mut next = link(&first, "next");
    while let Some(url) = next {
        let r = sim.get_url(TOKEN_OWNER, &url).await;
        seen += r.body.as_array().unwrap().len();
        next = link(&r, "next");
    }
    assert_eq!(seen, 10_050);
}

#[tokio::test]
async fn keyset_on_projects_and_issues() {
    let sim = start(SimConfig::default()).await;
    let mut ids = Vec::new();
    let mut url = Some(sim.url("/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=3"));
    while let Some(u) = url {
        let r = sim.get_url(TOKEN_OWNER, &u).await;
        assert!(r.headers.get("x-total").is_none());
        ids.extend(r.body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()));
        url = link(&r, "next");
        if let Some(n) = &url {
            assert!(n.contains("id_after="), "{n}");
        }
    }
    let expected = sim.handle.sim.with_dataset(|ds| ds.projects.len());
    assert_eq!(ids, (1..=expected as u64).collect::<Vec<_>>());

    let offset = sim.get(TOKEN_OWNER, "/api/v4/projects/1/issues?order_by=updated_at&sort=desc&per_page=100").await;
    let want: Vec<u64> = offset.body.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    let mut got = Vec::new();
    let mut url = Some(sim.url("/api/v4/projects/1/issues?pagination=keyset&order_by=updated_at&sort=desc&per_page=4"));
    while let Some(u) = url {
        let r = sim.get_url(TOKEN_OWNER, &u).await;
        got.extend(r.body.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()));
        url = link(&r, "next");
        if let Some(n) = &url {
            assert!(n.contains("cursor="), "{n}");
        }
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn offset_beyond_fifty_thousand_is_refused_where_keyset_exists() {
    let sim = start(SimConfig::default()).await;
    let r = sim.get(TOKEN_OWNER, "/api/v4/projects?page=501&per_page=100").await;
    assert_eq!(r.status, 405);
    assert!(r.body["error"].as_str().unwrap().contains("keyset pagination"));
    let r = sim.get(TOKEN_OWNER, "/api/v4/projects/1/repository/commits?page=501&per_page=100").await;
    assert_eq!(r.status, 200, "commits have no keyset, so no offset cap");
}
