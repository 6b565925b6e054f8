//! Compiles proto/smsgate.proto into prost types with protox (pure Rust): no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/smsgate.proto");
    let files = protox::compile(["proto/smsgate.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(files)?;
    Ok(())
}
