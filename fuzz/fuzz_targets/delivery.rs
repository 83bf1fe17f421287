//! The delivery parser and the event router: whatever the headers and body, no panic, and what
//! comes out keeps the promises the inbox and the tenant's data rely on.

#![no_main]

use connector_fuzz::delivery;
use connector_ingest::apply::{Route, Scope, parse_event, route};
use connector_ingest::{MAX_DEDUP_KEY_LEN, parse_delivery};
use libfuzzer_sys::fuzz_target;

/// The project a route writes to, if it writes to one.
fn written_project(route: &Route<'_>) -> Option<i64> {
    match route {
        Route::Commits { project, .. }
        | Route::MergeRequest { project, .. }
        | Route::Issue { project, .. }
        | Route::Note { project, .. }
        | Route::Pipeline { project, .. }
        | Route::ProjectCreated { project, .. }
        | Route::ProjectDestroyed { project } => Some(*project),
        Route::Event { project, .. } => *project,
        Route::OutOfScope(_) | Route::KeptAside(_) => None,
    }
}

fuzz_target!(|input: &[u8]| {
    let (headers, body) = delivery(input);
    let parsed = parse_delivery(&headers, body);
    // A blank key would make every later delivery with a blank key a "duplicate" of the first.
    assert!(!parsed.dedup_key.trim().is_empty(), "blank dedup key: {parsed:?}");
    assert!(parsed.dedup_key.len() <= MAX_DEDUP_KEY_LEN, "dedup key of {} bytes", parsed.dedup_key.len());
    for secret in ["x-gitlab-token", "webhook-signature"] {
        assert!(parsed.headers.get(secret).is_none(), "{secret} kept with the delivery");
    }
    let Ok((kind, payload)) = parse_event(body, parsed.event) else {
        assert!(parsed.kept_aside.is_some(), "an unparseable delivery was not kept aside");
        return;
    };
    assert_eq!(parsed.kept_aside, None);

    let whole_groups = route(Scope::Groups, &kind, &payload);
    assert!(!matches!(whole_groups, Route::OutOfScope(_)), "out of scope for a connection that syncs whole groups");
    if let Route::MergeRequest { row, .. } | Route::Issue { row, .. } | Route::Note { row, .. } | Route::Pipeline { row, .. } = &whole_groups {
        assert!(!row["id"].is_null(), "a {kind} row without GitLab's id: {row}");
    }
    // An explicit projects_list: nothing is ever written for a project outside it.
    let other = written_project(&whole_groups).map_or(1, |p| p.wrapping_add(1));
    for ids in [&[][..], &[other][..]] {
        let listed = route(Scope::Projects(ids), &kind, &payload);
        if let Some(p) = written_project(&listed) {
            assert!(ids.contains(&p), "{kind} writes to project {p}, outside projects_list {ids:?}: {listed:?}");
        }
    }
    // ... and a project it does list is written as for the whole group (new projects excepted:
    // a listed connection does not grow by itself).
    if let Some(p) = written_project(&whole_groups)
        && !matches!(whole_groups, Route::ProjectCreated { .. })
    {
        let listed = route(Scope::Projects(&[p]), &kind, &payload);
        assert_eq!(written_project(&listed), Some(p), "{kind} for listed project {p}: {listed:?}");
    }
});
