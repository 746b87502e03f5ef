//! The `lastmile.v1.Dispatch` gRPC service: validate, call the core, convert.
//!
//! Dispatch work is a few microseconds of CPU with no I/O, so it runs on the
//! request's own task; nothing here blocks.

use std::sync::Arc;

use lastmile_core::Dispatcher;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_server::Dispatch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::clock::now;
use crate::config::LastmileConfig;
use crate::convert;
use crate::error::to_status;

pub struct DispatchService {
    dispatcher: Arc<Dispatcher>,
    config: Arc<LastmileConfig>,
}

impl DispatchService {
    pub fn new(dispatcher: Arc<Dispatcher>, config: Arc<LastmileConfig>) -> Self {
        DispatchService { dispatcher, config }
    }
}

#[tonic::async_trait]
impl Dispatch for DispatchService {
    async fn report_incident(
        &self,
        request: Request<pb::ReportIncidentRequest>,
    ) -> Result<Response<pb::ReportIncidentResponse>, Status> {
        let new = convert::new_incident(request.into_inner(), &self.config.limits)?;
        let external_id = new.external_id.clone();
        let reported = self.dispatcher.report(new, now()).map_err(|e| {
            warn!(external_id = %external_id, error = %e, "report refused");
            to_status(e)
        })?;
        let incident = &reported.incident;
        if reported.duplicate {
            info!(incident_id = %incident.id, external_id = %external_id, "duplicate report: stored incident returned");
        } else {
            let short = incident.tiers.iter().filter(|t| t.state == lastmile_core::incident::TierState::Short).count();
            info!(
                incident_id = %incident.id,
                external_id = %external_id,
                town = %incident.town,
                units = incident.tiers.iter().map(|t| t.assignments.len()).sum::<usize>(),
                short_tiers = short,
                "incident dispatched"
            );
        }
        Ok(Response::new(pb::ReportIncidentResponse {
            incident: Some(convert::incident_to_pb(incident)),
            duplicate: reported.duplicate,
        }))
    }

    async fn get_incident(&self, request: Request<pb::GetIncidentRequest>) -> Result<Response<pb::Incident>, Status> {
        let id = convert::required_id("id", &request.get_ref().id)?;
        let incident = self.dispatcher.get_incident(id).map_err(to_status)?;
        Ok(Response::new(convert::incident_to_pb(&incident)))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let req = request.get_ref();
        let status = convert::incident_status_filter("status", req.status)?;
        let page_size = convert::page_size(req.page_size, &self.config.server)?;
        let page = self
            .dispatcher
            .list_incidents(status, page_size, convert::page_token(&req.page_token))
            .map_err(to_status)?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: page.items.iter().map(convert::incident_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn close_incident(
        &self,
        request: Request<pb::CloseIncidentRequest>,
    ) -> Result<Response<pb::CloseIncidentResponse>, Status> {
        let req = request.get_ref();
        let id = convert::required_id("id", &req.id)?;
        if req.reason.len() > self.config.limits.max_description_bytes {
            return Err(crate::error::invalid(
                "reason",
                format!("must be at most {} bytes", self.config.limits.max_description_bytes),
            ));
        }
        let incident = self.dispatcher.close_incident(id, now()).map_err(to_status)?;
        info!(incident_id = %incident.id, reason = %req.reason, "incident closed");
        Ok(Response::new(pb::CloseIncidentResponse { incident: Some(convert::incident_to_pb(&incident)) }))
    }

    async fn preview_dispatch(
        &self,
        request: Request<pb::PreviewDispatchRequest>,
    ) -> Result<Response<pb::PreviewDispatchResponse>, Status> {
        let req = request.get_ref();
        let at = convert::lat_lng("location", req.location.as_ref())?;
        let kind = convert::kind("kind", req.kind)?;
        let severity = convert::severity("severity", req.severity)?;
        let preview = self.dispatcher.preview(at, kind, severity, now()).map_err(to_status)?;
        Ok(Response::new(pb::PreviewDispatchResponse {
            tiers: preview.tiers.iter().map(|t| convert::tier_to_pb_response(t, false)).collect(),
            town: preview.located.town,
            village: preview.located.village,
            outside_service_area: preview.located.outside_service_area,
        }))
    }

    async fn list_units(
        &self,
        request: Request<pb::ListUnitsRequest>,
    ) -> Result<Response<pb::ListUnitsResponse>, Status> {
        let req = request.get_ref();
        let filter = convert::unit_filter(req, &self.config.limits)?;
        let page_size = convert::page_size(req.page_size, &self.config.server)?;
        let page = self.dispatcher.list_units(&filter, page_size, convert::page_token(&req.page_token));
        Ok(Response::new(pb::ListUnitsResponse {
            units: page.items.iter().map(convert::unit_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_unit(&self, request: Request<pb::GetUnitRequest>) -> Result<Response<pb::Unit>, Status> {
        let id = convert::required_id("id", &request.get_ref().id)?;
        let unit = self.dispatcher.get_unit(id).map_err(to_status)?;
        Ok(Response::new(convert::unit_to_pb(&unit)))
    }

    async fn upsert_unit(
        &self,
        request: Request<pb::UpsertUnitRequest>,
    ) -> Result<Response<pb::UpsertUnitResponse>, Status> {
        let unit = convert::unit_from_pb(request.into_inner().unit, &self.config.limits)?;
        let (unit, created) = self.dispatcher.upsert_unit(unit).map_err(to_status)?;
        info!(unit_id = %unit.id, tier = %unit.tier, created, "unit upserted");
        Ok(Response::new(pb::UpsertUnitResponse { unit: Some(convert::unit_to_pb(&unit)), created }))
    }

    async fn set_unit_status(
        &self,
        request: Request<pb::SetUnitStatusRequest>,
    ) -> Result<Response<pb::SetUnitStatusResponse>, Status> {
        let req = request.get_ref();
        let id = convert::required_id("id", &req.id)?;
        let Some(status) = convert::unit_status_filter("status", req.status)? else {
            return Err(crate::error::invalid("status", "required"));
        };
        let unit = self.dispatcher.set_unit_status(id, status, now()).map_err(to_status)?;
        info!(unit_id = %unit.id, status = %unit.status, "unit status set");
        Ok(Response::new(pb::SetUnitStatusResponse { unit: Some(convert::unit_to_pb(&unit)) }))
    }

    async fn ping(&self, _request: Request<pb::PingRequest>) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {}))
    }
}
