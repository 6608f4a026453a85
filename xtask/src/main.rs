//! Developer tasks for leaktrace: installing the toolchain, building the
//! self-contained binary, the demo and the test suite.
//!
//! Everything a fresh Debian machine lacks is installed here, because CI and
//! every new machine start bare (see README.md).

mod build;
mod demo;
mod setup;
mod test;
mod util;

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
    /// Install what is missing: Debian packages and bpf-linker.
    Setup,
    /// Set up, then build the eBPF object and target/release/leaktrace with it embedded.
    Build,
    /// Set up, build, then trace the bundled leaky example and print its report.
    Demo,
    /// Set up, build, then run every test (integration tests need root).
    Test {
        /// Only run tests whose name contains this string.
        filter: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = util::workspace_root()?;
    match cli.command {
        Command::Setup => setup::run(&setup::Needs::build()),
        Command::Build => {
            setup::run(&setup::Needs::build())?;
            build::run(&root).map(|_| ())
        }
        Command::Demo => {
            setup::run(&setup::Needs::demo())?;
            let binary = build::run(&root)?;
            demo::run(&root, &binary)
        }
        Command::Test { filter } => {
            setup::run(&setup::Needs::test())?;
            let binary = build::run(&root)?;
            test::run(&root, &binary, filter.as_deref())
        }
    }
}
