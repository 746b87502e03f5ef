//! The gateway's JSON: hand-written DTOs mirroring `proto/lastmile/v1`
//! message by message, field by field (snake_case, the proto's field names).
//!
//! Conventions, the same for every message (and written down in
//! `openapi.json`, which the e2e test checks responses against):
//! - an enum is its proto value name without the enum's prefix (`FIRE` for
//!   `INCIDENT_KIND_FIRE`, `OPEN`, `AVAILABLE`, `PAGING`, `UNIT_PAGED`); tiers
//!   are `TIER_1`, `TIER_3`, `TIER_5`, `TIER_10`. The unspecified value is
//!   `null` in responses and is never accepted in requests (leave the field
//!   out instead);
//! - a timestamp is an RFC 3339 string in UTC (`2026-11-29T03:02:07.178Z`);
//! - an absent message or timestamp is `null`; strings are never `null`
//!   (empty means none, as in the proto); every response field is always
//!   present;
//! - requests refuse unknown fields; a missing field is the proto default,
//!   so the gRPC validation names it exactly as it does for gRPC callers.
//!
//! [`event`] is the one serialisation of a live-feed event (the SSE stream
//! uses it; webhooks are meant to).

use lastmile_proto::v1 as pb;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

// ---------------------------------------------------------------- enums

/// A proto enum as it appears in JSON.
pub trait JsonEnum: Sized + Copy + TryFrom<i32> + Into<i32> {
    /// Stripped from the proto value name (`INCIDENT_KIND_`).
    const PREFIX: &'static str;
    /// Stripped from the end of the proto value name (`_MIN` for tiers).
    const SUFFIX: &'static str;
    /// What the enum is called in error messages.
    const WHAT: &'static str;
    fn proto_name(self) -> &'static str;
    fn from_proto_name(name: &str) -> Option<Self>;
    /// Other spellings a request may use (tiers: their minutes, `"3"`).
    fn from_alias(_name: &str) -> Option<Self> {
        None
    }
}

macro_rules! json_enum {
    ($ty:ty, $prefix:literal, $suffix:literal, $what:literal) => {
        impl JsonEnum for $ty {
            const PREFIX: &'static str = $prefix;
            const SUFFIX: &'static str = $suffix;
            const WHAT: &'static str = $what;
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_proto_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }
    };
}

impl JsonEnum for pb::Tier {
    const PREFIX: &'static str = "";
    const SUFFIX: &'static str = "_MIN";
    const WHAT: &'static str = "tier";
    fn proto_name(self) -> &'static str {
        self.as_str_name()
    }
    fn from_proto_name(name: &str) -> Option<Self> {
        Self::from_str_name(name)
    }
    /// `"1"`, `"3"`, `"5"`, `"10"`: the spelling of the CLI and of metrics
    /// labels.
    fn from_alias(name: &str) -> Option<Self> {
        name.parse::<i32>().ok().and_then(|n| Self::try_from(n).ok())
    }
}
json_enum!(pb::UnitStatus, "UNIT_STATUS_", "", "unit status");
json_enum!(pb::IncidentKind, "INCIDENT_KIND_", "", "incident kind");
json_enum!(pb::IncidentStatus, "INCIDENT_STATUS_", "", "incident status");
json_enum!(pb::TierState, "TIER_STATE_", "", "tier state");
json_enum!(pb::AssignmentState, "ASSIGNMENT_STATE_", "", "assignment state");
json_enum!(pb::EventType, "EVENT_TYPE_", "", "event type");

/// The JSON name of a proto enum value; `None` for the unspecified value (0)
/// and for numbers the proto does not define.
pub fn enum_name<E: JsonEnum>(value: i32) -> Option<&'static str> {
    if value == 0 {
        return None;
    }
    let name = E::try_from(value).ok()?.proto_name();
    Some(name.strip_prefix(E::PREFIX).unwrap_or(name).strip_suffix(E::SUFFIX).unwrap_or(name))
}

/// Every JSON name of a proto enum (the unspecified value excluded), in
/// number order: what requests accept and `openapi.json` lists.
pub fn enum_names<E: JsonEnum>() -> Vec<&'static str> {
    // Proto enum numbers here are small; 0..=255 covers every one defined.
    (1..=255).filter_map(enum_name::<E>).collect()
}

