//! Records for the stores' tests (SQLite's and PostgreSQL's).

use crate::Record;

pub fn incident(seq: u64, body: &str) -> Record {
    Record::Incident { seq, body: body.as_bytes().to_vec() }
}

pub fn unit(id: &str, body: &str) -> Record {
    Record::Unit { id: id.into(), body: body.as_bytes().to_vec() }
}

pub fn archive(seq: u64, reported_at_ms: i64, closed_at_ms: i64, body: &str) -> Record {
    let outcome = format!("o{seq}").into_bytes();
    Record::Archive { seq, reported_at_ms, closed_at_ms, body: body.as_bytes().to_vec(), outcome }
}

pub fn entry(incident_seq: u64, n: u32, body: &str) -> Record {
    Record::Timeline { incident_seq, n, at_ms: i64::from(n), body: body.as_bytes().to_vec() }
}

pub fn bytes(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}
