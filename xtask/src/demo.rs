//! `cargo xtask demo`: trace the bundled leaky example and print its report.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

pub(crate) fn run(root: &Path, leaktrace: &Path) -> Result<()> {
    if !util::is_root() {
        bail!("the demo loads eBPF programs: run `sudo cargo xtask demo` (needs CAP_BPF and CAP_PERFMON)");
    }
    let source = root.join("leaktrace/examples/leaky-service/main.go");
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir).context("cannot create target/demo")?;
    let program = out_dir.join("leaky-service");
    util::run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&program)
            .arg(&source)
            .env("GOCACHE", out_dir.join("gocache"))
            .env("GOPATH", out_dir.join("gopath"))
            .env("GOFLAGS", "-buildvcs=false")
            .env("GO111MODULE", "off"),
    )?;
    eprintln!("xtask: {} run -- {}", leaktrace.display(), program.display());
    let status =
        Command::new(leaktrace).args(["run", "--"]).arg(&program).status().context("cannot start leaktrace")?;
    if !status.success() {
        bail!("leaktrace exited with {status}");
    }
    Ok(())
}
