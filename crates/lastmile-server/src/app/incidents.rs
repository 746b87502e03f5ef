//! Incidents: report, get, list, close, preview, and a dispatcher's
//! assignment of a unit.

use lastmile_core::dispatcher::{NewIncident, Page, Preview, Reported};
use lastmile_core::incident::{IncidentStatus, TierState, parse_incident_id};
use lastmile_core::{DispatchError, Incident, IncidentKind, Tier};

use crate::sinks::TimelineEntry;
use tracing::{info, warn};

use super::validate::{self, Point, RawTime};
use super::{App, AppError, Caller, Operation};

/// A report, as the caller sent it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportIncident {
    /// The reporting system's id: the idempotency key.
    pub external_id: String,
    pub location: Option<Point>,
    /// None: not given (refused: required).
    pub kind: Option<IncidentKind>,
    pub severity: u32,
    pub address: String,
    pub description: String,
    /// The grid cell the caller says the location is in; empty = not said.
    pub grid_id: String,
}

/// What a report would select, as the caller asks it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreviewDispatch {
    pub location: Option<Point>,
    pub kind: Option<IncidentKind>,
    pub severity: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListIncidents {
    /// None: every status.
    pub status: Option<IncidentStatus>,
    /// 0: the server's default.
    pub page_size: u32,
    pub page_token: String,
    /// Only incidents reported at or after this time.
    pub reported_from: Option<RawTime>,
    /// Only incidents reported before this time.
    pub reported_to: Option<RawTime>,
}

const KIND_NAMES: &str = "FIRE, FLOOD, RESCUE, HAZMAT, TRAFFIC, MEDICAL or OTHER";

fn required_kind(kind: Option<IncidentKind>) -> Result<IncidentKind, AppError> {
    kind.ok_or_else(|| AppError::invalid("kind", format!("required: one of {KIND_NAMES}")))
}

impl App {
    fn new_incident(&self, req: ReportIncident) -> Result<NewIncident, AppError> {
        let limits = &self.config.limits;
        if req.external_id.is_empty() {
            return Err(AppError::invalid("external_id", "required: the reporting system's id for this incident"));
        }
        validate::bounded_str("external_id", &req.external_id, limits.max_external_id_bytes)?;
        validate::bounded_str("address", &req.address, limits.max_address_bytes)?;
        validate::bounded_str("description", &req.description, limits.max_description_bytes)?;
        // Only bounded here: whether it is the location's cell is the
        // dispatcher's check (it owns the grid).
        validate::optional_id("grid_id", &req.grid_id)?;
        Ok(NewIncident {
            location: validate::lat_lng("location", req.location)?,
            kind: required_kind(req.kind)?,
            severity: validate::severity(req.severity)?,
            external_id: req.external_id,
            address: req.address,
            description: req.description,
            grid_id: req.grid_id,
        })
    }

    /// `ReportIncident`: selects and pages every tier, or (for a known
    /// `external_id`) answers the stored incident with `duplicate`. `view`
    /// turns the stored incident into the adapter's answer under its lock,
    /// so the incident is copied once.
    pub async fn report_incident<T>(
        &self,
        caller: &Caller,
        req: ReportIncident,
        view: impl FnOnce(&Incident) -> T,
    ) -> Result<Reported<T>, AppError> {
        let _admitted = self.authorize(caller, Operation::ReportIncident)?;
        let started = std::time::Instant::now();
        let new = self.new_incident(req)?;
        let external_id = new.external_id.clone();
        // Everything logged while this incident is dispatched carries its ids.
        let span = tracing::info_span!("incident", external_id = %external_id, incident_id = tracing::field::Empty);
        let reported = self
            .change(caller.name(), |work| {
                span.in_scope(|| {
                    self.dispatcher
                        .report_with(new, self.now(), work, |incident| (view(incident), Outcome::of(incident)))
                })
            })
            .await?;
        let reported = reported.map_err(|e| {
            let _in_span = span.enter();
            warn!(external_id = %external_id, error = %e, "report refused");
            AppError::from(e)
        })?;
        let (answer, outcome) = reported.incident;
        outcome.log(&span, reported.duplicate);
        self.metrics.dispatch_seconds.observe(started.elapsed());
        Ok(Reported { incident: answer, duplicate: reported.duplicate })
    }