/// A proto enum value read from a JSON name (requests and query strings).
#[derive(Clone, Copy, Debug)]
pub struct Named<E>(pub E);

impl<E: JsonEnum> Named<E> {
    pub fn number(self) -> i32 {
        self.0.into()
    }
}

impl<E: JsonEnum> Named<E> {
    /// A value by any of its spellings: the JSON name (`TIER_3`, `FIRE`),
    /// the proto name (`TIER_3_MIN`, `INCIDENT_KIND_FIRE`), or an alias
    /// ([`JsonEnum::from_alias`]). The unspecified value is refused.
    pub fn parse(name: &str) -> Result<Self, String> {
        let full = format!("{}{name}{}", E::PREFIX, E::SUFFIX);
        let found = E::from_proto_name(&full).or_else(|| E::from_proto_name(name)).or_else(|| E::from_alias(name));
        match found {
            Some(value) if value.into() != 0 => Ok(Named(value)),
            _ => Err(format!("unknown {} {name:?}: expected one of {}", E::WHAT, enum_names::<E>().join(", "))),
        }
    }
}

impl<'de, E: JsonEnum> Deserialize<'de> for Named<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A string, or (for JSON numbers) the proto number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spelling {
            Name(String),
            Number(i64),
        }
        match Spelling::deserialize(deserializer)? {
            Spelling::Name(name) => Named::parse(&name).map_err(D::Error::custom),
            Spelling::Number(n) => Named::parse(&n.to_string())
                .or_else(|e| {
                    i32::try_from(n)
                        .ok()
                        .and_then(|n| E::try_from(n).ok())
                        .filter(|v| (*v).into() != 0)
                        .map(Named)
                        .ok_or(e)
                })
                .map_err(D::Error::custom),
        }
    }
}

/// An enum field that the server always sets (non-null in the schema).
fn required_enum<E: JsonEnum>(value: i32) -> &'static str {
    let name = enum_name::<E>(value);
    debug_assert!(name.is_some(), "{} {value} in a response", E::WHAT);
    name.unwrap_or("")
}

// ---------------------------------------------------------------- scalars

/// A `u32` field of a request: `3` or, as JSON Schema's "integer" allows,
/// `3.0`; a fraction, a negative or too large a number is refused.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Float(f64),
    }
    let out_of_range =
        |shown: String| D::Error::custom(format!("{shown} is not a whole number from 0 to {}", u32::MAX));
    match Number::deserialize(deserializer).map_err(|_| D::Error::custom("expected a whole number"))? {
        Number::Whole(n) => u32::try_from(n).map_err(|_| out_of_range(n.to_string())),
        Number::Float(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
        Number::Float(f) => Err(out_of_range(f.to_string())),
    }
}

/// An optional field of a request body: absent is `None`, and an explicit
/// `null` is refused like any other wrong type (the document has no `null`
/// in requests; serde alone would read it as absent).
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// RFC 3339, UTC, `Z` (prost's formatting: 0, 3, 6 or 9 fraction digits).
pub fn timestamp(t: &prost_types::Timestamp) -> String {
    t.to_string()
}

fn optional_timestamp(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(timestamp)
}

/// A timestamp the server always sets.
fn required_timestamp(t: Option<&prost_types::Timestamp>) -> String {
    debug_assert!(t.is_some(), "a required timestamp is missing");
    timestamp(&t.copied().unwrap_or_default())
}

/// WGS-84 degrees (requests and responses).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl From<&pb::LatLng> for LatLng {
    fn from(p: &pb::LatLng) -> Self {
        LatLng { lat: p.lat, lng: p.lng }
    }
}

impl From<LatLng> for pb::LatLng {
    fn from(p: LatLng) -> Self {
        pb::LatLng { lat: p.lat, lng: p.lng }
    }
}

fn required_lat_lng(p: Option<&pb::LatLng>) -> LatLng {
    debug_assert!(p.is_some(), "a required position is missing");
    p.map(LatLng::from).unwrap_or(LatLng { lat: 0.0, lng: 0.0 })
}

// ---------------------------------------------------------------- requests

