//! Installs what building and testing leaktrace needs, idempotently.
//!
//! The eBPF crate is built with Debian's rustc-web, which ships the core
//! sources `-Z build-std=core` needs (rustup cannot fetch rust-src here), and
//! with a bpf-linker built against the same LLVM major as that rustc. The LLVM
//! major is read from the installed rustc at set-up time: a Debian security
//! update can move rustc-web and its LLVM together.
//!
//! The lint gates (`lint.rs`) need Debian's clippy for the eBPF crate, of the
//! same release as rustc-web, and cargo-machete, installed from crates.io at
//! a pinned version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian's Rust that can build `-Z build-std=core` for bpfel-unknown-none.
pub(crate) const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub(crate) const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const TOOLCHAIN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy"];
/// The newest release when the gate was added; it builds with rustup's 1.95.
const CARGO_MACHETE_VERSION: &str = "0.9.2";

/// What a task needs beyond the eBPF toolchain.
pub(crate) struct Needs {
    packages: Vec<&'static str>,
    /// cargo-machete, for the lint gates.
    machete: bool,
}

impl Needs {
    pub(crate) fn build() -> Self {
        Self { packages: vec![], machete: false }
    }

    /// The lint gates: the eBPF crate's clippy is a toolchain package, the
    /// unused-dependency check is cargo-machete.
    pub(crate) fn lint() -> Self {
        Self { packages: vec![], machete: true }
    }

    /// The demo's leaky example is a Go program: Go keeps frame pointers, so
    /// its stacks are complete with the frame-pointer walk.
    pub(crate) fn demo() -> Self {
        Self { packages: vec!["golang-go", "gcc", "libc6-dev"], machete: false }
    }

    /// Fixtures are C (gcc), C++ (g++), Go (golang-go) and Rust (the
    /// workspace's cargo); the tests give fixtures a terminal with `script`
    /// (bsdutils) and check with bpftool that no program outlives its
    /// daemon; the Kubernetes manifests are validated in a Python venv
    /// (python3-venv); promtool (prometheus) checks the alert rules and runs
    /// their unit tests. The suite starts with the lint gates.
    pub(crate) fn test() -> Self {
        Self {
            packages: vec![
                "golang-go",
                "gcc",
                "g++",
                "bpftool",
                "libc6-dev",
                "util-linux",
                "bsdutils",
                "python3",
                "python3-venv",
                "prometheus",
            ],
            machete: true,
        }
    }

    /// The suite in test VMs (`test --kernel`) runs on the host's root, so
    /// it needs what the suite needs, and to boot: busybox-static for the
    /// initramfs, kmod's depmod for the kernel packages' module index,
    /// xz-utils for their compressed modules. qemu is installed apart (see
    /// `vm/tools.rs`).
    pub(crate) fn vm() -> Self {
        let mut needs = Self::test();
        needs.packages.extend(["busybox-static", "kmod", "xz-utils"]);
        needs
    }

    /// The benchmark programs are C; bpftrace and strace are the tracers
    /// leaktrace is compared with; nginx and wrk the real server and its load;
    /// bpftool reads the kernel map's occupancy; taskset (util-linux) pins the
    /// measured processes.
    pub(crate) fn bench() -> Self {
        Self {
            packages: vec!["gcc", "libc6-dev", "bpftrace", "strace", "nginx", "wrk", "bpftool", "util-linux"],
            machete: false,
        }
    }
}

pub(crate) fn run(needs: &Needs) -> Result<()> {
    let mut packages: Vec<String> = TOOLCHAIN_PACKAGES.iter().map(|p| p.to_string()).collect();
    packages.extend(needs.packages.iter().map(|p| p.to_string()));
    install_packages(&packages)?;

    let llvm = debian_llvm_major()?;
    install_packages(&[format!("llvm-{llvm}-dev")])?;
    install_bpf_linker(llvm)?;
    if needs.machete {
        install_cargo_machete()?;
    }
    Ok(())
}

fn missing_packages(packages: &[String]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            let status = util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p.as_str()]));
            !matches!(status, Some(s) if s.trim() == "install ok installed")
        })
        .cloned()
        .collect()
}

/// Packages whose Debian install enables their system service and starts it
/// (service and package have the same name). The tasks use only the
/// packages' programs or run instances of their own, on their own ports, so a
/// second server on the host would only add noise and hold the port: the
/// service is stopped and disabled right after the install that started it.
const STARTED_ON_INSTALL: &[&str] = &[
    // Port 80, logs in /var/log/nginx; the benchmark runs its own nginx.
    "nginx",
    // Port 9090, data in /var/lib/prometheus; the tests use promtool.
    "prometheus",
];

/// Packages installed without what they recommend. prometheus recommends
/// prometheus-node-exporter, which recommends its collectors, which recommend
/// smartmontools, ipmitool and nvme-cli: four more services started on
/// install and timers that poll the disks, for nothing the tasks use.
const WITHOUT_RECOMMENDS: &[&str] = &["prometheus"];

