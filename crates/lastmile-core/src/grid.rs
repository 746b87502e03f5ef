//! Grid cells (网格) of the upstream grid-governance system ("四平台"), each
//! with its grid worker (网格员), and the lookup of the cell a location is in.
//!
//! An R-tree over the cells' bounding boxes narrows a lookup to a few
//! candidates; an exact point-in-polygon test (geo's robust predicates)
//! decides among them.
//!
//! # The rule
//!
//! A cell contains a point when its *closed* polygon does (the boundary
//! counts). Cells that tile an area share edges and vertices, so a point on a
//! shared edge or vertex is in several cells: it is located in the one with
//! the **smallest `grid_id`** (byte order) among them, the same answer on every
//! run and for every caller. A point in no cell is located in none (`None`).

use std::collections::HashSet;

use geo::{Area, BoundingRect, Intersects, MultiPolygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::{Deserialize, Serialize};

use crate::geodesy::LatLng;

/// The grid worker (网格员) responsible for a cell: notified of every incident
/// reported in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridWorker {
    pub name: String,
    /// A phone number or other contact the upstream system gives.
    pub contact: String,
}

/// One grid cell.
#[derive(Clone, Debug, PartialEq)]
pub struct GridCell {
    /// The upstream system's id of the cell (unique).
    pub grid_id: String,
    /// The town/street and village/community the cell belongs to; an incident
    /// in the cell takes these.
    pub town: String,
    pub village: String,
    pub worker: GridWorker,
    /// Lon/lat degrees (x = lng, y = lat), as in GeoJSON.
    pub polygon: MultiPolygon<f64>,
}

/// Why a set of cells cannot be indexed; names the cell.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("grid cell {grid_id:?}: {problem}")]
pub struct GridError {
    pub grid_id: String,
    pub problem: String,
}

type CellBox = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The cells, ordered by `grid_id`, and an R-tree of their bounding boxes
/// (the data is the cell's position in that order, so the smallest index is
/// the smallest `grid_id`).
#[derive(Debug, Default)]
pub struct GridIndex {
    cells: Vec<GridCell>,
    by_box: RTree<CellBox>,
}

