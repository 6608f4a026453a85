//! Developer tasks for leaktrace: installing the toolchain, building the
//! self-contained binary, the demo, the lint gates, the test suite and the
//! benchmarks.
//!
//! Everything a fresh Debian machine lacks is installed here, because CI and
//! every new machine start bare (see README.md).

mod bench;
mod build;
mod demo;
mod deploy;
mod fuzz;
mod lint;
mod setup;
mod test;
mod util;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "leaktrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: Debian packages, bpf-linker and cargo-machete.
    Setup,
    /// Set up, then build the eBPF object and target/release/leaktrace with it embedded.
    Build,
    /// Set up, build, then trace the bundled leaky example and print its report.
    Demo,
    /// Set up, then run the lint gates: rustfmt, clippy (host crates, then the eBPF crate),
    /// cargo-machete and rustdoc, every warning an error; fails naming the gates that failed.
    Lint,
    /// Set up, build, run the lint gates, then every test (integration tests need root).
    Test {
        /// Only run tests whose name contains this string.
        filter: Option<String>,
        /// Instead of the host suite, run the integration tests in a VM on this kernel: a
        /// name xtask fetches (debian-5.10, debian-6.1, debian-6.12) or an image
        /// (PATH[,modules=DIR]). Repeatable.
        #[arg(long = "kernel", value_name = "SPEC")]
        kernels: Vec<String>,
        /// Bound of each VM's run (boot to power-off), e.g. 30m or 900s.
        #[arg(long, value_name = "DURATION", default_value = "30m")]
        vm_timeout: String,
    },
    /// Set up, build, then benchmark leaktrace against bpftrace, strace and
    /// no tracing, and write BENCHMARKS.md (needs root; about 15 minutes).
    Bench {
        /// Fewer and shorter rounds and a 60 s soak, for development (about 2 minutes).
        #[arg(long)]
        quick: bool,
        /// Run only this benchmark (open-close, connect, mmap, bystanders, nginx, scale,
        /// daemon, soak) and write target/bench/BENCHMARKS-NAME.md instead of BENCHMARKS.md.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Also run this older leaktrace binary, in the same interleaved rounds, in the open-close
        /// and scale benchmarks, and say whether the new binary's medians are within its spread
        /// of rounds.
        #[arg(long, value_name = "PATH")]
        baseline: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = util::workspace_root()?;
    match cli.command {
        Command::Setup => setup::run(&setup::Needs::lint()),
        Command::Build => {
            setup::run(&setup::Needs::build())?;
            build::run(&root).map(|_| ())
        }
        Command::Lint => {
            setup::run(&setup::Needs::lint())?;
            lint::run(&root)
        }
        Command::Demo => {
            setup::run(&setup::Needs::demo())?;
            let binary = build::run(&root)?;
            demo::run(&root, &binary)
        }
        Command::Test { filter, kernels, vm_timeout } if !kernels.is_empty() => {
            let options = vm::Options { timeout: vm::parse_duration(&vm_timeout)?, cpus: 2, memory_mib: 4096 };
            setup::run(&setup::Needs::vm())?;
            // LEAKTRACE_BIN runs the suite on that binary instead of building
            // the workspace: an older build, to tell a regression from a
            // kernel's or the emulation's doing.
            let binary = match std::env::var_os("LEAKTRACE_BIN") {
                Some(path) => std::path::PathBuf::from(path),
                None => build::run(&root)?,
            };
            vm::run(&root, &binary, &kernels, filter.as_deref(), &options)
        }
        Command::Test { filter, .. } => {
            setup::run(&setup::Needs::test())?;
            let binary = build::run(&root)?;
            test::run(&root, &binary, filter.as_deref())
        }
        Command::Bench { quick, only, baseline } => {
            bench::require_root()?;
            setup::run(&setup::Needs::bench())?;
            // LEAKTRACE_BIN benchmarks that binary instead of building the
            // workspace: an older build to compare with, or one kept aside.
            let binary = match std::env::var_os("LEAKTRACE_BIN") {
                Some(path) => std::path::PathBuf::from(path),
                None => build::run(&root)?,
            };
            bench::run(&root, &binary, baseline.as_deref(), bench::Mode::new(quick), only.as_deref())
        }
    }
}
