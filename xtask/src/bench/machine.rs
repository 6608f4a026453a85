//! What the numbers depend on: the machine, the kernel, the commit, the
//! date and the versions of the tools compared, read once per run.

use std::path::Path;
use std::process::Command;

use super::markdown::Context;
use crate::util;

pub(super) fn describe(root: &Path, leaktrace: &Path, baseline: Option<&Path>, mode: &'static str) -> Context {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let model = cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = mem_total_kib(&meminfo)
        .map_or_else(|| "unknown memory".into(), |kib| format!("{:.1} GiB", kib as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |r| r.trim().to_string());
    Context {
        mode,
        date: first_line(util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])))
            .unwrap_or_else(|| "unknown".into()),
        machine: format!("{model}, {cores} cores, {memory}"),
        kernel,
        commit: commit(root),
        leaktrace: binary(root, leaktrace),
        baseline: baseline.map(|b| described(root, b, "from --baseline")),
        tools: tools(),
    }
}

/// Which leaktrace was measured: its path, how it was chosen and when it was
/// built.
fn binary(root: &Path, leaktrace: &Path) -> String {
    let how = if std::env::var_os("LEAKTRACE_BIN").is_some() { "from LEAKTRACE_BIN" } else { "built by this run" };
    described(root, leaktrace, how)
}

/// A binary's path, how it was chosen and when it was built.
fn described(root: &Path, binary: &Path, how: &str) -> String {
    let path = binary.strip_prefix(root).unwrap_or(binary).display().to_string();
    let built =
        first_line(util::output(Command::new("date").arg("-u").arg("-r").arg(binary).arg("+%Y-%m-%d %H:%M UTC")));
    match built {
        Some(built) => format!("{path} ({how}; modified {built})"),
        None => format!("{path} ({how})"),
    }
}

/// `git rev-parse --short HEAD`, with "-dirty" when the tree has changes.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| util::output(Command::new("git").arg("-C").arg(root).args(args));
    let Some(head) = first_line(git(&["rev-parse", "--short", "HEAD"])) else {
        return "unknown (not a git checkout)".into();
    };
    match git(&["status", "--porcelain"]) {
        Some(status) if status.trim().is_empty() => head,
        Some(_) => format!("{head}-dirty"),
        None => format!("{head} (git status failed)"),
    }
}

fn tools() -> String {
    let version = |cmd: &mut Command, prefix: &str| {
        let out = cmd.output().ok()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let line = text.lines().next()?.trim().to_string();
        Some(line.strip_prefix(prefix).unwrap_or(&line).trim().to_string())
    };
    let parts = [
        ("bpftrace", version(Command::new("bpftrace").arg("--version"), "bpftrace")),
        ("strace", version(Command::new("strace").arg("-V"), "strace -- version")),
        ("nginx", version(Command::new("nginx").arg("-v"), "nginx version: nginx/")),
        ("wrk", version(Command::new("dpkg-query").args(["-W", "-f=${Version}", "wrk"]), "")),
    ];
    parts.iter().map(|(name, v)| format!("{name} {}", v.as_deref().unwrap_or("?"))).collect::<Vec<_>>().join(", ")
}

fn first_line(text: Option<String>) -> Option<String> {
    text.and_then(|t| t.lines().next().map(|l| l.trim().to_string())).filter(|l| !l.is_empty())
}

pub(super) fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.trim_start().strip_prefix(':')))
        .map(|m| m.trim().to_string())
}

pub(super) fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_model_and_memory() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        assert_eq!(mem_total_kib("MemTotal:       24683520 kB\nMemFree: 1 kB\n"), Some(24683520));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    }
}
