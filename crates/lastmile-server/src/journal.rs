//! Durability: group commit of every state change to the journal store before
//! the request that caused it is answered.
//!
//! The core hands the latest state of each incident and unit it changes to the
//! effects sink, under that entity's lock (so per entity the last record is the
//! latest state). Each operation runs with a [`JournalOp`]: its records go to the
//! one writer thread in order, followed by an end marker. The writer commits
//! whole operations only (never half of one), as many as are waiting, in one
//! transaction and one fsync: that is the group commit. The request then waits
//! until its end marker is committed.
//!
//! Bounds: `journal.max_pending_ops` operations may be between "started" and
//! "committed"; a request that cannot get a place within
//! `journal.enqueue_timeout_ms` is refused UNAVAILABLE having changed nothing.
//! `journal.max_batch_records` bounds one transaction (it closes at the next
//! operation boundary).
//!
//! Fail closed: when a commit fails (disk full, file gone read-only, I/O error)
//! the journal is marked failed, logs the file and the error, and from then on
//! every request that would change state is refused UNAVAILABLE, and the one
//! whose change was not stored is answered UNAVAILABLE, never OK.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc as std_mpsc};
use std::time::Duration;

use lastmile_core::{Incident, Unit};
use lastmile_store::{JournalStore, Record};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{error, info};

use crate::error::AppError;
use crate::metrics::Metrics;

/// A prune of history: closed before this time (ms), at most this many
/// incidents, and where to answer how many went.
type Prune = (i64, usize, tokio::sync::oneshot::Sender<Result<usize, String>>);

enum Message {
    Record(u64, Record),
    End(u64),
    /// Delete history after the batch in hand.
    Prune(Prune),
    /// Make every commit so far readable by history readers, then answer.
    Settle(std_mpsc::SyncSender<Result<(), String>>),
    /// Commit what is pending, then stop (graceful shutdown).
    Shutdown,
}

pub struct Journal {
    /// Ticket counter and sender, under one lock so tickets are in channel
    /// order. Held for one counter increment and one channel push (no
    /// allocation: the record was built before), taken while the core holds
    /// an incident's or unit's lock: lock order entity -> journal sender,
    /// and nothing is locked while it is held.
    sender: Mutex<(u64, std_mpsc::Sender<Message>)>,
    next_op: AtomicU64,
    committed: watch::Receiver<u64>,
    failure: Arc<OnceLock<String>>,
    /// Commits the store has not made readable yet (see [`Journal::settle`]).
    unsettled: Arc<AtomicBool>,
    permits: Arc<Semaphore>,
    enqueue_timeout: Duration,
    location: String,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Commit latency and queue-full refusals.
    metrics: Arc<Metrics>,
}