/// `POST /v1/incidents`: `ReportIncidentRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportIncidentBody {
    #[serde(default)]
    pub external_id: String,
    #[serde(default, deserialize_with = "not_null")]
    pub location: Option<LatLng>,
    #[serde(default, deserialize_with = "not_null")]
    pub kind: Option<Named<pb::IncidentKind>>,
    #[serde(default, deserialize_with = "whole_number")]
    pub severity: u32,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub grid_id: String,
}

impl From<ReportIncidentBody> for pb::ReportIncidentRequest {
    fn from(b: ReportIncidentBody) -> Self {
        pb::ReportIncidentRequest {
            external_id: b.external_id,
            location: b.location.map(Into::into),
            kind: b.kind.map(Named::number).unwrap_or(0),
            severity: b.severity,
            address: b.address,
            description: b.description,
            grid_id: b.grid_id,
        }
    }
}

/// `POST /v1/incidents/{id}/close`: `CloseIncidentRequest` without the id
/// (it is in the path). An empty body is `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseIncidentBody {
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/dispatch/preview`: `PreviewDispatchRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewDispatchBody {
    #[serde(default, deserialize_with = "not_null")]
    pub location: Option<LatLng>,
    #[serde(default, deserialize_with = "not_null")]
    pub kind: Option<Named<pb::IncidentKind>>,
    #[serde(default, deserialize_with = "whole_number")]
    pub severity: u32,
}

impl From<PreviewDispatchBody> for pb::PreviewDispatchRequest {
    fn from(b: PreviewDispatchBody) -> Self {
        pb::PreviewDispatchRequest {
            location: b.location.map(Into::into),
            kind: b.kind.map(Named::number).unwrap_or(0),
            severity: b.severity,
        }
    }
}

/// `GET /v1/incidents?...`: `ListIncidentsRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListIncidentsQuery {
    pub status: Option<Named<pb::IncidentStatus>>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
    /// RFC 3339: only incidents reported at or after it.
    pub reported_from: Option<Time>,
    /// RFC 3339: only incidents reported before it.
    pub reported_to: Option<Time>,
}

impl From<ListIncidentsQuery> for pb::ListIncidentsRequest {
    fn from(q: ListIncidentsQuery) -> Self {
        pb::ListIncidentsRequest {
            status: q.status.map(Named::number).unwrap_or(0),
            page_size: q.page_size.unwrap_or(0),
            page_token: q.page_token.unwrap_or_default(),
            reported_from: q.reported_from.map(|t| t.0),
            reported_to: q.reported_to.map(|t| t.0),
        }
    }
}

/// An RFC 3339 time in a request (`2026-11-29T05:00:00Z`, or with an offset).
#[derive(Clone, Copy, Debug)]
pub struct Time(pub prost_types::Timestamp);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<prost_types::Timestamp>()
            .map(Time)
            .map_err(|_| D::Error::custom(format!("{text:?} is not an RFC 3339 time (e.g. 2026-11-29T05:00:00Z)")))
    }
}

/// `POST /v1/incidents/{id}/confirm-arrival`: `ConfirmArrivalRequest`
/// without the incident id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmArrivalBody {
    #[serde(default)]
    pub unit_id: String,
}

/// `GET /v1/units?...`: `ListUnitsRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListUnitsQuery {
    pub tier: Option<Named<pb::Tier>>,
    pub status: Option<Named<pb::UnitStatus>>,
    pub town: Option<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

impl From<ListUnitsQuery> for pb::ListUnitsRequest {
    fn from(q: ListUnitsQuery) -> Self {
        pb::ListUnitsRequest {
            tier: q.tier.map(Named::number).unwrap_or(0),
            status: q.status.map(Named::number).unwrap_or(0),
            town: q.town.unwrap_or_default(),
            page_size: q.page_size.unwrap_or(0),
            page_token: q.page_token.unwrap_or_default(),
        }
    }
}

/// `GET /v1/events?...`: `WatchEventsRequest` (`Last-Event-ID` overrides
/// `after_seq`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEventsQuery {
    pub after_seq: Option<u64>,
    pub incident_id: Option<String>,
    pub unit_id: Option<String>,
}

/// `POST /v1/incidents/{id}/assign`: `AssignUnitRequest` without the
/// incident id (it is in the path).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignUnitBody {
    #[serde(default)]
    pub unit_id: String,
    #[serde(default, deserialize_with = "not_null")]
    pub tier: Option<Named<pb::Tier>>,
}