    /// An open incident, or a closed one from history.
    pub async fn get_incident(&self, caller: &Caller, id: &str) -> Result<Incident, AppError> {
        let _admitted = self.authorize(caller, Operation::GetIncident)?;
        let id = validate::required_id("id", id)?;
        match self.dispatcher.get_incident(id) {
            Err(DispatchError::IncidentNotFound(_)) => self.closed_incident(id).await,
            found => Ok(found?),
        }
    }

    /// A closed incident the live state no longer holds, from history.
    async fn closed_incident(&self, id: &str) -> Result<Incident, AppError> {
        let not_found = || AppError::from(DispatchError::IncidentNotFound(id.to_string()));
        let seq = parse_incident_id(id).ok_or_else(not_found)?;
        let history = self.history.clone();
        blocking(move || history.incident(seq)).await?.ok_or_else(not_found)
    }

    /// Incidents oldest first, a page at a time: open ones from the live
    /// state, closed ones from history, both by sequence number.
    pub async fn list_incidents(&self, caller: &Caller, req: &ListIncidents) -> Result<Page<Incident>, AppError> {
        let _admitted = self.authorize(caller, Operation::ListIncidents)?;
        let page_size = validate::page_size(req.page_size, &self.config.server)?;
        let after = match validate::page_token(&req.page_token)? {
            None => 0,
            Some(t) => {
                t.parse::<u64>().map_err(|_| AppError::invalid("page_token", "not a token this server issued"))?
            }
        };
        let from = req.reported_from.map(|t| validate::filter_time("reported_from", t)).transpose()?;
        let to = req.reported_to.map(|t| validate::filter_time("reported_to", t)).transpose()?;
        let within = |i: &Incident| from.is_none_or(|f| i.reported_at >= f) && to.is_none_or(|t| i.reported_at < t);
        let mut items: Vec<Incident> = Vec::new();
        if req.status != Some(IncidentStatus::Closed) {
            items = self.open_incidents(after, page_size + 1, &within)?;
        }
        if req.status != Some(IncidentStatus::Open) {
            let history = self.history.clone();
            let closed = blocking(move || history.closed(from, to, after, page_size + 1)).await?;
            items.extend(closed);
            items.sort_by_key(|i| i.seq);
            items.dedup_by_key(|i| i.seq);
        }
        let more = items.len() > page_size;
        items.truncate(page_size);
        let next_page_token = if more { items.last().map(|i| i.seq.to_string()) } else { None };
        Ok(Page { items, next_page_token })
    }

