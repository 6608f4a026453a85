//! The fuzz targets under `fuzz/`, run for a bounded time by `cargo xtask
//! test`: readers of files that may be damaged or hostile (recordings)
//! must answer with an error, never a panic.
//!
//! cargo-fuzz is installed from crates.io when missing; libFuzzer's flags
//! need a nightly compiler, which RUSTC_BOOTSTRAP=1 stands in for (rustup
//! cannot fetch nightly here).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::util;

const TARGETS: &[&str] = &["recording"];

pub(crate) fn run(root: &Path, each: Duration) -> Result<()> {
    if util::output(Command::new("cargo").args(["fuzz", "--version"])).is_none() {
        eprintln!("xtask: installing cargo-fuzz");
        util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz = root.join("fuzz");
    for target in TARGETS {
        // The seeds are copied: libFuzzer adds what it finds to its corpus.
        let corpus = root.join("target/fuzz-corpus").join(target);
        let _ = std::fs::remove_dir_all(&corpus);
        std::fs::create_dir_all(&corpus)?;
        for seed in std::fs::read_dir(fuzz.join("seeds").join(target))? {
            let seed = seed?.path();
            if let Some(name) = seed.file_name() {
                std::fs::copy(&seed, corpus.join(name))?;
            }
        }
        eprintln!("xtask: fuzzing {target} for {} s", each.as_secs());
        let status = Command::new("cargo")
            .current_dir(&fuzz)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", each.as_secs()))
            .args(["-max_len=262144", "-print_final_stats=1"])
            .status()?;
        if !status.success() {
            // A crash leaves its input in the artifacts; anything else (a
            // build that failed, a full disk) failed before fuzzing.
            let artifacts = fuzz.join("artifacts").join(target);
            if std::fs::read_dir(&artifacts).is_ok_and(|mut d| d.next().is_some()) {
                bail!("fuzz target {target} found a failure: see {}", artifacts.display());
            }
            bail!("`cargo fuzz run {target}` failed ({status}) without finding a failure: see its output above");
        }
    }
    Ok(())
}
