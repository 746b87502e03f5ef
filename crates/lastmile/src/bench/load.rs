//! The load drivers: closed loop (C workers, each sending its next request
//! when the previous one is answered), open loop (requests at a fixed rate,
//! latency measured from the *intended* send time so a stalled server is not
//! hidden by the sender waiting: no coordinated omission), and burst (all N
//! requests fired at once). Every request is bounded by the run's deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `concurrency` requests in flight at all times.
    Closed { concurrency: usize },
    /// `rate` requests per second whatever the answers, at most `max_in_flight`
    /// outstanding (beyond it the sender waits, and the wait counts as latency).
    Open { rate: f64, max_in_flight: usize },
    /// Every request at once.
    Burst,
}

/// The error label of a request the run's deadline cut short.
pub const BENCH_TIMEOUT: &str = "BenchTimeout";

/// One request.
pub struct Sample<T> {
    pub index: usize,
    /// When the request should have been sent (= `sent` in a closed loop; the
    /// schedule's time in an open loop; the burst's start in a burst).
    pub intended: Instant,
    pub sent: Instant,
    pub done: Instant,
    /// The outcome, or the gRPC code's name.
    pub result: Result<T, String>,
}

impl<T> Sample<T> {
    pub fn latency(&self) -> Duration {
        self.done.saturating_duration_since(self.intended)
    }
}

pub struct PhaseRun<T> {
    pub samples: Vec<Sample<T>>,
    pub started: Instant,
    pub finished: Instant,
    /// Requests not sent because the deadline came first.
    pub not_sent: usize,
}

/// Sends `n` requests with `call(client, index)`, clients taken round-robin.
pub async fn drive<C, T, F, Fut>(
    mode: Mode,
    n: usize,
    clients: &[C],
    call: F,
    deadline: Instant,
    progress: &ProgressBar,
) -> PhaseRun<T>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    assert!(!clients.is_empty(), "at least one connection");
    let started = Instant::now();
    let one = One { call, deadline, progress: progress.clone() };
    let mut samples = match mode {
        Mode::Closed { concurrency } => closed_loop(&one, n, clients, concurrency).await,
        Mode::Open { rate, max_in_flight } => open_loop(&one, n, clients, started, rate, max_in_flight).await,
        Mode::Burst => burst(&one, n, clients, started).await,
    };
    samples.sort_by_key(|s| s.index);
    let finished = samples.iter().map(|s| s.done).max().unwrap_or(started);
    let not_sent = n - samples.len();
    PhaseRun { samples, started, finished, not_sent }
}

/// How one request is sent: bounded by the run's deadline, counted on the
/// progress bar, its outcome kept as a [`Sample`].
#[derive(Clone)]
struct One<F> {
    call: F,
    deadline: Instant,
    progress: ProgressBar,
}

impl<F> One<F> {
    async fn send<C, T, Fut>(self, client: C, index: usize, intended: Instant) -> Sample<T>
    where
        F: Fn(C, usize) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let sent = Instant::now();
        let result = match tokio::time::timeout_at(self.deadline, (self.call)(client, index)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(format!("{:?}", status.code())),
            Err(_) => Err(BENCH_TIMEOUT.to_string()),
        };
        self.progress.inc(1);
        Sample { index, intended, sent, done: Instant::now(), result }
    }
}

/// `concurrency` workers, each sending its next request when the previous
/// one is answered, until `n` are sent or the deadline passes.
async fn closed_loop<C, T, F, Fut>(one: &One<F>, n: usize, clients: &[C], concurrency: usize) -> Vec<Sample<T>>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let collected = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut workers = JoinSet::new();
    for w in 0..concurrency.max(1) {
        let (next, collected, client, one) =
            (next.clone(), collected.clone(), clients[w % clients.len()].clone(), one.clone());
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n || Instant::now() >= one.deadline {
                    break;
                }
                let now = Instant::now();
                mine.push(one.clone().send(client.clone(), index, now).await);
            }
            collected.lock().await.extend(mine);
        });
    }
    while workers.join_next().await.is_some() {}
    std::mem::take(&mut *collected.lock().await)
}

/// `rate` requests per second from `started`, whatever the answers, at most
/// `max_in_flight` outstanding; none scheduled at or after the deadline.
async fn open_loop<C, T, F, Fut>(
    one: &One<F>,
    n: usize,
    clients: &[C],
    started: Instant,
    rate: f64,
    max_in_flight: usize,
) -> Vec<Sample<T>>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    let mut samples = Vec::with_capacity(n);
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    for index in 0..n {
        let intended = started + Duration::from_secs_f64(index as f64 / rate);
        if intended >= one.deadline {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let (client, one) = (clients[index % clients.len()].clone(), one.clone());
        tasks.spawn(async move {
            let sample = one.send(client, index, intended).await;
            drop(permit);
            sample
        });
        while let Some(done) = tasks.try_join_next() {
            samples.extend(done.ok());
        }
    }
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.ok());
    }
    samples
}

/// All `n` requests at once, each intended at `started`.
async fn burst<C, T, F, Fut>(one: &One<F>, n: usize, clients: &[C], started: Instant) -> Vec<Sample<T>>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    // The burst is its own bound: n requests, spread over the connections
    // (each connection carries at most server.max_concurrent_streams at once;
    // the rest wait in HTTP/2 flow control).
    let mut samples = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    for index in 0..n {
        let (client, one) = (clients[index % clients.len()].clone(), one.clone());
        tasks.spawn(one.send(client, index, started));
    }
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.ok());
    }
    samples
}
