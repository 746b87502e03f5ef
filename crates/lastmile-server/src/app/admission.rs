//! Admission control: a bound on the work in flight, by class, so that
//! under overload the excess is refused at once with a retry hint instead
//! of queueing for a minute, and what frees units is served first.
//!
//! Every operation is admitted (or refused) right after its caller is
//! authorized, and holds its place until it answers. The classes, in the
//! order they are served under pressure:
//!
//! 1. **terminal**: acknowledgements and status reports (they free units and
//!    start crews moving) — only the total bound applies;
//! 2. **override**: dispatchers' overrides (close, assign, release, set
//!    status, confirm arrival, upsert) — only the total bound applies;
//! 3. **report**: new incidents — at most `admission.max_reports_in_flight`;
//! 4. **read**: gets, lists, previews, timelines, reports, pings — at most
//!    `admission.max_reads_in_flight`.
//!
//! Streams (the live feed, a terminal's page stream, a position stream) are
//! not admitted here: they are bounded by their own limits, and the feed
//! never waits for anyone. Everything is `try_acquire`: nothing waits for a
//! place, so a refusal costs microseconds and the latency of what is
//! admitted stays bounded by the bounds, not by the offered load. A refusal
//! is RESOURCE_EXHAUSTED (HTTP 429) with a retry hint; counted per class in
//! `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Operation;
use crate::config::AdmissionConfig;
use crate::error::AppError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Terminal,
    Override,
    Report,
    Read,
    /// Long-lived streams: not admitted here.
    Stream,
}

impl Class {
    pub const ADMITTED: [Class; 4] = [Class::Terminal, Class::Override, Class::Report, Class::Read];

    pub fn of(op: Operation) -> Class {
        use Operation::*;
        match op {
            Acknowledge | ReportStatus => Class::Terminal,
            CloseIncident | AssignUnit | ReleaseUnit | SetUnitStatus | ConfirmArrival | UpsertUnit
            | ReplayDeadLetters => Class::Override,
            ReportIncident => Class::Report,
            GetIncident | ListIncidents | PreviewDispatch | ListUnits | GetUnit | GetIncidentTimeline | Ping
            | ReadDeadLetters | ReadComplianceReport | GetEtaStatus => Class::Read,
            WatchEvents | Subscribe | ReportPosition => Class::Stream,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Terminal => "terminal",
            Class::Override => "override",
            Class::Report => "report",
            Class::Read => "read",
            Class::Stream => "stream",
        }
    }

    fn index(self) -> usize {
        match self {
            Class::Terminal => 0,
            Class::Override => 1,
            Class::Report => 2,
            Class::Read => 3,
            Class::Stream => 4,
        }
    }
}

/// An operation's place: held until it answers.
#[must_use = "an admitted operation holds its place while the guard lives"]
pub struct Admitted {
    _total: Option<OwnedSemaphorePermit>,
    _class: Option<OwnedSemaphorePermit>,
}

pub struct Admission {
    total: Arc<Semaphore>,
    reports: Arc<Semaphore>,
    reads: Arc<Semaphore>,
    config: AdmissionConfig,
    refused: [AtomicU64; 4],
}

impl Admission {
    pub fn new(config: &AdmissionConfig) -> Self {
        Admission {
            total: Arc::new(Semaphore::new(config.max_in_flight)),
            reports: Arc::new(Semaphore::new(config.max_reports_in_flight)),
            reads: Arc::new(Semaphore::new(config.max_reads_in_flight)),
            config: config.clone(),
            refused: Default::default(),
        }
    }

    /// A place for an operation of `class`, or the refusal to answer.
    pub fn admit(&self, class: Class) -> Result<Admitted, AppError> {
        if class == Class::Stream {
            return Ok(Admitted { _total: None, _class: None });
        }
        let own = match class {
            Class::Report => {
                Some((&self.reports, "admission.max_reports_in_flight", self.config.max_reports_in_flight))
            }
            Class::Read => Some((&self.reads, "admission.max_reads_in_flight", self.config.max_reads_in_flight)),
            _ => None,
        };
        let class_permit = match own {
            None => None,
            Some((semaphore, key, bound)) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(self.refuse(class, key, bound)),
            },
        };
        match self.total.clone().try_acquire_owned() {
            Ok(total) => Ok(Admitted { _total: Some(total), _class: class_permit }),
            Err(_) => Err(self.refuse(class, "admission.max_in_flight", self.config.max_in_flight)),
        }
    }

    fn refuse(&self, class: Class, key: &str, bound: usize) -> AppError {
        self.refused[class.index()].fetch_add(1, Ordering::Relaxed);
        AppError::exhausted(format!(
            "server busy: {bound} {} operations already in flight ({key}); retry after {} s",
            class.name(),
            self.config.retry_after_s
        ))
        .with_retry_after_s(self.config.retry_after_s)
    }

    /// Refusals so far, per admitted class.
    pub fn refused(&self) -> impl Iterator<Item = (Class, u64)> + '_ {
        Class::ADMITTED.into_iter().map(|c| (c, self.refused[c.index()].load(Ordering::Relaxed)))
    }

    /// Operations in flight now: (all, reports, reads).
    pub fn in_flight(&self) -> (usize, usize, usize) {
        let used = |s: &Semaphore, bound: usize| bound.saturating_sub(s.available_permits());
        (
            used(&self.total, self.config.max_in_flight),
            used(&self.reports, self.config.max_reports_in_flight),
            used(&self.reads, self.config.max_reads_in_flight),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, reports: usize, reads: usize) -> Admission {
        Admission::new(&AdmissionConfig {
            max_in_flight: total,
            max_reports_in_flight: reports,
            max_reads_in_flight: reads,
            retry_after_s: 1,
        })
    }

    #[test]
    fn reports_and_reads_have_their_bounds_and_terminals_only_the_total() {
        let a = admission(4, 2, 1);
        let r1 = a.admit(Class::Report).unwrap();
        let _r2 = a.admit(Class::Report).unwrap();
        let refused = a.admit(Class::Report).err().unwrap();
        assert_eq!(refused.code, crate::error::ErrorCode::ResourceExhausted);
        assert_eq!(refused.retry_after_s, Some(1));
        assert!(refused.message.contains("admission.max_reports_in_flight"), "{}", refused.message);
        let _read = a.admit(Class::Read).unwrap();
        assert!(a.admit(Class::Read).is_err(), "reads have their own bound");
        // Two places left in the total: the terminal's acknowledgement gets one.
        let _ack = a.admit(Class::Terminal).unwrap();
        assert!(a.admit(Class::Override).is_err(), "the total is full");
        drop(r1);
        let _close = a.admit(Class::Override).expect("a place freed by an answered report");
        let _stream = a.admit(Class::Stream).expect("streams are not admitted here");
        assert_eq!(a.in_flight(), (4, 1, 1));
        let refused: Vec<(Class, u64)> = a.refused().collect();
        assert_eq!(refused, [(Class::Terminal, 0), (Class::Override, 1), (Class::Report, 1), (Class::Read, 1)]);
    }

    #[test]
    fn every_operation_has_a_class() {
        for op in Operation::ALL {
            let class = Class::of(op);
            assert!(Class::ADMITTED.contains(&class) || class == Class::Stream, "{op:?}");
        }
        assert_eq!(Class::of(Operation::Acknowledge), Class::Terminal);
        assert_eq!(Class::of(Operation::WatchEvents), Class::Stream);
    }
}
