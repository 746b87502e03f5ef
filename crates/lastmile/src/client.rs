//! A small gRPC client for people at a terminal.

use clap::{Args, Subcommand, ValueEnum};
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_client::DispatchClient;

use crate::connect::Conn;
pub use crate::connect::Target;

/// Where and what an incident is (report and preview).
#[derive(Args)]
pub struct IncidentArgs {
    #[arg(long, allow_hyphen_values = true)]
    lat: f64,
    #[arg(long, allow_hyphen_values = true)]
    lng: f64,
    #[arg(long, value_enum, default_value = "fire")]
    kind: Kind,
    /// 1 minor ... 4 major.
    #[arg(long, default_value_t = 2)]
    severity: u32,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Report an incident and print what was dispatched.
    Report {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        incident: IncidentArgs,
        /// The upstream id (idempotency key); default: a fresh one.
        #[arg(long)]
        external_id: Option<String>,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The grid cell (网格) the reporter says the location is in; checked:
        /// another cell than the location's is refused (INVALID_ARGUMENT).
        #[arg(long, default_value = "")]
        grid_id: String,
    },
    /// Show what a report would dispatch now, reserving nothing.
    Preview {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        incident: IncidentArgs,
    },
    /// Show one incident.
    Get {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Close an incident and release its units.
    Close {
        #[command(flatten)]
        target: Target,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List units (first page).
    Units {
        #[command(flatten)]
        target: Target,
        /// 1, 3, 5 or 10 (or TIER_3, TIER_3_MIN: every spelling is accepted).
        #[arg(long, value_parser = parse_tier)]
        tier: Option<u32>,
        #[arg(long, default_value = "")]
        town: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Page a chosen unit for a chosen tier of an incident (dispatcher override).
    Assign {
        #[command(flatten)]
        target: Target,
        incident_id: String,
        unit_id: String,
        /// 1, 3, 5 or 10 (or TIER_3, TIER_3_MIN: every spelling is accepted).
        #[arg(long, value_parser = parse_tier)]
        tier: u32,
    },
    /// Release a unit from its incident (dispatcher override).
    Release {
        #[command(flatten)]
        target: Target,
        unit_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a unit's status (dispatcher override).
    Status {
        #[command(flatten)]
        target: Target,
        unit_id: String,
        #[arg(value_enum)]
        status: Status,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Fire,
    Flood,
    Rescue,
    Hazmat,
    Traffic,
    Medical,
    Other,
}

impl Kind {
    fn to_pb(self) -> pb::IncidentKind {
        match self {
            Kind::Fire => pb::IncidentKind::Fire,
            Kind::Flood => pb::IncidentKind::Flood,
            Kind::Rescue => pb::IncidentKind::Rescue,
            Kind::Hazmat => pb::IncidentKind::Hazmat,
            Kind::Traffic => pb::IncidentKind::Traffic,
            Kind::Medical => pb::IncidentKind::Medical,
            Kind::Other => pb::IncidentKind::Other,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Status {
    Available,
    EnRoute,
    OnScene,
    OutOfService,
}

async fn connect(target: &Target) -> anyhow::Result<DispatchClient<Conn>> {
    Ok(DispatchClient::new(target.connect().await?))
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Report { target, incident, external_id, address, description, grid_id } => {
            let request = pb::ReportIncidentRequest {
                external_id: external_id.unwrap_or_else(fresh_external_id),
                location: Some(pb::LatLng { lat: incident.lat, lng: incident.lng }),
                kind: incident.kind.to_pb() as i32,
                severity: incident.severity,
                address,
                description,
                grid_id,
            };
            report(&target, request).await
        }
        ClientCommand::Preview { target, incident } => preview(&target, incident).await,
        ClientCommand::Get { target, id } => get(&target, id).await,
        ClientCommand::Close { target, id, reason } => close(&target, id, reason).await,
        ClientCommand::Units { target, tier, town, limit } => units(&target, tier, town, limit).await,
        ClientCommand::Assign { target, incident_id, unit_id, tier } => {
            assign(&target, pb::AssignUnitRequest { incident_id, unit_id, tier: tier as i32 }).await
        }
        ClientCommand::Release { target, unit_id, reason } => release(&target, unit_id, reason).await,
        ClientCommand::Status { target, unit_id, status } => set_status(&target, unit_id, status).await,
    }
}

/// An external id of its own for a report that names none.
fn fresh_external_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("cli-{ms}")
}

async fn report(target: &Target, request: pb::ReportIncidentRequest) -> anyhow::Result<()> {
    let response = connect(target).await?.report_incident(request).await.map_err(status_error)?.into_inner();
    if response.duplicate {
        println!("(duplicate external_id: the stored incident, nothing dispatched again)");
    }
    print_incident(&response.incident.unwrap_or_default());
    Ok(())
}

async fn preview(target: &Target, IncidentArgs { lat, lng, kind, severity }: IncidentArgs) -> anyhow::Result<()> {
    let preview = connect(target)
        .await?
        .preview_dispatch(pb::PreviewDispatchRequest {
            location: Some(pb::LatLng { lat, lng }),
            kind: kind.to_pb() as i32,
            severity,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    println!("preview at {lat:.5},{lng:.5}  {} {}  (nothing reserved)", preview.town, preview.village);
    if preview.outside_service_area {
        println!("  outside the service area");
    }
    print_tiers(&preview.tiers);
    Ok(())
}

async fn get(target: &Target, id: String) -> anyhow::Result<()> {
    let incident = connect(target).await?.get_incident(pb::GetIncidentRequest { id }).await.map_err(status_error)?;
    print_incident(incident.get_ref());
    Ok(())
}

async fn close(target: &Target, id: String, reason: String) -> anyhow::Result<()> {
    let closed = connect(target)
        .await?
        .close_incident(pb::CloseIncidentRequest { id, reason })
        .await
        .map_err(status_error)?
        .into_inner();
    print_incident(&closed.incident.unwrap_or_default());
    Ok(())
}

async fn units(target: &Target, tier: Option<u32>, town: String, limit: u32) -> anyhow::Result<()> {
    let units = connect(target)
        .await?
        .list_units(pb::ListUnitsRequest {
            tier: tier.unwrap_or(0) as i32,
            town,
            page_size: limit,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    for u in units.units {
        println!(
            "{:<18} tier-{:<2} {:<16} {:<10} {} {}",
            u.id,
            u.tier,
            u.status().as_str_name().trim_start_matches("UNIT_STATUS_"),
            u.incident_id,
            u.town,
            u.name
        );
    }
    Ok(())
}

async fn assign(target: &Target, request: pb::AssignUnitRequest) -> anyhow::Result<()> {
    let incident = connect(target).await?.assign_unit(request).await.map_err(status_error)?;
    print_incident(incident.get_ref());
    Ok(())
}

async fn release(target: &Target, unit_id: String, reason: String) -> anyhow::Result<()> {
    let unit = connect(target)
        .await?
        .release_unit(pb::ReleaseUnitRequest { unit_id, reason })
        .await
        .map_err(status_error)?
        .into_inner()
        .unit
        .unwrap_or_default();
    print_unit_status(&unit);
    Ok(())
}

async fn set_status(target: &Target, unit_id: String, status: Status) -> anyhow::Result<()> {
    let status = match status {
        Status::Available => pb::UnitStatus::Available,
        Status::EnRoute => pb::UnitStatus::EnRoute,
        Status::OnScene => pb::UnitStatus::OnScene,
        Status::OutOfService => pb::UnitStatus::OutOfService,
    };
    let unit = connect(target)
        .await?
        .set_unit_status(pb::SetUnitStatusRequest { id: unit_id, status: status as i32, incident_id: String::new() })
        .await
        .map_err(status_error)?
        .into_inner()
        .unit
        .unwrap_or_default();
    print_unit_status(&unit);
    Ok(())
}

fn print_unit_status(unit: &pb::Unit) {
    println!("{} is now {}", unit.id, unit.status().as_str_name().trim_start_matches("UNIT_STATUS_"));
}

fn print_incident(i: &pb::Incident) {
    let location = i.location.unwrap_or_default();
    println!(
        "{}  external_id={}  {}  severity {}  {}  at {:.5},{:.5}  {} {}{}",
        i.id,
        i.external_id,
        i.kind().as_str_name().trim_start_matches("INCIDENT_KIND_"),
        i.severity,
        i.status().as_str_name().trim_start_matches("INCIDENT_STATUS_"),
        location.lat,
        location.lng,
        i.town,
        i.village,
        if i.outside_service_area { "  (outside the service area)" } else { "" }
    );
    if let Some(worker) = &i.grid_worker {
        println!("  grid {}  worker {}  {}", i.grid_id, worker.name, worker.contact);
    }
    print_tiers(&i.tiers);
}

fn print_tiers(tiers: &[pb::TierResponse]) {
    for t in tiers {
        println!(
            "  tier-{:<2} target {:>3} s  required {}  {}{}",
            t.tier,
            t.target_s,
            t.required,
            t.state().as_str_name().trim_start_matches("TIER_STATE_"),
            if t.note.is_empty() { String::new() } else { format!("  ({})", t.note) }
        );
        for a in &t.assignments {
            println!(
                "      {:<18} {:>7.0} m  eta {:>4} s  {}  {}  {}",
                a.unit_id,
                a.distance_m,
                a.eta_s,
                if a.within_target { "within target" } else { "BEYOND target" },
                a.state().as_str_name().trim_start_matches("ASSIGNMENT_STATE_"),
                if a.attempt > 1 { format!("attempt {}  {}", a.attempt, a.unit_name) } else { a.unit_name.clone() }
            );
        }
    }
}

/// A tier by any of its spellings (`3`, `TIER_3`, `TIER_3_MIN`), as the
/// JSON gateway reads it; its proto number (the minutes).
fn parse_tier(text: &str) -> Result<u32, String> {
    lastmile_server::json::Named::<pb::Tier>::parse(text).map(|tier| tier.number() as u32)
}
