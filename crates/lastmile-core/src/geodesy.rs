//! WGS-84 coordinates, great-circle distance, and the embedding used by the
//! spatial index.
//!
//! The R-tree indexes each position as a point on the unit sphere (3-D
//! Cartesian). The straight-line (chord) distance between two such points is a
//! strictly increasing function of the great-circle distance, so nearest-first
//! iteration in the tree is nearest-first on the Earth, with no distortion near
//! the poles or the antimeridian and no projection to choose.

use geo::{Distance, HaversineMeasure, Point};
use serde::{Deserialize, Serialize};

/// Radius of the sphere the selection rule measures on, metres (the IUGG mean
/// radius as the dispatch rule states it; geo's own `Haversine` constant uses
/// 6,371,008.7714 m).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

const HAVERSINE: HaversineMeasure = HaversineMeasure::new(EARTH_RADIUS_M);

/// A WGS-84 position in degrees. Constructed through [`LatLng::new`], which
/// refuses NaN, infinities and out-of-range values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

/// Why a coordinate was refused; the message names the component.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CoordError {
    #[error("must be a finite number of degrees in [-90, 90], got {0}")]
    Lat(f64),
    #[error("must be a finite number of degrees in [-180, 180], got {0}")]
    Lng(f64),
}

impl CoordError {
    /// The name of the offending component (`lat` or `lng`).
    pub fn component(&self) -> &'static str {
        match self {
            CoordError::Lat(_) => "lat",
            CoordError::Lng(_) => "lng",
        }
    }
}

impl LatLng {
    pub fn new(lat: f64, lng: f64) -> Result<Self, CoordError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(CoordError::Lat(lat));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(CoordError::Lng(lng));
        }
        Ok(LatLng { lat, lng })
    }

    /// Checks a value that was built field by field (e.g. deserialised).
    pub fn validate(&self) -> Result<(), CoordError> {
        LatLng::new(self.lat, self.lng).map(|_| ())
    }

    pub fn to_point(self) -> Point<f64> {
        Point::new(self.lng, self.lat)
    }

    /// The position as a point on the unit sphere.
    pub fn to_unit_sphere(self) -> [f64; 3] {
        let (lat, lng) = (self.lat.to_radians(), self.lng.to_radians());
        [lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()]
    }
}

/// Great-circle distance on a sphere of radius [`EARTH_RADIUS_M`], metres.
pub fn haversine_m(a: LatLng, b: LatLng) -> f64 {
    HAVERSINE.distance(a.to_point(), b.to_point())
}

/// `from` moved `distance_m` towards `bearing` (radians clockwise from
/// north), on a flat approximation of the sphere of [`haversine_m`]: within
/// a fraction of a percent over the few kilometres of a district (for
/// simulated crews and synthetic data, not for measuring).
pub fn offset_m(from: LatLng, distance_m: f64, bearing: f64) -> LatLng {
    let m_per_degree = EARTH_RADIUS_M.to_radians();
    let lat = from.lat + distance_m * bearing.cos() / m_per_degree;
    let lng = from.lng + distance_m * bearing.sin() / (m_per_degree * from.lat.to_radians().cos());
    LatLng { lat, lng }
}

/// Squared chord length on the unit sphere that corresponds to a great-circle
/// distance of `distance_m` (for R-tree range bounds). Distances beyond half the
/// circumference map to the largest chord (2).
pub fn chord2_for_distance_m(distance_m: f64) -> f64 {
    let angle = (distance_m / EARTH_RADIUS_M).clamp(0.0, std::f64::consts::PI);
    let chord = 2.0 * (angle / 2.0).sin();
    chord * chord
}

/// Great-circle distance, metres, for a squared chord length on the unit sphere.
pub fn distance_m_for_chord2(chord2: f64) -> f64 {
    let half_chord = (chord2.max(0.0).sqrt() / 2.0).min(1.0);
    2.0 * half_chord.asin() * EARTH_RADIUS_M
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_lands_at_its_distance_within_half_a_percent() {
        let from = LatLng { lat: 28.58, lng: 121.37 };
        for distance_m in [10.0, 500.0, 3_000.0, 12_000.0] {
            for bearing in [0.0, 0.7, std::f64::consts::FRAC_PI_2, 2.5, 4.0, 5.9] {
                let got = haversine_m(from, offset_m(from, distance_m, bearing));
                assert!((got / distance_m - 1.0).abs() < 0.005, "{distance_m} m on {bearing}: {got}");
            }
        }
        let north = offset_m(from, 1_000.0, 0.0);
        assert!(north.lat > from.lat && (north.lng - from.lng).abs() < 1e-12);
    }

    #[test]
    fn refuses_nan_infinite_and_out_of_range() {
        assert_eq!(LatLng::new(f64::NAN, 0.0).unwrap_err().component(), "lat");
        assert_eq!(LatLng::new(0.0, f64::INFINITY).unwrap_err().component(), "lng");
        assert!(LatLng::new(90.000_001, 0.0).is_err());
        assert!(LatLng::new(0.0, -180.1).is_err());
        assert!(LatLng::new(-90.0, 180.0).is_ok());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // One degree of latitude on this sphere: R * pi / 180.
        let d = haversine_m(LatLng::new(28.0, 121.0).unwrap(), LatLng::new(29.0, 121.0).unwrap());
        let expected = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        assert!((d - expected).abs() < 1e-6, "{d} vs {expected}");
    }

    #[test]
    fn chord_and_distance_round_trip() {
        for d in [0.0, 1.0, 250.0, 4_600.0, 1.0e6, 1.9e7] {
            let back = distance_m_for_chord2(chord2_for_distance_m(d));
            assert!((back - d).abs() < 1e-6 * d.max(1.0), "{d} -> {back}");
        }
    }

    #[test]
    fn chord_of_embedding_agrees_with_haversine() {
        let a = LatLng::new(28.58, 121.37).unwrap();
        let b = LatLng::new(28.53, 121.50).unwrap();
        let (pa, pb) = (a.to_unit_sphere(), b.to_unit_sphere());
        let chord2: f64 = (0..3).map(|i| (pa[i] - pb[i]).powi(2)).sum();
        let d = haversine_m(a, b);
        assert!((distance_m_for_chord2(chord2) - d).abs() < 1e-3);
    }
}
