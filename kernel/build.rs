//! Passes boot/linker.ld to every kernel image (binaries and in-QEMU tests).

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("../boot/linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    // Applies to the bin and to every [[test]] target of this package.
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rustc-link-arg=--no-pie");
    // The release image keeps its symbol table but not the DWARF that `debug = 1` in the
    // workspace profile adds (it would grow the image from ~0.7 MiB to ~5 MiB).
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg=--strip-debug");
    }
}
