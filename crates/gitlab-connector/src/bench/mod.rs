//! `gitlab-connector bench`: how fast and how lean the connector is, each figure beside a limit
//! measured in the same run (the database's own speed, the GitLab rate limit, the same tenants
//! without contention), because absolute times move from run to run on shared machines. Results
//! are printed and written to BENCHMARKS.md with the machine they ran on.

mod backfill;
mod fairness;
mod gitlab_com;
mod harness;
mod ingest;
mod report;
mod scale;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use sqlx::postgres::PgConnectOptions;

use crate::local::{Postgres, recreate_database};

pub(crate) use report::Section;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Which benchmarks to run.
    #[arg(value_enum, default_values_t = [Which::All])]
    which: Vec<Which>,
    /// Smaller datasets and shorter runs: checks that every benchmark works, in a few minutes.
    /// Its figures are not the ones to quote.
    #[arg(long)]
    quick: bool,
    /// The results file; each benchmark replaces its own section and keeps the others.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    /// Backfill throughput and worker memory at growing sizes, against a plain COPY.
    Backfill,
    /// Backfill under gitlab.com's rate limit and latency, against the floor they set.
    GitlabCom,
    /// Webhook ingest rate and latency, against pgbench's single-row durable insert.
    Ingest,
    /// Small tenants beside a huge one, against the same small tenants alone.
    Fairness,
    /// API and scheduler cost at 100, 1,000 and 10,000 connections.
    Scale,
}

/// What every benchmark is given.
pub(crate) struct Ctx {
    pub(crate) postgres: Postgres,
    pub(crate) quick: bool,
}

impl Ctx {
    /// A database made afresh and migrated for one benchmark (named `gitlab_connector_bench_<name>`).
    pub(crate) async fn fresh_database(&self, name: &str) -> Result<PgConnectOptions> {
        let database = format!("gitlab_connector_bench_{name}");
        recreate_database(&self.postgres.options, &database).await?;
        let owner = self.postgres.options.clone().database(&database);
        connector_store::migrate(&owner).await?;
        Ok(owner)
    }
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        println!("!! this is a debug build: its figures are not the ones to quote (use cargo run --release)");
    }
    let postgres = Postgres::find_or_start().await?;
    println!("== gitlab-connector bench{} on PostgreSQL {}", if args.quick { " --quick" } else { "" }, postgres.description);
    let ctx = Ctx { postgres, quick: args.quick };
    let all = args.which.contains(&Which::All);
    let wanted = |w: Which| all || args.which.contains(&w);
    let machine = report::Machine::read(&ctx).await?;
    let mut sections = Vec::new();
    if wanted(Which::Backfill) {
        sections.push(backfill::run(&ctx).await?);
    }
    if wanted(Which::GitlabCom) {
        sections.push(gitlab_com::run(&ctx).await?);
    }
    if wanted(Which::Ingest) {
        sections.push(ingest::run(&ctx).await?);
    }
    if wanted(Which::Fairness) {
        sections.push(fairness::run(&ctx).await?);
    }
    if wanted(Which::Scale) {
        sections.push(scale::run(&ctx).await?);
    }
    report::write(&args.out, &machine, &sections)?;
    println!("== results written to {}", args.out.display());
    Ok(())
}
