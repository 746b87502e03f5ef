//! The wire contract's types (the protobuf messages of
//! `proto/lastmile/v1`) to and from the application's.
//!
//! Both adapters speak the contract: gRPC carries its messages, and the
//! JSON of the HTTP gateway mirrors them field by field ([`crate::json`]).
//! So each request is decoded here once, for both: enums by number
//! (unknown numbers refused, naming the field), absent messages as `None`.
//! Nothing is *checked* here: required fields, ranges and limits are the
//! application's ([`crate::app::validate`]).

use lastmile_core::dispatcher::{Acknowledgement, Page};
use lastmile_core::effects::{Event, EventKind};
use lastmile_core::incident::{self as core_incident, AssignmentState, IncidentStatus, TierState};
use lastmile_core::{IncidentKind, LatLng, Tier, Timestamp, Unit, UnitStatus};
use lastmile_proto::v1 as pb;

use crate::app::incidents::{ListIncidents, PreviewDispatch, ReportIncident};
use crate::app::terminal::PositionReport;
use crate::app::units::{ListUnits, UnitInput};
use crate::app::validate::{Point, RawTime};
use crate::error::AppError;
use crate::sinks::{FeedEvent, Page as TerminalPage, TimelineEntry};

// ---------------------------------------------------------------- decoding

fn point(value: Option<pb::LatLng>) -> Option<Point> {
    value.map(|p| Point { lat: p.lat, lng: p.lng })
}

fn raw_time(value: Option<prost_types::Timestamp>) -> Option<RawTime> {
    value.map(|t| RawTime { seconds: t.seconds, nanos: t.nanos })
}

/// `None` for unspecified (required fields are the application's check).
pub fn kind(field: &str, value: i32) -> Result<Option<IncidentKind>, AppError> {
    Ok(Some(match pb::IncidentKind::try_from(value) {
        Ok(pb::IncidentKind::Fire) => IncidentKind::Fire,
        Ok(pb::IncidentKind::Flood) => IncidentKind::Flood,
        Ok(pb::IncidentKind::Rescue) => IncidentKind::Rescue,
        Ok(pb::IncidentKind::Hazmat) => IncidentKind::Hazmat,
        Ok(pb::IncidentKind::Traffic) => IncidentKind::Traffic,
        Ok(pb::IncidentKind::Medical) => IncidentKind::Medical,
        Ok(pb::IncidentKind::Other) => IncidentKind::Other,
        Ok(pb::IncidentKind::Unspecified) => return Ok(None),
        Err(_) => {
            return Err(AppError::invalid(
                field,
                format!("unknown kind {value}: must be one of FIRE, FLOOD, RESCUE, HAZMAT, TRAFFIC, MEDICAL or OTHER"),
            ));
        }
    }))
}

/// `None` for unspecified.
pub fn tier(field: &str, value: i32) -> Result<Option<Tier>, AppError> {
    match pb::Tier::try_from(value) {
        Ok(pb::Tier::Unspecified) => Ok(None),
        Ok(pb::Tier::Tier1Min) => Ok(Some(Tier::T1)),
        Ok(pb::Tier::Tier3Min) => Ok(Some(Tier::T3)),
        Ok(pb::Tier::Tier5Min) => Ok(Some(Tier::T5)),
        Ok(pb::Tier::Tier10Min) => Ok(Some(Tier::T10)),
        Err(_) => Err(AppError::invalid(field, format!("unknown tier {value}: must be 1, 3, 5 or 10"))),
    }
}

/// `None` for unspecified.
pub fn unit_status(field: &str, value: i32) -> Result<Option<UnitStatus>, AppError> {
    Ok(match pb::UnitStatus::try_from(value) {
        Ok(pb::UnitStatus::Unspecified) => None,
        Ok(pb::UnitStatus::Available) => Some(UnitStatus::Available),
        Ok(pb::UnitStatus::Paged) => Some(UnitStatus::Paged),
        Ok(pb::UnitStatus::EnRoute) => Some(UnitStatus::EnRoute),
        Ok(pb::UnitStatus::OnScene) => Some(UnitStatus::OnScene),
        Ok(pb::UnitStatus::Returning) => Some(UnitStatus::Returning),
        Ok(pb::UnitStatus::OutOfService) => Some(UnitStatus::OutOfService),
        Ok(pb::UnitStatus::Unresponsive) => Some(UnitStatus::Unresponsive),
        Err(_) => return Err(AppError::invalid(field, format!("unknown unit status {value}"))),
    })
}

