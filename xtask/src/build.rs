//! Builds the eBPF object with Debian's toolchain and the userspace binary
//! with rustup's, embedding the former in the latter.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::setup::{DEBIAN_CARGO, DEBIAN_RUSTC};
use crate::util;

/// Where the eBPF object lands; `leaktrace/build.rs` looks for it here too.
pub(crate) fn ebpf_object(root: &Path) -> PathBuf {
    root.join("target/ebpf/bpfel-unknown-none/release/leaktrace-ebpf")
}

/// Builds everything and returns the path of the self-contained binary.
pub(crate) fn run(root: &Path) -> Result<PathBuf> {
    build_ebpf(root)?;
    let object = ebpf_object(root);
    util::run(
        Command::new("cargo")
            .current_dir(root)
            .args(["build", "--release", "--package", "leaktrace"])
            .env("LEAKTRACE_EBPF_OBJECT", &object),
    )?;
    let binary = root.join("target/release/leaktrace");
    anyhow::ensure!(binary.exists(), "cargo built no {}", binary.display());
    Ok(binary)
}

fn build_ebpf(root: &Path) -> Result<()> {
    util::run(&mut ebpf_cargo(root, "build")?)
}

/// Debian's cargo running `subcommand` (`build`, `clippy`) on the eBPF crate
/// the way it is built, so that the lint gate checks what the build compiles.
pub(crate) fn ebpf_cargo(root: &Path, subcommand: &str) -> Result<Command> {
    // Debian's directory comes first so that /usr/bin/cargo finds Debian's
    // cargo-clippy (which runs the clippy-driver beside it) before rustup's
    // proxies of the same names in ~/.cargo/bin; bpf-linker is only there.
    let debian_bin = Path::new(DEBIAN_CARGO).parent().context("DEBIAN_CARGO names no directory")?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![debian_bin.to_path_buf(), util::cargo_home().join("bin")];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs).context("PATH holds an unusable entry")?;

    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(root)
        .args([subcommand, "--package", "leaktrace-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        // Without RUSTC, /usr/bin/cargo would find rustup's proxy on PATH,
        // whose 1.95 toolchain has no core sources to build.
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root.join("target/ebpf"))
        // BTF lets the verifier print source lines when it rejects a program.
        // ISA v3 (Linux 5.12+) has the atomic or/and the pid bitmap needs.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Ctarget-cpu=v3")
        .env("PATH", path);
    // RUSTC_WORKSPACE_WRAPPER is cargo-clippy's to set, to its own driver.
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "RUSTDOC", "CARGO"] {
        cmd.env_remove(var);
    }
    Ok(cmd)
}
