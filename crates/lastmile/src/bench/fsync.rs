//! The fsync floor of the journal's disk, measured in the same run: a durable
//! request waits for at least one `fdatasync` of the write-ahead log, so the
//! durable latency is judged against what one costs here and now, not
//! against a figure from another day (this VM's disk varies a lot).
//!
//! The probe writes [`PROBE_WRITE_BYTES`] to a scratch file in the data
//! folder and calls `sync_data` (fdatasync on Linux), `rounds` times, before
//! anything is timed; the scratch file is deleted afterwards, also when a
//! round fails. A second probe ([`during_load`]) does the same once every
//! [`DURING_LOAD_INTERVAL`] while the reports run: what an fdatasync costs
//! on a disk and 2 cores that the load keeps busy (one round per interval
//! adds little to that load).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::report::{new_histogram, record};

/// Bytes written before each fdatasync: one page, about one small commit.
pub const PROBE_WRITE_BYTES: usize = 4096;
/// Rounds timed by default.
pub const PROBE_ROUNDS: usize = 200;
/// One round of the probe during the load this often.
pub const DURING_LOAD_INTERVAL: Duration = Duration::from_millis(20);

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

/// The scratch file, created in `dir` and its block allocated (untimed).
fn scratch(dir: &Path, name: &str) -> anyhow::Result<(Scratch, File, Vec<u8>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let scratch = Scratch(dir.join(format!("bench-fsync-{name}-{}.tmp", std::process::id())));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&scratch.0)
        .with_context(|| format!("cannot create {}", scratch.0.display()))?;
    let block = vec![0xa5u8; PROBE_WRITE_BYTES];
    file.write_all(&block)?;
    file.sync_all()?;
    Ok((scratch, file, block))
}

/// One timed round: the block overwritten and fdatasync'd.
fn round(file: &mut File, block: &[u8], scratch: &Scratch, micros: &mut Histogram<u64>) -> anyhow::Result<()> {
    let started = Instant::now();
    file.seek(SeekFrom::Start(0))?;
    file.write_all(block)?;
    file.sync_data().with_context(|| format!("fdatasync {}", scratch.0.display()))?;
    record(micros, started.elapsed().max(Duration::from_micros(1)));
    Ok(())
}

/// Times `rounds` rounds of writing [`PROBE_WRITE_BYTES`] at the start of a
/// scratch file in `dir` and `sync_data()`. Blocking: call it off the runtime.
pub fn probe(dir: &Path, rounds: usize) -> anyhow::Result<FsyncProbe> {
    let (scratch, mut file, block) = scratch(dir, "probe")?;
    let mut micros = new_histogram();
    for _ in 0..rounds {
        round(&mut file, &block, &scratch, &mut micros)?;
    }
    Ok(FsyncProbe { rounds, micros })
}

/// The probe running beside the load, on a thread of its own, until
/// [`DuringLoad::finish`].
pub struct DuringLoad {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<FsyncProbe>>,
}

/// Starts one round every [`DURING_LOAD_INTERVAL`] in `dir`.
pub fn during_load(dir: &Path) -> anyhow::Result<DuringLoad> {
    let (scratch, mut file, block) = scratch(dir, "during-load")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new().name("bench-fsync-probe".into()).spawn(move || {
        let mut micros = new_histogram();
        let mut rounds = 0;
        while !stopped.load(Ordering::Relaxed) {
            round(&mut file, &block, &scratch, &mut micros)?;
            rounds += 1;
            std::thread::sleep(DURING_LOAD_INTERVAL);
        }
        Ok(FsyncProbe { rounds, micros })
    })?;
    Ok(DuringLoad { stop, thread })
}

impl DuringLoad {
    /// Stops the rounds; what they measured (`None` if there was none).
    pub fn finish(self) -> anyhow::Result<Option<FsyncProbe>> {
        self.stop.store(true, Ordering::Relaxed);
        let probe = self.thread.join().map_err(|_| anyhow::anyhow!("the fsync probe thread panicked"))??;
        Ok((probe.rounds > 0).then_some(probe))
    }
}
