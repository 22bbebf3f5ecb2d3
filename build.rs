//! Compiles the protos with protox (pure Rust, no `protoc` needed) and writes the descriptor set
//! that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/membership/v1/resources.proto",
        "proto/membership/v1/events.proto",
        "proto/membership/v1/tenant_service.proto",
        "proto/membership/v1/membership_service.proto",
        "proto/membership/v1/invitation_service.proto",
        "proto/membership/v1/role_service.proto",
        "proto/membership/v1/group_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(protos)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Encoded by protox itself: a prost-types copy drops custom options, and reflection would
    // then serve the protos without their google.api.field_behavior annotations.
    std::fs::write(
        out_dir.join("membership_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptors = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // tonic-prost's codec, with a small encode buffer for watch streams (see the module).
        .codec_path("crate::grpc::codec::ProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
