//! Compiles `proto/smooch/v1/*.proto` with the protoc shipped in the
//! `protoc-bin-vendored` crate, so the build needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "common",
        "users",
        "conversations",
        "media",
        "webhooks",
        "handoff",
    ]
    .map(|name| root.join(format!("smooch/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    Ok(())
}
