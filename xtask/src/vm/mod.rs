//! `cargo xtask test --kernel SPEC`: the integration suite in a VM on
//! another kernel.
//!
//! Each kernel boots under qemu (KVM where the host has hardware
//! virtualization, TCG elsewhere: `qemu::Accel`) with an initramfs of our own
//! (`initramfs.rs`) that reaches the host's root filesystem over 9p,
//! read-only under a tmpfs overlay; the guest then runs the same test
//! binaries the host suite runs, with the same leaktrace binary, as root
//! (`guest.rs`), and writes their output and exit status to a results
//! directory shared read-write. Nothing is installed on the host but the
//! tools (`tools.rs`); kernels are unpacked under `target/vm/` (`fetch.rs`).
//!
//! Tests a kernel cannot pass are skipped with the reason printed (see
//! [`skip_reason`]); anything else that fails, fails the task.

mod fetch;
mod guest;
mod initramfs;
mod modules;
mod qemu;
mod results;
mod spec;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util;
use guest::Binary;
use results::Summary;
use spec::KernelSpec;

pub(crate) struct Options {
    /// Bound of one kernel's whole run, boot to power-off.
    pub timeout: Duration,
    pub cpus: u32,
    pub memory_mib: u32,
}

/// The oldest kernel leaktrace loads on: `bpf_loop` (5.17) walks the
/// stacks, and the pid bitmap needs the atomic `or` of eBPF ISA v3 (5.12).
pub(crate) const MIN_KERNEL: (u32, u32) = (5, 17);

/// Integration tests that never load eBPF programs: errors found before
/// loading, and reports read from files. They run on kernels below
/// [`MIN_KERNEL`] (checked on 5.10: the others there fail with leaktrace's
/// "needs Linux 5.17 or newer" instead of what they expect).
const WITHOUT_EBPF: &[&str] = &[
    "a_command_that_does_not_exist",
    "a_pid_that_does_not_exist",
    "an_output_path_that_cannot_be_written",
    "bad_durations_and_kinds",
    "daemon_errors_are_clear_and_exit_non_zero",
    "diff_compares_reports_from_the_command_line",
    "top_needs_a_terminal",
    "without_privileges_it_names_the_missing_capabilities",
];

/// Tests that need leaktrace to react within milliseconds, as it does on
/// hardware but not under qemu's emulation (TCG), with why.
const TOO_FAST_FOR_EMULATION: &[(&str, &str)] = &[(
    "a_process_that_exits_between_samples_is_reported_once_then_forgotten",
    "under TCG the daemon loads a new process's unwinding tables after the fixture's first leaks (33 ms after \
     its exec), whose stacks then end early: README, Limits, daemon",
)];

/// Tests of language runtimes and real servers: what they check does not
/// depend on the kernel, and they run on the host only.
const HOST_ONLY: &[&str] = &["files_an_interpreter_closes_at_exit_stay_in_the_report"];

/// Why `test` cannot pass on a kernel of this `major.minor` run this way,
/// if it cannot.
pub(crate) fn skip_reason(version: (u32, u32), accel: qemu::Accel, test: &str) -> Option<String> {
    if HOST_ONLY.contains(&test) {
        return Some("language runtimes and real servers are tested on the host only".to_string());
    }
    if version < MIN_KERNEL && !WITHOUT_EBPF.contains(&test) {
        return Some(format!(
            "leaktrace needs Linux {}.{} or newer (bpf_loop, eBPF atomics)",
            MIN_KERNEL.0, MIN_KERNEL.1
        ));
    }
    if accel == qemu::Accel::Tcg {
        return TOO_FAST_FOR_EMULATION.iter().find(|(name, _)| *name == test).map(|(_, why)| why.to_string());
    }
    None
}

/// `25 min`, or `40 s` under a minute.
fn minutes(d: Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s} s"),
        s => format!("{} min", s / 60),
    }
}

/// Parses `--vm-timeout`: `45m`, `900s`, or minutes.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = match text.strip_suffix('s') {
        Some(n) => (n, 1),
        None => (text.strip_suffix('m').unwrap_or(text), 60),
    };
    let n: u64 = number.parse().with_context(|| format!("{text:?} is not a duration such as 45m or 900s"))?;
    Ok(Duration::from_secs(n * unit))
}

