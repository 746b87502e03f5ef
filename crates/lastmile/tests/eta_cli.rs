//! `lastmile eta generate | fit | score` end to end, on the built binary:
//! a model fitted on one synthetic file (truth: 150 s turnout, 7 m/s) gets
//! the truth back, and on a second file (another seed) keeps its promise
//! and beats the configured model. Fixed seeds: the files are the same on
//! every run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lastmile(args: &[&str], dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile")).args(args).current_dir(dir).output().unwrap();
    assert!(output.status.success(), "lastmile {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lastmile-eta-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn score(dir: &Path, model: &str) -> serde_json::Value {
    serde_json::from_str(&lastmile(&["eta", "score", "heldout.csv", "--model", model, "--json"], dir)).unwrap()
}

#[test]
fn a_fitted_model_recovers_the_truth_and_keeps_its_promise_on_held_out_responses() {
    let dir = temp_dir("fit");
    let generate = |seed: &str, out: &str| {
        let args = ["eta", "generate", "--rows", "16000", "--seed", seed, "--turnout-s", "150", "--speed", "7", out];
        lastmile(&args, &dir)
    };
    generate("1", "train.csv");
    generate("2", "heldout.csv");
    let out = lastmile(&["eta", "fit", "train.csv", "--out", "calibration.json"], &dir);
    assert!(out.contains("wrote calibration.json"), "{out}");
    let text = std::fs::read_to_string(dir.join("calibration.json")).unwrap();
    let calibration = lastmile_core::eta::Calibration::parse(&text).unwrap();
    assert_eq!(calibration.source, "train.csv");
    for tier in lastmile_core::Tier::ALL {
        let t = calibration.tiers.get(tier);
        let m = t.model.unwrap_or_else(|| panic!("{tier}: no model"));
        assert!(t.arrivals > 3000, "{tier}: {} arrivals", t.arrivals);
        assert!((m.turnout_s / 150.0 - 1.0).abs() < 0.10, "{tier}: {m:?}");
        assert!((m.speed_m_per_s / 7.0 - 1.0).abs() < 0.10, "{tier}: {m:?}");
        assert!(m.margin_ratio > 0.0 && m.margin_s == 0.0, "{tier}: {m:?}");
    }
    let fitted = score(&dir, "calibration.json");
    let configured = score(&dir, "config");
    for (f, c) in fitted["tiers"].as_array().unwrap().iter().zip(configured["tiers"].as_array().unwrap()) {
        let tier = &f["tier"];
        assert_eq!(f["source"], "calibration");
        let share = f["scored"]["share_by_promise"].as_f64().unwrap();
        assert!((share - 0.8).abs() <= 0.05, "{tier}: {share} by the promise");
        let (fitted_mae, config_mae) =
            (f["scored"]["median_abs_error_s"].as_f64().unwrap(), c["scored"]["median_abs_error_s"].as_f64().unwrap());
        assert!(fitted_mae < config_mae, "{tier}: median abs error {fitted_mae} vs configured {config_mae}");
    }
    let all = fitted["all"]["share_by_promise"].as_f64().unwrap();
    assert!((all - 0.8).abs() <= 0.03, "{all}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_malformed_row_is_counted_by_its_reason() {
    let dir = temp_dir("bad");
    lastmile(&["eta", "generate", "--rows", "300", "--seed", "5", "--bad-rows", "33", "bad.csv"], &dir);
    let out = lastmile(&["eta", "fit", "bad.csv", "--out", "c.json"], &dir);
    assert!(out.contains("bad.csv: 333 rows, 300 used, 33 rejected"), "{out}");
    let reasons = [
        "missing column",
        "extra field",
        "bad quoting",
        "empty field",
        "bad tier",
        "bad coordinate",
        "unparsable time",
        "on_scene before paged",
        "acknowledged out of order",
        "implausible speed (> 60 m/s)",
        "implausible travel (> 2 h)",
    ];
    for reason in reasons {
        let line =
            out.lines().find(|l| l.trim_start().starts_with(reason)).unwrap_or_else(|| panic!("{reason}:\n{out}"));
        let rows: Vec<&str> = line[line.find(reason).unwrap() + reason.len()..].split_whitespace().collect();
        assert_eq!(rows.first(), Some(&"3"), "{line}");
    }
    let scored: serde_json::Value =
        serde_json::from_str(&lastmile(&["eta", "score", "bad.csv", "--json"], &dir)).unwrap();
    let rejected = scored["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), reasons.len(), "{rejected:?}");
    assert!(rejected.iter().all(|r| r["rows"] == 3), "{rejected:?}");
    // A file without a required column is refused, naming it.
    std::fs::write(dir.join("nocol.csv"), "tier,unit_id\n10,T10-01\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(["eta", "fit", "nocol.csv"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("from_lat"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
