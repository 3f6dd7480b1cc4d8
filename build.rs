//! Compiles the gRPC contract in `proto/` with the protoc shipped in the `protoc-bin-vendored`
//! crate, so building needs nothing installed by hand. Also writes the file descriptor set that
//! the reflection service serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        // The client is generic over its channel; tests bring tonic's transport themselves.
        .build_transport(false)
        .file_descriptor_set_path(out_dir.join("polyport_descriptor.bin"))
        .compile_with_config(
            config,
            &["proto/polyport/orders/v1/orders.proto"],
            &[
                "proto",
                well_known.to_str().ok_or("non-UTF-8 include path")?,
            ],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
