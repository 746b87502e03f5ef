//! The served area: the district outline and the town/village an incident
//! falls in.
//!
//! The public sources give village names but no village boundaries, so a
//! location takes the town and village of the nearest village centre; a
//! location outside the outline is flagged and gets neither.

use geo::{Intersects, MultiPolygon};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::geodesy::LatLng;

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
}

pub struct ServiceArea {
    outline: MultiPolygon<f64>,
    places: Vec<Place>,
    by_position: RTree<GeomWithData<[f64; 3], usize>>,
}

impl ServiceArea {
    pub fn new(outline: MultiPolygon<f64>, places: Vec<Place>) -> Self {
        let by_position = RTree::bulk_load(
            places.iter().enumerate().map(|(i, p)| GeomWithData::new(p.center.to_unit_sphere(), i)).collect(),
        );
        ServiceArea { outline, places, by_position }
    }

    /// True when `at` is inside the outline or on its edge.
    pub fn contains(&self, at: LatLng) -> bool {
        self.outline.intersects(&at.to_point())
    }

    pub fn locate(&self, at: LatLng) -> Located {
        if !self.contains(at) {
            return Located { outside_service_area: true, ..Located::default() };
        }
        match self.by_position.nearest_neighbor(&at.to_unit_sphere()) {
            Some(nearest) => {
                let place = &self.places[nearest.data];
                Located { town: place.town.clone(), village: place.village.clone(), outside_service_area: false }
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
}
