//! The `lastmile.v1.UnitTerminal` service: what responders' terminals call.

use std::sync::Arc;

use lastmile_core::UnitStatus;
use lastmile_core::dispatcher::Acknowledgement;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::unit_terminal_server::UnitTerminal;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use crate::Shared;
use crate::auth::Operation;
use crate::convert;
use crate::error::{invalid, to_status};

pub struct TerminalService {
    shared: Arc<Shared>,
}

impl TerminalService {
    pub fn new(shared: Arc<Shared>) -> Self {
        TerminalService { shared }
    }
}

#[tonic::async_trait]
impl UnitTerminal for TerminalService {
    type SubscribeStream = ReceiverStream<Result<pb::Page, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = self.shared.auth.check(&request, Operation::Subscribe)?;
        let s = &self.shared;
        let unit_id = convert::required_id("unit_id", &request.get_ref().unit_id)?;
        s.auth.acting_for(&caller, unit_id)?;
        s.dispatcher.get_unit(unit_id).map_err(to_status)?;
        // Register first, then look for the waiting page: a page sent in between
        // arrives twice (at-least-once, same incident and attempt), never zero times.
        let (_generation, tx, rx) = s.bus.terminals.subscribe(unit_id);
        if let Some(page) = s.dispatcher.pending_page(unit_id) {
            let _ = tx.try_send(Ok(s.bus.page_to_pb(&page)));
        }
        info!(unit_id = %unit_id, "terminal subscribed");
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let caller = self.shared.auth.check(&request, Operation::Acknowledge)?;
        let s = &self.shared;
        let req = request.into_inner();
        convert::required_id("unit_id", &req.unit_id)?;
        s.auth.acting_for(&caller, &req.unit_id)?;
        convert::required_id("incident_id", &req.incident_id)?;
        if req.reason.len() > s.config.limits.max_description_bytes {
            return Err(invalid("reason", format!("must be at most {} bytes", s.config.limits.max_description_bytes)));
        }
        let ack = Acknowledgement {
            unit_id: req.unit_id,
            incident_id: req.incident_id,
            accept: req.accept,
            reason: req.reason,
        };
        // The page being answered, for the acknowledgement latency.
        let paged_at = s.dispatcher.pending_page_sent_at(&ack.unit_id, &ack.incident_id);
        let now = s.clock.now();
        let unit = s.change(|op| s.dispatcher.acknowledge(&ack, now, op)).await?;
        let unit = unit.map_err(to_status)?;
        if let Some(paged_at) = paged_at {
            let waited_ms = (now.unix_ms - paged_at.unix_ms).max(0) as u64;
            s.metrics.page_ack_seconds.observe(std::time::Duration::from_millis(waited_ms));
        }
        info!(unit_id = %ack.unit_id, incident_id = %ack.incident_id, accept = ack.accept, "page answered");
        Ok(Response::new(pb::AcknowledgeResponse { unit: Some(convert::unit_to_pb(&unit)) }))
    }

    async fn report_status(
        &self,
        request: Request<pb::ReportStatusRequest>,
    ) -> Result<Response<pb::ReportStatusResponse>, Status> {
        let caller = self.shared.auth.check(&request, Operation::ReportStatus)?;
        let s = &self.shared;
        let req = request.get_ref();
        let unit_id = convert::required_id("unit_id", &req.unit_id)?;
        s.auth.acting_for(&caller, unit_id)?;
        let status = match convert::unit_status_filter("status", req.status)? {
            Some(
                status @ (UnitStatus::EnRoute
                | UnitStatus::OnScene
                | UnitStatus::Returning
                | UnitStatus::Available
                | UnitStatus::OutOfService),
            ) => status,
            Some(other) => return Err(invalid("status", format!("{other} is set by dispatch, not reported"))),
            None => return Err(invalid("status", "required")),
        };
        if !req.incident_id.is_empty() && matches!(status, UnitStatus::EnRoute | UnitStatus::OnScene) {
            let unit = s.dispatcher.get_unit(unit_id).map_err(to_status)?;
            if unit.incident_id.as_deref() != Some(req.incident_id.as_str()) {
                return Err(Status::failed_precondition(format!(
                    "unit {unit_id} is {} and not on incident {}",
                    unit.status, req.incident_id
                )));
            }
        }
        let unit = s.change(|op| s.dispatcher.set_unit_status(unit_id, status, s.clock.now(), op)).await?;
        let unit = unit.map_err(to_status)?;
        Ok(Response::new(pb::ReportStatusResponse { unit: Some(convert::unit_to_pb(&unit)) }))
    }

    async fn report_position(
        &self,
        request: Request<Streaming<pb::PositionReport>>,
    ) -> Result<Response<pb::ReportPositionResponse>, Status> {
        let caller = self.shared.auth.check(&request, Operation::ReportPosition)?;
        let s = &self.shared;
        let max = s.config.terminals.max_positions_per_stream;
        let mut stream = request.into_inner();
        let mut answer = pb::ReportPositionResponse::default();
        let mut seen: u64 = 0;
        loop {
            // A position stream ends at shutdown (with what it applied), so
            // it does not hold the drain open.
            let report = tokio::select! {
                () = s.stop.cancelled() => break,
                report = stream.next() => match report {
                    Some(report) => report?,
                    None => break,
                },
            };
            s.auth.take_message(&caller)?;
            // A terminal reporting another unit's position ends its stream.
            s.auth.acting_for(&caller, &report.unit_id)?;
            seen += 1;
            if seen > max {
                s.metrics.limit_hit("terminals.max_positions_per_stream");
                return Err(Status::resource_exhausted(format!(
                    "more than {max} position reports on one stream (terminals.max_positions_per_stream): reconnect; {} applied",
                    answer.applied
                )));
            }
            let applied = s
                .change(|op| {
                    convert::lat_lng("position", report.position.as_ref()).and_then(|position| {
                        convert::required_id("unit_id", &report.unit_id)?;
                        let now = s.clock.now();
                        let measured_at = match &report.measured_at {
                            Some(t) => {
                                convert::request_time("measured_at", t, now, s.config.terminals.max_clock_skew_s)?
                            }
                            None => now,
                        };
                        s.dispatcher.report_position(&report.unit_id, position, measured_at, now, op).map_err(to_status)
                    })
                })
                .await?;
            match applied {
                Ok(true) => answer.applied += 1,
                Ok(false) => answer.ignored_stale += 1,
                Err(status) => {
                    answer.rejected += 1;
                    if answer.first_error.is_empty() {
                        answer.first_error = status.message().to_string();
                    }
                }
            }
        }
        Ok(Response::new(answer))
    }
}
