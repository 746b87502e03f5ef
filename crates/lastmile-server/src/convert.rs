//! Proto <-> core conversion. Requests are parsed into core values here, so
//! every field is checked once, and a refusal names the field.

use std::sync::Arc;

use lastmile_core::dispatcher::{NewIncident, UnitFilter};
use lastmile_core::incident::{self as core_incident, AssignmentState, IncidentStatus, TierState};
use lastmile_core::{IncidentKind, LatLng, Tier, Timestamp, Unit, UnitStatus};
use lastmile_proto::v1 as pb;
use tonic::Status;

use crate::config::{RequestLimits, ServerConfig};
use crate::error::invalid;

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_ms.div_euclid(1000),
        nanos: (t.unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn lat_lng(field: &str, value: Option<&pb::LatLng>) -> Result<LatLng, Status> {
    let value = value.ok_or_else(|| invalid(field, "required"))?;
    LatLng::new(value.lat, value.lng).map_err(|e| invalid(format!("{field}.{}", e.component()), e))
}

fn bounded_str(field: &str, value: &str, max_bytes: usize) -> Result<(), Status> {
    if value.len() > max_bytes {
        return Err(invalid(field, format!("must be at most {max_bytes} bytes, got {}", value.len())));
    }
    Ok(())
}

pub fn kind(field: &str, value: i32) -> Result<IncidentKind, Status> {
    let names = "FIRE, FLOOD, RESCUE, HAZMAT, TRAFFIC, MEDICAL or OTHER";
    Ok(match pb::IncidentKind::try_from(value) {
        Ok(pb::IncidentKind::Fire) => IncidentKind::Fire,
        Ok(pb::IncidentKind::Flood) => IncidentKind::Flood,
        Ok(pb::IncidentKind::Rescue) => IncidentKind::Rescue,
        Ok(pb::IncidentKind::Hazmat) => IncidentKind::Hazmat,
        Ok(pb::IncidentKind::Traffic) => IncidentKind::Traffic,
        Ok(pb::IncidentKind::Medical) => IncidentKind::Medical,
        Ok(pb::IncidentKind::Other) => IncidentKind::Other,
        Ok(pb::IncidentKind::Unspecified) => return Err(invalid(field, format!("required: one of {names}"))),
        Err(_) => return Err(invalid(field, format!("unknown kind {value}: must be one of {names}"))),
    })
}

pub fn severity(field: &str, value: u32) -> Result<u8, Status> {
    match u8::try_from(value) {
        Ok(s) if (1..=4).contains(&s) => Ok(s),
        _ => Err(invalid(field, format!("must be 1 (minor) to 4 (major), got {value}"))),
    }
}

/// `None` for unspecified (the filter's "any").
pub fn tier_filter(field: &str, value: i32) -> Result<Option<Tier>, Status> {
    match pb::Tier::try_from(value) {
        Ok(pb::Tier::Unspecified) => Ok(None),
        Ok(t) => Ok(Some(tier_from_pb(t))),
        Err(_) => Err(invalid(field, format!("unknown tier {value}: must be 1, 3, 5 or 10"))),
    }
}

fn tier_from_pb(t: pb::Tier) -> Tier {
    match t {
        pb::Tier::Tier1Min | pb::Tier::Unspecified => Tier::T1,
        pb::Tier::Tier3Min => Tier::T3,
        pb::Tier::Tier5Min => Tier::T5,
        pb::Tier::Tier10Min => Tier::T10,
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

/// `None` for unspecified.
pub fn unit_status_filter(field: &str, value: i32) -> Result<Option<UnitStatus>, Status> {
    Ok(match pb::UnitStatus::try_from(value) {
        Ok(pb::UnitStatus::Unspecified) => None,
        Ok(pb::UnitStatus::Available) => Some(UnitStatus::Available),
        Ok(pb::UnitStatus::Paged) => Some(UnitStatus::Paged),
        Ok(pb::UnitStatus::EnRoute) => Some(UnitStatus::EnRoute),
        Ok(pb::UnitStatus::OnScene) => Some(UnitStatus::OnScene),
        Ok(pb::UnitStatus::Returning) => Some(UnitStatus::Returning),
        Ok(pb::UnitStatus::OutOfService) => Some(UnitStatus::OutOfService),
        Ok(pb::UnitStatus::Unresponsive) => Some(UnitStatus::Unresponsive),
        Err(_) => return Err(invalid(field, format!("unknown unit status {value}"))),
    })
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

/// `None` for unspecified.
pub fn incident_status_filter(field: &str, value: i32) -> Result<Option<IncidentStatus>, Status> {
    Ok(match pb::IncidentStatus::try_from(value) {
        Ok(pb::IncidentStatus::Unspecified) => None,
        Ok(pb::IncidentStatus::Open) => Some(IncidentStatus::Open),
        Ok(pb::IncidentStatus::Closed) => Some(IncidentStatus::Closed),
        Err(_) => return Err(invalid(field, format!("unknown incident status {value}"))),
    })
}

/// The page size to use: 0 means the server default; above the maximum is refused.
pub fn page_size(value: u32, server: &ServerConfig) -> Result<usize, Status> {
    match value {
        0 => Ok(server.default_page_size as usize),
        n if n > server.max_page_size => Err(invalid(
            "page_size",
            format!("must be at most {} (0 = default {})", server.max_page_size, server.default_page_size),
        )),
        n => Ok(n as usize),
    }
}

pub fn page_token(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// Longest incident or unit id a request may name, bytes (server ids are
/// far shorter; unit ids are at most `lastmile_core::unit::MAX_UNIT_ID_BYTES`).
pub const MAX_ID_BYTES: usize = 128;

pub fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    optional_id(field, value)?;
    Ok(value)
}

/// A timestamp from a request: whole, in range, and not further in the
/// future than `max_skew_s` (a terminal with a clock far ahead would
/// otherwise freeze its unit: every later report would look stale).
pub fn request_time(
    field: &str,
    value: &prost_types::Timestamp,
    now: lastmile_core::Timestamp,
    max_skew_s: u32,
) -> Result<lastmile_core::Timestamp, Status> {
    if !(0..1_000_000_000).contains(&value.nanos) {
        return Err(invalid(field, format!("nanos must be in 0..1e9, got {}", value.nanos)));
    }
    let ms = value
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(value.nanos) / 1_000_000))
        .ok_or_else(|| invalid(field, format!("{} s is out of range", value.seconds)))?;
    let at = lastmile_core::Timestamp::from_unix_ms(ms);
    if at > now.plus_s(max_skew_s) {
        return Err(invalid(
            field,
            format!("{ms} ms is more than {max_skew_s} s ahead of the server's clock (terminals.max_clock_skew_s)"),
        ));
    }
    Ok(at)
}

/// An optional id filter: empty is fine, otherwise bounded.
pub fn optional_id(field: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_ID_BYTES {
        return Err(invalid(field, format!("must be at most {MAX_ID_BYTES} bytes")));
    }
    Ok(())
}

pub fn new_incident(req: pb::ReportIncidentRequest, limits: &RequestLimits) -> Result<NewIncident, Status> {
    if req.external_id.is_empty() {
        return Err(invalid("external_id", "required: the reporting system's id for this incident"));
    }
    bounded_str("external_id", &req.external_id, limits.max_external_id_bytes)?;
    bounded_str("address", &req.address, limits.max_address_bytes)?;
    bounded_str("description", &req.description, limits.max_description_bytes)?;
    // Only bounded here: whether it is the location's cell is the dispatcher's
    // check (it owns the grid).
    optional_id("grid_id", &req.grid_id)?;
    Ok(NewIncident {
        location: lat_lng("location", req.location.as_ref())?,
        kind: kind("kind", req.kind)?,
        severity: severity("severity", req.severity)?,
        external_id: req.external_id,
        address: req.address,
        description: req.description,
        grid_id: req.grid_id,
    })
}

pub fn unit_filter(req: &pb::ListUnitsRequest, limits: &RequestLimits) -> Result<UnitFilter, Status> {
    bounded_str("town", &req.town, limits.max_name_bytes)?;
    Ok(UnitFilter {
        tier: tier_filter("tier", req.tier)?,
        status: unit_status_filter("status", req.status)?,
        town: (!req.town.is_empty()).then(|| req.town.clone()),
    })
}

pub fn unit_from_pb(unit: Option<pb::Unit>, limits: &RequestLimits) -> Result<Unit, Status> {
    let unit = unit.ok_or_else(|| invalid("unit", "required"))?;
    lastmile_core::unit::check_unit_id(&unit.id).map_err(|e| invalid("unit.id", e))?;
    let tier = match tier_filter("unit.tier", unit.tier)? {
        Some(t) => t,
        None => return Err(invalid("unit.tier", "required: 1, 3, 5 or 10")),
    };
    let home = lat_lng("unit.home", unit.home.as_ref())?;
    let position = match unit.position.as_ref() {
        Some(_) => lat_lng("unit.position", unit.position.as_ref())?,
        None => home,
    };
    let status = unit_status_filter("unit.status", unit.status)?.unwrap_or(UnitStatus::Available);
    for (field, value) in [("unit.name", &unit.name), ("unit.town", &unit.town), ("unit.village", &unit.village)] {
        bounded_str(field, value, limits.max_name_bytes)?;
    }
    if unit.capabilities.len() > limits.max_capabilities {
        return Err(invalid("unit.capabilities", format!("at most {} entries", limits.max_capabilities)));
    }
    for (i, c) in unit.capabilities.iter().enumerate() {
        bounded_str(&format!("unit.capabilities[{i}]"), c, limits.max_name_bytes)?;
    }
    Ok(Unit {
        id: Arc::from(unit.id),
        name: unit.name,
        tier,
        home,
        position,
        status,
        town: unit.town,
        village: unit.village,
        crew: unit.crew,
        capabilities: unit.capabilities,
        incident_id: None,
        position_at: None,
        position_event_at: None,
        returning_since: None,
    })
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
        assert!(kind("kind", 99).unwrap_err().message().starts_with("kind: unknown kind 99"));
        assert!(kind("kind", 0).unwrap_err().message().starts_with("kind: required"));
        assert_eq!(tier_filter("tier", 10).unwrap(), Some(Tier::T10));
        assert!(tier_filter("tier", 2).is_err());
        assert!(severity("severity", 256).is_err());
        assert_eq!(severity("severity", 4).unwrap(), 4);
    }
}
