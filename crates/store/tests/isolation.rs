//! Tenant isolation in the database itself: row-level security, the service's role, and the
//! pooled-connection trap.

use std::sync::Arc;

use connector_crypto::MasterKeyRing;
use connector_store::connections::{self, NewConnection};
use connector_store::jobs::{Envelope, Job};
use connector_store::{ServiceRole, Store, TenantId, dead_letters, deliveries, hooks, idempotency, sync, tenants};
use connector_test_support::app_store_with;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{ConnectOptions, PgPool};

fn ring(spec: &str) -> Arc<MasterKeyRing> {
    Arc::new(MasterKeyRing::parse(spec).unwrap())
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

/// The shared test connection to group 42, with the token a test tracks.
fn new_connection(token: &str) -> NewConnection {
    NewConnection { access_token: SecretString::from(token.to_owned()), ..connector_test_support::new_connection(vec![42]) }
}

/// The tables that carry tenant data, from the catalog (so a table added later is included):
/// every table with a `tenant_id`, and `tenants` itself.
const TENANT_TABLES: &str = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
       AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                    AND a.attname = 'tenant_id' AND NOT a.attisdropped)
            OR c.relname = 'tenants')
     ORDER BY 1";

/// Fails when any table that carries tenant data lacks forced RLS or a policy, so a table added
/// by a later migration cannot quietly skip isolation.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn every_tenant_table_has_forced_rls(owner: PgPool) {
    let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
         {TENANT_TABLES}"
    )))
    .fetch_all(&owner)
    .await
    .unwrap();
    assert!(tables.len() >= 12, "expected the tenant tables, found {tables:?}");
    let unprotected: Vec<_> = tables.iter().filter(|(_, rls, forced, policies)| !rls || !forced || *policies == 0).collect();
    assert!(unprotected.is_empty(), "tables without forced RLS and a policy: {unprotected:?}");

    // Every tenant_id column is NOT NULL, so no row can escape the policy by having none.
    let nullable: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name = 'tenant_id' AND is_nullable = 'YES'",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert!(nullable.is_empty(), "nullable tenant_id in {nullable:?}");
}

