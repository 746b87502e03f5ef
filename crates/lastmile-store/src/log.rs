//! The commit log: each group commit is one row of the `log` table, and
//! the tables are brought up to date from it later, many commits at once.
//!
//! Why: a commit that upserts its rows where they live touches a dozen
//! pages scattered over five tables and their indexes (an incident, the
//! units it paged, their timeline, history and outcome rows, the meta
//! counters), and its fsync waits for all of them. Appending one row is two
//! or three pages at the end of one table. What the tables need is then
//! written by [`Pending`] in one transaction without an fsync of its own
//! (the next commit's fsync of the write-ahead log covers it, and a crash
//! before that leaves the log rows, which the next open applies): and
//! coalesced, since a unit paged, acknowledged, on scene and released
//! within one interval is written once.
//!
//! A row's body is the batch's records, each a tag byte and its fields
//! (integers little-endian, byte strings with a u32 length).

use std::collections::{BTreeMap, HashMap};

use crate::Record;

const INCIDENT: u8 = 1;
const UNIT: u8 = 2;
const ARCHIVE: u8 = 3;
const TIMELINE: u8 = 4;
const CALIBRATION: u8 = 5;

/// The bytes of one batch (one log row), into `out` (cleared first: the
/// store keeps one buffer, so a large batch does not take fresh pages).
pub(crate) fn encode(batch: &[Record], out: &mut Vec<u8>) {
    let size: usize = batch.iter().map(encoded_len).sum();
    out.clear();
    out.reserve(4 + size);
    put_u32(out, batch.len() as u32);
    for record in batch {
        match record {
            Record::Incident { seq, body } => {
                out.push(INCIDENT);
                put_u64(out, *seq);
                put_bytes(out, body);
            }
            Record::Unit { id, body } => {
                out.push(UNIT);
                put_bytes(out, id.as_bytes());
                put_bytes(out, body);
            }
            Record::Archive { seq, reported_at_ms, closed_at_ms, body, outcome } => {
                out.push(ARCHIVE);
                put_u64(out, *seq);
                put_u64(out, *reported_at_ms as u64);
                put_u64(out, *closed_at_ms as u64);
                put_bytes(out, body);
                put_bytes(out, outcome);
            }
            Record::Timeline { incident_seq, n, at_ms, body } => {
                out.push(TIMELINE);
                put_u64(out, *incident_seq);
                put_u32(out, *n);
                put_u64(out, *at_ms as u64);
                put_bytes(out, body);
            }
            Record::Calibration { body } => {
                out.push(CALIBRATION);
                put_bytes(out, body);
            }
        }
    }
}

