//! Deliveries that failed: kept in memory (authoritative, bounded by
//! `max_dead_letters_kept`, oldest dropped first) and mirrored to a JSON Lines
//! file, one object per line.
//!
//! `push` never touches the disk (it runs inside `Webhooks::offer`, on the
//! dispatch path): it records the letter and wakes the writer, which appends
//! new lines (one `write` and flush per batch, no fsync) or rewrites the whole
//! file (temporary file, fsync, rename) after a replay removed letters or when
//! the file holds more than twice the bound (dropped letters linger there
//! until then; a reader keeps the last `max_dead_letters_kept`).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{error, warn};

/// One failed delivery, as stored (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The delivery id (`X-Lastmile-Delivery`); a replay sends it again under
    /// the same id, so receivers can drop what they already have.
    pub id: String,
    pub endpoint: String,
    pub event_type: String,
    /// The exact body text (UTF-8; other bytes replaced by U+FFFD).
    pub body: String,
    /// Attempts made (0: never sent, e.g. `queue_full`).
    pub attempts: u32,
    pub reason: DeadLetterReason,
    /// The last HTTP status (`http 500`), transport error or timeout.
    pub last_error: String,
    pub failed_at_unix_ms: i64,
}

/// Why a delivery was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The endpoint's queue was full when the event was offered.
    QueueFull,
    /// `max_attempts` attempts failed with retryable errors.
    Exhausted,
    /// Answered with a status that is not retried (4xx but 408/429, 3xx).
    Rejected,
    /// Not delivered by the end of the shutdown flush.
    Shutdown,
}

/// The dead-letter file could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterFileError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: line {line}: {error}")]
    Corrupt { path: String, line: usize, error: serde_json::Error },
}

/// Reads a dead-letter file (for the operator's CLI as well): the last `keep`
/// letters, and how many older ones were beyond it. A missing file is empty; a
/// last line torn by a crash (no newline, not JSON) is skipped with a warning;
/// any other line that is not a dead letter is an error naming it.
pub fn read_dead_letter_file(path: &Path, keep: usize) -> Result<(Vec<DeadLetter>, usize), DeadLetterFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(error) => return Err(DeadLetterFileError::Io { path: path.display().to_string(), error }),
    };
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut letters = VecDeque::new();
    let mut beyond = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<DeadLetter>(line) {
            Ok(letter) => {
                if letters.len() == keep {
                    letters.pop_front();
                    beyond += 1;
                }
                letters.push_back(letter);
            }
            Err(_) if torn_tail && i + 1 == lines.len() => {
                warn!(path = %path.display(), line = i + 1, "dead-letter file: skipping a torn last line");
            }
            Err(error) => {
                return Err(DeadLetterFileError::Corrupt { path: path.display().to_string(), line: i + 1, error });
            }
        }
    }
    Ok((letters.into(), beyond))
}

pub(crate) struct DeadLetterLog {
    path: Option<PathBuf>,
    max_kept: usize,
    inner: Mutex<Inner>,
    /// Letters dropped (oldest first) because `max_kept` were kept.
    pub(crate) dropped: AtomicU64,
    /// Failed writes of the file (logged; the next write rewrites it whole).
    pub(crate) write_errors: AtomicU64,
    /// Wakes the writer.
    pub(crate) wake: Notify,
}

struct Inner {
    letters: VecDeque<DeadLetter>,
    /// Letters at the back of `letters` not yet in the file.
    unwritten: usize,
    /// Lines in the file.
    file_lines: usize,
    /// The file no longer matches `letters` (a replay removed some, or a
    /// write failed): rewrite it whole.
    rewrite: bool,
}

/// What the writer does next, taken under the lock and done outside it.
enum FileWork {
    Append(Vec<DeadLetter>),
    Rewrite(Vec<DeadLetter>),
}

