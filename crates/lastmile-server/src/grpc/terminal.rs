//! The `lastmile.v1.UnitTerminal` gRPC service: what responders' terminals
//! call, over the application layer.

use std::sync::Arc;

use lastmile_proto::v1 as pb;
use lastmile_proto::v1::unit_terminal_server::UnitTerminal;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{caller, status};
use crate::app::App;
use crate::app::terminal::PositionOutcome;
use crate::wire;

pub struct TerminalService {
    app: Arc<App>,
}

impl TerminalService {
    pub fn new(app: Arc<App>) -> Self {
        TerminalService { app }
    }
}

/// A terminal's pages as a gRPC stream.
pub type PageStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Page, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl UnitTerminal for TerminalService {
    type SubscribeStream = PageStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<PageStream>, Status> {
        let caller = caller(&self.app, &request)?;
        let pages = self.app.subscribe(&caller, &request.get_ref().unit_id).map_err(status)?;
        let stream = ReceiverStream::new(pages).map(|item| item.map(|p| wire::page_to_pb(&p)).map_err(status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let caller = caller(&self.app, &request)?;
        let ack = wire::acknowledgement(request.into_inner());
        let unit = self.app.acknowledge(&caller, ack).await.map_err(status)?;
        Ok(Response::new(pb::AcknowledgeResponse { unit: Some(wire::unit_to_pb(&unit)) }))
    }

    async fn report_status(
        &self,
        request: Request<pb::ReportStatusRequest>,
    ) -> Result<Response<pb::ReportStatusResponse>, Status> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let unit_status = wire::unit_status("status", req.status).map_err(status)?;
        let fix = wire::status_fix(req);
        let unit =
            self.app.report_status(&caller, &req.unit_id, unit_status, &req.incident_id, fix).await.map_err(status)?;
        Ok(Response::new(pb::ReportStatusResponse { unit: Some(wire::unit_to_pb(&unit)) }))
    }

    /// Applies reports as they arrive; ends (with what it applied) when the
    /// terminal closes the stream or at shutdown, so it does not hold the
    /// drain open.
    async fn report_position(
        &self,
        request: Request<Streaming<pb::PositionReport>>,
    ) -> Result<Response<pb::ReportPositionResponse>, Status> {
        let caller = caller(&self.app, &request)?;
        let mut positions = self.app.open_position_stream(&caller).map_err(status)?;
        let mut stream = request.into_inner();
        let mut answer = pb::ReportPositionResponse::default();
        loop {
            let report = tokio::select! {
                () = self.app.stop.cancelled() => break,
                report = stream.next() => match report {
                    Some(report) => report?,
                    None => break,
                },
            };
            let report = wire::position_report(report);
            match self.app.report_position(&mut positions, report).await.map_err(status)? {
                PositionOutcome::Applied => answer.applied += 1,
                PositionOutcome::IgnoredStale => answer.ignored_stale += 1,
                PositionOutcome::Rejected(error) => {
                    answer.rejected += 1;
                    if answer.first_error.is_empty() {
                        answer.first_error = error.message;
                    }
                }
            }
        }
        self.app.close_position_stream(positions).await.map_err(status)?;
        Ok(Response::new(answer))
    }
}
