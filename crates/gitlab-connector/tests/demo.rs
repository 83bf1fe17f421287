//! The README's run command, in its small form: the demo must end with both tenants equal to
//! the simulator's ground truth, isolated from each other, and live changes arriving.

use std::process::Command;

#[test]
fn the_small_demo_runs_green() {
    let database = format!("gc_demo_test_{}", std::process::id());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitlab-connector"));
    cmd.args(["demo", "--small", "--database", &database]);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("ground truth: equal").count(), 2, "{stdout}");
    assert!(stdout.contains("isolation: each tenant's API answers 404"), "{stdout}");
    assert_eq!(stdout.matches("visible after").count(), 6, "{stdout}");
    assert!(stdout.trim_end().ends_with("== demo OK"), "{stdout}");
    // The demo leaves its database for people to look at; the test cleans up after itself.
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dropped = Command::new("psql").arg(&url).args(["-qc", &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")]).status();
    assert!(dropped.is_ok_and(|s| s.success()));
}