pub(crate) fn run(
    root: &Path,
    leaktrace: &Path,
    specs: &[String],
    filter: Option<&str>,
    options: &Options,
) -> Result<()> {
    if !util::is_root() {
        bail!("the suite runs as root in the VM and reads the whole root filesystem: run `sudo cargo xtask test --kernel ...`");
    }
    let specs: Vec<KernelSpec> = specs.iter().map(|s| KernelSpec::parse(s)).collect::<Result<_>>()?;
    tools::install_qemu(root)?;
    let (accel, why) = qemu::Accel::detect();
    eprintln!("xtask: the VMs run with {why}");
    let binaries = test_binaries(root)?;

    let mut failed = Vec::new();
    let mut lines = Vec::new();
    for spec in &specs {
        // A kernel that cannot be fetched or booted fails, the others still run.
        let outcome = fetch::resolve(root, spec).and_then(|kernel| {
            run_kernel(root, leaktrace, &kernel, &binaries, filter, options, accel).map(|d| (kernel, d))
        });
        let (kernel, (summary, elapsed)) = match outcome {
            Ok(done) => done,
            Err(e) => {
                eprintln!("xtask: {}: {e:#}", spec.label());
                failed.push(spec.label());
                // The console's tail, if any, is above.
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                lines.push(format!("{}: did not finish: {first}", spec.label()));
                continue;
            }
        };
        if !summary.ok() {
            failed.push(kernel.label.clone());
        }
        lines.push(format!(
            "{} ({}), {:.1} min: {summary}",
            kernel.label,
            kernel.release,
            elapsed.as_secs_f64() / 60.0
        ));
    }
    eprintln!("\nxtask: the integration suite in VMs:");
    for line in &lines {
        eprintln!("  {}", line.replace('\n', "\n  "));
    }
    if !failed.is_empty() {
        bail!("tests failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The integration test binaries, built as the host suite builds them,
/// each with the names of its tests.
fn test_binaries(root: &Path) -> Result<Vec<(String, PathBuf, Vec<String>)>> {
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "test",
            "--release",
            "--package",
            "leaktrace-tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the integration tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let is_test = message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        let (Some(name), Some(path)) = (message["target"]["name"].as_str(), message["executable"].as_str()) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || !is_test {
            continue;
        }
        let list = util::output(Command::new(path).args(["--list", "--format", "terse"]))
            .with_context(|| format!("{path} --list failed"))?;
        binaries.push((name.to_string(), PathBuf::from(path), results::parse_list(&list)));
    }
    binaries.sort();
    if binaries.is_empty() {
        bail!("cargo built no integration test binaries");
    }
    Ok(binaries)
}

fn run_kernel(
    root: &Path,
    leaktrace: &Path,
    kernel: &fetch::Kernel,
    binaries: &[(String, PathBuf, Vec<String>)],
    filter: Option<&str>,
    options: &Options,
    accel: qemu::Accel,
) -> Result<(Summary, Duration)> {
    let version = spec::major_minor(&kernel.release)
        .with_context(|| format!("cannot read a version in the release {:?}", kernel.release))?;
    let dir = root.join("target/vm/run").join(&kernel.label);
    let _ = std::fs::remove_dir_all(&dir);
    let results = dir.join("results");
    std::fs::create_dir_all(&results)?;

    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    let mut plan = Vec::new();
    for (name, path, tests) in binaries {
        let mut run = Vec::new();
        for test in tests.iter().filter(|t| filter.is_none_or(|f| t.contains(f))) {
            match skip_reason(version, accel, test) {
                Some(reason) => skipped.push((test.clone(), reason)),
                None => run.push(test.clone()),
            }
        }
        selected.extend(run.iter().cloned());
        plan.push(Binary { name: name.clone(), path: path.clone(), run });
    }
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!("xtask: {}: skipping {} tests: {}", kernel.label, names.len(), names.join(", "));
    }

    let script = dir.join("guest.sh");
    let binary_timeout = options.timeout.saturating_sub(Duration::from_secs(120)).max(Duration::from_secs(60));
    std::fs::write(
        &script,
        guest::script(&guest::GuestPlan {
            workspace: root,
            leaktrace,
            results: &results,
            binaries: &plan,
            binary_timeout,
        }),
    )?;
    let order = match &kernel.modules {
        Some(dir) => modules::ModuleIndex::read(dir)?.load_order(modules::NEEDED)?,
        None => Vec::new(),
    };
    let initramfs = dir.join("initramfs.cpio");
    initramfs::build(&initramfs, kernel.modules.as_deref(), &order, &results, &script)?;

    eprintln!(
        "xtask: booting {} ({}{}) for {} tests, at most {}",
        kernel.label,
        kernel.release,
        kernel.package.as_deref().map(|p| format!(", {p}")).unwrap_or_default(),
        selected.len(),
        minutes(options.timeout)
    );
    let boot = qemu::boot(
        &qemu::QemuPlan {
            accel,
            image: &kernel.image,
            initramfs: &initramfs,
            results: &results,
            cpus: options.cpus,
            memory_mib: options.memory_mib,
        },
        &kernel.label,
        &dir.join("console.log"),
        options.timeout,
    )?;
    let tail = || boot.tail.join("\n");
    if boot.timed_out {
        bail!("the VM did not finish within {}; the console's last lines:\n{}", minutes(options.timeout), tail());
    }
    let Ok(status) = std::fs::read_to_string(results.join(guest::STATUS)) else {
        bail!("the VM stopped before the guest wrote its status; the console's last lines:\n{}", tail());
    };
    let log = std::fs::read_to_string(results.join(guest::TESTS_LOG)).unwrap_or_default();
    let probe = std::fs::read_to_string(results.join(guest::PROBE)).unwrap_or_default();
    let probe_status = std::fs::read_to_string(results.join(guest::PROBE_STATUS)).unwrap_or_default();
    let summary = Summary::new(&selected, skipped, &log);
    check_probe(version, probe_status.trim(), probe.trim())?;
    std::fs::write(
        dir.join("summary.txt"),
        format!(
            "{} ({}): {summary:#}\nleaktrace run -- /bin/true: exit {}, {}\n",
            kernel.label,
            kernel.release,
            probe_status.trim(),
            probe.trim()
        ),
    )?;
    if status.trim() != "0" && summary.ok() {
        bail!("the guest's test binaries exited with status {} though every test passed", status.trim());
    }
    Ok((summary, boot.elapsed))
}