/// A row in every tenant table for `t`, written through the store as the service writes it.
async fn seed_every_table(store: &Store, keys: &MasterKeyRing, t: &TenantId) {
    let mut tx = store.tenant_tx(t).await.unwrap();
    let c = connections::insert(&mut tx, keys, new_connection("glpat-aaaaaaaaaaaaaaaaaaaa")).await.unwrap().id;
    let at = "2024-02-01T00:00:00Z";
    sync::upsert_projects(
        &mut tx,
        c,
        &json!([{"id": 11, "path_with_namespace": "g/p", "name": "p", "namespace": {"id": 42}, "last_activity_at": at}]),
    )
    .await
    .unwrap();
    sync::upsert_commits(&mut tx, c, 11, &json!([{"id": "a1", "title": "t", "message": "t", "committed_date": at}])).await.unwrap();
    let mr = json!([{"id": 900, "iid": 7, "title": "t", "state": "opened", "author": {"id": 3, "username": "ana"}, "created_at": at, "updated_at": at}]);
    sync::upsert_merge_requests(&mut tx, c, 11, &mr).await.unwrap();
    sync::set_merge_request_commits(&mut tx, c, 11, 7, &["a1".into()]).await.unwrap();
    sync::upsert_issues(
        &mut tx,
        c,
        11,
        &json!([{"id": 901, "iid": 8, "title": "t", "state": "opened", "created_at": at, "updated_at": at}]),
    )
    .await
    .unwrap();
    sync::upsert_notes(
        &mut tx,
        c,
        11,
        "Issue",
        sync::NoteParent::Iid(8),
        &json!([{"id": 902, "body": "b", "created_at": at, "updated_at": at}]),
    )
    .await
    .unwrap();
    sync::upsert_pipelines(
        &mut tx,
        c,
        11,
        &json!([{"id": 903, "iid": 1, "status": "success", "ref": "main", "created_at": at, "updated_at": at}]),
    )
    .await
    .unwrap();
    let (hook, _) = hooks::ensure(&mut tx, keys, c, connector_store::hooks::HookScope::Group, 42).await.unwrap();
    let delivery = deliveries::NewDelivery {
        connection_id: c,
        hook_id: hook.id,
        dedup_key: "d1",
        event: Some("Push Hook"),
        headers: json!({}),
        body: b"{}",
        kept_aside: None,
        traceparent: None,
    };
    assert!(deliveries::insert(&mut tx, &delivery).await.unwrap());
    let step =
        sync::PageProgress { project_id: 11, resource: sync::Resource::Commits, cursor: None, seen_up_to: None, records: 1, done: false };
    sync::advance(&mut tx, c, step).await.unwrap();
    sync::record_skipped(&mut tx, c, 11, sync::Resource::Issues, "switched off").await.unwrap();
    dead_letters::insert(&mut tx, &Envelope::new(t.to_string(), Job::Backfill { connection: c }), "gave up").await.unwrap();
    sync::upsert_event(&mut tx, c, "tag_push", "11/v1", Some(11), Some("create"), &json!({})).await.unwrap();
    let heads = std::collections::BTreeMap::from([("main".to_owned(), "a1".to_owned())]);
    connector_store::reconcile::set_branch_heads(&mut tx, c, 11, &heads).await.unwrap();
    connector_store::reconcile::keep_aside(&mut tx, c, Some(11), "commits", "a1", "held U+0000", b"{}").await.unwrap();
    assert_eq!(idempotency::claim(&mut tx, "form-1", b"request").await.unwrap(), idempotency::Claim::First);
    let answer = idempotency::Answer { status: 201, body: json!({"id": c}), location: None };
    idempotency::record(&mut tx, "form-1", c, &answer).await.unwrap();
    tx.commit().await.unwrap();
}

