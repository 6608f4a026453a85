//! Checks the manifests in `deploy/kubernetes/`: every object against the
//! Kubernetes API's schemas, strictly (kubernetes-validate), and the
//! manifests against each other (names, labels, ports, the config file's
//! path and listen port). The checks are in `kubernetes.py`, run in a Python
//! virtual environment made once under `target/xtask-venv`; this module makes
//! the environment and runs them.
//!
//! Each check also runs on a copy broken on purpose and must reject it, so
//! that a check that stopped checking (a validator that accepts anything,
//! schemas that are not found) fails instead of passing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::util;

/// The oldest Kubernetes the manifests support (`appArmorProfile` in a
/// securityContext is 1.30) and the newest the pinned kubernetes-validate
/// knows: a field too new for the first or removed by the second fails.
const KUBERNETES_VERSIONS: &str = "1.30,1.37";
const REQUIREMENTS: &str = include_str!("kubernetes-requirements.txt");
/// Debian's, which `cargo xtask test` installs with its venv module
/// (`setup::Needs::test`). A `python3` found earlier on PATH (pyenv, another
/// venv) may be another version or lack the venv module.
const PYTHON: &str = "/usr/bin/python3";
const VENV: &str = "target/xtask-venv";
const MANIFESTS: &str = "deploy/kubernetes";
const SCRIPT: &str = "xtask/src/deploy/kubernetes.py";
/// Where the copies broken on purpose are written.
const SCRATCH: &str = "target/xtask-deploy";

/// A field of the DaemonSet misspelled: strict validation must reject it.
const SCHEMA_BREAK: Break = Break { from: "hostPID: true", to: "hostPid: true", reason: "'hostPid' was unexpected" };
/// The DaemonSet's service account renamed: the consistency check must notice.
const CONSISTENCY_BREAK: Break =
    Break { from: "serviceAccountName: leaktrace", to: "serviceAccountName: default", reason: "serviceAccountName" };

/// One edit of `daemonset.yaml`, and what the rejection must mention.
struct Break {
    from: &'static str,
    to: &'static str,
    reason: &'static str,
}

pub(super) fn check(root: &Path) -> Result<()> {
    let python = venv(root)?;
    let manifests = manifests(root)?;
    let script = |args: &[&str]| {
        let mut cmd = Command::new(&python);
        cmd.current_dir(root).arg(SCRIPT).args(args);
        cmd
    };

    util::run(script(&["schema", KUBERNETES_VERSIONS]).args(&manifests))
        .context("the Kubernetes manifests do not validate (FAIL lines above)")?;
    util::run(&mut script(&["consistency", MANIFESTS]))
        .context("the Kubernetes manifests do not agree with each other (FAIL lines above)")?;

    let scratch = root.join(SCRATCH);
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    let inconsistent = format!("{SCRATCH}/inconsistent");
    fs::create_dir_all(root.join(&inconsistent)).with_context(|| format!("cannot create {inconsistent}"))?;
    let daemonset = read(&root.join(MANIFESTS).join("daemonset.yaml"))?;

    let broken = format!("{SCRATCH}/daemonset-hostPid.yaml");
    write(&root.join(&broken), &mutate(&daemonset, &SCHEMA_BREAK)?)?;
    expect_rejected(script(&["schema", KUBERNETES_VERSIONS, &broken]), &broken, &SCHEMA_BREAK)?;

    for manifest in &manifests {
        let name = manifest.file_name().context("a manifest path without a file name")?;
        write(&root.join(&inconsistent).join(name), &read(&root.join(manifest))?)?;
    }
    write(&root.join(&inconsistent).join("daemonset.yaml"), &mutate(&daemonset, &CONSISTENCY_BREAK)?)?;
    expect_rejected(script(&["consistency", &inconsistent]), &inconsistent, &CONSISTENCY_BREAK)
}

