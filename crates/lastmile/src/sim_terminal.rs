//! A simulated responder terminal: subscribes to a unit's pages, answers them,
//! and with `drive` moves toward the incident (sending positions), reports
//! ON_SCENE on arrival and AVAILABLE after a while. Used for demos
//! (`lastmile terminal`) and by load tests.

use std::time::Duration;

use crate::connect::Conn;
use lastmile_proto::v1 as pb;
use lastmile_proto::v1::unit_terminal_client::UnitTerminalClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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
    /// How the crew really travels (its own truth, not the dispatcher's ETA).
    pub crew: lastmile_core::sim::CrewTravel,
}

/// Runs until the connection fails for good (returns the error) — callers
/// reconnect. Pages are answered one at a time, in order.
pub async fn run(channel: Conn, unit_id: String, behaviour: Behaviour) -> Result<(), tonic::Status> {
    let mut client = UnitTerminalClient::new(channel);
    let mut pages = client.subscribe(pb::SubscribeRequest { unit_id: unit_id.clone() }).await?.into_inner();
    if behaviour.verbose {
        println!("{unit_id}: connected, waiting for pages");
    }
    let mut answered: Option<(String, u32)> = None;
    let mut drives = tokio::task::JoinSet::new();
    while let Some(page) = pages.message().await? {
        while drives.try_join_next().is_some() {} // reap finished drives
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
            // Driving runs beside the page feed, so a new page is still seen;
            // it lives as long as this terminal (the JoinSet aborts it on drop).
            drives.spawn(async move {
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
    client: &mut UnitTerminalClient<Conn>,
    unit_id: &str,
    page: &pb::Page,
    b: &Behaviour,
) -> Result<(), tonic::Status> {
    let scale = b.time_scale.max(0.001);
    // The crew's own truth (see `crew_times`), not the page's ETA. The
    // acknowledgement already took `ack_delay` of the turnout.
    let times = crew_times(&b.crew, unit_id, page);
    let still_mustering = (times.turnout_s - b.ack_delay.as_secs_f64()).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(still_mustering / scale)).await;
    let unit = client
        .report_status(pb::ReportStatusRequest {
            unit_id: unit_id.to_string(),
            status: pb::UnitStatus::EnRoute as i32,
            incident_id: page.incident_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .unit
        .unwrap_or_default();
    let from = unit.position.unwrap_or_default();
    let to = page.location.unwrap_or_default();
    // Positions every simulated 5 s; the last one is at the incident, so
    // the arrival is verified by position.
    let travel_s = times.drive_s.max(1.0);
    let steps = (travel_s / 5.0).ceil().max(1.0) as u32;
    let (tx, rx) = mpsc::channel(16);
    let mut positions_client = client.clone();
    let sender = tokio::spawn(async move { positions_client.report_position(ReceiverStream::new(rx)).await });
    for step in 1..=steps {
        tokio::time::sleep(Duration::from_secs_f64(travel_s / steps as f64 / scale)).await;
        let f = step as f64 / steps as f64;
        let report = pb::PositionReport {
            unit_id: unit_id.to_string(),
            position: Some(pb::LatLng {
                lat: from.lat + (to.lat - from.lat) * f,
                lng: from.lng + (to.lng - from.lng) * f,
            }),
            measured_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
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
            ..Default::default()
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
            ..Default::default()
        })
        .await?;
    if b.verbose {
        println!("{unit_id}: AVAILABLE again");
    }
    Ok(())
}

/// The simulated crews' travel flags (`lastmile terminal`, `lastmile bench`).
#[derive(clap::Args, Clone, Debug)]
pub struct CrewArgs {
    /// The crews' true turnout (page to moving), every tier, seconds;
    /// default per tier 45 / 120 / 150 / 170 s.
    #[arg(long)]
    pub crew_turnout_s: Option<f64>,
    /// The crews' true speed, every tier, m/s; default per tier 2.5 / 6 / 7 / 9.
    #[arg(long)]
    pub crew_speed: Option<f64>,
    /// Log-normal sigma of each page's turnout and speed draw.
    #[arg(long, default_value_t = 0.25)]
    pub crew_spread: f64,
    /// Seed of the crews' draws (`lastmile bench` uses its --seed).
    #[arg(long, default_value_t = 0)]
    pub crew_seed: u64,
}

impl CrewArgs {
    pub fn travel(&self) -> anyhow::Result<lastmile_core::sim::CrewTravel> {
        let mut crew =
            lastmile_core::sim::CrewTravel { spread: self.crew_spread, seed: self.crew_seed, ..Default::default() };
        if let Some(t) = self.crew_turnout_s {
            anyhow::ensure!(t.is_finite() && t >= 0.0, "--crew-turnout-s must be a number >= 0, got {t}");
            crew.turnout_s = [t; 4];
        }
        if let Some(v) = self.crew_speed {
            anyhow::ensure!(v.is_finite() && v > 0.0, "--crew-speed must be a number > 0, got {v}");
            crew.speed_m_per_s = [v; 4];
        }
        anyhow::ensure!(
            self.crew_spread.is_finite() && (0.0..=2.0).contains(&self.crew_spread),
            "--crew-spread must be in [0, 2], got {}",
            self.crew_spread
        );
        Ok(crew)
    }
}

/// How long this crew takes for this page: drawn from the crew's own travel
/// model (its tier's turnout and speed, with spread), from the page's
/// identity and distance. The page's ETA plays no part: every arrival
/// "within target" would otherwise be so by construction.
pub fn crew_times(
    crew: &lastmile_core::sim::CrewTravel,
    unit_id: &str,
    page: &pb::Page,
) -> lastmile_core::sim::CrewDraw {
    let tier = lastmile_core::Tier::from_minutes(page.tier.max(0) as u32).unwrap_or(lastmile_core::Tier::T10);
    let key =
        lastmile_core::sim::key_of(&[unit_id.as_bytes(), page.incident_id.as_bytes(), &page.attempt.to_le_bytes()]);
    crew.draw(tier.index(), page.distance_m.max(0.0), key)
}

/// What a simulated crew does with one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Says nothing: the page times out on the server.
    Silent,
    Decline,
    /// Accepts, then (with `drive`) drives, reports ON_SCENE and AVAILABLE.
    Accept,
}

/// A fleet of simulated crews with seeded random behaviour (`lastmile bench`).
#[derive(Clone, Debug)]
pub struct CrewModel {
    /// Seed of every per-page decision: the same seed gives the same answer
    /// to the same page (unit, incident, attempt), whatever the timing.
    pub seed: u64,
    /// Share of pages left unanswered, 0..=1.
    pub silent_fraction: f64,
    /// Share of pages declined, 0..=1 (the rest are accepted).
    pub decline_fraction: f64,
    /// A crew that left a page unanswered is back at its terminal this long
    /// after (already scaled): the terminal reports its position, and the
    /// server recovers the UNRESPONSIVE unit. `None`: never.
    pub recover_after: Option<Duration>,
    /// How the accepting crews behave (ack delay, drive, time scale, on-scene time).
    pub behaviour: Behaviour,
}

impl CrewModel {
    /// The answer to one page: a pure function of the seed and the page's identity.
    pub fn answer(&self, unit_id: &str, incident_id: &str, attempt: u32) -> Answer {
        let mut h = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for byte in unit_id.bytes().chain([0xff]).chain(incident_id.bytes()).chain(attempt.to_le_bytes()) {
            h = (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let u = lastmile_core::sim::SplitMix64(h).unit();
        if u < self.silent_fraction {
            Answer::Silent
        } else if u < self.silent_fraction + self.decline_fraction {
            Answer::Decline
        } else {
            Answer::Accept
        }
    }
}

/// What the simulated terminals saw: when each page first arrived (the load
/// benchmark matches them to its reports by incident id) and what the crews did.
#[derive(Default)]
pub struct PageLog {
    /// (incident id, unit id) -> first delivery. Bounded by the pages of the run.
    first_delivery: std::sync::Mutex<std::collections::HashMap<(String, String), tokio::time::Instant>>,
    pub pages: std::sync::atomic::AtomicU64,
    /// The same (incident, attempt) delivered again (at-least-once delivery).
    pub repeated: std::sync::atomic::AtomicU64,
    pub accepted: std::sync::atomic::AtomicU64,
    pub declined: std::sync::atomic::AtomicU64,
    pub silent: std::sync::atomic::AtomicU64,
    /// Answers or status reports the server refused (e.g. a late answer).
    pub refused: std::sync::atomic::AtomicU64,
    /// Crews that drove, were on scene and reported AVAILABLE again.
    pub completed: std::sync::atomic::AtomicU64,
    /// Terminals whose subscription the server accepted.
    pub subscribed: std::sync::atomic::AtomicU64,
    /// Silent crews whose terminal came back with a position fix.
    pub recovered: std::sync::atomic::AtomicU64,
}

impl PageLog {
    fn delivered(&self, incident_id: &str, unit_id: &str, at: tokio::time::Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pages.fetch_add(1, Relaxed);
        let mut map = self.first_delivery.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((incident_id.to_string(), unit_id.to_string())).or_insert(at);
    }

    /// When the page of `incident_id` to `unit_id` first reached its terminal.
    pub fn first_delivery(&self, incident_id: &str, unit_id: &str) -> Option<tokio::time::Instant> {
        let map = self.first_delivery.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(incident_id.to_string(), unit_id.to_string())).copied()
    }
}

/// One simulated crew's terminal: subscribes, timestamps every page into
/// `log`, and answers each as `model` says, each page in its own task (so a
/// slow answer never delays the next page's timestamp). A silent crew's
/// terminal reports `position` (where the unit stands) after
/// `model.recover_after`. Runs until the page stream ends or fails; every
/// task it started ends with it.
pub async fn run_crew(
    channel: Conn,
    unit_id: String,
    position: Option<pb::LatLng>,
    model: std::sync::Arc<CrewModel>,
    log: std::sync::Arc<PageLog>,
) -> Result<(), tonic::Status> {
    use std::sync::atomic::Ordering::Relaxed;
    let client = UnitTerminalClient::new(channel);
    let mut pages = client.clone().subscribe(pb::SubscribeRequest { unit_id: unit_id.clone() }).await?.into_inner();
    log.subscribed.fetch_add(1, Relaxed);
    let mut seen = std::collections::HashSet::new();
    let mut answers = tokio::task::JoinSet::new();
    while let Some(page) = pages.message().await? {
        log.delivered(&page.incident_id, &unit_id, tokio::time::Instant::now());
        if !seen.insert((page.incident_id.clone(), page.attempt)) {
            log.repeated.fetch_add(1, Relaxed);
            continue;
        }
        while answers.try_join_next().is_some() {}
        let answer = model.answer(&unit_id, &page.incident_id, page.attempt);
        if answer == Answer::Silent {
            log.silent.fetch_add(1, Relaxed);
            if let (Some(after), Some(at)) = (model.recover_after, position) {
                let (mut client, unit_id, log) = (client.clone(), unit_id.clone(), log.clone());
                answers.spawn(async move {
                    tokio::time::sleep(after).await;
                    if report_one_position(&mut client, &unit_id, at).await.is_ok() {
                        log.recovered.fetch_add(1, Relaxed);
                    }
                });
            }
            continue;
        }
        let (mut client, unit_id, model, log) = (client.clone(), unit_id.clone(), model.clone(), log.clone());
        answers.spawn(async move {
            let b = &model.behaviour;
            tokio::time::sleep(b.ack_delay.div_f64(b.time_scale.max(0.001))).await;
            let accept = answer == Answer::Accept;
            let answered = client
                .acknowledge(pb::AcknowledgeRequest {
                    unit_id: unit_id.clone(),
                    incident_id: page.incident_id.clone(),
                    accept,
                    reason: if accept { String::new() } else { "simulated decline".into() },
                })
                .await;
            if answered.is_err() {
                log.refused.fetch_add(1, Relaxed);
                return;
            }
            if !accept {
                log.declined.fetch_add(1, Relaxed);
                return;
            }
            log.accepted.fetch_add(1, Relaxed);
            if b.drive {
                match drive(&mut client, &unit_id, &page, b).await {
                    Ok(()) => {
                        log.completed.fetch_add(1, Relaxed);
                    }
                    Err(_) => {
                        // Typically: the incident was closed under way. The crew
                        // goes back into service (RETURNING -> AVAILABLE).
                        log.refused.fetch_add(1, Relaxed);
                        let _ = client
                            .report_status(pb::ReportStatusRequest {
                                unit_id: unit_id.clone(),
                                status: pb::UnitStatus::Available as i32,
                                incident_id: String::new(),
                                ..Default::default()
                            })
                            .await;
                    }
                }
            }
        });
    }
    Ok(())
}

/// One position fix of `unit_id` at `at`, measured now, on a stream of its own.
async fn report_one_position(
    client: &mut UnitTerminalClient<Conn>,
    unit_id: &str,
    at: pb::LatLng,
) -> Result<(), tonic::Status> {
    let fix = pb::PositionReport {
        unit_id: unit_id.to_string(),
        position: Some(at),
        measured_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    client.report_position(tokio_stream::iter([fix])).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crews_drive_by_their_own_model_whatever_the_page_predicts() {
        let crew = lastmile_core::sim::CrewTravel::uniform(150.0, 7.0);
        let page = |eta_s| pb::Page {
            incident_id: "inc-000001".into(),
            tier: 10,
            distance_m: 3000.0,
            eta_s,
            attempt: 1,
            ..Default::default()
        };
        let (a, b) = (crew_times(&crew, "T10-01", &page(412)), crew_times(&crew, "T10-01", &page(90)));
        assert_eq!(a, b, "the predicted ETA does not change the drive");
        let other = crew_times(&crew, "T10-02", &page(412));
        assert_ne!(a, other, "each crew and page draws its own");
        // Around the crew's truth: 150 s + 3000 m x 1.3 / 7 m/s = 707 s.
        let total: f64 = (0..500)
            .map(|i| {
                let d = crew_times(&crew, &format!("T10-{i}"), &page(412));
                d.turnout_s + d.drive_s
            })
            .sum::<f64>()
            / 500.0;
        assert!((650.0..800.0).contains(&total), "mean page to on scene {total}");
    }
}
