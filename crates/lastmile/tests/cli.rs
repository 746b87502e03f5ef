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
