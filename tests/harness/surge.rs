//! A surge of reports, acknowledgements and closes against a server that is
//! killed under it, and the check that what was answered OK survived
//! (`tests/durability.rs` on one node, `tests/cluster.rs` across a
//! failover).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic::transport::Channel;

use crate::v1 as pb;
use crate::v1::dispatch_client::DispatchClient;
use crate::v1::unit_terminal_client::UnitTerminalClient;
use crate::{SplitMix64, report};

/// Everything the server answered OK must be there, as answered (states may
/// only have moved on), and no unit may be held by two open incidents
/// (tier-1 units, whose 1 s timers may fire while this reads, are left to
/// the server's own check at recovery).
pub async fn verify(
    client: &mut DispatchClient<Channel>,
    answered: &BTreeMap<String, pb::Incident>,
    acked: &[(String, String)],
) {
    for (external_id, before) in answered {
        let now = client
            .get_incident(pb::GetIncidentRequest { id: before.id.clone() })
            .await
            .unwrap_or_else(|e| panic!("incident {} ({external_id}) answered OK is gone: {e:?}", before.id))
            .into_inner();
        assert_eq!(&now.external_id, external_id);
        assert_eq!(now.reported_at, before.reported_at);
        for (b, n) in before.tiers.iter().zip(&now.tiers) {
            assert_eq!(b.tier, n.tier);
            for (i, a) in b.assignments.iter().enumerate() {
                let m = n
                    .assignments
                    .get(i)
                    .unwrap_or_else(|| panic!("{}: assignment {i} of tier {} lost", now.id, b.tier));
                assert_eq!((&m.unit_id, m.attempt, m.eta_s), (&a.unit_id, a.attempt, a.eta_s), "{}", now.id);
            }
        }
    }
    for (unit_id, incident_id) in acked {
        let incident =
            client.get_incident(pb::GetIncidentRequest { id: incident_id.clone() }).await.unwrap().into_inner();
        let a = incident.tiers.iter().flat_map(|t| &t.assignments).find(|a| &a.unit_id == unit_id).unwrap();
        assert_ne!(
            a.state(),
            pb::AssignmentState::Paged,
            "acknowledged page of {unit_id} for {incident_id} went back to PAGED"
        );
    }
    // No unit in two open incidents; every held unit says so itself.
    let mut holder: BTreeMap<String, String> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_incidents(pb::ListIncidentsRequest {
                status: 1,
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for incident in &page.incidents {
            for a in incident.tiers.iter().flat_map(|t| &t.assignments) {
                let active = matches!(
                    a.state(),
                    pb::AssignmentState::Paged | pb::AssignmentState::Acknowledged | pb::AssignmentState::OnScene
                );
                if active
                    && a.tier != 1
                    && let Some(other) = holder.insert(a.unit_id.clone(), incident.id.clone())
                {
                    panic!("unit {} held by {other} and {}", a.unit_id, incident.id);
                }
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for (unit_id, incident_id) in &holder {
        let unit = client.get_unit(pb::GetUnitRequest { id: unit_id.clone() }).await.unwrap().into_inner();
        if &unit.incident_id != incident_id {
            // The server's timers go on while this reads (a page read above
            // may have timed out since): then the incident, read again, no
            // longer holds the unit either.
            let now =
                client.get_incident(pb::GetIncidentRequest { id: incident_id.clone() }).await.unwrap().into_inner();
            let still = now.tiers.iter().flat_map(|t| &t.assignments).any(|a| {
                &a.unit_id == unit_id
                    && matches!(
                        a.state(),
                        pb::AssignmentState::Paged | pb::AssignmentState::Acknowledged | pb::AssignmentState::OnScene
                    )
            });
            assert!(!still, "unit {unit_id} is held by {incident_id} but says {:?}", unit.incident_id);
        }
    }
}

/// One client of the surge, until the server is gone: reports incidents
/// `{prefix}-0`, `{prefix}-1`, ..., accepts the first tier-3 page of about
/// half of them and closes about a fifth, keeping what was answered OK.
pub async fn surge_client(
    ch: Channel,
    prefix: String,
    mut local: SplitMix64,
    answered: Arc<Mutex<BTreeMap<String, pb::Incident>>>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) {
    let mut client = DispatchClient::new(ch.clone());
    let mut terminal = UnitTerminalClient::new(ch);
    for i in 0.. {
        let external_id = format!("{prefix}-{i}");
        let mut request = report(&external_id);
        let r = local.next_u64();
        request.location = Some(pb::LatLng {
            lat: 28.50 + (r % 1000) as f64 * 0.0001,
            lng: 121.33 + (r / 1000 % 2000) as f64 * 0.0001,
        });
        let Ok(response) = client.report_incident(request).await else { return };
        let incident = response.into_inner().incident.unwrap();
        answered.lock().unwrap().insert(external_id, incident.clone());
        if let Some(a) = incident.tiers.iter().find(|t| t.tier == 3).and_then(|t| t.assignments.first())
            && r.is_multiple_of(2)
        {
            let ack = pb::AcknowledgeRequest {
                unit_id: a.unit_id.clone(),
                incident_id: incident.id.clone(),
                accept: true,
                reason: String::new(),
            };
            match terminal.acknowledge(ack).await {
                Ok(_) => acked.lock().unwrap().push((a.unit_id.clone(), incident.id.clone())),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {} // timed out already
                Err(_) => return,
            }
        }
        if r.is_multiple_of(5) {
            let close = pb::CloseIncidentRequest { id: incident.id.clone(), reason: String::new() };
            if client.close_incident(close).await.is_err() {
                return;
            }
        }
    }
}
