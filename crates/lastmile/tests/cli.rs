//! The command line itself. Also makes `cargo test --workspace` build the
//! `lastmile` binary (Cargo builds a package's binaries for its integration
//! tests), which the end-to-end tests in the repository's `tests/` start as a
//! child process.

use std::process::Command;

#[test]
fn help_lists_every_subcommand() {
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile")).arg("--help").output().expect("run lastmile --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "serve", "watch", "terminal", "bench", "report", "preview", "get", "close", "units", "assign", "release",
        "status", "webhooks",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn a_bad_flag_is_refused_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile")).args(["serve", "--no-such-flag"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
}

#[test]
fn webhooks_dead_letters_prints_the_log() {
    let dir = std::env::temp_dir().join(format!("lastmile-cli-dead-letters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let line = r#"{"id":"a-1","endpoint":"siping","event_type":"TIER_BREACHED","body":"{}","attempts":5,"reason":"exhausted","last_error":"http 503","failed_at_unix_ms":1}"#;
    std::fs::write(dir.join("webhook-dead-letters.jsonl"), format!("{line}\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(["webhooks", "dead-letters", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{line}\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The load benchmark runs end to end on its in-process server, durable, as
/// BENCHMARKS.md runs it (small), and says its invariants held.
#[test]
fn a_small_durable_bench_runs_and_its_invariants_hold() {
    let dir = std::env::temp_dir().join(format!("lastmile-cli-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(["bench", "--incidents", "60", "--pings", "20", "--concurrency", "4", "--seed", "7"])
        .args(["--scenario", "uniform", "--fsync-rounds", "5", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("dispatch: 60 reported"), "{stdout}");
    assert!(stdout.contains("invariants: all hold"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file("lastmile-bench.svg");
}
