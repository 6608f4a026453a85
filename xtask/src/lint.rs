//! `cargo xtask lint`: the gates every change passes before its tests run
//! (`cargo xtask test` starts with them, so CI runs them): formatting, clippy
//! on the host crates and on the eBPF crate, unused dependencies, rustdoc.
//! Every warning fails its gate.
//!
//! This module owns the list of gates and their verdict. Every gate runs even
//! when an earlier one failed, so one run lists everything there is to fix;
//! the tools print their findings themselves. Installing the tools is
//! `setup`'s; how the eBPF crate is compiled is `build`'s.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::{build, setup};

struct Gate {
    name: &'static str,
    command: Command,
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(args);
    cmd
}

fn gates(root: &Path) -> Result<Vec<Gate>> {
    let mut ebpf_clippy = build::ebpf_cargo(root, "clippy")?;
    ebpf_clippy.args(["--", "-D", "warnings"]);
    // Private items too: the library exports only `main` and the fuzzing
    // entry points, and a broken link in an engine module's docs misleads
    // its reader as much as one in an exported item's.
    let mut doc =
        cargo(root, &["doc", "--no-deps", "--workspace", "--exclude", "leaktrace-ebpf", "--document-private-items"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    let mut machete = setup::cargo_machete();
    machete.current_dir(root).arg("--skip-target-dir");
    Ok(vec![
        Gate { name: "fmt", command: cargo(root, &["fmt", "--all", "--check"]) },
        // The eBPF crate builds only for bpfel-unknown-none, with Debian's
        // toolchain: the next gate.
        Gate {
            name: "clippy",
            command: cargo(
                root,
                &["clippy", "--workspace", "--exclude", "leaktrace-ebpf", "--all-targets", "--", "-D", "warnings"],
            ),
        },
        Gate { name: "clippy (eBPF)", command: ebpf_clippy },
        // cargo-machete reads the sources, it does not compile them: it finds
        // what the lint `unused_crate_dependencies` would, without that
        // lint's false findings in test targets, which do not use every
        // dependency of their crate. Manifests under target/ are not the
        // workspace's; .gitignore leaves it out too, but only in a checkout.
        Gate { name: "machete", command: machete },
        Gate { name: "doc", command: doc },
    ])
}

/// One gate's outcome.
struct Verdict {
    name: &'static str,
    passed: bool,
    seconds: f64,
}

/// Runs every gate and fails naming those that failed.
pub(crate) fn run(root: &Path) -> Result<()> {
    let gates = gates(root)?;
    let count = gates.len();
    let mut verdicts = Vec::new();
    for (i, mut gate) in gates.into_iter().enumerate() {
        eprintln!("lint: [{}/{count}] {}: {:?}", i + 1, gate.name, gate.command);
        let start = Instant::now();
        let passed = match gate.command.status() {
            Ok(status) => status.success(),
            Err(err) => {
                eprintln!("lint: cannot start {:?}: {err}", gate.command);
                false
            }
        };
        verdicts.push(Verdict { name: gate.name, passed, seconds: start.elapsed().as_secs_f64() });
    }
    eprint!("{}", summary(&verdicts));
    let failed: Vec<&str> = verdicts.iter().filter(|v| !v.passed).map(|v| v.name).collect();
    if !failed.is_empty() {
        bail!("{} of {count} lint gates failed: {}; their output is above", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// One line per gate: its name, passed or FAILED, and its time.
fn summary(verdicts: &[Verdict]) -> String {
    let width = verdicts.iter().map(|v| v.name.len()).max().unwrap_or(0);
    verdicts
        .iter()
        .map(|v| {
            let outcome = if v.passed { "passed" } else { "FAILED" };
            format!("lint: {:<width$}  {outcome}  {:>6.1} s\n", v.name, v.seconds)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_one_aligned_line_per_gate() {
        let verdicts = [
            Verdict { name: "fmt", passed: true, seconds: 0.41 },
            Verdict { name: "clippy (eBPF)", passed: false, seconds: 63.27 },
        ];
        assert_eq!(
            summary(&verdicts),
            "lint: fmt            passed     0.4 s\nlint: clippy (eBPF)  FAILED    63.3 s\n"
        );
    }
}
