//! The served area: the district outline, the grid cells, and the
//! town/village and grid cell an incident falls in.
//!
//! A location inside a grid cell takes the cell's town and village: the grid
//! is what the upstream system and its grid workers go by, so an incident
//! must agree with the cell whose worker is notified. Elsewhere (no grid
//! configured, or a gap between cells) the public sources give village names
//! but no village boundaries, so a location takes the town and village of
//! the nearest village centre. A location outside the outline and every cell
//! is flagged and gets neither. (The demo cells are clipped to the outline;
//! a point in a cell is in the service area even where rounding of the
//! cells' coordinates leaves it a hair outside the outline.)

use geo::{Intersects, MultiPolygon};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::geodesy::LatLng;
use crate::grid::{GridIndex, GridWorker};

/// A named place whose centre stands for its area.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub town: String,
    pub village: String,
    pub center: LatLng,
}

/// Where a location falls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Located {
    pub town: String,
    pub village: String,
    pub outside_service_area: bool,
    /// The grid cell the location is in; empty when in none.
    pub grid_id: String,
    /// That cell's grid worker.
    pub grid_worker: Option<GridWorker>,
}

pub struct ServiceArea {
    outline: MultiPolygon<f64>,
    places: Vec<Place>,
    by_position: RTree<GeomWithData<[f64; 3], usize>>,
    grid: GridIndex,
}

impl ServiceArea {
    pub fn new(outline: MultiPolygon<f64>, places: Vec<Place>) -> Self {
        let by_position = RTree::bulk_load(
            places.iter().enumerate().map(|(i, p)| GeomWithData::new(p.center.to_unit_sphere(), i)).collect(),
        );
        ServiceArea { outline, places, by_position, grid: GridIndex::empty() }
    }

    /// The area with these grid cells (none by default).
    pub fn with_grid(self, grid: GridIndex) -> Self {
        ServiceArea { grid, ..self }
    }

    pub fn grid(&self) -> &GridIndex {
        &self.grid
    }

    /// True when `at` is inside the outline or on its edge.
    /// Where `at` falls when the caller names its cell: that cell if its
    /// closed polygon holds `at` (a point on a shared edge is in both
    /// neighbours; the caller's grid worker keeps it), else `None`.
    pub fn locate_in_claimed(&self, at: LatLng, grid_id: &str) -> Option<Located> {
        use geo::Intersects;
        let cell = self.grid.get(grid_id)?;
        cell.polygon.intersects(&at.to_point()).then(|| Self::in_cell(cell))
    }

    fn in_cell(cell: &crate::grid::GridCell) -> Located {
        Located {
            town: cell.town.clone(),
            village: cell.village.clone(),
            outside_service_area: false,
            grid_id: cell.grid_id.clone(),
            grid_worker: Some(cell.worker.clone()),
        }
    }

    pub fn contains(&self, at: LatLng) -> bool {
        self.outline.intersects(&at.to_point())
    }

    pub fn locate(&self, at: LatLng) -> Located {
        if let Some(cell) = self.grid.locate(at) {
            return Self::in_cell(cell);
        }
        if !self.contains(at) {
            return Located { outside_service_area: true, ..Located::default() };
        }
        match self.by_position.nearest_neighbor(&at.to_unit_sphere()) {
            Some(nearest) => {
                let place = &self.places[nearest.data];
                Located { town: place.town.clone(), village: place.village.clone(), ..Located::default() }
            }
            None => Located::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{LineString, Polygon};

    fn square() -> MultiPolygon<f64> {
        let ring = LineString::from(vec![(121.0, 28.0), (122.0, 28.0), (122.0, 29.0), (121.0, 29.0), (121.0, 28.0)]);
        MultiPolygon(vec![Polygon::new(ring, vec![])])
    }

    #[test]
    fn locates_to_the_nearest_place_inside_and_flags_outside() {
        let places = vec![
            Place { town: "A镇".into(), village: "一村".into(), center: LatLng::new(28.2, 121.2).unwrap() },
            Place { town: "B镇".into(), village: "二村".into(), center: LatLng::new(28.8, 121.8).unwrap() },
        ];
        let area = ServiceArea::new(square(), places);
        assert_eq!(area.locate(LatLng::new(28.3, 121.3).unwrap()).village, "一村");
        assert_eq!(area.locate(LatLng::new(28.7, 121.9).unwrap()).town, "B镇");
        assert!(area.locate(LatLng::new(30.0, 121.5).unwrap()).outside_service_area);
        assert!(!area.locate(LatLng::new(28.0, 121.5).unwrap()).outside_service_area, "edge counts as inside");
    }

    #[test]
    fn a_location_in_a_grid_cell_takes_the_cells_town_village_and_worker() {
        use crate::grid::GridCell;
        let places =
            vec![Place { town: "A镇".into(), village: "一村".into(), center: LatLng::new(28.2, 121.2).unwrap() }];
        let cell_ring =
            LineString::from(vec![(121.0, 28.0), (121.5, 28.0), (121.5, 28.5), (121.0, 28.5), (121.0, 28.0)]);
        let cell = GridCell {
            grid_id: "G1".into(),
            town: "B镇".into(),
            village: "二村".into(),
            worker: GridWorker { name: "王五（虚构）".into(), contact: "0576-00000001".into() },
            polygon: MultiPolygon(vec![Polygon::new(cell_ring, vec![])]),
        };
        let area = ServiceArea::new(square(), places).with_grid(GridIndex::new(vec![cell]).unwrap());
        let inside = area.locate(LatLng::new(28.3, 121.3).unwrap());
        assert_eq!((inside.town.as_str(), inside.village.as_str(), inside.grid_id.as_str()), ("B镇", "二村", "G1"));
        assert_eq!(inside.grid_worker.unwrap().name, "王五（虚构）");
        // Inside the outline, in no cell: the nearest village, no grid cell.
        let gap = area.locate(LatLng::new(28.8, 121.8).unwrap());
        assert_eq!((gap.village.as_str(), gap.grid_id.as_str(), gap.grid_worker), ("一村", "", None));
        assert!(!gap.outside_service_area);
    }
}
