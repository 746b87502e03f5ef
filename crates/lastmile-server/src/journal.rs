//! Durability: group commit of every state change to the journal store before
//! the request that caused it is answered.
//!
//! The core hands the latest state of each incident and unit it changes to the
//! effects sink, under that entity's lock (so per entity the last record is the
//! latest state). Each operation runs with an [`Op`]: its records go to the
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

use lastmile_core::effects::{Effects, Event, PageOrder, Timer};
use lastmile_core::{Incident, Unit};
use lastmile_store::{JournalStore, Record, Table};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::Status;
use tracing::{error, info};

use crate::bus::Bus;
use crate::metrics::Metrics;

enum Message {
    Record(u64, Record),
    End(u64),
    /// Commit what is pending, then stop (graceful shutdown).
    Shutdown,
}

pub struct Journal {
    /// Ticket counter and sender, under one lock so tickets are in channel order.
    sender: Mutex<(u64, std_mpsc::Sender<Message>)>,
    next_op: AtomicU64,
    committed: watch::Receiver<u64>,
    failure: Arc<OnceLock<String>>,
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
        mut store: Box<dyn JournalStore>,
        max_pending_ops: usize,
        max_batch_records: usize,
        enqueue_timeout: Duration,
        feed_seq: Arc<dyn Fn() -> u64 + Send + Sync>,
        metrics: Arc<Metrics>,
    ) -> Arc<Journal> {
        let writer_metrics = metrics.clone();
        let (tx, rx) = std_mpsc::channel::<Message>();
        let (committed_tx, committed) = watch::channel(0u64);
        let failure: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let location = store.location();
        let writer_failure = failure.clone();
        let writer = std::thread::Builder::new()
            .name("lastmile-journal".into())
            .spawn(move || {
                // Ends when every sender is gone (the server stopped).
                let mut ticket = 0u64;
                let mut batch: Vec<Record> = Vec::new();
                let mut open_ops: HashSet<u64> = HashSet::new();
                let mut stopping = false;
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    loop {
                        match next.take() {
                            Some(Message::Record(op, record)) => {
                                ticket += 1;
                                open_ops.insert(op);
                                batch.push(record);
                            }
                            Some(Message::End(op)) => {
                                ticket += 1;
                                open_ops.remove(&op);
                            }
                            Some(Message::Shutdown) => {
                                ticket += 1;
                                stopping = true;
                            }
                            None => {}
                        }
                        // Close the batch at an operation boundary, when nothing
                        // more is waiting or it is big enough.
                        if open_ops.is_empty() && batch.len() >= max_batch_records {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(m) => next = Some(m),
                            Err(std_mpsc::TryRecvError::Empty) if open_ops.is_empty() => break,
                            // An operation is mid-way: its end is microseconds away.
                            Err(std_mpsc::TryRecvError::Empty) => match rx.recv() {
                                Ok(m) => next = Some(m),
                                Err(_) => break,
                            },
                            Err(std_mpsc::TryRecvError::Disconnected) => break,
                        }
                    }
                    if writer_failure.get().is_some() {
                        batch.clear();
                        committed_tx.send_modify(|_| {}); // wake waiters: they see the failure
                        if stopping {
                            break;
                        }
                        continue;
                    }
                    if !batch.is_empty() {
                        let started = std::time::Instant::now();
                        let result = store.commit(&batch, feed_seq());
                        writer_metrics.journal_commit_seconds.observe(started.elapsed());
                        if let Err(e) = result {
                            error!(journal = %store.location(), error = %e, "journal write failed: refusing every change from now on");
                            let _ = writer_failure.set(e.to_string());
                            batch.clear();
                            committed_tx.send_modify(|_| {});
                            if stopping {
                                break;
                            }
                            continue;
                        }
                        batch.clear();
                    }
                    let _ = committed_tx.send(ticket);
                    if stopping && open_ops.is_empty() {
                        break; // dropping the store releases the file and its lock
                    }
                }
            })
            .expect("spawn the journal writer thread");
        info!(journal = %location, "journal open");
        Arc::new(Journal {
            sender: Mutex::new((0, tx)),
            next_op: AtomicU64::new(1),
            committed,
            failure,
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

    fn refused(&self) -> Status {
        Status::unavailable(format!(
            "journal {} failed ({}): the server refuses changes it cannot store",
            self.location,
            self.failure().unwrap_or("unknown error")
        ))
    }
}

fn record_of_incident(incident: &Incident) -> Record {
    Record {
        table: Table::Incident,
        key: incident.seq.to_string(),
        body: serde_json::to_vec(incident).expect("incidents serialise"),
    }
}

fn record_of_unit(unit: &Unit) -> Record {
    Record { table: Table::Unit, key: unit.id.to_string(), body: serde_json::to_vec(unit).expect("units serialise") }
}

/// One operation's effects: delivered through the bus, stored through the
/// journal (when there is one).
pub struct Op {
    bus: Arc<Bus>,
    journal: Option<Arc<Journal>>,
    id: u64,
    wrote: AtomicBool,
    ended: AtomicBool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Op {
    /// An operation always ends, even on an early return: the writer commits
    /// only at operation boundaries. One that ends in a panic may have been
    /// half applied: the journal fails closed rather than commit half of it.
    fn drop(&mut self) {
        if std::thread::panicking()
            && self.wrote.load(Ordering::Relaxed)
            && let Some(j) = &self.journal
        {
            let _ = j.failure.set("an operation panicked half-way; restart to recover".into());
            error!(journal = %j.location, "operation panicked half-way: journal failed closed");
        }
        self.end();
    }
}

impl Op {
    /// Starts an operation that may change state: waits (bounded) for a place
    /// in the journal's queue; refused if the journal has failed.
    pub async fn begin(bus: &Arc<Bus>, journal: &Option<Arc<Journal>>) -> Result<Op, Status> {
        let Some(j) = journal else {
            return Ok(Op {
                bus: bus.clone(),
                journal: None,
                id: 0,
                wrote: false.into(),
                ended: false.into(),
                _permit: None,
            });
        };
        if j.failure().is_some() {
            return Err(j.refused());
        }
        let permit = tokio::time::timeout(j.enqueue_timeout, j.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                j.metrics.limit_hit("journal.max_pending_ops");
                Status::unavailable(format!(
                    "journal queue full for {} ms (journal.max_pending_ops): retry",
                    j.enqueue_timeout.as_millis()
                ))
            })?
            .map_err(|_| Status::unavailable("journal closed"))?;
        if j.failure().is_some() {
            return Err(j.refused()); // failed while this request waited for its place
        }
        Ok(Op {
            bus: bus.clone(),
            journal: Some(j.clone()),
            id: j.next_op.fetch_add(1, Ordering::Relaxed),
            wrote: false.into(),
            ended: false.into(),
            _permit: Some(permit),
        })
    }

    /// An operation started by the server itself (a timer): never refused, never waits.
    pub fn internal(bus: &Arc<Bus>, journal: &Option<Arc<Journal>>) -> Op {
        let id = journal.as_ref().map(|j| j.next_op.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
        Op { bus: bus.clone(), journal: journal.clone(), id, wrote: false.into(), ended: false.into(), _permit: None }
    }

    /// Ends the operation and waits until everything it changed is durable.
    /// UNAVAILABLE if the journal failed before that.
    ///
    /// An operation that wrote nothing (a retried report answered from the
    /// stored incident, a no-op close) still waits for everything sent before
    /// it: what it read may belong to an operation whose commit is pending,
    /// and it must not answer OK before that is durable.
    pub async fn durable(self) -> Result<(), Status> {
        let Some(j) = self.journal.clone() else { return Ok(()) };
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
                return Err(Status::unavailable("journal writer stopped"));
            }
        }
    }

    /// Ends an internal operation without waiting.
    pub fn finish(self) {
        self.end();
    }

    /// Sends the end marker once, if anything was written; its ticket.
    fn end(&self) -> Option<u64> {
        let j = self.journal.as_ref()?;
        if !self.wrote.load(Ordering::Relaxed) || self.ended.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(j.send(Message::End(self.id)))
    }

    fn store(&self, record: Record) {
        if let Some(j) = &self.journal {
            self.wrote.store(true, Ordering::Relaxed);
            j.send(Message::Record(self.id, record));
        }
    }
}

