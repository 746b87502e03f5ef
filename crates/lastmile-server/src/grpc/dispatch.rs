//! The `lastmile.v1.Dispatch` gRPC service: authenticate, decode, call the
//! application, encode.

use std::sync::Arc;

use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_server::Dispatch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{caller, status};
use crate::app::App;
use crate::app::feed::WatchFilter;
use crate::wire;

pub struct DispatchService {
    app: Arc<App>,
}

impl DispatchService {
    pub fn new(app: Arc<App>) -> Self {
        DispatchService { app }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn ok<T>(message: T) -> Answer<T> {
    Ok(Response::new(message))
}

/// The live feed as a gRPC stream: each event encoded as it is sent.
pub type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DispatchEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Dispatch for DispatchService {
    async fn report_incident(&self, request: Request<pb::ReportIncidentRequest>) -> Answer<pb::ReportIncidentResponse> {
        let caller = caller(&self.app, &request)?;
        let req = wire::report_incident(request.into_inner()).map_err(status)?;
        let reported = self.app.report_incident(&caller, req, wire::incident_to_pb).await.map_err(status)?;
        ok(pb::ReportIncidentResponse { incident: Some(reported.incident), duplicate: reported.duplicate })
    }

    async fn get_incident(&self, request: Request<pb::GetIncidentRequest>) -> Answer<pb::Incident> {
        let caller = caller(&self.app, &request)?;
        let incident = self.app.get_incident(&caller, &request.get_ref().id).await.map_err(status)?;
        ok(wire::incident_to_pb(&incident))
    }

    async fn list_incidents(&self, request: Request<pb::ListIncidentsRequest>) -> Answer<pb::ListIncidentsResponse> {
        let caller = caller(&self.app, &request)?;
        let req = wire::list_incidents(request.into_inner()).map_err(status)?;
        let page = self.app.list_incidents(&caller, &req).await.map_err(status)?;
        ok(wire::list_incidents_to_pb(&page, self.app.config.server.max_encoding_message_bytes))
    }

    async fn close_incident(&self, request: Request<pb::CloseIncidentRequest>) -> Answer<pb::CloseIncidentResponse> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let incident = self.app.close_incident(&caller, &req.id, &req.reason).await.map_err(status)?;
        ok(pb::CloseIncidentResponse { incident: Some(wire::incident_to_pb(&incident)) })
    }

    async fn preview_dispatch(
        &self,
        request: Request<pb::PreviewDispatchRequest>,
    ) -> Answer<pb::PreviewDispatchResponse> {
        let caller = caller(&self.app, &request)?;
        let req = wire::preview_dispatch(request.into_inner()).map_err(status)?;
        let preview = self.app.preview_dispatch(&caller, &req).map_err(status)?;
        ok(wire::preview_to_pb(preview))
    }

    async fn list_units(&self, request: Request<pb::ListUnitsRequest>) -> Answer<pb::ListUnitsResponse> {
        let caller = caller(&self.app, &request)?;
        let req = wire::list_units(request.into_inner()).map_err(status)?;
        let page = self.app.list_units(&caller, &req).map_err(status)?;
        ok(wire::list_units_to_pb(&page, self.app.config.server.max_encoding_message_bytes))
    }

    async fn get_unit(&self, request: Request<pb::GetUnitRequest>) -> Answer<pb::Unit> {
        let caller = caller(&self.app, &request)?;
        let unit = self.app.get_unit(&caller, &request.get_ref().id).map_err(status)?;
        ok(wire::unit_to_pb(&unit))
    }

    async fn upsert_unit(&self, request: Request<pb::UpsertUnitRequest>) -> Answer<pb::UpsertUnitResponse> {
        let caller = caller(&self.app, &request)?;
        let unit = wire::unit_input(request.into_inner().unit).map_err(status)?;
        let (unit, created) = self.app.upsert_unit(&caller, unit).await.map_err(status)?;
        ok(pb::UpsertUnitResponse { unit: Some(wire::unit_to_pb(&unit)), created })
    }

    async fn set_unit_status(&self, request: Request<pb::SetUnitStatusRequest>) -> Answer<pb::SetUnitStatusResponse> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let unit_status = wire::unit_status("status", req.status).map_err(status)?;
        let unit = self.app.set_unit_status(&caller, &req.id, unit_status, &req.incident_id).await.map_err(status)?;
        ok(pb::SetUnitStatusResponse { unit: Some(wire::unit_to_pb(&unit)) })
    }

    async fn ping(&self, request: Request<pb::PingRequest>) -> Answer<pb::PingResponse> {
        let caller = caller(&self.app, &request)?;
        self.app.ping(&caller).map_err(status)?;
        ok(pb::PingResponse {})
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(&self, request: Request<pb::WatchEventsRequest>) -> Answer<Self::WatchEventsStream> {
        let caller = caller(&self.app, &request)?;
        let req = request.into_inner();
        let filter = WatchFilter { after_seq: req.after_seq, incident_id: req.incident_id, unit_id: req.unit_id };
        let events = self.app.watch(&caller, filter).map_err(status)?;
        let stream = ReceiverStream::new(events).map(|item| item.map(|e| wire::event_to_pb(&e)).map_err(status));
        ok(Box::pin(stream))
    }

    async fn assign_unit(&self, request: Request<pb::AssignUnitRequest>) -> Answer<pb::Incident> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let tier = wire::tier("tier", req.tier).map_err(status)?;
        let incident = self.app.assign_unit(&caller, &req.incident_id, &req.unit_id, tier).await.map_err(status)?;
        ok(wire::incident_to_pb(&incident))
    }

    async fn get_incident_timeline(
        &self,
        request: Request<pb::GetIncidentTimelineRequest>,
    ) -> Answer<pb::IncidentTimeline> {
        let caller = caller(&self.app, &request)?;
        let id = &request.get_ref().incident_id;
        let entries = self.app.incident_timeline(&caller, id).await.map_err(status)?;
        ok(wire::timeline_to_pb(id, &entries))
    }

    async fn confirm_arrival(&self, request: Request<pb::ConfirmArrivalRequest>) -> Answer<pb::Incident> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let incident = self.app.confirm_arrival(&caller, &req.incident_id, &req.unit_id).await.map_err(status)?;
        ok(wire::incident_to_pb(&incident))
    }

    async fn release_unit(&self, request: Request<pb::ReleaseUnitRequest>) -> Answer<pb::ReleaseUnitResponse> {
        let caller = caller(&self.app, &request)?;
        let req = request.get_ref();
        let unit = self.app.release_unit(&caller, &req.unit_id, &req.reason).await.map_err(status)?;
        ok(pb::ReleaseUnitResponse { unit: Some(wire::unit_to_pb(&unit)) })
    }
}
