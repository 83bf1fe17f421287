//! BENCHMARKS.md: the machine, then one section per benchmark. A run replaces the sections it
//! measured and keeps the others, so a single benchmark can be rerun without losing the rest;
//! each section says when and on which commit it was measured.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use sqlx::ConnectOptions;

use super::Ctx;

/// One benchmark's results, as Markdown under its own heading.
pub(crate) struct Section {
    /// Stable key of the section in the file (`backfill`, `ingest`, ...).
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) markdown: String,
}

/// What the figures depend on, read off the machine at the start of the run.
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    postgres: String,
    commit: String,
    date: String,
    profile: &'static str,
    quick: bool,
}

impl Machine {
    pub(crate) async fn read(ctx: &Ctx) -> Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let mut conn = ctx.postgres.options.connect().await.context("connecting to PostgreSQL")?;
        let (version, sync, fsync): (String, String, String) =
            sqlx::query_as("SELECT version(), current_setting('synchronous_commit'), current_setting('fsync')")
                .fetch_one(&mut conn)
                .await?;
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory,
            kernel,
            postgres: format!(
                "{} (synchronous_commit={sync}, fsync={fsync}; {})",
                version.split(" on ").next().unwrap_or(&version),
                ctx.postgres.description
            ),
            commit,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" },
            quick: ctx.quick,
        })
    }

    fn run_line(&self) -> String {
        format!(
            "_From a run started {} on commit `{}`, {} build{}._",
            self.date,
            self.commit,
            self.profile,
            if self.quick { ", **--quick** (small sizes: not figures to quote)" } else { "" }
        )
    }
}

const HEADER_END: &str = "<!-- /bench:machine -->";

pub(crate) fn write(path: &Path, machine: &Machine, sections: &[Section]) -> Result<()> {
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (id, body) in parse_sections(&previous) {
        if !sections.iter().any(|s| s.id == id) {
            kept.push((id, body));
        }
    }
    let mut out = String::new();
    writeln!(out, "# Benchmarks\n")?;
    writeln!(
        out,
        "Written by `gitlab-connector bench` (see README.md). Every figure stands beside a limit measured in the \
         same run, as a ratio: absolute times move from run to run on shared machines.\n"
    )?;
    writeln!(out, "<!-- bench:machine -->")?;
    writeln!(
        out,
        "Machine of the latest run: {} ({} cores available), {} RAM, Linux {}.  ",
        machine.cpu, machine.cores, machine.memory, machine.kernel
    )?;
    writeln!(out, "PostgreSQL: {}.", machine.postgres)?;
    writeln!(out, "{HEADER_END}\n")?;
    let mut all: Vec<(String, String)> = sections
        .iter()
        .map(|s| (s.id.to_string(), format!("## {}\n\n{}\n\n{}", s.title, machine.run_line(), s.markdown.trim_end())))
        .collect();
    all.extend(kept);
    // A fixed order, whatever was rerun.
    let order = ["backfill", "gitlab_com", "ingest", "fairness", "scale"];
    all.sort_by_key(|(id, _)| order.iter().position(|o| o == id).unwrap_or(order.len()));
    for (id, body) in all {
        writeln!(out, "<!-- bench:{id} -->\n{}\n<!-- /bench:{id} -->\n", body.trim_end())?;
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The benchmark sections of an earlier results file, by id.
fn parse_sections(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- bench:") {
        let after = &rest[start + "<!-- bench:".len()..];
        let Some(close) = after.find(" -->") else { break };
        let id = after[..close].to_string();
        let body_start = &after[close + " -->".len()..];
        let end_marker = format!("<!-- /bench:{id} -->");
        let Some(end) = body_start.find(&end_marker) else { break };
        if id != "machine" {
            found.push((id, body_start[..end].trim().to_string()));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_replaces_its_section_and_keeps_the_others() {
        let text = "# Benchmarks\n<!-- bench:machine -->\nm\n<!-- /bench:machine -->\n\
                    <!-- bench:backfill -->\n## A\nold\n<!-- /bench:backfill -->\n\
                    <!-- bench:ingest -->\n## B\nkept\n<!-- /bench:ingest -->\n";
        let parsed = parse_sections(text);
        assert_eq!(parsed, vec![("backfill".into(), "## A\nold".into()), ("ingest".into(), "## B\nkept".into())]);
    }
}
