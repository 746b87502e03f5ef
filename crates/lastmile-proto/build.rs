//! Compiles proto/lastmile/v1 with protox (pure Rust: no system `protoc`) and
//! writes the file descriptor set that server reflection serves.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [proto_root.join("lastmile/v1/dispatch.proto")];
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("lastmile_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