/// `None` for unspecified.
pub fn incident_status(field: &str, value: i32) -> Result<Option<IncidentStatus>, AppError> {
    Ok(match pb::IncidentStatus::try_from(value) {
        Ok(pb::IncidentStatus::Unspecified) => None,
        Ok(pb::IncidentStatus::Open) => Some(IncidentStatus::Open),
        Ok(pb::IncidentStatus::Closed) => Some(IncidentStatus::Closed),
        Err(_) => return Err(AppError::invalid(field, format!("unknown incident status {value}"))),
    })
}

pub fn report_incident(req: pb::ReportIncidentRequest) -> Result<ReportIncident, AppError> {
    Ok(ReportIncident {
        kind: kind("kind", req.kind)?,
        location: point(req.location),
        severity: req.severity,
        external_id: req.external_id,
        address: req.address,
        description: req.description,
        grid_id: req.grid_id,
    })
}

pub fn preview_dispatch(req: pb::PreviewDispatchRequest) -> Result<PreviewDispatch, AppError> {
    Ok(PreviewDispatch { location: point(req.location), kind: kind("kind", req.kind)?, severity: req.severity })
}

pub fn list_incidents(req: pb::ListIncidentsRequest) -> Result<ListIncidents, AppError> {
    Ok(ListIncidents {
        status: incident_status("status", req.status)?,
        page_size: req.page_size,
        page_token: req.page_token,
        reported_from: raw_time(req.reported_from),
        reported_to: raw_time(req.reported_to),
    })
}

/// A status report's optional position fix.
pub fn status_fix(req: &pb::ReportStatusRequest) -> Option<(Point, Option<RawTime>)> {
    point(req.position).map(|p| (p, raw_time(req.measured_at)))
}

pub fn list_units(req: pb::ListUnitsRequest) -> Result<ListUnits, AppError> {
    Ok(ListUnits {
        tier: tier("tier", req.tier)?,
        status: unit_status("status", req.status)?,
        town: req.town,
        page_size: req.page_size,
        page_token: req.page_token,
    })
}

/// `None` when the request has no unit (the application refuses it).
pub fn unit_input(unit: Option<pb::Unit>) -> Result<Option<UnitInput>, AppError> {
    let Some(unit) = unit else { return Ok(None) };
    Ok(Some(UnitInput {
        tier: tier("unit.tier", unit.tier)?,
        status: unit_status("unit.status", unit.status)?,
        home: point(unit.home),
        position: point(unit.position),
        id: unit.id,
        name: unit.name,
        town: unit.town,
        village: unit.village,
        crew: unit.crew,
        capabilities: unit.capabilities,
    }))
}

pub fn acknowledgement(req: pb::AcknowledgeRequest) -> Acknowledgement {
    Acknowledgement { unit_id: req.unit_id, incident_id: req.incident_id, accept: req.accept, reason: req.reason }
}

pub fn position_report(report: pb::PositionReport) -> PositionReport {
    PositionReport {
        unit_id: report.unit_id,
        position: point(report.position),
        measured_at: raw_time(report.measured_at),
    }
}

