//! The binary as a user runs it: `lastmile serve` on the embedded default,
//! a report through the bundled client, and a clean stop on SIGTERM.

use std::process::Command;

use lastmile_suite::{ServedBinary, lastmile_bin};

#[test]
fn serve_on_the_embedded_default_answers_and_stops_on_sigterm() {
    let data_dir = std::env::temp_dir().join(format!("lastmile-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut server = ServedBinary::start([std::ffi::OsStr::new("--data-dir"), data_dir.as_os_str()]);
    let endpoint = server.endpoint();

    let output = Command::new(lastmile_bin())
        .args(["report", "--addr", &endpoint, "--lat", "28.53", "--lng", "121.50"])
        .args(["--kind", "flood", "--severity", "3", "--external-id", "grid-bin-1"])
        .output()
        .expect("run lastmile report");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("inc-000001  external_id=grid-bin-1  FLOOD  severity 3  OPEN"), "{stdout}");
    assert!(stdout.contains("金清镇"), "located in 金清镇: {stdout}");
    // The grid cell and its worker, on the line after the incident's.
    let grid_line = stdout.lines().nth(1).unwrap_or_default();
    assert!(grid_line.starts_with("  grid LQ-G") && grid_line.contains("worker "), "{stdout}");

    // A bad request: the client exits non-zero with the server's message.
    let output = Command::new(lastmile_bin())
        .args(["report", "--addr", &endpoint, "--lat", "95", "--lng", "121.5"])
        .output()
        .expect("run lastmile report");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("InvalidArgument") && stderr.contains("location.lat"), "{stderr}");

    // SIGTERM: graceful stop, exit status 0.
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_config_stops_the_server_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("lastmile-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lastmile.toml");
    let text = lastmile_server::config::embedded_config_text().replace("circuity = 1.2", "circuity = 0.5");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(lastmile_bin()).args(["serve", "--config"]).arg(&path).output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dispatch.tiers.t1.circuity") && stderr.contains("lastmile.toml"), "{stderr}");
}

#[test]
fn health_answers_serving_once_the_ready_line_is_printed() {
    let dir = std::env::temp_dir().join(format!("lastmile-bin-health-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = ServedBinary::start([std::ffi::OsStr::new("--data-dir"), dir.as_os_str()]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(server.endpoint()).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest { service: "lastmile.v1.Dispatch".into() })
            .await
            .unwrap()
            .into_inner()
            .status()
    });
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving);
}
