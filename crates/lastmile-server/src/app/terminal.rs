//! What responders' terminals do: receive pages, answer them, report their
//! status and stream their positions. A terminal token speaks for its own
//! unit only.

use lastmile_core::dispatcher::Acknowledgement;
use lastmile_core::{Unit, UnitStatus};
use tokio::sync::mpsc;
use tracing::info;

use super::validate::{self, Point, RawTime};
use super::{App, AppError, Caller, Operation};
use crate::sinks::PageItem;

/// The statuses a crew reports itself; the others (PAGED, UNRESPONSIVE) are
/// set by dispatch.
pub const REPORTABLE: [UnitStatus; 5] =
    [UnitStatus::EnRoute, UnitStatus::OnScene, UnitStatus::Returning, UnitStatus::Available, UnitStatus::OutOfService];

/// One position report of a stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PositionReport {
    pub unit_id: String,
    pub position: Option<Point>,
    /// None: now.
    pub measured_at: Option<RawTime>,
}

/// How one position report was taken.
#[derive(Clone, Debug, PartialEq)]
pub enum PositionOutcome {
    Applied,
    /// Older than the unit's last applied report.
    IgnoredStale,
    /// Refused (unknown unit, bad coordinates): the stream goes on.
    Rejected(AppError),
}

/// An open position stream: counts its reports against
/// `terminals.max_positions_per_stream`.
pub struct PositionStream {
    caller: Caller,
    seen: u64,
    applied: u64,
    /// The units this stream moved (made durable before it is answered).
    units: Vec<String>,
}

impl App {
    /// A terminal's page stream: the waiting page (if any) first, then every
    /// new one; ended by a newer subscription for the unit or by shutdown.
    pub fn subscribe(&self, caller: &Caller, unit_id: &str) -> Result<mpsc::Receiver<PageItem>, AppError> {
        let _admitted = self.authorize(caller, Operation::Subscribe)?;
        let unit_id = validate::required_id("unit_id", unit_id)?;
        self.auth.acting_for(caller, unit_id)?;
        self.dispatcher.get_unit(unit_id)?;
        // Register first, then look for the waiting page: a page sent in
        // between arrives twice (at-least-once, same incident and attempt),
        // never zero times.
        let (tx, rx) = self.sinks.terminals.subscribe(unit_id);
        if let Some(order) = self.dispatcher.pending_page(unit_id) {
            let _ = tx.try_send(Ok(self.sinks.page(order)));
        }
        info!(unit_id = %unit_id, "terminal subscribed");
        Ok(rx)
    }

    /// Accept (the unit goes EN_ROUTE) or decline a page.
    pub async fn acknowledge(&self, caller: &Caller, ack: Acknowledgement) -> Result<Unit, AppError> {
        let _admitted = self.authorize(caller, Operation::Acknowledge)?;
        validate::required_id("unit_id", &ack.unit_id)?;
        self.auth.acting_for(caller, &ack.unit_id)?;
        validate::required_id("incident_id", &ack.incident_id)?;
        validate::reason("reason", &ack.reason, &self.config.limits)?;
        // The page being answered, for the acknowledgement latency.
        let paged_at = self.dispatcher.pending_page_sent_at(&ack.unit_id, &ack.incident_id);
        let now = self.now();
        let unit = self.change(caller.name(), |work| self.dispatcher.acknowledge(&ack, now, work)).await??;
        if let Some(paged_at) = paged_at {
            let waited_ms = (now.unix_ms - paged_at.unix_ms).max(0) as u64;
            self.metrics.page_ack_seconds.observe(std::time::Duration::from_millis(waited_ms));
        }
        info!(unit_id = %ack.unit_id, incident_id = %ack.incident_id, accept = ack.accept, "page answered");
        Ok(unit)
    }

