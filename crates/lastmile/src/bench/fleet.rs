//! `--fleet-scale N`: the in-process server's dataset with every unit
//! replicated N times, so that at high concurrency most reports find every
//! unit they ask for (the demo district has 4 professional stations: at 64
//! concurrent reports most of them are answered "nobody free", which is
//! cheap and flatters the throughput).
//!
//! Copy `k` (2..=N) of unit `ID` is `ID-xk`, at the original's home moved by
//! a seeded offset of at most [`MAX_OFFSET_DEG`] in latitude and longitude
//! (~110 m north–south, ~100 m east–west here), so copies are not stacked
//! exactly on one point and the R-tree orders them by a real distance. The
//! first copy is the original, unchanged. Everything else of the dataset
//! (places, outline, grid) is the config's own, copied as is.
//!
//! The scaled dataset is written to a folder of its own under the system's
//! temporary directory, read once by the server's start-up, and deleted when
//! the [`ScaledDataset`] is dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lastmile_core::sim::SplitMix64;
use lastmile_server::LastmileConfig;
use lastmile_server::config::{ConfigSource, embedded_dataset_file};
use serde_json::Value;

/// Largest offset of a copy from the original's home, in degrees.
pub const MAX_OFFSET_DEG: f64 = 0.001;
/// A bound on N, so a typo does not ask for millions of terminals.
pub const MAX_FLEET_SCALE: usize = 100;

/// The folder holding the scaled dataset; deleted when dropped.
pub struct ScaledDataset {
    dir: PathBuf,
    pub units: usize,
}

impl Drop for ScaledDataset {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A dataset file the config names, as text.
fn read_dataset_file(config: &LastmileConfig, relative: &str) -> anyhow::Result<String> {
    match &config.source {
        ConfigSource::Embedded => embedded_dataset_file(relative)
            .map(str::to_string)
            .with_context(|| format!("{relative}: not one of the embedded dataset files")),
        ConfigSource::File(path) => {
            let full = path.parent().unwrap_or(Path::new(".")).join(relative);
            std::fs::read_to_string(&full).with_context(|| format!("cannot read {}", full.display()))
        }
    }
}

/// The units file with every unit replicated `scale` times (see the module).
pub fn scale_units(units_json: &str, scale: usize, seed: u64) -> anyhow::Result<Value> {
    let mut file: Value = serde_json::from_str(units_json).context("units file: not JSON")?;
    let Some(units) = file.get_mut("units").and_then(Value::as_array_mut) else {
        bail!("units file: no \"units\" array");
    };
    let mut rng = SplitMix64(seed ^ 0x666c_6565_745f_7363);
    let mut offset = move || rng.range(-MAX_OFFSET_DEG, MAX_OFFSET_DEG);
    let originals = std::mem::take(units);
    for copy in 1..=scale {
        for unit in &originals {
            let mut unit = unit.clone();
            if copy > 1 {
                let id = unit["id"].as_str().context("a unit without a string id")?.to_string();
                unit["id"] = Value::from(format!("{id}-x{copy}"));
                for (key, delta) in [("lat", offset()), ("lng", offset())] {
                    let v = unit["home"][key].as_f64().with_context(|| format!("unit {id}: no home.{key}"))?;
                    unit["home"][key] = Value::from(((v + delta) * 1e6).round() / 1e6);
                }
            }
            units.push(unit);
        }
    }
    Ok(file)
}

/// Writes the config's dataset with its units scaled `scale` times and points
/// `config` at it.
pub fn apply(config: &mut LastmileConfig, scale: usize, seed: u64) -> anyhow::Result<ScaledDataset> {
    if !(1..=MAX_FLEET_SCALE).contains(&scale) {
        bail!("--fleet-scale must be between 1 and {MAX_FLEET_SCALE}");
    }
    let dir = std::env::temp_dir().join(format!("lastmile-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut guard = ScaledDataset { dir: dir.clone(), units: 0 };
    let units = scale_units(&read_dataset_file(config, &config.dataset.units)?, scale, seed)?;
    guard.units = units["units"].as_array().map_or(0, Vec::len);
    std::fs::write(dir.join("units.json"), serde_json::to_vec(&units)?)?;
    for (name, relative) in [
        ("places.json", &config.dataset.places),
        ("outline.geojson", &config.dataset.outline),
        ("grid.geojson", &config.dataset.grid),
    ] {
        std::fs::write(dir.join(name), read_dataset_file(config, relative)?)?;
    }
    config.dataset.units = "units.json".into();
    config.dataset.places = "places.json".into();
    config.dataset.outline = "outline.geojson".into();
    config.dataset.grid = "grid.geojson".into();
    // Dataset paths are relative to the config file's folder; the file itself is not read.
    config.source = ConfigSource::File(dir.join("lastmile.toml"));
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_copied_with_a_suffix_and_a_small_offset() {
        let text = embedded_dataset_file("luqiao/units.json").unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        let n = original["units"].as_array().unwrap().len();
        let scaled = scale_units(text, 3, 7).unwrap();
        let units = scaled["units"].as_array().unwrap();
        assert_eq!(units.len(), 3 * n);
        assert_eq!(units[..n], original["units"].as_array().unwrap()[..]);
        let first = &original["units"][0];
        let copy = &units[2 * n];
        assert_eq!(copy["id"], format!("{}-x3", first["id"].as_str().unwrap()));
        for key in ["lat", "lng"] {
            let d = (copy["home"][key].as_f64().unwrap() - first["home"][key].as_f64().unwrap()).abs();
            assert!(d <= MAX_OFFSET_DEG + 1e-6, "{key} moved by {d}");
        }
        assert_eq!(scale_units(text, 3, 7).unwrap(), scaled, "seeded");
    }

    #[test]
    fn the_scaled_dataset_loads() {
        let mut config = LastmileConfig::embedded().unwrap();
        let scaled = apply(&mut config, 2, 1).unwrap();
        let (units, _) = config.load_dataset().unwrap();
        assert_eq!(units.len(), scaled.units);
        assert_eq!(units.len(), 2 * 844);
    }
}