// ---------------------------------------------------------------- encoding

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_ms.div_euclid(1000),
        nanos: (t.unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn tier_to_pb(t: Tier) -> pb::Tier {
    match t {
        Tier::T1 => pb::Tier::Tier1Min,
        Tier::T3 => pb::Tier::Tier3Min,
        Tier::T5 => pb::Tier::Tier5Min,
        Tier::T10 => pb::Tier::Tier10Min,
    }
}

pub fn unit_status_to_pb(s: UnitStatus) -> pb::UnitStatus {
    match s {
        UnitStatus::Available => pb::UnitStatus::Available,
        UnitStatus::Paged => pb::UnitStatus::Paged,
        UnitStatus::EnRoute => pb::UnitStatus::EnRoute,
        UnitStatus::OnScene => pb::UnitStatus::OnScene,
        UnitStatus::Returning => pb::UnitStatus::Returning,
        UnitStatus::OutOfService => pb::UnitStatus::OutOfService,
        UnitStatus::Unresponsive => pb::UnitStatus::Unresponsive,
    }
}

/// Room kept for the response's own envelope (its token, framing).
const PAGE_ENVELOPE_BYTES: usize = 1024;

/// The items of a page that fit in `max_bytes` encoded (at least one), and
/// the token to go on from: a page never exceeds the encoding limit
/// (`server.max_encoding_message_bytes`); a full page of long incidents is
/// cut short and continued on the next, whatever `page_size` asked.
fn sized_page<T, M: prost::Message>(
    page: &Page<T>,
    max_bytes: usize,
    encode: impl Fn(&T) -> M,
    token: impl Fn(&T) -> String,
) -> (Vec<M>, String) {
    let budget = max_bytes.saturating_sub(PAGE_ENVELOPE_BYTES);
    let mut out = Vec::with_capacity(page.items.len());
    let mut used = 0;
    for item in &page.items {
        let message = encode(item);
        // The field's tag and length prefix: at most 6 bytes.
        let len = message.encoded_len() + 6;
        if !out.is_empty() && used + len > budget {
            let last = &page.items[out.len() - 1];
            return (out, token(last));
        }
        used += len;
        out.push(message);
    }
    (out, page.next_page_token.clone().unwrap_or_default())
}

pub fn list_incidents_to_pb(page: &Page<core_incident::Incident>, max_bytes: usize) -> pb::ListIncidentsResponse {
    let (incidents, next_page_token) = sized_page(page, max_bytes, incident_to_pb, |i| i.seq.to_string());
    pb::ListIncidentsResponse { incidents, next_page_token }
}

pub fn list_units_to_pb(page: &Page<Unit>, max_bytes: usize) -> pb::ListUnitsResponse {
    let (units, next_page_token) = sized_page(page, max_bytes, unit_to_pb, |u| u.id.to_string());
    pb::ListUnitsResponse { units, next_page_token }
}

pub fn preview_to_pb(preview: lastmile_core::dispatcher::Preview) -> pb::PreviewDispatchResponse {
    pb::PreviewDispatchResponse {
        tiers: preview.tiers.iter().map(|t| tier_to_pb_response(t, false)).collect(),
        town: preview.located.town,
        village: preview.located.village,
        outside_service_area: preview.located.outside_service_area,
        passed_over: preview
            .passed_over
            .into_iter()
            .map(|p| pb::PassedOver {
                tier: tier_to_pb(p.tier) as i32,
                unit_id: p.unit_id,
                unit_name: p.unit_name,
                distance_m: p.distance_m,
                reason: p.reason,
            })
            .collect(),
    }
}

pub fn page_to_pb(page: &TerminalPage) -> pb::Page {
    let p = &page.order;
    pb::Page {
        unit_id: p.unit_id.clone(),
        incident_id: p.incident_id.clone(),
        kind: kind_to_pb(p.kind) as i32,
        severity: p.severity as u32,
        location: Some(lat_lng_to_pb(p.location)),
        address: p.address.clone(),
        description: p.description.clone(),
        tier: tier_to_pb(p.tier) as i32,
        eta_s: p.eta_s,
        distance_m: p.distance_m,
        deadline: Some(timestamp(p.deadline)),
        paged_at: Some(timestamp(p.paged_at)),
        attempt: p.attempt,
        ack_timeout_s: page.ack_timeout_s,
    }
}

pub fn event_type(kind: EventKind) -> pb::EventType {
    match kind {
        EventKind::IncidentReported => pb::EventType::IncidentReported,
        EventKind::IncidentClosed => pb::EventType::IncidentClosed,
        EventKind::UnitPaged => pb::EventType::UnitPaged,
        EventKind::UnitRepaged => pb::EventType::UnitRepaged,
        EventKind::UnitAcknowledged => pb::EventType::UnitAcknowledged,
        EventKind::UnitDeclined => pb::EventType::UnitDeclined,
        EventKind::UnitTimedOut => pb::EventType::UnitTimedOut,
        EventKind::UnitEnRoute => pb::EventType::UnitEnRoute,
        EventKind::UnitOnScene => pb::EventType::UnitOnScene,
        EventKind::UnitReleased => pb::EventType::UnitReleased,
        EventKind::TierShort => pb::EventType::TierShort,
        EventKind::TierMet => pb::EventType::TierMet,
        EventKind::TierBreached => pb::EventType::TierBreached,
        EventKind::TierEscalated => pb::EventType::TierEscalated,
        EventKind::UnitStatusChanged => pb::EventType::UnitStatusChanged,
        EventKind::UnitPosition => pb::EventType::UnitPosition,
        EventKind::GridWorkerNotified => pb::EventType::GridWorkerNotified,
        EventKind::UnitArrivalUnverified => pb::EventType::UnitArrivalUnverified,
        EventKind::ArrivalConfirmed => pb::EventType::ArrivalConfirmed,
    }
}

pub fn timeline_to_pb(incident_id: &str, entries: &[TimelineEntry]) -> pb::IncidentTimeline {
    let entry = |e: &TimelineEntry| pb::TimelineEntry {
        n: e.n,
        at: Some(timestamp(e.at)),
        r#type: event_type(e.kind) as i32,
        unit_id: e.unit_id.clone().unwrap_or_default(),
        tier: e.tier.map(|t| tier_to_pb(t) as i32).unwrap_or(0),
        attempt: e.attempt,
        unit_status: e.unit_status.map(|s| unit_status_to_pb(s) as i32).unwrap_or(0),
        position: e.position.map(lat_lng_to_pb),
        detail: e.detail.clone(),
        actor: e.actor.clone(),
    };
    pb::IncidentTimeline { incident_id: incident_id.to_string(), entries: entries.iter().map(entry).collect() }
}

pub fn event_to_pb(event: &FeedEvent) -> pb::DispatchEvent {
    let e: &Event = &event.event;
    pb::DispatchEvent {
        seq: event.seq,
        at: Some(timestamp(e.at)),
        r#type: event_type(e.kind) as i32,
        incident_id: e.incident_id.clone().unwrap_or_default(),
        unit_id: e.unit_id.clone().unwrap_or_default(),
        tier: e.tier.map(|t| tier_to_pb(t) as i32).unwrap_or(0),
        attempt: e.attempt,
        unit_status: e.unit_status.map(|s| unit_status_to_pb(s) as i32).unwrap_or(0),
        position: e.position.map(lat_lng_to_pb),
        detail: e.detail.clone(),
        grid_id: e.grid_id.clone(),
        grid_worker: e.grid_worker.as_ref().map(|w| pb::GridWorker {
            grid_id: e.grid_id.clone(),
            name: w.name.clone(),
            contact: w.contact.clone(),
        }),
    }
}

pub fn unit_to_pb(unit: &Unit) -> pb::Unit {
    pb::Unit {
        id: unit.id.to_string(),
        name: unit.name.clone(),
        tier: tier_to_pb(unit.tier) as i32,
        home: Some(lat_lng_to_pb(unit.home)),
        position: Some(lat_lng_to_pb(unit.position)),
        status: unit_status_to_pb(unit.status) as i32,
        town: unit.town.clone(),
        village: unit.village.clone(),
        crew: unit.crew,
        capabilities: unit.capabilities.clone(),
        incident_id: unit.incident_id.clone().unwrap_or_default(),
    }
}

pub fn lat_lng_to_pb(p: LatLng) -> pb::LatLng {
    pb::LatLng { lat: p.lat, lng: p.lng }
}

pub fn kind_to_pb(k: IncidentKind) -> pb::IncidentKind {
    match k {
        IncidentKind::Fire => pb::IncidentKind::Fire,
        IncidentKind::Flood => pb::IncidentKind::Flood,
        IncidentKind::Rescue => pb::IncidentKind::Rescue,
        IncidentKind::Hazmat => pb::IncidentKind::Hazmat,
        IncidentKind::Traffic => pb::IncidentKind::Traffic,
        IncidentKind::Medical => pb::IncidentKind::Medical,
        IncidentKind::Other => pb::IncidentKind::Other,
    }
}

fn tier_state_to_pb(s: TierState) -> pb::TierState {
    match s {
        TierState::Paging => pb::TierState::Paging,
        TierState::Short => pb::TierState::Short,
        TierState::Met => pb::TierState::Met,
        TierState::Breached => pb::TierState::Breached,
        TierState::Escalated => pb::TierState::Escalated,
        TierState::Cancelled => pb::TierState::Cancelled,
        TierState::NotApplicable => pb::TierState::NotApplicable,
    }
}

fn assignment_state_to_pb(s: AssignmentState) -> pb::AssignmentState {
    match s {
        AssignmentState::Paged => pb::AssignmentState::Paged,
        AssignmentState::Acknowledged => pb::AssignmentState::Acknowledged,
        AssignmentState::Declined => pb::AssignmentState::Declined,
        AssignmentState::TimedOut => pb::AssignmentState::TimedOut,
        AssignmentState::OnScene => pb::AssignmentState::OnScene,
        AssignmentState::Released => pb::AssignmentState::Released,
    }
}

/// A tier response. `reserved` is false for previews: nothing was paged, so
/// assignment states and paging times are left unspecified.
pub fn tier_to_pb_response(t: &core_incident::TierResponse, reserved: bool) -> pb::TierResponse {
    pb::TierResponse {
        tier: tier_to_pb(t.tier) as i32,
        target_s: t.target_s,
        required: t.required,
        state: tier_state_to_pb(t.state) as i32,
        deadline: Some(timestamp(t.deadline)),
        assignments: t
            .assignments
            .iter()
            .map(|a| pb::Assignment {
                unit_id: a.unit_id.clone(),
                tier: tier_to_pb(a.tier) as i32,
                distance_m: a.distance_m,
                eta_s: a.eta_s,
                within_target: a.within_target,
                state: if reserved { assignment_state_to_pb(a.state) as i32 } else { 0 },
                paged_at: reserved.then(|| timestamp(a.paged_at)),
                attempt: if reserved { a.attempt } else { 0 },
                unit_name: a.unit_name.clone(),
                escalated_from: a.escalated_from.map(|t| tier_to_pb(t) as i32).unwrap_or(0),
                acknowledged_at: a.acknowledged_at.map(timestamp),
                on_scene_at: a.on_scene_at.map(timestamp),
                released_at: a.released_at.map(timestamp),
                arrival_verified: a.arrival_verified,
                arrival_confirmed_by: a.arrival_confirmed_by.clone(),
            })
            .collect(),
        note: t.note.clone(),
    }
}

pub fn incident_to_pb(i: &core_incident::Incident) -> pb::Incident {
    pb::Incident {
        id: i.id.clone(),
        external_id: i.external_id.clone(),
        location: Some(lat_lng_to_pb(i.location)),
        kind: kind_to_pb(i.kind) as i32,
        severity: i.severity as u32,
        reported_at: Some(timestamp(i.reported_at)),
        status: match i.status {
            IncidentStatus::Open => pb::IncidentStatus::Open,
            IncidentStatus::Closed => pb::IncidentStatus::Closed,
        } as i32,
        tiers: i.tiers.iter().map(|t| tier_to_pb_response(t, true)).collect(),
        town: i.town.clone(),
        village: i.village.clone(),
        address: i.address.clone(),
        description: i.description.clone(),
        outside_service_area: i.outside_service_area,
        closed_at: i.closed_at.map(timestamp),
        grid_id: i.grid_id.clone(),
        grid_worker: i.grid_worker.as_ref().map(|w| pb::GridWorker {
            grid_id: i.grid_id.clone(),
            name: w.name.clone(),
            contact: w.contact.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_before_and_after_the_epoch() {
        assert_eq!(
            timestamp(Timestamp::from_unix_ms(1_500)),
            prost_types::Timestamp { seconds: 1, nanos: 500_000_000 }
        );
        assert_eq!(timestamp(Timestamp::from_unix_ms(-1)), prost_types::Timestamp { seconds: -1, nanos: 999_000_000 });
    }

    #[test]
    fn enums_refuse_unknown_values_by_name() {
        assert!(kind("kind", 99).unwrap_err().message.starts_with("kind: unknown kind 99"));
        assert_eq!(kind("kind", 0).unwrap(), None);
        assert_eq!(tier("tier", pb::Tier::Tier10Min as i32).unwrap(), Some(Tier::T10));
        assert!(tier("tier", 2).is_err());
    }
}