/// The probe (`leaktrace run -- /bin/true` in the guest) must load where
/// the skips assume it does, and elsewhere refuse in one line.
fn check_probe(version: (u32, u32), status: &str, stderr: &str) -> Result<()> {
    let supported = version >= MIN_KERNEL;
    match (supported, status == "0") {
        (true, true) => Ok(()),
        (true, false) => bail!("leaktrace cannot trace on this kernel (exit {status}): {stderr}"),
        (false, true) => bail!(
            "leaktrace loaded on a kernel older than {}.{}: update MIN_KERNEL and the skips in xtask/src/vm/mod.rs",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        ),
        (false, false) if stderr.lines().count() == 1 && status == "1" => {
            eprintln!("xtask: as expected, leaktrace refuses this kernel: {stderr}");
            Ok(())
        }
        (false, false) => {
            bail!("leaktrace should refuse this kernel with one line and exit 1; it exited {status}: {stderr}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernels_run_only_what_loads_nothing() {
        let kvm = qemu::Accel::Kvm;
        assert!(skip_reason((5, 10), kvm, "a_loop_leaking_on_its_error_path").unwrap().contains("5.17"));
        assert_eq!(skip_reason((5, 10), kvm, "bad_durations_and_kinds"), None);
        assert_eq!(skip_reason((6, 1), kvm, "a_loop_leaking_on_its_error_path"), None);
        assert_eq!(skip_reason((5, 17), kvm, "a_loop_leaking_on_its_error_path"), None);
    }

    #[test]
    fn runtimes_run_on_the_host_only() {
        let test = "files_an_interpreter_closes_at_exit_stay_in_the_report";
        assert!(skip_reason((6, 12), qemu::Accel::Kvm, test).unwrap().contains("host only"));
    }

    #[test]
    fn emulation_skips_only_what_needs_milliseconds() {
        let daemon = "a_process_that_exits_between_samples_is_reported_once_then_forgotten";
        assert!(skip_reason((6, 1), qemu::Accel::Tcg, daemon).unwrap().contains("TCG"));
        assert_eq!(skip_reason((6, 1), qemu::Accel::Kvm, daemon), None);
        assert_eq!(skip_reason((6, 1), qemu::Accel::Tcg, "close_range_releases_its_range"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45m").unwrap(), Duration::from_secs(2700));
        assert_eq!(parse_duration("900s").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_probe_must_agree_with_the_skips() {
        assert!(check_probe((6, 1), "0", "").is_ok());
        assert!(check_probe((6, 1), "1", "leaktrace: cannot load").is_err());
        assert!(check_probe((5, 10), "1", "leaktrace: this kernel has no bpf_loop helper").is_ok());
        assert!(check_probe((5, 10), "0", "").is_err());
        assert!(check_probe((5, 10), "101", "thread 'main' panicked\nnote: ...").is_err());
    }
}
