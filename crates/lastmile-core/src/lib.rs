//! The lastmile dispatch domain: the "13510" tiers, units, incidents, the ETA
//! rule, the spatial index and selection.
//!
//! # Layout
//!
//! - [`geodesy`]: WGS-84 coordinates, haversine distance, the unit-sphere
//!   embedding the R-tree indexes.
//! - [`tier`]: the four tiers and their travel model (`eta_s`).
//! - [`config`]: the dispatch configuration (tier parameters, response plan),
//!   validated once.
//! - [`unit`], [`incident`]: the records and their state machines.
//! - [`index`]: one R-tree per tier; candidates in exact selection order.
//! - [`select`]: the selection rule, and a brute-force reference of it.
//! - [`area`]: the served area (district outline, town/village lookup).
//! - [`grid`]: grid cells (网格) and their grid workers; the cell a location
//!   is in (R-tree of boxes, exact point-in-polygon).
//! - [`dataset`]: parsing the demo dataset's JSON/GeoJSON.
//! - [`sim`]: seeded randomness for simulations, tests and benchmarks.
//! - [`dispatcher`]: the concurrent state (units, open incidents, a bounded
//!   cache of the recently closed, reservations), paging, acknowledgement,
//!   arrival verification and the per-tier escalation state machine.
//! - [`eta`]: the ETA's error against real arrivals, and its calibration.
//! - [`outcome`]: what became of a closed incident, per tier and
//!   assignment: what the compliance reports and the ETA calibration read.
//! - [`effects`]: what decisions cause outside the core (events, pages, timers).
//! - [`error`]: domain errors; the server maps each to one gRPC code.
//!
//! # What this crate must not do
//!
//! No async runtime, no network, no files, no clock: time is passed in as
//! [`Timestamp`]. Everything hard lives here so it can be unit-tested here.

#![forbid(unsafe_code)]

pub mod area;
pub mod config;
pub mod dataset;
pub mod dispatcher;
pub mod effects;
pub mod error;
pub mod eta;
pub mod geodesy;
pub mod grid;
pub mod incident;
pub mod index;
pub mod matching;
pub mod outcome;
pub mod select;
pub mod sim;
pub mod tier;
pub mod unit;

pub use config::DispatchConfig;
pub use dispatcher::Dispatcher;
pub use error::DispatchError;
pub use geodesy::LatLng;
pub use incident::{Incident, IncidentKind, Timestamp, check_severity};
pub use tier::Tier;
pub use unit::{Unit, UnitStatus};