/// Installs what is missing.
fn install_packages(packages: &[String]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!("missing Debian packages: {}; run `sudo cargo xtask setup` once", missing.join(" "));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    util::run(
        Command::new("apt-get")
            .args(["-o", "Acquire::Retries=3", "update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let (lean, full): (Vec<&String>, Vec<&String>) =
        missing.iter().partition(|p| WITHOUT_RECOMMENDS.contains(&p.as_str()));
    for (group, flags) in [(full, &[][..]), (lean, &["--no-install-recommends"][..])] {
        if group.is_empty() {
            continue;
        }
        util::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(flags)
                .args(group)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    for service in missing.iter().filter(|p| STARTED_ON_INSTALL.contains(&p.as_str())) {
        disable_service(service);
    }
    let still = missing_packages(&missing);
    if !still.is_empty() {
        bail!("apt-get did not install {}", still.join(" "));
    }
    Ok(())
}

/// Stops and disables a service its package's install started (see
/// [`STARTED_ON_INSTALL`]). Failing to is not fatal: the tasks do not use it.
fn disable_service(name: &str) {
    let unit = format!("{name}.service");
    let steps: [Vec<&str>; 2] = if Path::new("/run/systemd/system").exists() {
        [vec!["systemctl", "stop", &unit], vec!["systemctl", "disable", "--quiet", &unit]]
    } else {
        // Without systemd (containers) the init script is the service, and
        // policy-rc.d may have kept it from starting at all.
        [vec!["service", name, "stop"], vec!["update-rc.d", name, "disable"]]
    };
    for step in steps {
        if util::run(Command::new(step[0]).args(&step[1..])).is_err() {
            eprintln!("xtask: warning: `{}` failed; the system {name} may still run", step.join(" "));
        }
    }
}

/// The LLVM major version Debian's rustc was built with (`LLVM version: 22.1.8`).
fn debian_llvm_major() -> Result<u32> {
    let out = util::output(Command::new(DEBIAN_RUSTC).arg("-vV"))
        .with_context(|| format!("{DEBIAN_RUSTC} -vV failed; is rustc-web installed?"))?;
    let version =
        out.lines().find_map(|l| l.strip_prefix("LLVM version: ")).context("rustc -vV printed no LLVM version")?;
    version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot parse LLVM version {version:?}"))
}

fn bpf_linker_path() -> PathBuf {
    util::cargo_home().join("bin").join("bpf-linker")
}

/// A stamp beside the binary records which LLVM it was built against, since
/// `bpf-linker --version` does not say.
fn bpf_linker_stamp() -> PathBuf {
    util::cargo_home().join("bin").join(".bpf-linker-leaktrace")
}

fn install_bpf_linker(llvm: u32) -> Result<()> {
    let wanted = format!("{BPF_LINKER_VERSION} llvm-{llvm}");
    let stamp = std::fs::read_to_string(bpf_linker_stamp()).unwrap_or_default();
    if bpf_linker_path().exists() && stamp.trim() == wanted {
        return Ok(());
    }
    // llvm-sys names its prefix variable after LLVM's major and minor: 22.1 -> 221.
    let llvm_config = format!("/usr/lib/llvm-{llvm}/bin/llvm-config");
    let full = util::output(Command::new(&llvm_config).arg("--version"))
        .with_context(|| format!("{llvm_config} --version failed"))?;
    let mut parts = full.trim().split('.');
    let sys_version = format!("{}{}", parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let prefix = format!("/usr/lib/llvm-{llvm}");
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)");
    util::run(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--force", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", &format!("llvm-{llvm}")])
            // llvm-sys reads the first variable, bpf-linker's own build script the
            // second; without it the script takes the first llvm-config on PATH,
            // which on Debian points at /usr and the wrong library directory.
            .env(format!("LLVM_SYS_{sys_version}_PREFIX"), &prefix)
            .env("LLVM_PREFIX", &prefix),
    )?;
    std::fs::write(bpf_linker_stamp(), format!("{wanted}\n")).context("cannot write the bpf-linker stamp")?;
    Ok(())
}

/// `cargo machete`. It takes itself for a cargo subcommand when CARGO is set
/// and CARGO_PKG_NAME is not; `cargo run` set both for xtask, and with both
/// it reads `machete` and its flags as paths.
pub(crate) fn cargo_machete() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("machete").env_remove("CARGO_PKG_NAME");
    cmd
}

/// Installs the pinned cargo-machete unless it is what `cargo machete` runs:
/// another release may judge the manifests differently.
fn install_cargo_machete() -> Result<()> {
    let installed = util::output(cargo_machete().arg("--version"));
    if installed.as_deref().map(str::trim) == Some(CARGO_MACHETE_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-machete {CARGO_MACHETE_VERSION} (about two minutes)");
    util::run(Command::new("cargo").args(["install", "cargo-machete", "--locked", "--version", CARGO_MACHETE_VERSION]))
}
