//! Embeds the eBPF object that `cargo xtask build` produced.
//!
//! The object is built by Debian's rustc (see xtask), so cargo cannot build
//! it as a dependency. Without it (a plain `cargo build`/`cargo test`), an
//! empty object is embedded: the pure logic and its tests still build, and the
//! binary says how to get a working one when asked to trace.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LEAKTRACE_EBPF_OBJECT");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let object = std::env::var_os("LEAKTRACE_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/bpfel-unknown-none/release/leaktrace-ebpf"));
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("leaktrace-ebpf.o");
    let bytes = std::fs::read(&object).unwrap_or_default();
    std::fs::write(&out, bytes).expect("cannot write the embedded eBPF object into OUT_DIR");
}
