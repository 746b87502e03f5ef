//! `lastmile watch`: follows the dispatchers' live feed, one line per event,
//! resuming from the last sequence number after a disconnect. When the
//! server's numbers restarted (a restart, a failover) it says that events
//! may be missing and follows the new feed from its newest event.

use std::time::Duration;

use lastmile_proto::v1 as pb;
use lastmile_proto::v1::dispatch_client::DispatchClient;

pub async fn run(
    target: crate::connect::Target,
    mut after_seq: u64,
    incident_id: String,
    unit_id: String,
) -> anyhow::Result<()> {
    loop {
        match follow(&target, &mut after_seq, &incident_id, &unit_id).await {
            Ok(()) => eprintln!("watch: feed ended; reconnecting from seq {after_seq}"),
            // The feed's numbers restarted (a server restart, or a failover
            // to another node): say so, and follow the new feed from now.
            Err(status) if status.code() == tonic::Code::OutOfRange && after_seq > 0 => {
                eprintln!(
                    "watch: {}; events since seq {after_seq} may be missing: following the new feed from now",
                    status.message()
                );
                after_seq = 0;
                continue;
            }
            Err(status) if status.code() == tonic::Code::OutOfRange => {
                anyhow::bail!("{}", status.message());
            }
            Err(status) => {
                eprintln!("watch: {:?}: {}; reconnecting from seq {after_seq}", status.code(), status.message())
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(
    target: &crate::connect::Target,
    after_seq: &mut u64,
    incident_id: &str,
    unit_id: &str,
) -> Result<(), tonic::Status> {
    let mut client =
        DispatchClient::new(target.connect().await.map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?);
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_seq: *after_seq,
            incident_id: incident_id.to_string(),
            unit_id: unit_id.to_string(),
        })
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        *after_seq = event.seq;
        println!("{}", line(&event));
    }
    Ok(())
}

/// `#42 02:13:05.120 UNIT_TIMED_OUT inc-000007 T3-331004001231 tier-3 #1 UNRESPONSIVE  no acknowledgement within 30 s`
pub fn line(e: &pb::DispatchEvent) -> String {
    let at = e.at.unwrap_or_default();
    let secs_of_day = at.seconds.rem_euclid(86_400);
    let mut out = format!(
        "#{:<6} {:02}:{:02}:{:02}.{:03} {:<20}",
        e.seq,
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        at.nanos / 1_000_000,
        e.r#type().as_str_name().trim_start_matches("EVENT_TYPE_")
    );
    for part in [&e.incident_id, &e.unit_id] {
        if !part.is_empty() {
            out.push(' ');
            out.push_str(part);
        }
    }
    if e.tier != 0 {
        out.push_str(&format!(" tier-{}", e.tier));
    }
    if e.attempt != 0 {
        out.push_str(&format!(" #{}", e.attempt));
    }
    if e.unit_status != 0 {
        out.push(' ');
        out.push_str(e.unit_status().as_str_name().trim_start_matches("UNIT_STATUS_"));
    }
    if let Some(p) = e.position {
        out.push_str(&format!(" @{:.5},{:.5}", p.lat, p.lng));
    }
    if !e.detail.is_empty() {
        out.push_str("  ");
        out.push_str(&e.detail);
    }
    out
}
