//! A simulated responder terminal: subscribes to a unit's pages, answers them,
//! and with `drive` moves toward the incident (sending positions), reports
//! ON_SCENE on arrival and AVAILABLE after a while. Used for demos
//! (`lastmile terminal`) and by load tests.

use std::time::Duration;

use lastmile_proto::v1 as pb;
use lastmile_proto::v1::unit_terminal_client::UnitTerminalClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Acknowledge pages (accept), after `ack_delay`.
    pub auto_ack: bool,
    /// Decline pages instead (after `ack_delay`).
    pub decline: bool,
    pub ack_delay: Duration,
    /// After accepting: drive to the scene, report ON_SCENE, then AVAILABLE.
    pub drive: bool,
    /// Divides every simulated duration (10 = ten times faster than life).
    pub time_scale: f64,
    /// Time spent on scene before reporting AVAILABLE, seconds (before scaling).
    pub on_scene_s: f64,
    /// Print what happens.
    pub verbose: bool,
}

/// Runs until the connection fails for good (returns the error) — callers
/// reconnect. Pages are answered one at a time, in order.
pub async fn run(channel: Channel, unit_id: String, behaviour: Behaviour) -> Result<(), tonic::Status> {
    let mut client = UnitTerminalClient::new(channel);
    let mut pages = client.subscribe(pb::SubscribeRequest { unit_id: unit_id.clone() }).await?.into_inner();
    if behaviour.verbose {
        println!("{unit_id}: connected, waiting for pages");
    }
    let mut answered: Option<(String, u32)> = None;
    while let Some(page) = pages.message().await? {
        // Delivery is at-least-once: the same (incident, attempt) may come twice.
        let key = (page.incident_id.clone(), page.attempt);
        if answered.as_ref() == Some(&key) {
            continue;
        }
        answered = Some(key);
        if behaviour.verbose {
            println!(
                "{unit_id}: PAGE {} {} severity {} tier-{} eta {} s ({:.0} m) attempt {} — {}",
                page.incident_id,
                page.kind().as_str_name().trim_start_matches("INCIDENT_KIND_"),
                page.severity,
                page.tier,
                page.eta_s,
                page.distance_m,
                page.attempt,
                page.address
            );
        }
        if !(behaviour.auto_ack || behaviour.decline) {
            continue; // silent: lets the page time out
        }
        tokio::time::sleep(behaviour.ack_delay.div_f64(behaviour.time_scale.max(0.001))).await;
        let accept = !behaviour.decline;
        match client
            .acknowledge(pb::AcknowledgeRequest {
                unit_id: unit_id.clone(),
                incident_id: page.incident_id.clone(),
                accept,
                reason: if accept { String::new() } else { "simulated decline".into() },
            })
            .await
        {
            Ok(_) if behaviour.verbose => {
                println!("{unit_id}: {} {}", if accept { "ACCEPTED" } else { "DECLINED" }, page.incident_id)
            }
            Ok(_) => {}
            Err(status) => {
                if behaviour.verbose {
                    println!("{unit_id}: acknowledgement refused: {}", status.message());
                }
                continue;
            }
        }
        if accept && behaviour.drive {
            let (mut terminal, unit_id, behaviour) = (client.clone(), unit_id.clone(), behaviour.clone());
            // Driving runs beside the page feed, so a new page is still seen.
            tokio::spawn(async move {
                if let Err(status) = drive(&mut terminal, &unit_id, &page, &behaviour).await
                    && behaviour.verbose
                {
                    println!("{unit_id}: drive stopped: {}", status.message());
                }
            });
        }
    }
    Ok(())
}

async fn drive(
    client: &mut UnitTerminalClient<Channel>,
    unit_id: &str,
    page: &pb::Page,
    b: &Behaviour,
) -> Result<(), tonic::Status> {
    let scale = b.time_scale.max(0.001);
    let unit = client
        .report_status(pb::ReportStatusRequest {
            unit_id: unit_id.to_string(),
            status: pb::UnitStatus::EnRoute as i32,
            incident_id: page.incident_id.clone(),
        })
        .await?
        .into_inner()
        .unit
        .unwrap_or_default();
    let from = unit.position.unwrap_or_default();
    let to = page.location.unwrap_or_default();
    // Travel takes the predicted ETA; positions every simulated 5 s.
    let travel_s = page.eta_s.max(1) as f64;
    let steps = (travel_s / 5.0).ceil().max(1.0) as u32;
    let (tx, rx) = mpsc::channel(16);
    let mut positions_client = client.clone();
    let sender = tokio::spawn(async move { positions_client.report_position(ReceiverStream::new(rx)).await });
    for step in 1..=steps {
        tokio::time::sleep(Duration::from_secs_f64(travel_s / steps as f64 / scale)).await;
        let f = step as f64 / steps as f64;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let report = pb::PositionReport {
            unit_id: unit_id.to_string(),
            position: Some(pb::LatLng {
                lat: from.lat + (to.lat - from.lat) * f,
                lng: from.lng + (to.lng - from.lng) * f,
            }),
            measured_at: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
        };
        if tx.send(report).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = sender.await;
    client
        .report_status(pb::ReportStatusRequest {
            unit_id: unit_id.to_string(),
            status: pb::UnitStatus::OnScene as i32,
            incident_id: page.incident_id.clone(),
        })
        .await?;
    if b.verbose {
        println!("{unit_id}: ON_SCENE {}", page.incident_id);
    }
    tokio::time::sleep(Duration::from_secs_f64(b.on_scene_s / scale)).await;
    client
        .report_status(pb::ReportStatusRequest {
            unit_id: unit_id.to_string(),
            status: pb::UnitStatus::Available as i32,
            incident_id: String::new(),
        })
        .await?;
    if b.verbose {
        println!("{unit_id}: AVAILABLE again");
    }
    Ok(())
}
