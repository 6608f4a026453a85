//! `cargo xtask test`: the lint gates, unit tests (no privileges), then the
//! integration suite against the real kernel, serialized because each test
//! owns kernel state.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util;

pub(crate) fn run(root: &Path, leaktrace: &Path, filter: Option<&str>) -> Result<()> {
    // A filtered run is someone iterating on some tests; the gates judge the
    // whole workspace, and the full run (CI's) has them.
    if filter.is_none() {
        crate::lint::run(root)?;
    }
    let mut unit = Command::new("cargo");
    unit.current_dir(root).args(["test", "--workspace", "--exclude", "leaktrace-ebpf", "--exclude", "leaktrace-tests"]);
    if let Some(f) = filter {
        unit.args(["--", f]);
    }
    util::run(&mut unit)?;
    crate::deploy::check(root)?;

    if !util::is_root() {
        bail!("the integration tests load eBPF programs: run `sudo cargo xtask test`");
    }
    let mut integration = Command::new("cargo");
    integration
        .current_dir(root)
        .args(["test", "--release", "--package", "leaktrace-tests", "--"])
        .arg("--test-threads=1")
        .env("LEAKTRACE_BIN", leaktrace);
    if let Some(f) = filter {
        integration.arg(f);
    }
    util::run(&mut integration)?;
    if filter.is_none() {
        crate::fuzz::run(root, std::time::Duration::from_secs(60))?;
    }
    Ok(())
}