/// With RLS forced, the service role sees no row of any tenant table unless its transaction
/// names the tenant: on a pooled connection, in a transaction that set nothing, and in one whose
/// setting was reset to empty. The tables come from the catalog, so a new one is covered; each
/// must hold seeded rows, which the tenant itself does see, or the zero would prove nothing.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn without_a_tenant_no_tenant_table_shows_a_row(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 1, keys.clone()).await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    for t in [&a, &b] {
        seed_every_table(&store, &keys, t).await;
    }
    let tables: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text, CASE WHEN c.relname = 'tenants' THEN 'id' ELSE 'tenant_id' END {TENANT_TABLES}"
    )))
    .fetch_all(&owner)
    .await
    .unwrap();
    assert!(tables.len() >= 16, "expected the tenant tables, found {tables:?}");

    let mut rows_hidden = 0;
    for (table, column) in &tables {
        // The owner (a superuser) bypasses RLS: the truth to compare with.
        let per_tenant = |t: &TenantId| {
            let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
            let owner = owner.clone();
            let t = t.to_string();
            async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(t).fetch_one(&owner).await.unwrap() }
        };
        let (in_a, in_b) = (per_tenant(&a).await, per_tenant(&b).await);
        assert!(in_a > 0 && in_b > 0, "{table}: seed_every_table wrote no row for a tenant ({in_a}, {in_b}); seed it");
        let count = format!("SELECT count(*) FROM {table}");

        let pooled: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone())).fetch_one(store.pool()).await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        let unset: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone())).fetch_one(&mut *tx).await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', '', true)").execute(&mut *tx).await.unwrap();
        let emptied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone())).fetch_one(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!((pooled, unset, emptied), (0, 0, 0), "{table}: rows visible without a tenant");

        // The same query with the tenant set sees exactly that tenant's rows.
        for (t, expected) in [(&a, in_a), (&b, in_b)] {
            let mut tx = store.tenant_tx(t).await.unwrap();
            let sql = format!("SELECT count(*), count(*) FILTER (WHERE {column} <> $1) FROM {table}");
            let (seen, foreign): (i64, i64) =
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(t.to_string()).fetch_one(&mut *tx).await.unwrap();
            assert_eq!((seen, foreign), (expected, 0), "{table} as {t}");
        }
        rows_hidden += in_a + in_b;
    }
    println!(
        "isolation (database): {} tenant tables, {rows_hidden} rows of 2 tenants: 0 visible to the service role without a tenant (pooled, unset, reset), each tenant sees exactly its own",
        tables.len()
    );
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn service_role_cannot_bypass_rls(owner: PgPool) {
    let (superuser, bypass, inherit): (bool, bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls, rolinherit FROM pg_roles WHERE rolname = 'gitlab_connector_app'")
            .fetch_one(&owner)
            .await
            .unwrap();
    assert!(!superuser && !bypass && !inherit);

    // The test's own pool is a superuser: the store refuses it.
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let err = Store::from_pool(owner.clone(), keys.clone()).await.err().expect("superuser accepted");
    assert!(err.to_string().contains("row-level security"), "{err}");

    // The service role cannot touch the migration history.
    let store = app_store_with(&owner, 1, keys).await;
    let denied = sqlx::query("DELETE FROM _sqlx_migrations").execute(store.pool()).await;
    assert!(denied.is_err(), "the service role could rewrite the migration history");
}

/// One pooled connection serves tenant A, then B, then nobody: each sees only its own rows,
/// and the last sees none, so a tenant setting never leaks into the next use of a connection.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn one_connection_pool_does_not_carry_a_tenant_over(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 1, keys.clone()).await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));

    for t in [&a, &b] {
        let mut tx = store.tenant_tx(t).await.unwrap();
        connections::insert(&mut tx, &keys, new_connection("glpat-aaaaaaaaaaaaaaaaaaaa")).await.unwrap();
        tx.commit().await.unwrap();
    }

    for t in [&a, &b] {
        let mut tx = store.tenant_tx(t).await.unwrap();
        // No WHERE clause at all: RLS alone limits what is visible.
        let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM gitlab_connections").fetch_all(&mut *tx).await.unwrap();
        assert_eq!(seen, vec![t.to_string()]);
        let tenants_seen: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(tenants_seen, 1);
        tx.commit().await.unwrap();
    }

    // The same single connection, outside any tenant transaction.
    for table in ["gitlab_connections", "tenants"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(store.pool()).await.unwrap();
        assert_eq!(n, 0, "{table} visible without a tenant");
    }
    // And in a transaction that set nothing.
    let mut tx = store.pool().begin().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gitlab_connections").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 0);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_tenant_cannot_write_another_tenants_rows(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 2, keys.clone()).await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let mut tx = store.tenant_tx(&a).await.unwrap();
    let conn_a = connections::insert(&mut tx, &keys, new_connection("glpat-aaaaaaaaaaaaaaaaaaaa")).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.tenant_tx(&b).await.unwrap();
    // B's repository calls cannot reach A's connection...
    assert!(matches!(connections::get(&mut tx, conn_a.id).await, Err(connector_store::Error::NotFound)));
    assert!(matches!(connections::delete(&mut tx, conn_a.id).await, Err(connector_store::Error::NotFound)));
    // ...nor can raw SQL that names A outright.
    let updated = sqlx::query("UPDATE gitlab_connections SET status = 'failed' WHERE tenant_id = 'tenant-a'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 0);
    let insert =
        sqlx::query("INSERT INTO sync_checkpoints (tenant_id, connection_id, project_id, resource) VALUES ('tenant-a', $1, 1, 'commits')")
            .bind(conn_a.id)
            .execute(&mut *tx)
            .await;
    assert!(insert.is_err(), "RLS WITH CHECK let B write a row for A");
    drop(tx);

    let mut tx = store.tenant_tx(&a).await.unwrap();
    let still = connections::get(&mut tx, conn_a.id).await.unwrap();
    assert_eq!(still.status, connections::Status::Pending);
}

/// The system role has no member: the service's login roles cannot take it, and reach its rights
/// only through its functions. What it sees (tried by the owner taking it) is what its policies
/// allow.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn system_role_sees_only_what_its_policies_allow(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 2, keys.clone()).await;
    let mut tx = store.tenant_tx(&tenant("tenant-a")).await.unwrap();
    connections::insert(&mut tx, &keys, new_connection("glpat-aaaaaaaaaaaaaaaaaaaa")).await.unwrap();
    tx.commit().await.unwrap();

    for role in [ServiceRole::App, ServiceRole::Api] {
        let mut conn = role.connect_options(&owner.connect_options()).connect().await.unwrap();
        let taken = sqlx::query("SET ROLE gitlab_connector_system").execute(&mut conn).await;
        assert!(taken.is_err(), "{} could take the system role", role.name());
    }

    let system = || async {
        let mut sys = owner.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE gitlab_connector_system").execute(&mut *sys).await.unwrap();
        sys
    };
    let mut sys = system().await;
    let tenants_seen: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut *sys).await.unwrap();
    assert_eq!(tenants_seen, 1);
    // The scheduler's columns of every connection, and nothing more.
    let due: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM gitlab_connections").fetch_all(&mut *sys).await.unwrap();
    assert_eq!(due, vec!["tenant-a".to_owned()]);
    sys.commit().await.unwrap();
    for denied in [
        "SELECT token_ciphertext FROM gitlab_connections",
        "SELECT data_key_wrapped FROM tenants WHERE false UNION ALL SELECT token_ciphertext FROM gitlab_connections",
        "UPDATE gitlab_connections SET status = 'failed'",
        "DELETE FROM tenants",
        "SELECT count(*) FROM projects",
        "SELECT job FROM apalis.jobs",
    ] {
        let mut sys = system().await;
        let result = sqlx::query(sqlx::AssertSqlSafe(denied)).execute(&mut *sys).await;
        assert!(result.is_err(), "the system role may run: {denied}");
    }
}