/// `POST /v1/units/{id}/release`: `ReleaseUnitRequest` without the unit id.
/// An empty body is `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseUnitBody {
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/units/{id}/status`: `SetUnitStatusRequest` without the unit id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetUnitStatusBody {
    #[serde(default, deserialize_with = "not_null")]
    pub status: Option<Named<pb::UnitStatus>>,
    #[serde(default)]
    pub incident_id: String,
}

/// `PUT /v1/units/{id}`: the unit of `UpsertUnitRequest`, as `GET` answers
/// it. The id is the path's; an `id` in the body must be the same.
/// `incident_id` is accepted (so a `GET`'s answer can be sent back) and, as
/// over gRPC, not used: dispatch sets it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitBody {
    #[serde(default, deserialize_with = "not_null")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "not_null")]
    pub tier: Option<Named<pb::Tier>>,
    #[serde(default, deserialize_with = "not_null")]
    pub home: Option<LatLng>,
    #[serde(default, deserialize_with = "not_null")]
    pub position: Option<LatLng>,
    #[serde(default, deserialize_with = "not_null")]
    pub status: Option<Named<pb::UnitStatus>>,
    #[serde(default)]
    pub town: String,
    #[serde(default)]
    pub village: String,
    #[serde(default, deserialize_with = "whole_number")]
    pub crew: u32,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub incident_id: String,
}

impl UnitBody {
    /// The proto unit for the path's `id`.
    pub fn into_pb(self, id: String) -> pb::Unit {
        pb::Unit {
            id,
            name: self.name,
            tier: self.tier.map(Named::number).unwrap_or(0),
            home: self.home.map(Into::into),
            position: self.position.map(Into::into),
            status: self.status.map(Named::number).unwrap_or(0),
            town: self.town,
            village: self.village,
            crew: self.crew,
            capabilities: self.capabilities,
            incident_id: self.incident_id,
        }
    }
}

// ---------------------------------------------------------------- responses

#[derive(Debug, Serialize)]
pub struct Unit {
    pub id: String,
    pub name: String,
    pub tier: &'static str,
    pub home: LatLng,
    pub position: LatLng,
    pub status: &'static str,
    pub town: String,
    pub village: String,
    pub crew: u32,
    pub capabilities: Vec<String>,
    pub incident_id: String,
}

impl From<pb::Unit> for Unit {
    fn from(u: pb::Unit) -> Self {
        Unit {
            tier: required_enum::<pb::Tier>(u.tier),
            home: required_lat_lng(u.home.as_ref()),
            position: required_lat_lng(u.position.as_ref()),
            status: required_enum::<pb::UnitStatus>(u.status),
            id: u.id,
            name: u.name,
            town: u.town,
            village: u.village,
            crew: u.crew,
            capabilities: u.capabilities,
            incident_id: u.incident_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Assignment {
    pub unit_id: String,
    pub unit_name: String,
    pub tier: &'static str,
    pub distance_m: f64,
    pub eta_s: u32,
    pub within_target: bool,
    /// `null` in previews (nothing was paged).
    pub state: Option<&'static str>,
    /// `null` in previews.
    pub paged_at: Option<String>,
    pub attempt: u32,
    /// The breached lower tier this unit helps; `null` if none.
    pub escalated_from: Option<&'static str>,
    pub acknowledged_at: Option<String>,
    pub on_scene_at: Option<String>,
    pub released_at: Option<String>,
    pub arrival_verified: bool,
    pub arrival_confirmed_by: String,
}

impl From<pb::Assignment> for Assignment {
    fn from(a: pb::Assignment) -> Self {
        Assignment {
            tier: required_enum::<pb::Tier>(a.tier),
            state: enum_name::<pb::AssignmentState>(a.state),
            paged_at: optional_timestamp(a.paged_at.as_ref()),
            escalated_from: enum_name::<pb::Tier>(a.escalated_from),
            acknowledged_at: optional_timestamp(a.acknowledged_at.as_ref()),
            on_scene_at: optional_timestamp(a.on_scene_at.as_ref()),
            released_at: optional_timestamp(a.released_at.as_ref()),
            arrival_verified: a.arrival_verified,
            arrival_confirmed_by: a.arrival_confirmed_by,
            unit_id: a.unit_id,
            unit_name: a.unit_name,
            distance_m: a.distance_m,
            eta_s: a.eta_s,
            within_target: a.within_target,
            attempt: a.attempt,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TierResponse {
    pub tier: &'static str,
    pub target_s: u32,
    pub required: u32,
    pub state: &'static str,
    pub deadline: String,
    pub assignments: Vec<Assignment>,
    pub note: String,
}

impl From<pb::TierResponse> for TierResponse {
    fn from(t: pb::TierResponse) -> Self {
        TierResponse {
            tier: required_enum::<pb::Tier>(t.tier),
            target_s: t.target_s,
            required: t.required,
            state: required_enum::<pb::TierState>(t.state),
            deadline: required_timestamp(t.deadline.as_ref()),
            assignments: t.assignments.into_iter().map(Into::into).collect(),
            note: t.note,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GridWorker {
    pub grid_id: String,
    pub name: String,
    pub contact: String,
}

impl From<pb::GridWorker> for GridWorker {
    fn from(g: pb::GridWorker) -> Self {
        GridWorker { grid_id: g.grid_id, name: g.name, contact: g.contact }
    }
}

#[derive(Debug, Serialize)]
pub struct Incident {
    pub id: String,
    pub external_id: String,
    pub location: LatLng,
    pub kind: &'static str,
    pub severity: u32,
    pub reported_at: String,
    pub status: &'static str,
    pub tiers: Vec<TierResponse>,
    pub town: String,
    pub village: String,
    pub address: String,
    pub description: String,
    pub outside_service_area: bool,
    /// `null` while open.
    pub closed_at: Option<String>,
    pub grid_id: String,
    /// `null` when the location is in no grid cell.
    pub grid_worker: Option<GridWorker>,
}

impl From<pb::Incident> for Incident {
    fn from(i: pb::Incident) -> Self {
        Incident {
            location: required_lat_lng(i.location.as_ref()),
            kind: required_enum::<pb::IncidentKind>(i.kind),
            reported_at: required_timestamp(i.reported_at.as_ref()),
            status: required_enum::<pb::IncidentStatus>(i.status),
            closed_at: optional_timestamp(i.closed_at.as_ref()),
            tiers: i.tiers.into_iter().map(Into::into).collect(),
            grid_worker: i.grid_worker.map(Into::into),
            id: i.id,
            external_id: i.external_id,
            severity: i.severity,
            town: i.town,
            village: i.village,
            address: i.address,
            description: i.description,
            outside_service_area: i.outside_service_area,
            grid_id: i.grid_id,
        }
    }
}

/// The incident a response carries; the service always sets it.
fn required_incident(i: Option<pb::Incident>) -> Incident {
    debug_assert!(i.is_some(), "a response without its incident");
    Incident::from(i.unwrap_or_default())
}

#[derive(Debug, Serialize)]
pub struct ReportIncidentResponse {
    pub incident: Incident,
    pub duplicate: bool,
}

impl From<pb::ReportIncidentResponse> for ReportIncidentResponse {
    fn from(r: pb::ReportIncidentResponse) -> Self {
        ReportIncidentResponse { incident: required_incident(r.incident), duplicate: r.duplicate }
    }
}

#[derive(Debug, Serialize)]
pub struct ListIncidentsResponse {
    pub incidents: Vec<Incident>,
    pub next_page_token: String,
}

impl From<pb::ListIncidentsResponse> for ListIncidentsResponse {
    fn from(r: pb::ListIncidentsResponse) -> Self {
        ListIncidentsResponse {
            incidents: r.incidents.into_iter().map(Into::into).collect(),
            next_page_token: r.next_page_token,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CloseIncidentResponse {
    pub incident: Incident,
}

impl From<pb::CloseIncidentResponse> for CloseIncidentResponse {
    fn from(r: pb::CloseIncidentResponse) -> Self {
        CloseIncidentResponse { incident: required_incident(r.incident) }
    }
}

#[derive(Debug, Serialize)]
pub struct PreviewDispatchResponse {
    pub tiers: Vec<TierResponse>,
    pub town: String,
    pub village: String,
    pub outside_service_area: bool,
    pub passed_over: Vec<PassedOver>,
}

impl From<pb::PreviewDispatchResponse> for PreviewDispatchResponse {
    fn from(r: pb::PreviewDispatchResponse) -> Self {
        PreviewDispatchResponse {
            tiers: r.tiers.into_iter().map(Into::into).collect(),
            town: r.town,
            village: r.village,
            outside_service_area: r.outside_service_area,
            passed_over: r.passed_over.into_iter().map(Into::into).collect(),
        }
    }
}

/// A unit the preview's selection walked past, and why (`PassedOver`).
#[derive(Debug, Serialize)]
pub struct PassedOver {
    pub tier: &'static str,
    pub unit_id: String,
    pub unit_name: String,
    pub distance_m: f64,
    pub reason: String,
}

impl From<pb::PassedOver> for PassedOver {
    fn from(p: pb::PassedOver) -> Self {
        PassedOver {
            tier: required_enum::<pb::Tier>(p.tier),
            unit_id: p.unit_id,
            unit_name: p.unit_name,
            distance_m: p.distance_m,
            reason: p.reason,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ListUnitsResponse {
    pub units: Vec<Unit>,
    pub next_page_token: String,
}

impl From<pb::ListUnitsResponse> for ListUnitsResponse {
    fn from(r: pb::ListUnitsResponse) -> Self {
        ListUnitsResponse { units: r.units.into_iter().map(Into::into).collect(), next_page_token: r.next_page_token }
    }
}

/// A live-feed event (`DispatchEvent`).
#[derive(Debug, Serialize)]
pub struct DispatchEvent {
    pub seq: u64,
    pub at: String,
    pub r#type: &'static str,
    pub incident_id: String,
    pub unit_id: String,
    /// `null` when the event is about no tier.
    pub tier: Option<&'static str>,
    pub attempt: u32,
    /// `null` when the event carries no unit status.
    pub unit_status: Option<&'static str>,
    /// `null` when the event carries no position.
    pub position: Option<LatLng>,
    pub detail: String,
    pub grid_id: String,
    /// On GRID_WORKER_NOTIFIED: the worker notified; `null` otherwise.
    pub grid_worker: Option<GridWorker>,
}

impl From<&pb::DispatchEvent> for DispatchEvent {
    fn from(e: &pb::DispatchEvent) -> Self {
        DispatchEvent {
            seq: e.seq,
            at: required_timestamp(e.at.as_ref()),
            r#type: required_enum::<pb::EventType>(e.r#type),
            incident_id: e.incident_id.clone(),
            unit_id: e.unit_id.clone(),
            tier: enum_name::<pb::Tier>(e.tier),
            attempt: e.attempt,
            unit_status: enum_name::<pb::UnitStatus>(e.unit_status),
            position: e.position.as_ref().map(LatLng::from),
            detail: e.detail.clone(),
            grid_id: e.grid_id.clone(),
            grid_worker: e.grid_worker.clone().map(Into::into),
        }
    }
}

/// `UpsertUnitResponse`.
#[derive(Debug, Serialize)]
pub struct UpsertUnitResponse {
    pub unit: Unit,
    pub created: bool,
}

/// `SetUnitStatusResponse`, `ReleaseUnitResponse` (and the terminal's
/// answers): the unit after the change.
#[derive(Debug, Serialize)]
pub struct UnitResponse {
    pub unit: Unit,
}

/// `PingResponse`.
#[derive(Debug, Serialize)]
pub struct PingResponse {}

/// One timeline entry (`TimelineEntry`).
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub n: u32,
    pub at: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub unit_id: String,
    pub tier: Option<&'static str>,
    pub attempt: u32,
    pub unit_status: Option<&'static str>,
    pub position: Option<LatLng>,
    pub detail: String,
    pub actor: String,
}

/// `GET /v1/incidents/{id}/timeline`: `IncidentTimeline`.
#[derive(Debug, Serialize)]
pub struct IncidentTimeline {
    pub incident_id: String,
    pub entries: Vec<TimelineEntry>,
}

impl From<pb::IncidentTimeline> for IncidentTimeline {
    fn from(t: pb::IncidentTimeline) -> Self {
        let entry = |e: pb::TimelineEntry| TimelineEntry {
            n: e.n,
            at: required_timestamp(e.at.as_ref()),
            kind: required_enum::<pb::EventType>(e.r#type),
            tier: enum_name::<pb::Tier>(e.tier),
            unit_status: enum_name::<pb::UnitStatus>(e.unit_status),
            position: e.position.as_ref().map(LatLng::from),
            unit_id: e.unit_id,
            attempt: e.attempt,
            detail: e.detail,
            actor: e.actor,
        };
        IncidentTimeline { incident_id: t.incident_id, entries: t.entries.into_iter().map(entry).collect() }
    }
}

/// The one JSON form of a live-feed event: what webhooks send, and (as
/// [`event_text`], the same fields in the proto's order) the `data` of the
/// SSE stream's events.
pub fn event(e: &pb::DispatchEvent) -> serde_json::Value {
    serde_json::to_value(DispatchEvent::from(e)).expect("a DispatchEvent always serialises")
}

/// [`event`] as text, fields in the proto's order.
pub fn event_text(e: &pb::DispatchEvent) -> String {
    serde_json::to_string(&DispatchEvent::from(e)).expect("a DispatchEvent always serialises")
}

/// The SSE `event:` name of a live-feed event (`INCIDENT_REPORTED`, ...).
pub fn event_type_name(e: &pb::DispatchEvent) -> &'static str {
    enum_name::<pb::EventType>(e.r#type).unwrap_or("UNSPECIFIED")
}

/// `{"error": {"code": "INVALID_ARGUMENT", "message": "..."}}`: every
/// refusal's body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    /// The gRPC code's name (`NOT_FOUND`, ...).
    pub code: &'static str,
    /// What was wrong; names the field, as the gRPC message does.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_drop_the_prefix_and_the_tier_suffix() {
        assert_eq!(enum_name::<pb::IncidentKind>(1), Some("FIRE"));
        assert_eq!(enum_name::<pb::Tier>(10), Some("TIER_10"));
        assert_eq!(enum_name::<pb::Tier>(0), None);
        assert_eq!(enum_names::<pb::Tier>(), ["TIER_1", "TIER_3", "TIER_5", "TIER_10"]);
        assert_eq!(enum_names::<pb::IncidentStatus>(), ["OPEN", "CLOSED"]);
        let tier: Named<pb::Tier> = serde_json::from_str("\"TIER_5\"").unwrap();
        assert_eq!(tier.number(), 5);
        let err = serde_json::from_str::<Named<pb::Tier>>("\"TIER_UNSPECIFIED\"").unwrap_err().to_string();
        assert!(err.contains("expected one of TIER_1, TIER_3, TIER_5, TIER_10"), "{err}");
        assert!(serde_json::from_str::<Named<pb::IncidentKind>>("\"fire\"").is_err());
        // Every spelling of a tier: JSON name, proto name, minutes (text or number).
        for spelling in ["\"TIER_3\"", "\"TIER_3_MIN\"", "\"3\"", "3"] {
            let tier: Named<pb::Tier> = serde_json::from_str(spelling).unwrap();
            assert_eq!(tier.number(), 3, "{spelling}");
        }
        assert!(serde_json::from_str::<Named<pb::Tier>>("\"2\"").is_err());
        assert!(serde_json::from_str::<Named<pb::Tier>>("0").is_err());
        let kind: Named<pb::IncidentKind> = serde_json::from_str("\"INCIDENT_KIND_FLOOD\"").unwrap();
        assert_eq!(kind.0, pb::IncidentKind::Flood);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = prost_types::Timestamp { seconds: 1_795_924_927, nanos: 178_000_000 };
        assert_eq!(timestamp(&t), "2026-11-29T04:02:07.178Z");
        assert_eq!(timestamp(&prost_types::Timestamp { seconds: 0, nanos: 0 }), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn an_optional_body_field_may_be_left_out_but_not_null() {
        let unit = serde_json::from_str::<UnitBody>(r#"{"tier": "TIER_1", "home": {"lat": 28.6, "lng": 121.4}}"#);
        assert!(unit.unwrap().status.is_none());
        for field in ["id", "tier", "home", "position", "status"] {
            let body = format!(r#"{{"{field}": null}}"#);
            assert!(serde_json::from_str::<UnitBody>(&body).is_err(), "{body}");
        }
        assert!(serde_json::from_str::<SetUnitStatusBody>(r#"{"status": null}"#).is_err());
        assert!(serde_json::from_str::<ReportIncidentBody>(r#"{"kind": null}"#).is_err());
    }
}
