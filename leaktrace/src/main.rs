//! leaktrace: finds the call stacks that acquire resources and never release
//! them, with eBPF.

mod attach;
mod cli;
mod config;
mod decode;
mod failure;
mod kernel;
mod launch;
mod output;
mod procfs;
mod report;
mod run;
mod session;
mod symbolize;
mod track;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::Runtime(e)),
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Run { common, command } => run::run(common, command).await,
            Command::Attach { common, pids, duration } => attach::attach(common, pids, *duration).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

fn fail(e: &Failure) -> ExitCode {
    eprintln!("leaktrace: {e}");
    ExitCode::from(e.exit_code())
}