impl Journal {
    /// Starts the writer thread over `store`. `feed_seq` tells the writer the
    /// live feed's position to record with each commit.
    pub fn start(
        store: Box<dyn JournalStore>,
        failure: Arc<OnceLock<String>>,
        max_pending_ops: usize,
        max_batch_records: usize,
        enqueue_timeout: Duration,
        feed_seq: Arc<dyn Fn() -> u64 + Send + Sync>,
        metrics: Arc<Metrics>,
    ) -> Arc<Journal> {
        let (tx, rx) = std_mpsc::channel::<Message>();
        let (committed_tx, committed) = watch::channel(0u64);
        let unsettled = Arc::new(AtomicBool::new(false));
        let location = store.location();
        let writer = Writer {
            store,
            rx,
            committed: committed_tx,
            failure: failure.clone(),
            unsettled: unsettled.clone(),
            feed_seq,
            metrics: metrics.clone(),
            max_batch_records,
            ticket: 0,
            batch: Vec::new(),
            open_ops: HashSet::new(),
            prune: None,
            settles: Vec::new(),
            stopping: false,
        };
        let writer = std::thread::Builder::new()
            .name("lastmile-journal".into())
            .spawn(move || writer.run())
            .expect("spawn the journal writer thread");
        info!(journal = %location, "journal open");
        Arc::new(Journal {
            sender: Mutex::new((0, tx)),
            next_op: AtomicU64::new(1),
            committed,
            failure,
            unsettled,
            permits: Arc::new(Semaphore::new(max_pending_ops)),
            enqueue_timeout,
            location,
            metrics,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Graceful shutdown: commits what is pending, stops the writer and closes
    /// the store (releasing its lock). Blocking: call from a blocking context.
    pub fn close(&self) {
        self.send(Message::Shutdown);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        info!(journal = %self.location, "journal closed");
    }

    /// Deletes history (with timelines) closed before `closed_before_ms`, at
    /// most `max_incidents` of them, between two group commits; how many.
    pub async fn prune(&self, closed_before_ms: i64, max_incidents: usize) -> Result<usize, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Message::Prune((closed_before_ms, max_incidents, tx)));
        rx.await.unwrap_or_else(|_| Err("journal closed".into()))
    }

    /// Blocks until every commit answered so far is readable by the
    /// store's history readers (the SQLite store writes its tables from its
    /// log a moment after the commit). Call it before a read of history:
    /// what was answered before the read began is then in it. Free when
    /// nothing waits. Blocking: call from a blocking context.
    pub fn settle(&self) -> Result<(), AppError> {
        if !self.unsettled.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.send(Message::Settle(tx));
        match rx.recv_timeout(SETTLE_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            // `e` names the journal's file already.
            Ok(Err(e)) => Err(AppError::unavailable(format!("history not readable: {e}"))),
            Err(_) => Err(AppError::unavailable(format!(
                "journal {}: history not readable within {} s (the writer is busy): retry",
                self.location,
                SETTLE_TIMEOUT.as_secs()
            ))
            .with_retry_after_s(1)),
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    fn send(&self, message: Message) -> u64 {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.0 += 1;
        // Fails only once the writer thread is gone (shutdown).
        let _ = sender.1.send(message);
        sender.0
    }

    fn refused(&self) -> AppError {
        AppError::unavailable(format!(
            "journal {} failed ({}): the server refuses changes it cannot store",
            self.location,
            self.failure().unwrap_or("unknown error")
        ))
    }
}

/// How long a history read waits for [`Journal::settle`] before it is
/// refused UNAVAILABLE (the writer answers it after the commit in hand).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer thread's state: the store, and the batch it is building.
struct Writer {
    store: Box<dyn JournalStore>,
    rx: std_mpsc::Receiver<Message>,
    /// The last ticket whose message is committed (or refused: see `failure`).
    committed: watch::Sender<u64>,
    failure: Arc<OnceLock<String>>,
    unsettled: Arc<AtomicBool>,
    feed_seq: Arc<dyn Fn() -> u64 + Send + Sync>,
    metrics: Arc<Metrics>,
    max_batch_records: usize,
    /// Messages received so far: a sender's ticket is its message's number.
    ticket: u64,
    batch: Vec<Record>,
    /// Operations with records in the batch and no end marker yet.
    open_ops: HashSet<u64>,
    /// A prune asked for, done after the batch in hand is committed.
    prune: Option<Prune>,
    /// Readers waiting for [`Journal::settle`], answered after the batch.
    settles: Vec<std_mpsc::SyncSender<Result<(), String>>>,
    stopping: bool,
}

impl Writer {
    /// Ends when every sender is gone (the server stopped) or at shutdown.
    /// Between messages it settles the store when the store's policy says
    /// so (`journal.apply_interval_ms`).
    fn run(mut self) {
        loop {
            let first = match self.store.settle_due() {
                Some(due) => match self.rx.recv_timeout(due) {
                    Ok(message) => message,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        self.settle();
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            self.collect(first);
            self.commit();
            if !self.settles.is_empty() || self.stopping {
                self.settle();
            }
            self.prune();
            if self.stopping && (self.open_ops.is_empty() || self.failure.get().is_some()) {
                break; // dropping the store releases the file and its lock
            }
        }
    }

    /// Makes what is committed readable, and answers the readers waiting
    /// for it. A failure fails the journal closed (the commits are safe in
    /// the store's log; a restart applies them).
    fn settle(&mut self) {
        let result = match self.failure.get() {
            Some(failure) => Err(format!("journal failed: {failure}")),
            None if self.store.settle_due().is_none() => Ok(()), // nothing waits: no apply to time
            None => {
                let started = std::time::Instant::now();
                let result = self.store.settle().map_err(|e| e.to_string());
                self.metrics.journal_apply_seconds.observe(started.elapsed());
                result
            }
        };
        match &result {
            Ok(()) => self.unsettled.store(self.store.settle_due().is_some(), Ordering::SeqCst),
            Err(e) => {
                error!(journal = %self.store.location(), error = %e, "journal apply failed: refusing every change from now on");
                let _ = self.failure.set(e.clone());
                self.committed.send_modify(|_| {});
            }
        }
        for reader in self.settles.drain(..) {
            let _ = reader.send(result.clone());
        }
    }

    /// Takes `first` and whatever else is waiting into the batch, closing
    /// it at an operation boundary: when nothing more is waiting, or when it
    /// is big enough (`journal.max_batch_records`).
    fn collect(&mut self, first: Message) {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            self.ticket += 1;
            match message {
                Message::Record(op, record) => {
                    self.open_ops.insert(op);
                    self.batch.push(record);
                }
                Message::End(op) => {
                    self.open_ops.remove(&op);
                }
                Message::Prune(prune) => self.prune = Some(prune),
                Message::Settle(reader) => self.settles.push(reader),
                Message::Shutdown => self.stopping = true,
            }
            if self.open_ops.is_empty() && self.batch.len() >= self.max_batch_records {
                return;
            }
            next = match self.rx.try_recv() {
                Ok(m) => Some(m),
                Err(std_mpsc::TryRecvError::Empty) if self.open_ops.is_empty() => None,
                // An operation is mid-way: its end is microseconds away.
                Err(std_mpsc::TryRecvError::Empty) => self.rx.recv().ok(),
                Err(std_mpsc::TryRecvError::Disconnected) => None,
            };
        }
    }

    /// The prune asked for, if any: its own transaction, between batches
    /// (so it delays commits by at most one bounded delete). A failure is
    /// answered and logged, not failed closed: no change was refused.
    fn prune(&mut self) {
        let Some((before_ms, max, answer)) = self.prune.take() else { return };
        let result = match self.failure.get() {
            Some(failure) => Err(format!("journal failed: {failure}")),
            None => self.store.prune(before_ms, max).map_err(|e| e.to_string()),
        };
        if let Err(e) = &result {
            error!(journal = %self.store.location(), error = %e, "history prune failed");
        }
        let _ = answer.send(result);
    }

    /// One transaction and one fsync for the batch, then every waiter whose
    /// ticket it covers is woken. A failure marks the journal failed for
    /// good (fail closed) and wakes the waiters to see it.
    fn commit(&mut self) {
        if self.failure.get().is_none() && !self.batch.is_empty() {
            let started = std::time::Instant::now();
            let result = self.store.commit(std::mem::take(&mut self.batch), (self.feed_seq)());
            self.metrics.journal_commit_seconds.observe(started.elapsed());
            match result {
                // Before the waiters are woken: a read they start sees it.
                Ok(()) => self.unsettled.store(self.store.settle_due().is_some(), Ordering::SeqCst),
                Err(e) => {
                    error!(journal = %self.store.location(), error = %e, "journal write failed: refusing every change from now on");
                    let _ = self.failure.set(e.to_string());
                }
            }
        }
        self.batch.clear();
        if self.failure.get().is_some() {
            self.committed.send_modify(|_| {}); // wake waiters: they see the failure
        } else {
            let _ = self.committed.send(self.ticket);
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("journal records serialise")
}

/// One operation's records, committed together: begun before the change
/// (waiting, bounded, for a place), its records sent as the core hands them
/// over, ended once, and then waited on until durable.
pub struct JournalOp {
    journal: Arc<Journal>,
    id: u64,
    wrote: AtomicBool,
    ended: AtomicBool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for JournalOp {
    /// An operation always ends, even on an early return: the writer commits
    /// only at operation boundaries. One that ends in a panic may have been
    /// half applied: the journal fails closed rather than commit half of it.
    fn drop(&mut self) {
        if std::thread::panicking() && self.wrote.load(Ordering::Relaxed) {
            let j = &self.journal;
            let _ = j.failure.set("an operation panicked half-way; restart to recover".into());
            error!(journal = %j.location, "operation panicked half-way: journal failed closed");
        }
        self.end();
    }
}

impl JournalOp {
    /// Starts an operation that may change state: waits (bounded by
    /// `journal.enqueue_timeout_ms`) for a place among
    /// `journal.max_pending_ops`; UNAVAILABLE if none comes or the journal
    /// has failed.
    pub async fn begin(journal: &Arc<Journal>) -> Result<JournalOp, AppError> {
        let j = journal;
        if j.failure().is_some() {
            return Err(j.refused());
        }
        let permit = tokio::time::timeout(j.enqueue_timeout, j.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                j.metrics.limit_hit("journal.max_pending_ops");
                AppError::unavailable(format!(
                    "journal queue full for {} ms (journal.max_pending_ops): retry",
                    j.enqueue_timeout.as_millis()
                ))
                .with_retry_after_s(1)
            })?
            .map_err(|_| AppError::unavailable("journal closed"))?;
        if j.failure().is_some() {
            return Err(j.refused()); // failed while this request waited for its place
        }
        Ok(JournalOp::new(j, Some(permit)))
    }

    /// An operation started by the server itself (a timer): never refused,
    /// never waits.
    pub fn internal(journal: &Arc<Journal>) -> JournalOp {
        JournalOp::new(journal, None)
    }

    fn new(journal: &Arc<Journal>, permit: Option<OwnedSemaphorePermit>) -> JournalOp {
        JournalOp {
            journal: journal.clone(),
            id: journal.next_op.fetch_add(1, Ordering::Relaxed),
            wrote: false.into(),
            ended: false.into(),
            _permit: permit,
        }
    }

    pub fn store_incident(&self, incident: &Incident) {
        self.store(Record::Incident { seq: incident.seq, body: json(incident) });
    }

    pub fn store_unit(&self, unit: &Unit) {
        self.store(Record::Unit { id: unit.id.to_string(), body: json(unit) });
    }

    /// A closed incident's final state and outcome, into history.
    pub fn store_archive(&self, incident: &Incident, outcome: &lastmile_core::outcome::Outcome) {
        let closed_at = incident.closed_at.unwrap_or(incident.reported_at);
        self.store(Record::Archive {
            seq: incident.seq,
            reported_at_ms: incident.reported_at.unix_ms,
            closed_at_ms: closed_at.unix_ms,
            body: json(incident),
            outcome: json(outcome),
        });
    }

    /// The ETA calibration's learnt state (replaces the stored one).
    pub fn store_calibration(&self, body: Vec<u8>) {
        self.store(Record::Calibration { body });
    }

    /// Entries of an incident's timeline, in order, as one row (keyed by the
    /// first entry's number; its body is the JSON array of the entries).
    pub fn store_timeline(&self, incident_seq: u64, entries: &[&crate::sinks::TimelineEntry]) {
        let Some(first) = entries.first() else { return };
        self.store(Record::Timeline { incident_seq, n: first.n, at_ms: first.at.unix_ms, body: json(&entries) });
    }

    /// Ends the operation and waits until everything it changed is durable.
    /// UNAVAILABLE if the journal failed before that.
    ///
    /// An operation that wrote nothing (a retried report answered from the
    /// stored incident, a no-op close) still waits for everything sent before
    /// it: what it read may belong to an operation whose commit is pending,
    /// and it must not answer OK before that is durable.
    pub async fn durable(self) -> Result<(), AppError> {
        let j = self.journal.clone();
        let ticket = match self.end() {
            Some(ticket) => ticket,
            None => j.sender.lock().unwrap_or_else(|p| p.into_inner()).0,
        };
        let mut committed = j.committed.clone();
        loop {
            if *committed.borrow_and_update() >= ticket {
                return Ok(());
            }
            if j.failure().is_some() {
                return Err(j.refused());
            }
            if committed.changed().await.is_err() {
                return Err(AppError::unavailable("journal writer stopped"));
            }
        }
    }

    /// Ends an internal operation without waiting.
    pub fn finish(self) {
        self.end();
    }

    /// Sends the end marker once, if anything was written; its ticket.
    fn end(&self) -> Option<u64> {
        if !self.wrote.load(Ordering::Relaxed) || self.ended.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(self.journal.send(Message::End(self.id)))
    }

    fn store(&self, record: Record) {
        self.wrote.store(true, Ordering::Relaxed);
        self.journal.send(Message::Record(self.id, record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    /// A store whose commits wait for the test's go-ahead (a slow fsync).
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        commits: Arc<AtomicU64>,
    }

    impl JournalStore for Gate {
        fn recover(&mut self, _recent: usize) -> Result<lastmile_store::Recovered, lastmile_store::StoreError> {
            Ok(Default::default())
        }
        fn prune(&mut self, _before: i64, _max: usize) -> Result<usize, lastmile_store::StoreError> {
            Ok(0)
        }
        fn reader(&self) -> Result<Box<dyn lastmile_store::HistoryReader>, lastmile_store::StoreError> {
            Err(lastmile_store::StoreError::Io { path: "gate".into(), what: "no reader".into() })
        }
        fn commit(&mut self, _batch: Vec<Record>, _feed_seq: u64) -> Result<(), lastmile_store::StoreError> {
            let (lock, cvar) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn location(&self) -> String {
            "gate".into()
        }
    }

    /// A retried report that writes nothing (it finds the stored incident)
    /// must not be answered before the first report's commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_that_wrote_nothing_waits_for_what_it_read() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let commits = Arc::new(AtomicU64::new(0));
        let store = Gate { open: open.clone(), commits: commits.clone() };
        let journal = Journal::start(
            Box::new(store),
            Arc::default(),
            16,
            16,
            Duration::from_secs(5),
            Arc::new(|| 0),
            Arc::default(),
        );

        let first = JournalOp::begin(&journal).await.unwrap();
        first.store(Record::Unit { id: "T1".into(), body: b"{}".to_vec() });
        let first = tokio::spawn(first.durable());
        tokio::time::sleep(Duration::from_millis(50)).await;

        let retry = JournalOp::begin(&journal).await.unwrap(); // writes nothing
        let retry = tokio::spawn(retry.durable());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!retry.is_finished(), "answered before the first operation was durable");
        assert_eq!(commits.load(Ordering::SeqCst), 0);

        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        first.await.unwrap().unwrap();
        retry.await.unwrap().unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 1);
    }
}
