//! The `lastmile.v1.Dispatch` gRPC service: validate, call the core, convert.
//!
//! Dispatch work is a few microseconds of CPU with no I/O, so it runs on the
//! request's own task; nothing here blocks.

use std::sync::Arc;

use lastmile_core::Dispatcher;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_server::Dispatch;
use std::sync::atomic::Ordering;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::Shared;
use crate::auth::Operation;
use crate::convert;
use crate::error::{invalid, to_status};

pub struct DispatchService {
    shared: Arc<Shared>,
}

impl DispatchService {
    pub fn new(shared: Arc<Shared>) -> Self {
        DispatchService { shared }
    }

    fn dispatcher(&self) -> &Dispatcher {
        &self.shared.dispatcher
    }

    fn config(&self) -> &crate::config::LastmileConfig {
        &self.shared.config
    }

    fn now(&self) -> lastmile_core::Timestamp {
        self.shared.clock.now()
    }
}

/// Ends a watcher's count when its forwarding task ends, however it ends.
struct WatcherSlot(Arc<Shared>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.bus.feed.watchers.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl Dispatch for DispatchService {
    async fn report_incident(
        &self,
        request: Request<pb::ReportIncidentRequest>,
    ) -> Result<Response<pb::ReportIncidentResponse>, Status> {
        self.shared.auth.check(&request, Operation::ReportIncident)?;
        let started = std::time::Instant::now();
        let new = convert::new_incident(request.into_inner(), &self.config().limits)?;
        let external_id = new.external_id.clone();
        // Everything logged while this incident is dispatched carries its ids.
        let span = tracing::info_span!("incident", external_id = %external_id, incident_id = tracing::field::Empty);
        let reported = self
            .shared
            .change(|op| span.in_scope(|| self.dispatcher().report_with(new, self.now(), op, convert::incident_to_pb)))
            .await?;
        let _in_span = span.enter();
        let reported = reported.map_err(|e| {
            warn!(external_id = %external_id, error = %e, "report refused");
            to_status(e)
        })?;
        let incident = &reported.incident;
        span.record("incident_id", incident.id.as_str());
        if reported.duplicate {
            info!(incident_id = %incident.id, external_id = %external_id, "duplicate report: stored incident returned");
        } else {
            let short = incident.tiers.iter().filter(|t| t.state == pb::TierState::Short as i32).count();
            info!(
                incident_id = %incident.id,
                external_id = %external_id,
                town = %incident.town,
                units = incident.tiers.iter().map(|t| t.assignments.len()).sum::<usize>(),
                short_tiers = short,
                "incident dispatched"
            );
        }
        let answer = pb::ReportIncidentResponse { incident: Some(reported.incident), duplicate: reported.duplicate };
        self.shared.metrics.dispatch_seconds.observe(started.elapsed());
        Ok(Response::new(answer))
    }

    async fn get_incident(&self, request: Request<pb::GetIncidentRequest>) -> Result<Response<pb::Incident>, Status> {
        self.shared.auth.check(&request, Operation::GetIncident)?;
        let id = convert::required_id("id", &request.get_ref().id)?;
        let incident = self.dispatcher().get_incident(id).map_err(to_status)?;
        Ok(Response::new(convert::incident_to_pb(&incident)))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        self.shared.auth.check(&request, Operation::ListIncidents)?;
        let req = request.get_ref();
        let status = convert::incident_status_filter("status", req.status)?;
        let page_size = convert::page_size(req.page_size, &self.config().server)?;
        let page = self
            .dispatcher()
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
        self.shared.auth.check(&request, Operation::CloseIncident)?;
        let req = request.get_ref();
        let id = convert::required_id("id", &req.id)?;
        if req.reason.len() > self.config().limits.max_description_bytes {
            return Err(invalid(
                "reason",
                format!("must be at most {} bytes", self.config().limits.max_description_bytes),
            ));
        }
        let incident = self.shared.change(|op| self.dispatcher().close_incident(id, self.now(), op)).await?;
        let incident = incident.map_err(to_status)?;
        info!(incident_id = %incident.id, reason = %req.reason, "incident closed");
        Ok(Response::new(pb::CloseIncidentResponse { incident: Some(convert::incident_to_pb(&incident)) }))
    }

    async fn preview_dispatch(
        &self,
        request: Request<pb::PreviewDispatchRequest>,
    ) -> Result<Response<pb::PreviewDispatchResponse>, Status> {
        self.shared.auth.check(&request, Operation::PreviewDispatch)?;
        let req = request.get_ref();
        let at = convert::lat_lng("location", req.location.as_ref())?;
        let kind = convert::kind("kind", req.kind)?;
        let severity = convert::severity("severity", req.severity)?;
        let preview = self.dispatcher().preview(at, kind, severity, self.now()).map_err(to_status)?;
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
        self.shared.auth.check(&request, Operation::ListUnits)?;
        let req = request.get_ref();
        let filter = convert::unit_filter(req, &self.config().limits)?;
        let page_size = convert::page_size(req.page_size, &self.config().server)?;
        let page = self.dispatcher().list_units(&filter, page_size, convert::page_token(&req.page_token));
        Ok(Response::new(pb::ListUnitsResponse {
            units: page.items.iter().map(convert::unit_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_unit(&self, request: Request<pb::GetUnitRequest>) -> Result<Response<pb::Unit>, Status> {
        self.shared.auth.check(&request, Operation::GetUnit)?;
        let id = convert::required_id("id", &request.get_ref().id)?;
        let unit = self.dispatcher().get_unit(id).map_err(to_status)?;
        Ok(Response::new(convert::unit_to_pb(&unit)))
    }

    async fn upsert_unit(
        &self,
        request: Request<pb::UpsertUnitRequest>,
    ) -> Result<Response<pb::UpsertUnitResponse>, Status> {
        self.shared.auth.check(&request, Operation::UpsertUnit)?;
        let unit = convert::unit_from_pb(request.into_inner().unit, &self.config().limits)?;
        let upserted = self.shared.change(|op| self.dispatcher().upsert_unit(unit, op)).await?;
        let (unit, created) = upserted.map_err(to_status)?;
        info!(unit_id = %unit.id, tier = %unit.tier, created, "unit upserted");
        Ok(Response::new(pb::UpsertUnitResponse { unit: Some(convert::unit_to_pb(&unit)), created }))
    }

    async fn set_unit_status(
        &self,
        request: Request<pb::SetUnitStatusRequest>,
    ) -> Result<Response<pb::SetUnitStatusResponse>, Status> {
        self.shared.auth.check(&request, Operation::SetUnitStatus)?;
        let req = request.get_ref();
        let id = convert::required_id("id", &req.id)?;
        let Some(status) = convert::unit_status_filter("status", req.status)? else {
            return Err(invalid("status", "required"));
        };
        let unit = self.shared.change(|op| self.dispatcher().set_unit_status(id, status, self.now(), op)).await?;
        let unit = unit.map_err(to_status)?;
        info!(unit_id = %unit.id, status = %unit.status, "unit status set");
        Ok(Response::new(pb::SetUnitStatusResponse { unit: Some(convert::unit_to_pb(&unit)) }))
    }

    async fn ping(&self, request: Request<pb::PingRequest>) -> Result<Response<pb::PingResponse>, Status> {
        self.shared.auth.check(&request, Operation::Ping)?;
        Ok(Response::new(pb::PingResponse {}))
    }

    type WatchEventsStream = ReceiverStream<Result<pb::DispatchEvent, Status>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.shared.auth.check(&request, Operation::WatchEvents)?;
        let req = request.into_inner();
        convert::optional_id("incident_id", &req.incident_id)?;
        convert::optional_id("unit_id", &req.unit_id)?;
        let feed = &self.shared.bus.feed;
        let max = self.config().feed.max_watchers;
        if feed.watchers.fetch_add(1, Ordering::Relaxed) >= max {
            feed.watchers.fetch_sub(1, Ordering::Relaxed);
            self.shared.metrics.limit_hit("feed.max_watchers");
            return Err(Status::resource_exhausted(format!("{max} watchers already (feed.max_watchers)")));
        }
        let slot = WatcherSlot(self.shared.clone());
        let metrics = self.shared.metrics.clone();
        let (backlog, mut live) = feed.subscribe(req.after_seq)?;
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        let stop = self.shared.stop.clone();
        let buffer = self.config().feed.subscriber_buffer_events;
        let stall = std::time::Duration::from_millis(self.config().feed.watcher_stall_timeout_ms);
        // False when the watcher is gone or has not taken an event for `stall`.
        let send = move |item: Result<pb::DispatchEvent, Status>, tx: mpsc::Sender<_>| async move {
            matches!(tokio::time::timeout(stall, tx.send(item)).await, Ok(Ok(())))
        };
        let wanted = move |e: &pb::DispatchEvent| {
            (req.incident_id.is_empty() || e.incident_id == req.incident_id)
                && (req.unit_id.is_empty() || e.unit_id == req.unit_id)
        };
        // Lives exactly as long as the watcher: ends when the client goes away
        // (send fails), falls too far behind, or the server shuts down.
        tokio::spawn(async move {
            let _slot = slot;
            let mut last_sent = req.after_seq;
            for event in backlog {
                last_sent = event.seq;
                if wanted(&event) && !send(Ok((*event).clone()), tx.clone()).await {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    () = stop.cancelled() => {
                        let _ = tx.try_send(Err(Status::unavailable(format!("server shutting down; resume with after_seq = {last_sent}"))));
                        return;
                    }
                    // The watcher left (an SSE client closing its connection
                    // does this at once): free its place now, not at the next
                    // event, which on a quiet feed may be hours away.
                    () = tx.closed() => return,
                    received = live.recv() => received,
                };
                match received {
                    Ok(event) => {
                        if event.seq <= last_sent {
                            continue; // already sent from the history
                        }
                        last_sent = event.seq;
                        if wanted(&event) && !send(Ok((*event).clone()), tx.clone()).await {
                            warn!(
                                last_sent,
                                "live feed watcher gone or not reading (feed.watcher_stall_timeout_ms): ended"
                            );
                            metrics.limit_hit("feed.watcher_stall_timeout_ms");
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "live feed watcher too slow: ended");
                        metrics.limit_hit("feed.subscriber_buffer_events");
                        let _ = send(
                            Err(Status::resource_exhausted(format!(
                                "watcher fell more than {buffer} events behind (feed.subscriber_buffer_events) and missed {missed}; resume with after_seq = {last_sent}"
                            ))),
                            tx.clone(),
                        )
                        .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn assign_unit(&self, request: Request<pb::AssignUnitRequest>) -> Result<Response<pb::Incident>, Status> {
        self.shared.auth.check(&request, Operation::AssignUnit)?;
        let req = request.get_ref();
        let incident_id = convert::required_id("incident_id", &req.incident_id)?;
        let unit_id = convert::required_id("unit_id", &req.unit_id)?;
        let Some(tier) = convert::tier_filter("tier", req.tier)? else {
            return Err(invalid("tier", "required: 1, 3, 5 or 10"));
        };
        let incident =
            self.shared.change(|op| self.dispatcher().assign_unit(incident_id, unit_id, tier, self.now(), op)).await?;
        let incident = incident.map_err(to_status)?;
        info!(incident_id = %incident_id, unit_id = %unit_id, tier = %tier, "unit assigned by dispatcher");
        Ok(Response::new(convert::incident_to_pb(&incident)))
    }

    async fn release_unit(
        &self,
        request: Request<pb::ReleaseUnitRequest>,
    ) -> Result<Response<pb::ReleaseUnitResponse>, Status> {
        self.shared.auth.check(&request, Operation::ReleaseUnit)?;
        let req = request.get_ref();
        let unit_id = convert::required_id("unit_id", &req.unit_id)?;
        if req.reason.len() > self.config().limits.max_description_bytes {
            return Err(invalid(
                "reason",
                format!("must be at most {} bytes", self.config().limits.max_description_bytes),
            ));
        }
        let unit =
            self.shared.change(|op| self.dispatcher().release_unit(unit_id, &req.reason, self.now(), op)).await?;
        let unit = unit.map_err(to_status)?;
        info!(unit_id = %unit_id, "unit released by dispatcher");
        Ok(Response::new(pb::ReleaseUnitResponse { unit: Some(convert::unit_to_pb(&unit)) }))
    }
}

/// Events queued between a watcher's forwarding task and its gRPC stream; the
/// real bound on lag is `feed.subscriber_buffer_events`.
const WATCH_STREAM_BUFFER: usize = 64;