    /// A crew's own status report. With `incident_id` and EN_ROUTE or
    /// ON_SCENE, only while the unit is on that incident. A position carried
    /// with it is applied first, in the same change (so an ON_SCENE report
    /// can carry the fix that verifies the arrival).
    pub async fn report_status(
        &self,
        caller: &Caller,
        unit_id: &str,
        status: Option<UnitStatus>,
        incident_id: &str,
        fix: Option<(Point, Option<RawTime>)>,
    ) -> Result<Unit, AppError> {
        let _admitted = self.authorize(caller, Operation::ReportStatus)?;
        let unit_id = validate::required_id("unit_id", unit_id)?;
        self.auth.acting_for(caller, unit_id)?;
        let status = match status {
            Some(status) if REPORTABLE.contains(&status) => status,
            Some(other) => {
                return Err(AppError::invalid("status", format!("{other} is set by dispatch, not reported")));
            }
            None => return Err(AppError::invalid("status", "required")),
        };
        if matches!(status, UnitStatus::EnRoute | UnitStatus::OnScene) {
            self.check_on_incident(unit_id, incident_id)?;
        } else {
            validate::optional_id("incident_id", incident_id)?;
        }
        let now = self.now();
        let fix = match fix {
            Some((position, measured_at)) => Some(self.fix(position, measured_at, now)?),
            None => None,
        };
        let changed = self
            .change(caller.name(), |work| {
                if let Some((position, measured_at)) = fix {
                    self.dispatcher.report_position(unit_id, position, measured_at, now, work)?;
                }
                self.dispatcher.set_unit_status(unit_id, status, now, work)
            })
            .await??;
        Ok(changed)
    }

    /// A position fix from a request: coordinates in range, a time not
    /// ahead of the server's clock (`terminals.max_clock_skew_s`; absent:
    /// now).
    fn fix(
        &self,
        position: Point,
        measured_at: Option<RawTime>,
        now: lastmile_core::Timestamp,
    ) -> Result<(lastmile_core::LatLng, lastmile_core::Timestamp), AppError> {
        let position = validate::lat_lng("position", Some(position))?;
        let max_skew_s = self.config.terminals.max_clock_skew_s;
        let measured_at = match measured_at {
            Some(t) => validate::request_time("measured_at", t, now, max_skew_s)?,
            None => now,
        };
        Ok((position, measured_at))
    }

    /// The end of a position stream: its units' last fixes made durable.
    pub async fn close_position_stream(&self, stream: PositionStream) -> Result<(), AppError> {
        self.positions_durable(&stream.caller, &stream.units).await
    }

    /// Opens a position stream for `caller` (one call of its rate).
    pub fn open_position_stream(&self, caller: &Caller) -> Result<PositionStream, AppError> {
        let _admitted = self.authorize(caller, Operation::ReportPosition)?;
        Ok(PositionStream { caller: caller.clone(), seen: 0, applied: 0, units: Vec::new() })
    }

    /// One report of a stream. `Err` ends the stream (over the token's
    /// rate, another unit's position, more than
    /// `terminals.max_positions_per_stream`); a report that is only
    /// unusable is `Ok(Rejected)` and the stream goes on.
    pub async fn report_position(
        &self,
        stream: &mut PositionStream,
        report: PositionReport,
    ) -> Result<PositionOutcome, AppError> {
        self.auth.take_message(&stream.caller)?;
        self.auth.acting_for(&stream.caller, &report.unit_id)?;
        stream.seen += 1;
        let max = self.config.terminals.max_positions_per_stream;
        if stream.seen > max {
            self.metrics.limit_hit("terminals.max_positions_per_stream");
            return Err(AppError::exhausted(format!(
                "more than {max} position reports on one stream (terminals.max_positions_per_stream): reconnect; {} applied",
                stream.applied
            )));
        }
        // Applied at once, journaled coalesced (see `positions`).
        let apply = |work: &super::work::Work| -> Result<bool, AppError> {
            let position = report.position.ok_or_else(|| AppError::invalid("position", "required"))?;
            validate::required_id("unit_id", &report.unit_id)?;
            let now = self.now();
            let (position, measured_at) = self.fix(position, report.measured_at, now)?;
            Ok(self.dispatcher.report_position(&report.unit_id, position, measured_at, now, work)?)
        };
        let applied = match &self.journal {
            Some(_) => self.apply_unjournaled(stream.caller.name(), apply),
            None => self.change(stream.caller.name(), apply).await?,
        };
        if matches!(applied, Ok(true)) {
            self.position_pending(&report.unit_id);
            if !stream.units.contains(&report.unit_id) {
                stream.units.push(report.unit_id.clone());
            }
        }
        Ok(match applied {
            Ok(true) => {
                stream.applied += 1;
                PositionOutcome::Applied
            }
            Ok(false) => PositionOutcome::IgnoredStale,
            Err(error) => PositionOutcome::Rejected(error),
        })
    }
}
