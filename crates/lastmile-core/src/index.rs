//! The spatial index: one R-tree per tier, over the unit sphere.
//!
//! [`TierIndex::nearest`] yields units in the exact selection order (great-circle
//! distance, then id) and stops at a distance bound, so a selection touches only
//! the units it needs: never a scan of the tier.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::geodesy::{LatLng, chord2_for_distance_m, distance_m_for_chord2, haversine_m};

/// Slack between the chord-derived distance the tree orders by and the
/// haversine distance the rule measures, metres. Far above the float error of
/// either (~1e-9 m at district scale), far below anything that matters.
const ORDER_SLACK_M: f64 = 1e-3;

/// What the tree stores: the unit-sphere point, the unit id and its position.
pub type IndexedUnit = GeomWithData<[f64; 3], (Arc<str>, LatLng)>;

/// The units of one tier, by position.
#[derive(Default)]
pub struct TierIndex {
    tree: RTree<IndexedUnit>,
}

/// A unit near a point, with its exact great-circle distance.
#[derive(Clone, Debug, PartialEq)]
pub struct Nearby {
    pub unit_id: Arc<str>,
    pub position: LatLng,
    pub distance_m: f64,
}

fn entry(unit_id: Arc<str>, position: LatLng) -> IndexedUnit {
    GeomWithData::new(position.to_unit_sphere(), (unit_id, position))
}

impl TierIndex {
    /// Builds the tree in one pass (much faster than inserting one by one).
    pub fn bulk_load(units: impl IntoIterator<Item = (Arc<str>, LatLng)>) -> Self {
        let entries = units.into_iter().map(|(id, p)| entry(id, p)).collect();
        TierIndex { tree: RTree::bulk_load(entries) }
    }

    pub fn insert(&mut self, unit_id: Arc<str>, position: LatLng) {
        self.tree.insert(entry(unit_id, position));
    }

    /// Removes the unit indexed at `position`; false if it was not there.
    pub fn remove(&mut self, unit_id: &Arc<str>, position: LatLng) -> bool {
        self.tree.remove(&entry(unit_id.clone(), position)).is_some()
    }

    pub fn len(&self) -> usize {
        self.tree.size()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }

    /// Units within `max_distance_m` of `at`, nearest first, ties by id.
    pub fn nearest(&self, at: LatLng, max_distance_m: f64) -> NearestInOrder<'_> {
        let query = at.to_unit_sphere();
        NearestInOrder {
            at,
            max_distance_m,
            max_chord2: chord2_for_distance_m(max_distance_m + ORDER_SLACK_M),
            raw: Box::new(self.tree.nearest_neighbor_iter_with_distance_2(&query)),
            pending: BinaryHeap::new(),
            lookahead: None,
            raw_done: false,
        }
    }
}

/// Heap entry ordered so that the heap pops the smallest (distance, id).
struct ByDistance(Nearby);

impl PartialEq for ByDistance {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ByDistance {}
impl PartialOrd for ByDistance {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByDistance {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        other.0.distance_m.total_cmp(&self.0.distance_m).then_with(|| other.0.unit_id.cmp(&self.0.unit_id))
    }
}

/// Iterator over [`TierIndex::nearest`].
///
/// The tree orders by chord length; the rule orders by haversine distance, then
/// id. The two agree up to float error, so entries are buffered until the tree
/// has moved [`ORDER_SLACK_M`] past them: whatever comes later cannot sort
/// before them.
pub struct NearestInOrder<'a> {
    at: LatLng,
    max_distance_m: f64,
    max_chord2: f64,
    raw: Box<dyn Iterator<Item = (&'a IndexedUnit, f64)> + 'a>,
    pending: BinaryHeap<ByDistance>,
    /// Approximate distance of the next raw entry not yet buffered.
    lookahead: Option<(Nearby, f64)>,
    raw_done: bool,
}

impl NearestInOrder<'_> {
    fn pull_raw(&mut self) -> Option<(Nearby, f64)> {
        if self.raw_done {
            return None;
        }
        match self.raw.next() {
            Some((item, chord2)) if chord2 <= self.max_chord2 => {
                let (unit_id, position) = item.data.clone();
                let nearby = Nearby { distance_m: haversine_m(self.at, position), unit_id, position };
                Some((nearby, distance_m_for_chord2(chord2)))
            }
            _ => {
                self.raw_done = true;
                None
            }
        }
    }
}

impl Iterator for NearestInOrder<'_> {
    type Item = Nearby;

    fn next(&mut self) -> Option<Nearby> {
        loop {
            if self.lookahead.is_none() {
                self.lookahead = self.pull_raw();
            }
            match (&self.lookahead, self.pending.peek()) {
                // Nothing more from the tree: drain the buffer in order.
                (None, _) => {
                    let next = self.pending.pop()?.0;
                    if next.distance_m <= self.max_distance_m {
                        return Some(next);
                    }
                }
                // The tree has moved on far enough: the buffered head is final.
                (Some((_, approx_m)), Some(head)) if *approx_m > head.0.distance_m + ORDER_SLACK_M => {
                    let next = self.pending.pop().expect("peeked").0;
                    if next.distance_m <= self.max_distance_m {
                        return Some(next);
                    }
                }
                _ => {
                    let (nearby, _) = self.lookahead.take().expect("checked");
                    self.pending.push(ByDistance(nearby));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    #[test]
    fn yields_in_distance_then_id_order_within_the_bound() {
        let centre = at(28.58, 121.37);
        let units = vec![
            (Arc::from("c"), at(28.59, 121.37)),
            (Arc::from("b"), at(28.59, 121.37)), // same place as c: id breaks the tie
            (Arc::from("a"), at(28.60, 121.37)),
            (Arc::from("far"), at(29.58, 121.37)),
        ];
        let index = TierIndex::bulk_load(units);
        let got: Vec<_> = index.nearest(centre, 5_000.0).map(|n| n.unit_id.to_string()).collect();
        assert_eq!(got, vec!["b", "c", "a"]);
        assert_eq!(index.nearest(centre, 10.0).count(), 0);
    }

    #[test]
    fn insert_and_remove_follow_positions() {
        let mut index = TierIndex::default();
        let id: Arc<str> = Arc::from("u1");
        index.insert(id.clone(), at(28.5, 121.4));
        assert!(!index.remove(&id, at(28.6, 121.4)), "wrong position is not removed");
        assert!(index.remove(&id, at(28.5, 121.4)));
        assert!(index.is_empty());
    }
}
