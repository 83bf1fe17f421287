//! A throwaway PostgreSQL cluster under the system's temporary directory, removed when dropped:
//! the demo's and the benchmarks' database when no server answers, and a server the tests may
//! stop, start and restart at will without disturbing the shared one. The tests include this file
//! with `#[path]`, as the binary crate has no library.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// initdb and postgres refuse to run as root; a root test runs them as `postgres`.
    as_postgres: bool,
}

impl PgCluster {
    /// initdb (trust auth) into a fresh temporary directory, and start it on a free port.
    pub fn start(name: &str) -> Result<Self> {
        let bin = bin_dir().context(
            "PostgreSQL's programs (initdb, pg_ctl) are not installed. Install them (Debian/Ubuntu: \
             `sudo apt-get install postgresql`; macOS: `brew install postgresql`), or set DATABASE_URL to a \
             PostgreSQL you can use as its owner",
        )?;
        let dir = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        // /proc/self belongs to the effective user.
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status()?;
            ensure!(status.success(), "could not give {} to the postgres user", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Self { dir, bin, port, as_postgres };
        cluster.pg("initdb", &["-U", "postgres", "--auth=trust", "--no-sync"])?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Where the server logs, for error messages.
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The owner's URL for `database` (created by whoever connects first, e.g. `serve`).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Fast shutdown: open sessions are cut, as a crash or failover cuts them.
    pub fn stop(&self) -> Result<()> {
        self.pg("pg_ctl", &["-m", "fast", "-w", "stop"])
    }

    pub fn start_again(&self) -> Result<()> {
        self.pg_ctl(&["-w", "start"])
    }

    pub fn restart(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "-w", "restart"])
    }

    /// Every start names the log file: a server started without one keeps pg_ctl's output pipe
    /// open, and reading that pipe to its end would never return.
    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.log();
        self.pg("pg_ctl", &[&["-l", log.to_str().context("a non-UTF-8 temporary directory")?, "-o", &options], args].concat())
    }

    /// The owner's connection options for the `postgres` database.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new().host("127.0.0.1").port(self.port).username("postgres").database("postgres")
    }

    /// Waits until the server accepts a connection; returns how long that took.
    pub async fn wait_ready(&self, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        while self.options().connect().await.is_err() {
            ensure!(
                started.elapsed() < within,
                "the private PostgreSQL did not accept connections within {within:?} (log: {})",
                self.log().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(started.elapsed())
    }

    /// Runs one of PostgreSQL's programs on this cluster's data directory.
    fn pg(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self.command(program).args(args).output().with_context(|| format!("running {program}"))?;
        ensure!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.arg("-D").arg(self.dir.join("data"));
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PATH first (`/usr/local/bin` here links there), then Debian's versioned directories, newest first.
fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &PathBuf| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(has_both));
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect();
        versions.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
        versions.into_iter().rev().find(has_both)
    })
}
