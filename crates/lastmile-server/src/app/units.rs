//! Units: list, get, and the dispatcher's and administrator's changes
//! (upsert, status override, release).

use std::sync::Arc;

use lastmile_core::dispatcher::{Page, UnitFilter};
use lastmile_core::{Tier, Unit, UnitStatus};
use tracing::info;

use super::validate::{self, Point};
use super::{App, AppError, Caller, ErrorCode, Operation};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListUnits {
    pub tier: Option<Tier>,
    pub status: Option<UnitStatus>,
    /// Empty: every town.
    pub town: String,
    pub page_size: u32,
    pub page_token: String,
}

/// A unit as an administrator sends it (`UpsertUnit`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitInput {
    pub id: String,
    pub name: String,
    pub tier: Option<Tier>,
    pub home: Option<Point>,
    /// None: at home.
    pub position: Option<Point>,
    /// None: AVAILABLE.
    pub status: Option<UnitStatus>,
    pub town: String,
    pub village: String,
    pub crew: u32,
    pub capabilities: Vec<String>,
}

impl App {
    pub fn list_units(&self, caller: &Caller, req: &ListUnits) -> Result<Page<Unit>, AppError> {
        let _admitted = self.authorize(caller, Operation::ListUnits)?;
        validate::bounded_str("town", &req.town, self.config.limits.max_name_bytes)?;
        let page_size = validate::page_size(req.page_size, &self.config.server)?;
        let page_token = validate::page_token(&req.page_token)?;
        let filter =
            UnitFilter { tier: req.tier, status: req.status, town: (!req.town.is_empty()).then(|| req.town.clone()) };
        Ok(self.dispatcher.list_units(&filter, page_size, page_token))
    }

    pub fn get_unit(&self, caller: &Caller, id: &str) -> Result<Unit, AppError> {
        let _admitted = self.authorize(caller, Operation::GetUnit)?;
        let id = validate::required_id("id", id)?;
        Ok(self.dispatcher.get_unit(id)?)
    }

    /// Adds a unit or replaces one's description; `true` when created.
    pub async fn upsert_unit(&self, caller: &Caller, unit: Option<UnitInput>) -> Result<(Unit, bool), AppError> {
        let _admitted = self.authorize(caller, Operation::UpsertUnit)?;
        let unit = unit.ok_or_else(|| AppError::invalid("unit", "required"))?;
        let unit = self.unit_from_input(unit)?;
        let (unit, created) =
            self.change(caller.name(), |work| self.dispatcher.upsert_unit(unit, self.now(), work)).await??;
        info!(unit_id = %unit.id, tier = %unit.tier, created, caller = %caller.name(), "unit upserted");
        Ok((unit, created))
    }

    fn unit_from_input(&self, unit: UnitInput) -> Result<Unit, AppError> {
        let limits = &self.config.limits;
        lastmile_core::unit::check_unit_id(&unit.id).map_err(|e| AppError::invalid("unit.id", e))?;
        let tier = unit.tier.ok_or_else(|| AppError::invalid("unit.tier", "required: 1, 3, 5 or 10"))?;
        let home = validate::lat_lng("unit.home", unit.home)?;
        let position = match unit.position {
            Some(_) => validate::lat_lng("unit.position", unit.position)?,
            None => home,
        };
        for (field, value) in [("unit.name", &unit.name), ("unit.town", &unit.town), ("unit.village", &unit.village)] {
            validate::bounded_str(field, value, limits.max_name_bytes)?;
        }
        if unit.capabilities.len() > limits.max_capabilities {
            return Err(AppError::invalid("unit.capabilities", format!("at most {} entries", limits.max_capabilities)));
        }
        for (i, c) in unit.capabilities.iter().enumerate() {
            validate::bounded_str(&format!("unit.capabilities[{i}]"), c, limits.max_name_bytes)?;
        }
        Ok(Unit {
            id: Arc::from(unit.id),
            name: unit.name,
            tier,
            home,
            position,
            status: unit.status.unwrap_or(UnitStatus::Available),
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

    /// A dispatcher's override of a unit's status. With `incident_id`, only
    /// while the unit is on that incident.
    pub async fn set_unit_status(
        &self,
        caller: &Caller,
        id: &str,
        status: Option<UnitStatus>,
        incident_id: &str,
    ) -> Result<Unit, AppError> {
        let _admitted = self.authorize(caller, Operation::SetUnitStatus)?;
        let id = validate::required_id("id", id)?;
        let status = status.ok_or_else(|| AppError::invalid("status", "required"))?;
        self.check_on_incident(id, incident_id)?;
        let unit =
            self.change(caller.name(), |work| self.dispatcher.set_unit_status(id, status, self.now(), work)).await??;
        info!(unit_id = %unit.id, status = %unit.status, caller = %caller.name(), "unit status set");
        Ok(unit)
    }

    /// FAILED_PRECONDITION unless `unit_id` is on `incident_id` (empty: no
    /// check). Read before the change: a report racing with it is refused
    /// by the core's own transition check if the unit has moved on.
    pub(super) fn check_on_incident(&self, unit_id: &str, incident_id: &str) -> Result<(), AppError> {
        validate::optional_id("incident_id", incident_id)?;
        if incident_id.is_empty() {
            return Ok(());
        }
        let unit = self.dispatcher.get_unit(unit_id)?;
        if unit.incident_id.as_deref() != Some(incident_id) {
            return Err(AppError::new(
                ErrorCode::FailedPrecondition,
                format!("unit {unit_id} is {} and not on incident {incident_id}", unit.status),
            ));
        }
        Ok(())
    }

    /// A dispatcher takes a unit off its incident.
    pub async fn release_unit(&self, caller: &Caller, unit_id: &str, reason: &str) -> Result<Unit, AppError> {
        let _admitted = self.authorize(caller, Operation::ReleaseUnit)?;
        let unit_id = validate::required_id("unit_id", unit_id)?;
        validate::reason("reason", reason, &self.config.limits)?;
        let unit = self
            .change(caller.name(), |work| self.dispatcher.release_unit(unit_id, reason, self.now(), work))
            .await??;
        info!(unit_id = %unit_id, caller = %caller.name(), "unit released by dispatcher");
        Ok(unit)
    }
}