/// The Python interpreter of the venv, made (or remade, when the pinned
/// requirements changed or an earlier install failed) first.
fn venv(root: &Path) -> Result<PathBuf> {
    let dir = root.join(VENV);
    let python = dir.join("bin/python3");
    // Written last: the requirements the venv holds, all of them installed.
    let stamp = dir.join("installed-requirements.txt");
    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == REQUIREMENTS) {
        return Ok(python);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove the stale {VENV}"))?;
    }
    eprintln!("xtask: making {VENV} with kubernetes-validate from PyPI (once)");
    util::run(Command::new(PYTHON).args(["-m", "venv"]).arg(&dir)).with_context(|| {
        format!("{PYTHON} cannot make a venv; the Debian packages python3 and python3-venv provide it")
    })?;
    let requirements = dir.join("requirements.txt");
    write(&requirements, REQUIREMENTS)?;
    util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"])
            // Wheels only: a package that would need compiling (rpds-py is
            // Rust) fails here instead of building for minutes.
            .arg("--only-binary=:all:")
            .arg("--requirement")
            .arg(&requirements),
    )
    .context("pip cannot install xtask/src/deploy/kubernetes-requirements.txt from PyPI")?;
    write(&stamp, REQUIREMENTS)?;
    Ok(python)
}

/// The manifests, as paths relative to the workspace root, sorted.
fn manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(MANIFESTS);
    let mut manifests = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name();
        if Path::new(&name).extension().is_some_and(|e| e == "yaml") {
            manifests.push(Path::new(MANIFESTS).join(name));
        }
    }
    ensure!(!manifests.is_empty(), "no *.yaml in {MANIFESTS}");
    manifests.sort();
    Ok(manifests)
}

/// `text` with its single occurrence of `edit.from` replaced. None or several
/// are an error: after the manifest changes, a broken copy must not quietly
/// become a copy of the valid file.
fn mutate(text: &str, edit: &Break) -> Result<String> {
    let count = text.matches(edit.from).count();
    ensure!(
        count == 1,
        "{MANIFESTS}/daemonset.yaml holds {:?} {count} times instead of once; \
         update the copies broken on purpose in xtask/src/deploy/kubernetes.rs",
        edit.from
    );
    Ok(text.replacen(edit.from, edit.to, 1))
}

/// Runs a check on a copy broken on purpose: it must fail, and say why.
fn expect_rejected(mut cmd: Command, copy: &str, edit: &Break) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reason = stdout.lines().filter_map(|l| l.strip_prefix("FAIL ")).find(|l| l.contains(edit.reason));
    match (out.status.success(), reason) {
        (false, Some(reason)) => {
            let reason = reason.strip_prefix(copy).and_then(|r| r.strip_prefix(": ")).unwrap_or(reason);
            println!("ok   {copy}: rejected, as it must be ({} -> {}): {reason}", edit.from, edit.to);
            Ok(())
        }
        (true, _) => bail!(
            "{copy} has {:?} changed to {:?} on purpose, yet the check accepted it: it no longer checks",
            edit.from,
            edit.to
        ),
        (false, None) => bail!(
            "the check rejected {copy} but not for {:?}:\n{stdout}{}",
            edit.reason,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDIT: Break = Break { from: "hostPID: true", to: "hostPid: true", reason: "" };

    #[test]
    fn mutate_replaces_the_one_occurrence() {
        let text = "spec:\n  hostPID: true\n  hostNetwork: false\n";
        assert_eq!(mutate(text, &EDIT).unwrap(), "spec:\n  hostPid: true\n  hostNetwork: false\n");
    }

    #[test]
    fn mutate_refuses_a_missing_or_repeated_text() {
        assert!(mutate("spec:\n  hostNetwork: false\n", &EDIT).is_err());
        assert!(mutate("hostPID: true\nhostPID: true\n", &EDIT).is_err());
    }

    /// The broken copies are made from the real DaemonSet: each edit must
    /// still apply to it, or `cargo xtask test` fails after the manifest
    /// changed.
    #[test]
    fn the_daemonset_holds_what_the_broken_copies_change() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(MANIFESTS).join("daemonset.yaml");
        let daemonset = read(&path).unwrap();
        for edit in [SCHEMA_BREAK, CONSISTENCY_BREAK] {
            let broken = mutate(&daemonset, &edit).unwrap();
            assert!(broken.contains(edit.to) && !broken.contains(edit.from), "{}", edit.from);
        }
    }
}
