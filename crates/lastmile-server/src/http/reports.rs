//! `GET /v1/reports/compliance` and `GET /v1/eta`: the management's reads
//! (roles dispatcher, admin, report). Documents rather than RPCs: a report
//! is JSON, CSV or a printable HTML page, so they are the gateway's only.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{self, ApiError};
use super::{Gateway, ok};
use crate::app::Caller;
use crate::app::reports::{ComplianceQuery, ReportFormat};

/// The query of `GET /v1/reports/compliance`; unknown parameters are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceParams {
    pub week: Option<String>,
    pub month: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
    pub format: Option<String>,
}

pub async fn compliance(
    State(g): State<Gateway>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ComplianceParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = q.map(|Query(q)| q).map_err(error::from_query_rejection)?;
    let format = match p.format.as_deref() {
        None => ReportFormat::Json,
        Some(f) => ReportFormat::parse(f)?,
    };
    let query = ComplianceQuery { week: p.week, month: p.month, from: p.from, to: p.to, group_by: p.group_by, format };
    let rendered = g.app.compliance(&caller, query).await?;
    let extension = match rendered.format {
        ReportFormat::Json => "json",
        ReportFormat::Csv => "csv",
        ReportFormat::UnitsCsv => "units.csv",
        ReportFormat::Html => "html",
    };
    let mut response = ([(header::CONTENT_TYPE, rendered.format.content_type())], rendered.body).into_response();
    if rendered.format != ReportFormat::Json
        && let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}.{extension}\"", rendered.name))
    {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

pub async fn eta_status(State(g): State<Gateway>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    Ok(ok(g.app.eta_status(&caller)?))
}