impl GridIndex {
    /// Indexes `cells`: ids unique and non-empty, every polygon of positive area.
    pub fn new(mut cells: Vec<GridCell>) -> Result<Self, GridError> {
        let mut seen = HashSet::new();
        for cell in &cells {
            let problem = |problem: &str| GridError { grid_id: cell.grid_id.clone(), problem: problem.to_string() };
            if cell.grid_id.is_empty() {
                return Err(problem("empty grid_id"));
            }
            if !seen.insert(cell.grid_id.as_str()) {
                return Err(problem("duplicate grid_id"));
            }
            // NaN fails too (coordinates are checked finite by the parser).
            if cell.polygon.unsigned_area().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(problem("polygon has no area"));
            }
        }
        cells.sort_by(|a, b| a.grid_id.cmp(&b.grid_id));
        let boxes = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let rect = cell.polygon.bounding_rect().expect("a polygon with area has a bounding box");
                GeomWithData::new(Rectangle::from_corners(rect.min().into(), rect.max().into()), i)
            })
            .collect();
        Ok(GridIndex { cells, by_box: RTree::bulk_load(boxes) })
    }

    /// No cells: every location is in none.
    pub fn empty() -> Self {
        GridIndex::default()
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The cells, ordered by `grid_id`.
    pub fn cells(&self) -> &[GridCell] {
        &self.cells
    }

    /// The cell with this id.
    pub fn get(&self, grid_id: &str) -> Option<&GridCell> {
        self.cells.binary_search_by(|c| c.grid_id.as_str().cmp(grid_id)).ok().map(|i| &self.cells[i])
    }

    /// The cell `at` is in, by the rule in the module docs.
    pub fn locate(&self, at: LatLng) -> Option<&GridCell> {
        let point = at.to_point();
        self.by_box
            .locate_in_envelope_intersecting(&AABB::from_point([at.lng, at.lat]))
            .map(|b| b.data)
            .filter(|&i| self.cells[i].polygon.intersects(&point))
            .min()
            .map(|i| &self.cells[i])
    }

    /// [`GridIndex::locate`] by testing every cell: the reference the R-tree
    /// lookup is checked against.
    pub fn locate_by_scan(&self, at: LatLng) -> Option<&GridCell> {
        let point = at.to_point();
        self.cells.iter().filter(|c| c.polygon.intersects(&point)).min_by(|a, b| a.grid_id.cmp(&b.grid_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SplitMix64;
    use geo::{LineString, Polygon};

    fn square(grid_id: &str, lng0: f64, lat0: f64, side: f64) -> GridCell {
        let ring = LineString::from(vec![
            (lng0, lat0),
            (lng0 + side, lat0),
            (lng0 + side, lat0 + side),
            (lng0, lat0 + side),
            (lng0, lat0),
        ]);
        GridCell {
            grid_id: grid_id.into(),
            town: "路桥街道".into(),
            village: format!("{grid_id}村"),
            worker: GridWorker { name: format!("{grid_id} worker"), contact: "0576-00000000".into() },
            polygon: MultiPolygon(vec![Polygon::new(ring, vec![])]),
        }
    }

    /// A 2x2 block of 0.01-degree squares at (28.50, 121.30), ids given out of
    /// order so the rule cannot lean on insertion order:
    ///
    /// ```text
    ///   28.52 +------+------+
    ///         |  G3  |  G1  |
    ///   28.51 +------+------+
    ///         |  G4  |  G2  |
    ///   28.50 +------+------+
    ///      121.30  121.31  121.32
    /// ```
    fn block() -> GridIndex {
        GridIndex::new(vec![
            square("G3", 121.30, 28.51, 0.01),
            square("G1", 121.31, 28.51, 0.01),
            square("G4", 121.30, 28.50, 0.01),
            square("G2", 121.31, 28.50, 0.01),
        ])
        .unwrap()
    }

    fn at(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    fn id(cell: Option<&GridCell>) -> Option<&str> {
        cell.map(|c| c.grid_id.as_str())
    }

    #[test]
    fn a_point_inside_a_cell_is_in_that_cell() {
        let grid = block();
        assert_eq!(id(grid.locate(at(28.505, 121.305))), Some("G4"));
        assert_eq!(id(grid.locate(at(28.515, 121.315))), Some("G1"));
        assert_eq!(grid.locate(at(28.505, 121.305)).unwrap().worker.name, "G4 worker");
    }

    #[test]
    fn a_point_on_a_shared_edge_is_in_the_smallest_grid_id() {
        let grid = block();
        // On the vertical edge between G4 (west) and G2 (east).
        assert_eq!(id(grid.locate(at(28.505, 121.31))), Some("G2"));
        // On the horizontal edge between G3 (north) and G4 (south).
        assert_eq!(id(grid.locate(at(28.51, 121.305))), Some("G3"));
        // On the outer edge of one cell only.
        assert_eq!(id(grid.locate(at(28.50, 121.305))), Some("G4"));
    }

    #[test]
    fn a_point_on_a_vertex_shared_by_four_cells_is_in_the_smallest_grid_id() {
        let grid = block();
        assert_eq!(id(grid.locate(at(28.51, 121.31))), Some("G1"));
        // The outer corner of G3 alone.
        assert_eq!(id(grid.locate(at(28.52, 121.30))), Some("G3"));
    }

    #[test]
    fn a_point_outside_every_cell_is_in_none() {
        let grid = block();
        assert_eq!(id(grid.locate(at(28.49, 121.305))), None);
        assert_eq!(id(grid.locate(at(28.515, 121.3201))), None);
        assert_eq!(id(GridIndex::empty().locate(at(28.505, 121.305))), None);
    }

    #[test]
    fn duplicate_ids_and_empty_polygons_are_refused() {
        let err = GridIndex::new(vec![square("G1", 121.3, 28.5, 0.01), square("G1", 121.4, 28.5, 0.01)]).unwrap_err();
        assert_eq!((err.grid_id.as_str(), err.problem.as_str()), ("G1", "duplicate grid_id"));
        let err = GridIndex::new(vec![square("G1", 121.3, 28.5, 0.0)]).unwrap_err();
        assert!(err.problem.contains("no area"), "{err}");
    }

    #[test]
    fn get_finds_a_cell_by_id() {
        let grid = block();
        assert_eq!(grid.get("G2").unwrap().village, "G2村");
        assert!(grid.get("G5").is_none());
    }

    /// A lattice of cells with shared edges (some cells missing, so some points
    /// are in none), then random points, half of them snapped onto lattice
    /// lines: the R-tree lookup must equal a scan of every cell.
    #[test]
    fn rtree_lookup_equals_a_scan_of_every_cell() {
        let seed = std::env::var("LASTMILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0636_6d61_7070_u64);
        println!("rtree_lookup_equals_a_scan_of_every_cell: LASTMILE_SEED={seed}");
        let mut rng = SplitMix64(seed);
        let (rows, cols, side) = (12, 15, 0.005);
        let (lat0, lng0) = (28.45, 121.29);
        let mut cells = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                if rng.unit() < 0.1 {
                    continue; // a hole in the grid
                }
                let n = rng.next_u64() % 10_000; // ids in no geometric order
                cells.push(square(
                    &format!("G{n:04}-{r:02}{c:02}"),
                    lng0 + c as f64 * side,
                    lat0 + r as f64 * side,
                    side,
                ));
            }
        }
        let grid = GridIndex::new(cells).unwrap();
        let mut on_lines = 0;
        for i in 0..20_000 {
            let mut lat = rng.range(lat0 - side, lat0 + (rows + 1) as f64 * side);
            let mut lng = rng.range(lng0 - side, lng0 + (cols + 1) as f64 * side);
            if rng.unit() < 0.5 {
                // Exactly on the lattice: the coordinates geometry reuses.
                let snap = |v: f64, v0: f64| v0 + ((v - v0) / side).round() * side;
                if rng.unit() < 0.5 {
                    lat = snap(lat, lat0);
                } else {
                    lng = snap(lng, lng0);
                }
                on_lines += 1;
            }
            let p = at(lat, lng);
            assert_eq!(id(grid.locate(p)), id(grid.locate_by_scan(p)), "point {i} at {p:?} (LASTMILE_SEED={seed})");
        }
        assert!(on_lines > 5_000);
    }
}
