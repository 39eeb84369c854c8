//! Compiles `sparkplug_b.proto` with the pure-Rust protobuf compiler, so a fresh
//! machine builds with cargo alone (no `protoc` binary).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=sparkplug_b.proto");
    let descriptors = protox::compile(["sparkplug_b.proto"], ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
