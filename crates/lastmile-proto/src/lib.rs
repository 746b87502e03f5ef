//! Generated prost/tonic code for the lastmile wire contract (`proto/lastmile/v1`).
//!
//! Nothing but generated code lives here: conversions and validation belong to
//! `lastmile-server`, the domain to `lastmile-core`.

#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("lastmile.v1");

    /// The encoded file descriptor set of `proto/lastmile/v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lastmile_descriptor.bin"));
}
