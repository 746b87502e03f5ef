//! The fsync floor of the journal's disk, measured in the same run: a durable
//! request waits for at least one `fdatasync` of the write-ahead log, so the
//! durable latency is judged against what one costs here and now, not
//! against a figure from another day (this VM's disk varies a lot).
//!
//! The probe writes [`PROBE_WRITE_BYTES`] to a scratch file in the data
//! folder and calls `sync_data` (fdatasync on Linux), `rounds` times, before
//! anything is timed; the scratch file is deleted afterwards, also when a
//! round fails.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::report::{new_histogram, record};

/// Bytes written before each fdatasync: one page, about one small commit.
pub const PROBE_WRITE_BYTES: usize = 4096;
/// Rounds timed by default.
pub const PROBE_ROUNDS: usize = 200;

/// What the probe measured.
pub struct FsyncProbe {
    pub rounds: usize,
    /// Each round: the write and its fdatasync, in µs.
    pub micros: Histogram<u64>,
}

impl FsyncProbe {
    pub fn p(&self, q: f64) -> u64 {
        self.micros.value_at_quantile(q)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rounds": self.rounds,
            "write_bytes": PROBE_WRITE_BYTES,
            "p50_us": self.p(0.5),
            "p90_us": self.p(0.9),
            "p99_us": self.p(0.99),
            "max_us": self.micros.max(),
        })
    }
}

/// Deletes the scratch file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Times `rounds` rounds of writing [`PROBE_WRITE_BYTES`] at the start of a
/// scratch file in `dir` and `sync_data()`. Blocking: call it off the runtime.
pub fn probe(dir: &Path, rounds: usize) -> anyhow::Result<FsyncProbe> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let scratch = Scratch(dir.join(format!("bench-fsync-probe-{}.tmp", std::process::id())));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&scratch.0)
        .with_context(|| format!("cannot create {}", scratch.0.display()))?;
    let block = vec![0xa5u8; PROBE_WRITE_BYTES];
    // The first round allocates the file's block: not timed.
    file.write_all(&block)?;
    file.sync_all()?;
    let mut micros = new_histogram();
    for _ in 0..rounds {
        let started = Instant::now();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data().with_context(|| format!("fdatasync {}", scratch.0.display()))?;
        record(&mut micros, started.elapsed().max(Duration::from_micros(1)));
    }
    drop(file);
    Ok(FsyncProbe { rounds, micros })
}