impl Effects for Op {
    fn emit(&self, event: Event) {
        self.bus.emit(event);
    }
    fn page(&self, page: PageOrder) {
        self.bus.page(page);
    }
    fn arm(&self, timer: Timer) {
        self.bus.arm(timer);
    }
    // Serialised only when there is a journal: in memory, nothing is built.
    fn store_incident(&self, incident: &Incident) {
        if self.journal.is_some() {
            self.store(record_of_incident(incident));
        }
    }
    fn store_unit(&self, unit: &Unit) {
        if self.journal.is_some() {
            self.store(record_of_unit(unit));
        }
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
        fn recover(&mut self) -> Result<lastmile_store::Recovered, lastmile_store::StoreError> {
            Ok(Default::default())
        }
        fn commit(&mut self, _batch: &[Record], _feed_seq: u64) -> Result<(), lastmile_store::StoreError> {
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
        let config = Arc::new(crate::LastmileConfig::embedded().unwrap());
        let (bus, _timers) = Bus::new(config, 1);
        let journal =
            Some(Journal::start(Box::new(store), 16, 16, Duration::from_secs(5), Arc::new(|| 0), Arc::default()));

        let first = Op::begin(&bus, &journal).await.unwrap();
        first.store(Record { table: Table::Unit, key: "T1".into(), body: b"{}".to_vec() });
        let first = tokio::spawn(first.durable());
        tokio::time::sleep(Duration::from_millis(50)).await;

        let retry = Op::begin(&bus, &journal).await.unwrap(); // writes nothing
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
