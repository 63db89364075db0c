//! Compiles CRI v1's api.proto (proto/api.proto, k8s.io/cri-api v0.36.3) into
//! the gRPC server podrun serves and the client its tests drive it with.
//! Needs `protoc` (Debian's protobuf-compiler).
//!
//! Debian 12's protoc (3.21) does not know the field option `debug_redact`
//! (protobuf 22), which AuthConfig's secrets carry; it only marks fields for
//! debug printers, so the copy compiled here is the file without it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let text = std::fs::read_to_string("proto/api.proto")?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("proto");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("api.proto"),
        text.replace(" [debug_redact = true]", ""),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_protos(&[out.join("api.proto")], &[out])?;
    Ok(())
}
