//! Operator commands: look at what failed and put it back to work. Every command names its
//! tenant and runs in that tenant's transaction, like the API, so an operator's typo cannot touch
//! another tenant's data.

use anyhow::{Context, Result};
use clap::Subcommand;
use connector_store::{Store, TenantId, connections, dead_letters, deliveries, hooks, sync};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs that used up their retries (dead letters), newest first.
    Failed {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue a dead-lettered job again, with fresh attempts.
    Retry {
        #[arg(long)]
        tenant: String,
        /// The dead letter's id, from `jobs failed`.
        #[arg(long)]
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// Webhook deliveries kept aside (or failed), with the reason, newest first.
    List {
        #[arg(long)]
        tenant: String,
        /// `kept_aside`, `failed`, `out_of_scope`, `received` or `applied`.
        #[arg(long, default_value = "kept_aside")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a kept-aside or failed delivery back in the inbox, to be applied again.
    Replay {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// A connection's sync state: status, progress, hooks, skipped resources, failed jobs.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: Uuid,
    },
}

fn tenant(raw: &str) -> Result<TenantId> {
    TenantId::parse(raw).map_err(|e| anyhow::anyhow!("--tenant: {e}"))
}

pub async fn jobs(store: &Store, command: JobsCommand) -> Result<()> {
    match command {
        JobsCommand::Failed { tenant: t, limit } => {
            let mut tx = store.tenant_tx(&tenant(&t)?).await?;
            let letters = dead_letters::for_tenant(&mut tx, limit).await?;
            if letters.is_empty() {
                println!("no failed jobs");
            }
            for l in letters {
                println!(
                    "{:>6}  {}  {:<13} connection {}  after {} attempts: {}",
                    l.id, l.created_at, l.job_kind, l.connection_id, l.attempts, l.reason
                );
            }
        }
        JobsCommand::Retry { tenant: t, id } => {
            let mut tx = store.tenant_tx(&tenant(&t)?).await?;
            let job = dead_letters::retry(&mut tx, id).await.with_context(|| format!("no failed job {id} for tenant {t}"))?;
            tx.commit().await?;
            println!("queued again: {} for connection {}", job.kind(), job.connection());
        }
    }
    Ok(())
}

pub async fn deliveries(store: &Store, command: DeliveriesCommand) -> Result<()> {
    match command {
        DeliveriesCommand::List { tenant: t, status, limit } => {
            let mut tx = store.tenant_tx(&tenant(&t)?).await?;
            let list = deliveries::list(&mut tx, &status, limit).await?;
            if list.is_empty() {
                println!("no {status} deliveries");
            }
            for d in list {
                println!(
                    "{:>8}  {}  {:<20} connection {}  {} (attempts {}): {}",
                    d.id,
                    d.received_at,
                    d.event.as_deref().unwrap_or("-"),
                    d.connection_id,
                    d.status,
                    d.attempts,
                    d.reason.as_deref().unwrap_or("-")
                );
            }
        }
        DeliveriesCommand::Replay { tenant: t, id } => {
            let mut tx = store.tenant_tx(&tenant(&t)?).await?;
            deliveries::replay(&mut tx, id).await.with_context(|| format!("no kept-aside or failed delivery {id} for tenant {t}"))?;
            tx.commit().await?;
            println!("delivery {id} is back in the inbox; the ingest processor applies it next");
        }
    }
    Ok(())
}

pub async fn connections(store: &Store, command: ConnectionsCommand) -> Result<()> {
    let ConnectionsCommand::Show { tenant: t, id } = command;
    let mut tx = store.tenant_tx(&tenant(&t)?).await?;
    let c = connections::get(&mut tx, id).await.with_context(|| format!("no connection {id} for tenant {t}"))?;
    println!("connection {id} ({}), status {}", c.gitlab_url, c.status.as_str());
    if let Some(message) = &c.status_message {
        println!("  message: {message}");
    }
    println!(
        "  token …{} of {} (expires {}), hooks: {}",
        c.token_hint,
        c.gitlab_username.as_deref().unwrap_or("?"),
        c.token_expires_at.map_or("never".to_owned(), |d| d.to_string()),
        c.hook_mode.map_or("not yet installed", |m| m.as_str())
    );
    let progress = sync::progress(&mut tx, id, 4).await?;
    let records: Vec<String> = progress.records.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!(
        "  projects {} ({} done), streams {}/{}, records: {}, last synced {}",
        c.resolved_project_ids.as_ref().map_or(0, Vec::len),
        progress.projects_done,
        progress.streams_done,
        progress.streams_started,
        if records.is_empty() { "none".into() } else { records.join(", ") },
        c.last_synced_at.map_or("never".to_owned(), |t| t.to_string())
    );
    for h in hooks::for_connection(&mut tx, id).await? {
        println!(
            "  hook {} on {} {}: {} (GitLab id {}, last delivery {}){}",
            h.id,
            h.scope,
            h.gitlab_target_id,
            h.status,
            h.gitlab_hook_id.map_or("-".to_owned(), |i| i.to_string()),
            h.last_delivery_at.map_or("never".to_owned(), |t| t.to_string()),
            h.status_message.map(|m| format!(": {m}")).unwrap_or_default()
        );
    }
    for s in sync::skipped(&mut tx, id).await? {
        println!("  skipped {} of project {}: {}", s.resource, s.project_id, s.reason);
    }
    for l in dead_letters::for_connection(&mut tx, id, 10).await? {
        println!("  failed job {} ({}) after {} attempts: {}", l.id, l.job_kind, l.attempts, l.reason);
    }
    Ok(())
}

/// Deletes a tenant: each connection is marked deleting (so the API and workers leave it be), has
/// our hooks removed from its GitLab and is deleted with its data; then the tenant's data key,
/// change feed and jobs go. Says what it removed and every hook it could not. A GitLab that fails
/// (rather than refuses) stops the deletion before the data key goes, so it can be run again.
pub async fn delete_tenant(store: &Store, jobs: &connector_worker::GitLabJobs, tenant: &TenantId) -> Result<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    let all = connections::list(&mut tx, None, i64::MAX).await?;
    for connection in &all {
        connections::set_status(&mut tx, connection.id, connections::Status::Deleting, None).await?;
    }
    tx.commit().await?;
    let mut left_behind = Vec::new();
    for connection in &all {
        let done = jobs
            .disconnect_now(tenant, connection.id)
            .await
            .map_err(|e| anyhow::anyhow!("connection {}: {e}; nothing more was deleted, run the command again", connection.id))?;
        println!("connection {}: deleted, {} of our hooks removed from {}", connection.id, done.hooks_removed, connection.gitlab_url);
        for hook in done.left_behind {
            println!("connection {}: could not remove {hook}", connection.id);
            left_behind.push(hook);
        }
    }
    let mut tx = store.tenant_tx(tenant).await?;
    let existed = connector_store::tenants::delete(&mut tx).await?;
    tx.commit().await?;
    if !existed && all.is_empty() {
        anyhow::bail!("no such tenant: {tenant}");
    }
    println!(
        "tenant {tenant} deleted with its data key, change feed and jobs{}",
        if left_behind.is_empty() { String::new() } else { format!("; {} hooks left in GitLab (listed above)", left_behind.len()) }
    );
    Ok(())
}