/// The API role has the app role's privileges on every table but the rate budgets, so a
/// migration that grants a new table to one login role and forgets the other fails here.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_api_role_holds_the_app_roles_table_privileges_but_the_rate_budgets(owner: PgPool) {
    let privileges = |role: &'static str| {
        let owner = owner.clone();
        async move {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT n.nspname || '.' || c.relname, a.privilege_type
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 CROSS JOIN LATERAL aclexplode(c.relacl) a
                 WHERE a.grantee = $1::regrole AND n.nspname = 'public' ORDER BY 1, 2",
            )
            .bind(role)
            .fetch_all(&owner)
            .await
            .unwrap();
            rows
        }
    };
    let app: Vec<(String, String)> =
        privileges(ServiceRole::App.name()).await.into_iter().filter(|(table, _)| table != "public.gitlab_rate_budgets").collect();
    let api = privileges(ServiceRole::Api.name()).await;
    assert!(app.len() > 50, "{app:?}");
    assert_eq!(api, app);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn rotation_keeps_every_token_readable(owner: PgPool) {
    let old_entry = MasterKeyRing::generate_entry(1);
    let new_entry = MasterKeyRing::generate_entry(2);
    let old = ring(&old_entry);
    let store = app_store_with(&owner, 2, old.clone()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = tenant(&format!("tenant-{i}"));
        let mut tx = store.tenant_tx(&t).await.unwrap();
        let token = format!("glpat-token-of-tenant-{i:04}");
        let c = connections::insert(&mut tx, &old, new_connection(&token)).await.unwrap();
        tx.commit().await.unwrap();
        ids.push((t, c.id, token));
    }

    let both = ring(&format!("{old_entry},{new_entry}"));
    let rotating = app_store_with(&owner, 2, both).await;
    // The pods, restarted with both entries, as rotation requires first.
    connector_store::keys::check_ring(&rotating, "pod-with-both").await.unwrap();
    let report = tenants::rotate_keys(&rotating).await.unwrap();
    assert_eq!(report.rewrapped, 5);
    assert_eq!(tenants::rotate_keys(&rotating).await.unwrap().rewrapped, 0, "second run re-wraps nothing");

    // The old key can now be removed: the new one alone opens every token.
    let only_new = ring(&new_entry);
    let after = app_store_with(&owner, 2, only_new.clone()).await;
    for (t, id, token) in &ids {
        let mut tx = after.tenant_tx(t).await.unwrap();
        let opened = connections::access_token(&mut tx, &only_new, *id).await.unwrap();
        assert_eq!(opened.expose_secret(), token);
    }
    // And the old key alone no longer does.
    let mut tx = store.tenant_tx(&ids[0].0).await.unwrap();
    assert!(connections::access_token(&mut tx, &old, ids[0].1).await.is_err());
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_ciphertext_moved_to_another_row_does_not_open(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 2, keys.clone()).await;
    let t = tenant("tenant-a");
    let mut tx = store.tenant_tx(&t).await.unwrap();
    let first = connections::insert(&mut tx, &keys, new_connection("glpat-first-token-123456")).await.unwrap();
    let second = connections::insert(&mut tx, &keys, new_connection("glpat-second-token-65432")).await.unwrap();
    sqlx::query(
        "UPDATE gitlab_connections SET token_ciphertext =
             (SELECT token_ciphertext FROM gitlab_connections WHERE id = $1) WHERE id = $2",
    )
    .bind(first.id)
    .bind(second.id)
    .execute(&mut *tx)
    .await
    .unwrap();
    assert!(connections::access_token(&mut tx, &keys, second.id).await.is_err());
    assert_eq!(connections::access_token(&mut tx, &keys, first.id).await.unwrap().expose_secret(), "glpat-first-token-123456");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn deleting_a_tenant_removes_its_key_and_data(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 2, keys.clone()).await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    for t in [&a, &b] {
        let mut tx = store.tenant_tx(t).await.unwrap();
        connections::insert(&mut tx, &keys, new_connection("glpat-aaaaaaaaaaaaaaaaaaaa")).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = store.tenant_tx(&a).await.unwrap();
    assert!(tenants::delete(&mut tx).await.unwrap());
    tx.commit().await.unwrap();

    let remaining: Vec<(String, i64)> =
        sqlx::query_as("SELECT t.id, (SELECT count(*) FROM gitlab_connections c WHERE c.tenant_id = t.id) FROM tenants t")
            .fetch_all(&owner)
            .await
            .unwrap();
    assert_eq!(remaining, vec![("tenant-b".to_owned(), 1)]);
}

/// The plaintext token appears nowhere in a dump of the whole database.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn plaintext_token_is_not_in_a_database_dump(owner: PgPool) {
    let keys = ring(&MasterKeyRing::generate_entry(1));
    let store = app_store_with(&owner, 2, keys.clone()).await;
    let token = "glpat-Plaintext-Canary-7f3a9c";
    let mut tx = store.tenant_tx(&tenant("tenant-a")).await.unwrap();
    let c = connections::insert(&mut tx, &keys, new_connection(token)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(c.token_hint, "3a9c");

    let opts = owner.connect_options();
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner"])
        .arg(format!("postgres://{}@{}:{}/{}", opts.get_username(), opts.get_host(), opts.get_port(), opts.get_database().unwrap()))
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("gitlab_connections"), "the dump holds the connections table");
    assert!(!text.contains(token) && !text.contains("Plaintext-Canary"), "token found in pg_dump");
}