fn encoded_len(record: &Record) -> usize {
    1 + match record {
        Record::Incident { body, .. } => 8 + 4 + body.len(),
        Record::Unit { id, body } => 8 + id.len() + body.len(),
        Record::Archive { body, outcome, .. } => 24 + 8 + body.len() + outcome.len(),
        Record::Timeline { body, .. } => 20 + 4 + body.len(),
        Record::Calibration { body } => 4 + body.len(),
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// The records of one log row; `Err` names what is malformed (a row
/// SQLite returned whole, so only a bug or a foreign writer makes one).
pub(crate) fn decode(mut row: &[u8]) -> Result<Vec<Record>, String> {
    let r = &mut row;
    let count = take_u32(r)? as usize;
    let mut records = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        let tag = take(r, 1).map_err(|e| format!("record {i}: {e}"))?[0];
        let record = match tag {
            INCIDENT => Record::Incident { seq: take_u64(r)?, body: take_bytes(r)? },
            UNIT => {
                let id = String::from_utf8(take_bytes(r)?).map_err(|_| format!("record {i}: unit id is not UTF-8"))?;
                Record::Unit { id, body: take_bytes(r)? }
            }
            ARCHIVE => Record::Archive {
                seq: take_u64(r)?,
                reported_at_ms: take_u64(r)? as i64,
                closed_at_ms: take_u64(r)? as i64,
                body: take_bytes(r)?,
                outcome: take_bytes(r)?,
            },
            TIMELINE => Record::Timeline {
                incident_seq: take_u64(r)?,
                n: take_u32(r)?,
                at_ms: take_u64(r)? as i64,
                body: take_bytes(r)?,
            },
            CALIBRATION => Record::Calibration { body: take_bytes(r)? },
            other => return Err(format!("record {i}: unknown kind {other}")),
        };
        records.push(record);
    }
    if !r.is_empty() {
        return Err(format!("{} bytes after the last record", r.len()));
    }
    Ok(records)
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if r.len() < n {
        return Err(format!("cut short ({} bytes left, {n} needed)", r.len()));
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

fn take_u32(r: &mut &[u8]) -> Result<u32, String> {
    Ok(u32::from_le_bytes(take(r, 4)?.try_into().expect("4 bytes")))
}

fn take_u64(r: &mut &[u8]) -> Result<u64, String> {
    Ok(u64::from_le_bytes(take(r, 8)?.try_into().expect("8 bytes")))
}

fn take_bytes(r: &mut &[u8]) -> Result<Vec<u8>, String> {
    let n = take_u32(r)? as usize;
    Ok(take(r, n)?.to_vec())
}

/// An incident's last state in the pending commits.
pub(crate) enum Latest {
    Open(Vec<u8>),
    Archived { reported_at_ms: i64, closed_at_ms: i64, body: Vec<u8>, outcome: Vec<u8> },
}

/// A timeline row: incident, first entry's number, its time, the entries.
pub(crate) type TimelineRow = (u64, u32, i64, Vec<u8>);

/// Commits in the log and not yet in the tables, coalesced: per incident
/// and per unit only the last state (an incident's last record decides
/// whether it is live or archived), every timeline entry in order.
#[derive(Default)]
pub(crate) struct Pending {
    /// By sequence number.
    pub incidents: BTreeMap<u64, Latest>,
    pub units: HashMap<String, Vec<u8>>,
    pub timeline: Vec<TimelineRow>,
    pub calibration: Option<Vec<u8>>,
    /// Log rows (group commits) and records taken in.
    pub commits: u64,
    pub records: u64,
    pub feed_seq: u64,
    /// The last log row taken in.
    pub last_lsn: i64,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.commits == 0
    }

    /// Takes in one committed batch (log row `lsn`).
    pub fn add(&mut self, batch: impl IntoIterator<Item = Record>, feed_seq: u64, lsn: i64) {
        for record in batch {
            self.records += 1;
            match record {
                Record::Incident { seq, body } => {
                    self.incidents.insert(seq, Latest::Open(body));
                }
                Record::Archive { seq, reported_at_ms, closed_at_ms, body, outcome } => {
                    self.incidents.insert(seq, Latest::Archived { reported_at_ms, closed_at_ms, body, outcome });
                }
                Record::Unit { id, body } => {
                    self.units.insert(id, body);
                }
                Record::Timeline { incident_seq, n, at_ms, body } => self.timeline.push((incident_seq, n, at_ms, body)),
                Record::Calibration { body } => self.calibration = Some(body),
            }
        }
        self.commits += 1;
        self.feed_seq = self.feed_seq.max(feed_seq);
        self.last_lsn = lsn;
    }

    /// Records held (what `journal.apply_max_records` bounds).
    pub fn held(&self) -> usize {
        self.incidents.len() + self.units.len() + self.timeline.len() + usize::from(self.calibration.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Record> {
        vec![
            Record::Incident { seq: 7, body: b"{\"a\":1}".to_vec() },
            Record::Unit { id: "T10-01 站".into(), body: vec![] },
            Record::Archive {
                seq: u64::MAX,
                reported_at_ms: -5,
                closed_at_ms: i64::MAX,
                body: b"x".to_vec(),
                outcome: b"o".to_vec(),
            },
            Record::Timeline { incident_seq: 7, n: 3, at_ms: 1_796_000_000_000, body: b"[1,2]".to_vec() },
            Record::Calibration { body: b"cal".to_vec() },
        ]
    }

    #[test]
    fn a_batch_reads_back_as_written() {
        let batch = every_kind();
        let mut row = vec![1, 2, 3];
        encode(&batch, &mut row);
        assert_eq!(decode(&row).unwrap(), batch);
        encode(&[], &mut row);
        assert_eq!(decode(&row).unwrap(), vec![]);
    }

    #[test]
    fn a_malformed_row_is_refused_with_what_is_wrong() {
        let mut row = Vec::new();
        encode(&every_kind(), &mut row);
        for cut in [0, 3, 5, 20, row.len() - 1] {
            let err = decode(&row[..cut]).unwrap_err();
            assert!(err.contains("cut short"), "cut at {cut}: {err}");
        }
        let mut longer = row.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err(), "1 bytes after the last record");
        let mut unknown = row;
        unknown[4] = 99;
        assert_eq!(decode(&unknown).unwrap_err(), "record 0: unknown kind 99");
    }

    #[test]
    fn pending_keeps_the_last_state_per_key_and_every_timeline_entry() {
        let mut p = Pending::default();
        p.add(
            [
                Record::Incident { seq: 1, body: b"reported".to_vec() },
                Record::Unit { id: "U".into(), body: b"paged".to_vec() },
                Record::Timeline { incident_seq: 1, n: 0, at_ms: 0, body: b"r".to_vec() },
            ],
            4,
            10,
        );
        p.add(
            [
                Record::Unit { id: "U".into(), body: b"available".to_vec() },
                Record::Archive {
                    seq: 1,
                    reported_at_ms: 0,
                    closed_at_ms: 9,
                    body: b"closed".to_vec(),
                    outcome: vec![],
                },
                Record::Timeline { incident_seq: 1, n: 1, at_ms: 9, body: b"c".to_vec() },
            ],
            3,
            11,
        );
        assert_eq!((p.commits, p.records, p.feed_seq, p.last_lsn), (2, 6, 4, 11));
        assert!(matches!(&p.incidents[&1], Latest::Archived { body, .. } if body == b"closed"));
        assert_eq!(p.units["U"], b"available");
        assert_eq!(p.timeline.len(), 2);
        assert_eq!(p.held(), 4);
    }
}
