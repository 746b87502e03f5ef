//! Parsing the demo dataset (`config/luqiao/`): units, places, the
//! district outline and the grid cells. Takes text, returns validated domain values; reading the
//! files is the caller's business.

use std::collections::HashSet;
use std::sync::Arc;

use geo::{Area, LineString, MultiPolygon, Polygon};
use serde::Deserialize;

use crate::area::Place;
use crate::geodesy::LatLng;
use crate::grid::{GridCell, GridIndex, GridWorker};
use crate::tier::Tier;
use crate::unit::{Unit, UnitStatus, check_unit_id};

/// A dataset that cannot be used; names the record and field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct DatasetError {
    pub what: String,
    pub problem: String,
}

fn bad(what: impl Into<String>, problem: impl std::fmt::Display) -> DatasetError {
    DatasetError { what: what.into(), problem: problem.to_string() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitsFile {
    #[allow(dead_code)]
    about: String,
    #[allow(dead_code)]
    seed: u64,
    units: Vec<UnitRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitRecord {
    id: String,
    name: String,
    tier: u32,
    home: LatLng,
    town: String,
    village: String,
    crew: u32,
    capabilities: Vec<String>,
}

/// Units from `units.json`, each AVAILABLE at its home station.
pub fn parse_units(json: &str) -> Result<Vec<Unit>, DatasetError> {
    let file: UnitsFile = serde_json::from_str(json).map_err(|e| bad("units", e))?;
    let mut seen = HashSet::new();
    file.units
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let what = format!("units[{i}] ({})", r.id);
            check_unit_id(&r.id).map_err(|e| bad(format!("{what}.id"), e))?;
            if !seen.insert(r.id.clone()) {
                return Err(bad(format!("{what}.id"), "duplicate unit id"));
            }
            let tier =
                Tier::from_minutes(r.tier).ok_or_else(|| bad(format!("{what}.tier"), "must be 1, 3, 5 or 10"))?;
            r.home.validate().map_err(|e| bad(format!("{what}.home"), e))?;
            Ok(Unit {
                id: Arc::from(r.id),
                name: r.name,
                tier,
                home: r.home,
                position: r.home,
                status: UnitStatus::Available,
                town: r.town,
                village: r.village,
                crew: r.crew,
                capabilities: r.capabilities,
                incident_id: None,
                position_at: None,
                position_event_at: None,
                returning_since: None,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacesFile {
    #[allow(dead_code)]
    about: String,
    #[allow(dead_code)]
    seed: u64,
    towns: Vec<TownRecord>,
    villages: Vec<VillageRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TownRecord {
    code: String,
    name: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    center: LatLng,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VillageRecord {
    #[allow(dead_code)]
    code: String,
    name: String,
    town_code: String,
    #[allow(dead_code)]
    kind: String,
    center: LatLng,
}

/// Villages/communities from `places.json`, each with its town's name.
pub fn parse_places(json: &str) -> Result<Vec<Place>, DatasetError> {
    let file: PlacesFile = serde_json::from_str(json).map_err(|e| bad("places", e))?;
    file.villages
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let what = format!("villages[{i}] ({})", v.name);
            let town = file
                .towns
                .iter()
                .find(|t| t.code == v.town_code)
                .ok_or_else(|| bad(format!("{what}.town_code"), format!("no town with code {}", v.town_code)))?;
            v.center.validate().map_err(|e| bad(format!("{what}.center"), e))?;
            Ok(Place { town: town.name.clone(), village: v.name, center: v.center })
        })
        .collect()
}

/// The first feature of a GeoJSON FeatureCollection, as a MultiPolygon
/// (a Polygon is accepted too). Coordinates are [lng, lat].
pub fn parse_outline(geojson: &str) -> Result<MultiPolygon<f64>, DatasetError> {
    let doc: serde_json::Value = serde_json::from_str(geojson).map_err(|e| bad("outline", e))?;
    let geometry = doc
        .pointer("/features/0/geometry")
        .or_else(|| doc.get("geometry"))
        .ok_or_else(|| bad("outline", "no features[0].geometry"))?;
    multi_polygon("outline", geometry)
}

/// A GeoJSON Polygon or MultiPolygon geometry; `what` names it in errors.
/// Every ring: at least 4 positions, closed, finite in-range [lng, lat], of
/// positive area.
fn multi_polygon(what: &str, geometry: &serde_json::Value) -> Result<MultiPolygon<f64>, DatasetError> {
    let kind = geometry.get("type").and_then(|t| t.as_str()).unwrap_or_default();
    let coords = geometry.get("coordinates").ok_or_else(|| bad(format!("{what}.geometry"), "no coordinates"))?;
    let polygons: Vec<serde_json::Value> = match kind {
        "MultiPolygon" => coords.as_array().cloned().unwrap_or_default(),
        "Polygon" => vec![coords.clone()],
        other => {
            return Err(bad(
                format!("{what}.geometry.type"),
                format!("expected Polygon or MultiPolygon, got {other:?}"),
            ));
        }
    };
    let ring = |value: &serde_json::Value| -> Result<LineString<f64>, DatasetError> {
        let ring_what = format!("{what} ring");
        let points: Vec<(f64, f64)> = serde_json::from_value(value.clone()).map_err(|e| bad(&ring_what, e))?;
        if points.len() < 4 {
            return Err(bad(ring_what, "a ring needs at least 4 positions"));
        }
        for (lng, lat) in &points {
            LatLng::new(*lat, *lng).map_err(|e| bad(&ring_what, e))?;
        }
        if points.first() != points.last() {
            return Err(bad(ring_what, "not closed: the last position must repeat the first"));
        }
        let ring = LineString::from(points);
        if Polygon::new(ring.clone(), vec![]).unsigned_area() == 0.0 {
            return Err(bad(ring_what, "has no area"));
        }
        Ok(ring)
    };
    let mut out = Vec::with_capacity(polygons.len());
    for polygon in &polygons {
        let rings = polygon.as_array().ok_or_else(|| bad(format!("{what} polygon"), "not an array of rings"))?;
        let (exterior, holes) = rings.split_first().ok_or_else(|| bad(format!("{what} polygon"), "no rings"))?;
        out.push(Polygon::new(ring(exterior)?, holes.iter().map(ring).collect::<Result<_, _>>()?));
    }
    if out.is_empty() {
        return Err(bad(what, "no polygon"));
    }
    Ok(MultiPolygon(out))
}

/// Grid cells from a GeoJSON FeatureCollection (`grid.geojson`): each
/// feature a Polygon or MultiPolygon with properties `grid_id`, `town`,
/// `village`, `worker_name`, `worker_contact` (all non-empty strings).
/// Errors name the feature by index and `grid_id`.
pub fn parse_grid(geojson: &str) -> Result<GridIndex, DatasetError> {
    let doc: serde_json::Value = serde_json::from_str(geojson).map_err(|e| bad("grid", e))?;
    if doc.get("type").and_then(|t| t.as_str()) != Some("FeatureCollection") {
        return Err(bad("grid.type", "expected a FeatureCollection"));
    }
    let features = doc.get("features").and_then(|f| f.as_array()).ok_or_else(|| bad("grid", "no features array"))?;
    let mut seen = HashSet::new();
    let mut cells = Vec::with_capacity(features.len());
    for (i, feature) in features.iter().enumerate() {
        let properties = feature.get("properties");
        let text = |key: &str| properties.and_then(|p| p.get(key)).and_then(|v| v.as_str()).unwrap_or_default();
        let grid_id = text("grid_id");
        let what = format!("grid features[{i}] ({grid_id})");
        for key in ["grid_id", "town", "village", "worker_name", "worker_contact"] {
            if text(key).trim().is_empty() {
                return Err(bad(format!("{what}.properties.{key}"), "must be a non-empty string"));
            }
        }
        if !seen.insert(grid_id.to_string()) {
            return Err(bad(format!("{what}.properties.grid_id"), "duplicate grid_id"));
        }
        let geometry = feature.get("geometry").ok_or_else(|| bad(&what, "no geometry"))?;
        cells.push(GridCell {
            grid_id: grid_id.to_string(),
            town: text("town").to_string(),
            village: text("village").to_string(),
            worker: GridWorker { name: text("worker_name").to_string(), contact: text("worker_contact").to_string() },
            polygon: multi_polygon(&what, geometry)?,
        });
    }
    GridIndex::new(cells).map_err(|e| bad(format!("grid ({})", e.grid_id), e.problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_validated() {
        let ok = r#"{"about":"x","seed":1,"units":[{"id":"T1-1","name":"n","tier":1,"home":{"lat":28.5,"lng":121.4},"town":"t","village":"v","crew":3,"capabilities":["fire"]}]}"#;
        assert_eq!(parse_units(ok).unwrap()[0].tier, Tier::T1);
        let bad_tier = ok.replace("\"tier\":1", "\"tier\":2");
        assert!(parse_units(&bad_tier).unwrap_err().what.ends_with(".tier"));
        let bad_lat = ok.replace("28.5", "98.5");
        assert!(parse_units(&bad_lat).unwrap_err().what.ends_with(".home"));
        let unknown = ok.replace("\"crew\"", "\"crews\"");
        assert!(parse_units(&unknown).is_err());
    }

    #[test]
    fn outline_parses_polygon_and_multipolygon() {
        let poly = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[121,28],[122,28],[122,29],[121,28]]]}}]}"#;
        assert_eq!(parse_outline(poly).unwrap().0.len(), 1);
        assert!(parse_outline(&poly.replace("Polygon", "Point")).is_err());
    }

    fn grid_text() -> String {
        let cell = |id: &str, lng: f64| {
            format!(
                r#"{{"type":"Feature","properties":{{"grid_id":"{id}","town":"路桥街道","village":"一村","worker_name":"王五（虚构）","worker_contact":"0576-00000001"}},"geometry":{{"type":"Polygon","coordinates":[[[{lng},28.5],[{},28.5],[{},28.51],[{lng},28.51],[{lng},28.5]]]}}}}"#,
                lng + 0.01,
                lng + 0.01
            )
        };
        format!(
            r#"{{"type":"FeatureCollection","features":[{},{}]}}"#,
            cell("LQ-G0001", 121.3),
            cell("LQ-G0002", 121.31)
        )
    }

    #[test]
    fn grid_parses_and_locates() {
        let grid = parse_grid(&grid_text()).unwrap();
        assert_eq!(grid.len(), 2);
        let cell = grid.locate(LatLng::new(28.505, 121.315).unwrap()).unwrap();
        assert_eq!((cell.grid_id.as_str(), cell.worker.name.as_str()), ("LQ-G0002", "王五（虚构）"));
    }

    #[test]
    fn grid_errors_name_the_feature() {
        let text = grid_text();
        let dup = text.replace("LQ-G0002", "LQ-G0001");
        assert_eq!(parse_grid(&dup).unwrap_err().what, "grid features[1] (LQ-G0001).properties.grid_id");
        let no_worker = text.replacen("王五（虚构）", " ", 1);
        assert_eq!(parse_grid(&no_worker).unwrap_err().what, "grid features[0] (LQ-G0001).properties.worker_name");
        let no_village = text.replacen(r#""village":"一村","#, "", 1);
        assert!(parse_grid(&no_village).unwrap_err().what.ends_with(".properties.village"));
        let open_ring = text.replacen("[121.3,28.5]]]", "[121.3,28.501]]]", 1);
        let err = parse_grid(&open_ring).unwrap_err();
        assert_eq!(err.what, "grid features[0] (LQ-G0001) ring");
        assert!(err.problem.contains("not closed"), "{err}");
        let bad_lat = text.replacen("28.51]", "98.51]", 1);
        assert_eq!(parse_grid(&bad_lat).unwrap_err().what, "grid features[0] (LQ-G0001) ring");
        let flat = text.replacen("28.51],[121.3,28.51]", "28.5],[121.3,28.5]", 1);
        assert!(parse_grid(&flat).unwrap_err().problem.contains("no area"));
        let point = text.replacen(r#""type":"Polygon""#, r#""type":"Point""#, 1);
        assert_eq!(parse_grid(&point).unwrap_err().what, "grid features[0] (LQ-G0001).geometry.type");
    }
}