impl DeadLetterLog {
    /// Loads the file (if any) and checks that it can be written.
    pub(crate) fn open(path: Option<PathBuf>, max_kept: usize) -> Result<Self, DeadLetterFileError> {
        let (letters, beyond) = match &path {
            Some(path) => {
                let io = |error| DeadLetterFileError::Io { path: path.display().to_string(), error };
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let loaded = read_dead_letter_file(path, max_kept)?;
                std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
                loaded
            }
            None => (Vec::new(), 0),
        };
        let file_lines = letters.len() + beyond;
        Ok(DeadLetterLog {
            path,
            max_kept,
            inner: Mutex::new(Inner {
                letters: letters.into(),
                unwritten: 0,
                file_lines,
                // Also drops a torn last line.
                rewrite: beyond > 0,
            }),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a letter (never blocks on I/O) and wakes the writer. Logs it
    /// if `log` (the caller thins out floods: logging writes to stderr).
    pub(crate) fn push(&self, letter: DeadLetter, log: bool) {
        if log {
            Self::log(&letter);
        }
        let mut inner = self.lock();
        if inner.letters.len() == self.max_kept {
            inner.letters.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        inner.letters.push_back(letter);
        inner.unwritten = (inner.unwritten + 1).min(inner.letters.len());
        drop(inner);
        self.wake.notify_one();
    }

    fn log(letter: &DeadLetter) {
        warn!(
            delivery = %letter.id,
            endpoint = %letter.endpoint,
            event_type = %letter.event_type,
            reason = ?letter.reason,
            attempts = letter.attempts,
            last_error = %letter.last_error,
            "webhook delivery dead-lettered"
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().letters.len()
    }

    pub(crate) fn snapshot(&self) -> Vec<DeadLetter> {
        self.lock().letters.iter().cloned().collect()
    }

    /// Takes out the letters `take` selects (in order); the rest stay.
    pub(crate) fn take_where(&self, mut take: impl FnMut(&DeadLetter) -> bool) -> Vec<DeadLetter> {
        let mut inner = self.lock();
        let (taken, kept): (Vec<_>, Vec<_>) = inner.letters.drain(..).partition(|l| take(l));
        inner.letters = kept.into();
        if !taken.is_empty() {
            inner.rewrite = true;
            inner.unwritten = 0;
        }
        drop(inner);
        self.wake.notify_one();
        taken
    }

    /// Puts back letters taken by [`Self::take_where`] that could not be used,
    /// at the front (they are older than anything pushed since).
    pub(crate) fn put_back(&self, letters: Vec<DeadLetter>) {
        if letters.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for letter in letters.into_iter().rev() {
            if inner.letters.len() == self.max_kept {
                // Newer letters arrived meanwhile: the oldest give way.
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            inner.letters.push_front(letter);
        }
        inner.rewrite = true;
        inner.unwritten = 0;
        drop(inner);
        self.wake.notify_one();
    }

    /// Brings the file up to date with memory (blocking I/O: the writer runs
    /// it on a blocking thread). Only one writer calls it.
    pub(crate) fn write_pending(&self) {
        let Some(path) = &self.path else {
            self.lock().unwritten = 0;
            return;
        };
        let work = {
            let mut inner = self.lock();
            if inner.rewrite || inner.file_lines + inner.unwritten > 2 * self.max_kept {
                inner.rewrite = false;
                inner.unwritten = 0;
                inner.file_lines = inner.letters.len();
                FileWork::Rewrite(inner.letters.iter().cloned().collect())
            } else if inner.unwritten > 0 {
                let skip = inner.letters.len() - inner.unwritten;
                inner.file_lines += inner.unwritten;
                inner.unwritten = 0;
                FileWork::Append(inner.letters.iter().skip(skip).cloned().collect())
            } else {
                return;
            }
        };
        let result = match &work {
            FileWork::Append(letters) => append(path, letters),
            FileWork::Rewrite(letters) => rewrite(path, letters),
        };
        if let Err(e) = result {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            error!(path = %path.display(), error = %e, "dead-letter file: write failed; will rewrite it whole");
            self.lock().rewrite = true;
        }
    }
}

fn lines(letters: &[DeadLetter]) -> Vec<u8> {
    let mut out = Vec::new();
    for letter in letters {
        serde_json::to_writer(&mut out, letter).expect("a dead letter serializes");
        out.push(b'\n');
    }
    out
}

fn append(path: &Path, letters: &[DeadLetter]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&lines(letters))?;
    file.flush()
}

fn rewrite(path: &Path, letters: &[DeadLetter]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&lines(letters))?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
