//! The `Dispatch` operations over HTTP: parse, call the application, answer
//! JSON. Every handler reads the [`Caller`] that [`super::authenticate`]
//! put on the request.

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lastmile_proto::v1 as pb;

use super::error::{self, ApiError};
use super::{Gateway, JsonBody, ok, timed};
use crate::app::Caller;
use crate::{json, wire};

type Answer = Result<Response, ApiError>;

fn path(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id).map_err(error::from_path_rejection)
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(error::from_query_rejection)
}

fn incident(incident: &lastmile_core::Incident) -> json::Incident {
    json::Incident::from(wire::incident_to_pb(incident))
}

fn unit(unit: &lastmile_core::Unit) -> json::Unit {
    json::Unit::from(wire::unit_to_pb(unit))
}

/// `GET /v1/ping`.
pub async fn ping(State(g): State<Gateway>, Extension(caller): Extension<Caller>) -> Answer {
    g.app.ping(&caller)?;
    Ok(ok(json::PingResponse {}))
}

/// `POST /v1/incidents`: 201 and `Location` for a new incident, 200 with
/// `duplicate: true` for a repeated `external_id`.
pub async fn report_incident(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<json::ReportIncidentBody>,
) -> Answer {
    let req = wire::report_incident(pb::ReportIncidentRequest::from(body))?;
    let reported = timed(&g, g.app.report_incident(&caller, req, wire::incident_to_pb)).await?;
    let answer = json::ReportIncidentResponse::from(pb::ReportIncidentResponse {
        incident: Some(reported.incident),
        duplicate: reported.duplicate,
    });
    if answer.duplicate {
        return Ok(ok(answer));
    }
    let location = HeaderValue::try_from(format!("/v1/incidents/{}", answer.incident.id)).ok();
    let mut response = (StatusCode::CREATED, axum::Json(answer)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/incidents/{id}`.
pub async fn get_incident(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    Ok(ok(incident(&timed(&g, g.app.get_incident(&caller, &path(id)?)).await?)))
}

/// `GET /v1/incidents?status=&page_size=&page_token=`.
pub async fn list_incidents(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<json::ListIncidentsQuery>, QueryRejection>,
) -> Answer {
    let req = wire::list_incidents(pb::ListIncidentsRequest::from(query(q)?))?;
    let page = timed(&g, g.app.list_incidents(&caller, &req)).await?;
    Ok(ok(json::ListIncidentsResponse::from(wire::list_incidents_to_pb(
        &page,
        g.app.config.server.max_encoding_message_bytes,
    ))))
}

/// `POST /v1/incidents/{id}/close`.
pub async fn close_incident(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::CloseIncidentBody>,
) -> Answer {
    let closed = timed(&g, g.app.close_incident(&caller, &path(id)?, &body.reason)).await?;
    Ok(ok(json::CloseIncidentResponse { incident: incident(&closed) }))
}

/// `POST /v1/incidents/{id}/assign`: a dispatcher pages a unit for a tier.
pub async fn assign_unit(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::AssignUnitBody>,
) -> Answer {
    let tier = wire::tier("tier", body.tier.map(json::Named::number).unwrap_or(0))?;
    let assigned = timed(&g, g.app.assign_unit(&caller, &path(id)?, &body.unit_id, tier)).await?;
    Ok(ok(incident(&assigned)))
}

/// `POST /v1/dispatch/preview`.
pub async fn preview_dispatch(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<json::PreviewDispatchBody>,
) -> Answer {
    let req = wire::preview_dispatch(pb::PreviewDispatchRequest::from(body))?;
    let preview = g.app.preview_dispatch(&caller, &req)?;
    Ok(ok(json::PreviewDispatchResponse::from(wire::preview_to_pb(preview))))
}

/// `GET /v1/units?tier=&status=&town=&page_size=&page_token=`.
pub async fn list_units(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<json::ListUnitsQuery>, QueryRejection>,
) -> Answer {
    let req = wire::list_units(pb::ListUnitsRequest::from(query(q)?))?;
    let page = g.app.list_units(&caller, &req)?;
    Ok(ok(json::ListUnitsResponse::from(wire::list_units_to_pb(&page, g.app.config.server.max_encoding_message_bytes))))
}

/// `GET /v1/units/{id}`.
pub async fn get_unit(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    Ok(ok(unit(&g.app.get_unit(&caller, &path(id)?)?)))
}

/// `PUT /v1/units/{id}`: 201 when created, 200 when replaced.
pub async fn upsert_unit(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::UnitBody>,
) -> Answer {
    let id = path(id)?;
    if body.id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::invalid(format!("id: the body's id differs from the path's {id:?}")));
    }
    let input = wire::unit_input(Some(body.into_pb(id)))?;
    let (upserted, created) = timed(&g, g.app.upsert_unit(&caller, input)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(json::UpsertUnitResponse { unit: unit(&upserted), created })).into_response())
}

/// `POST /v1/units/{id}/status`: a dispatcher's override.
pub async fn set_unit_status(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::SetUnitStatusBody>,
) -> Answer {
    let status = wire::unit_status("status", body.status.map(json::Named::number).unwrap_or(0))?;
    let changed = timed(&g, g.app.set_unit_status(&caller, &path(id)?, status, &body.incident_id)).await?;
    Ok(ok(json::UnitResponse { unit: unit(&changed) }))
}

/// `POST /v1/units/{id}/release`: a dispatcher takes a unit off its incident.
pub async fn release_unit(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::ReleaseUnitBody>,
) -> Answer {
    let released = timed(&g, g.app.release_unit(&caller, &path(id)?, &body.reason)).await?;
    Ok(ok(json::UnitResponse { unit: unit(&released) }))
}

/// `GET /v1/incidents/{id}/timeline`: every state change, in order.
pub async fn incident_timeline(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let id = path(id)?;
    let entries = timed(&g, g.app.incident_timeline(&caller, &id)).await?;
    Ok(ok(json::IncidentTimeline::from(wire::timeline_to_pb(&id, &entries))))
}

/// `POST /v1/incidents/{id}/confirm-arrival`: a dispatcher confirms an
/// arrival its position did not verify.
pub async fn confirm_arrival(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<json::ConfirmArrivalBody>,
) -> Answer {
    let confirmed = timed(&g, g.app.confirm_arrival(&caller, &path(id)?, &body.unit_id)).await?;
    Ok(ok(incident(&confirmed)))
}