    /// Up to `wanted` open incidents after sequence `after` that pass
    /// `within` (the report-time range), read from the live state a page at
    /// a time: never a copy of every open incident for one page.
    fn open_incidents(
        &self,
        after: u64,
        wanted: usize,
        within: &dyn Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, AppError> {
        let mut found = Vec::new();
        let mut token = (after > 0).then(|| after.to_string());
        loop {
            let page = self.dispatcher.list_incidents(Some(IncidentStatus::Open), wanted, token.as_deref())?;
            found.extend(page.items.into_iter().filter(|i| within(i)));
            if found.len() >= wanted || page.next_page_token.is_none() {
                found.truncate(wanted);
                return Ok(found);
            }
            token = page.next_page_token;
        }
    }

    /// Closes an incident with a reason and releases its units; closing a
    /// closed one answers it unchanged.
    pub async fn close_incident(&self, caller: &Caller, id: &str, reason: &str) -> Result<Incident, AppError> {
        let _admitted = self.authorize(caller, Operation::CloseIncident)?;
        let id = validate::required_id("id", id)?;
        validate::reason("reason", reason, &self.config.limits)?;
        let closed =
            self.change(caller.name(), |work| self.dispatcher.close_incident(id, reason, self.now(), work)).await?;
        let incident = match closed {
            Err(DispatchError::IncidentNotFound(_)) => return self.closed_incident(id).await,
            closed => closed?,
        };
        info!(incident_id = %incident.id, caller = %caller.name(), reason = %reason, "incident closed");
        Ok(incident)
    }

    /// Every state change of an incident, open or closed, in order.
    pub async fn incident_timeline(&self, caller: &Caller, id: &str) -> Result<Vec<TimelineEntry>, AppError> {
        let _admitted = self.authorize(caller, Operation::GetIncidentTimeline)?;
        let id = validate::required_id("incident_id", id)?;
        let not_found = || AppError::from(DispatchError::IncidentNotFound(id.to_string()));
        let seq = parse_incident_id(id).ok_or_else(not_found)?;
        if let Some(entries) = self.sinks.timelines.get(seq) {
            return Ok(entries);
        }
        let history = self.history.clone();
        match blocking(move || history.timeline(seq)).await? {
            Some(entries) => Ok(entries),
            // Open, with no entry yet (being reported), or unknown.
            None => self.dispatcher.get_incident(id).map(|_| Vec::new()).map_err(AppError::from),
        }
    }

    /// The `limit` (at most 100) nearest units of `tier` a dispatcher could
    /// assign to an open incident, with their ETA to it. Authorized as a
    /// preview: it reads, and reserves nothing.
    pub async fn candidates(
        &self,
        caller: &Caller,
        incident_id: &str,
        tier: Option<Tier>,
        limit: u32,
    ) -> Result<Vec<lastmile_core::dispatcher::Candidate>, AppError> {
        let _admitted = self.authorize(caller, Operation::PreviewDispatch)?;
        let incident_id = validate::required_id("incident_id", incident_id)?;
        let tier = tier.ok_or_else(|| AppError::invalid("tier", "required: 1, 3, 5 or 10"))?;
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid("limit", format!("must be 1 to 100, got {limit}")));
        }
        let incident = self.dispatcher.get_incident(incident_id)?;
        Ok(self.dispatcher.candidates(incident.location, tier, limit as usize))
    }

    /// A dispatcher confirms an arrival its position did not verify.
    pub async fn confirm_arrival(
        &self,
        caller: &Caller,
        incident_id: &str,
        unit_id: &str,
    ) -> Result<Incident, AppError> {
        let _admitted = self.authorize(caller, Operation::ConfirmArrival)?;
        let incident_id = validate::required_id("incident_id", incident_id)?;
        let unit_id = validate::required_id("unit_id", unit_id)?;
        let by = caller.name();
        let incident = self
            .change(by, |work| self.dispatcher.confirm_arrival(incident_id, unit_id, by, self.now(), work))
            .await??;
        info!(incident_id = %incident_id, unit_id = %unit_id, caller = %by, "arrival confirmed by dispatcher");
        Ok(incident)
    }

    /// What a report would select now; reserves nothing.
    pub fn preview_dispatch(&self, caller: &Caller, req: &PreviewDispatch) -> Result<Preview, AppError> {
        let _admitted = self.authorize(caller, Operation::PreviewDispatch)?;
        let at = validate::lat_lng("location", req.location)?;
        let kind = required_kind(req.kind)?;
        let severity = validate::severity(req.severity)?;
        Ok(self.dispatcher.preview(at, kind, severity, self.now())?)
    }

    /// A dispatcher's override: pages `unit_id` for `tier` of the incident.
    pub async fn assign_unit(
        &self,
        caller: &Caller,
        incident_id: &str,
        unit_id: &str,
        tier: Option<Tier>,
    ) -> Result<Incident, AppError> {
        let _admitted = self.authorize(caller, Operation::AssignUnit)?;
        let incident_id = validate::required_id("incident_id", incident_id)?;
        let unit_id = validate::required_id("unit_id", unit_id)?;
        let tier = tier.ok_or_else(|| AppError::invalid("tier", "required: 1, 3, 5 or 10"))?;
        let incident = self
            .change(caller.name(), |work| self.dispatcher.assign_unit(incident_id, unit_id, tier, self.now(), work))
            .await??;
        info!(incident_id = %incident_id, unit_id = %unit_id, tier = %tier, caller = %caller.name(), "unit assigned by dispatcher");
        Ok(incident)
    }
}

/// What the log says of a report (taken under the incident's lock, so the
/// stored incident is read without a copy).
struct Outcome {
    incident_id: String,
    town: String,
    units: usize,
    short_tiers: usize,
}

impl Outcome {
    fn of(incident: &Incident) -> Self {
        Outcome {
            incident_id: incident.id.clone(),
            town: incident.town.clone(),
            units: incident.tiers.iter().map(|t| t.assignments.len()).sum(),
            short_tiers: incident.tiers.iter().filter(|t| t.state == TierState::Short).count(),
        }
    }

    fn log(&self, span: &tracing::Span, duplicate: bool) {
        span.record("incident_id", self.incident_id.as_str());
        let _in_span = span.enter();
        if duplicate {
            info!(incident_id = %self.incident_id, "duplicate report: stored incident returned");
        } else {
            info!(
                incident_id = %self.incident_id,
                town = %self.town,
                units = self.units,
                short_tiers = self.short_tiers,
                "incident dispatched"
            );
        }
    }
}

/// Runs a blocking read (history on disk) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| AppError::new(super::ErrorCode::Internal, format!("history read: {e}")))?
}
