//! The commands: each one a thin adapter that resolves its config, starts
//! what it traces (`start.rs`), drives the session with the one event loop
//! (`drive.rs`) and writes what it found through its own sink (a report,
//! the daemon's endpoints, a recording, a screen). Everything that can end
//! a command with an error is a `Failure`, with the exit status it gives.

mod attach;
mod check;
mod daemon;
mod diff;
mod drive;
mod failure;
mod progress;
mod record;
mod report;
mod run;
mod start;
mod top;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{self, Cli, Command};
use crate::config::Config;
use crate::report::{build, Mode as ReportMode, Target};

use failure::Failure;

/// `leaktrace`'s `main`: parses the command line, runs the command, and
/// turns its outcome into an exit status (a failure is one line on stderr).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::Runtime(e)),
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Attach(args) => attach::attach(args).await,
            Command::Diff(args) => diff::diff(args),
            Command::Top(args) => top::top(args).await,
            Command::Daemon(args) => daemon::daemon(args).await,
            Command::Record(args) => record::record(args).await,
            Command::Check(args) => check::check(args.format),
            Command::Report(args) => report::report(args),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

/// Help and version go out as clap writes them; a usage error is one line
/// (clap's first, which names the argument and what is wrong with it) and
/// status 2, like every other failure's one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    eprintln!("leaktrace: {} (see --help)", cli::usage_line(&e.to_string()));
    ExitCode::from(2)
}

fn fail(e: &Failure) -> ExitCode {
    eprintln!("leaktrace: {e}");
    ExitCode::from(e.exit_code())
}

/// leaktrace holds one descriptor per code module it has seen (to read it
/// after the process is gone), besides its maps; the default soft limit of
/// 1024 is raised to the hard limit, which needs no privilege. (`run`'s
/// command gets the limit it was started with back.)
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            crate::launch::keep_fd_limit_for_command(limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A report's context for `mode`, over the window from `start_ns` to
/// `end_ns`, as `config` shapes it (examples kept, kinds shown,
/// `--min-bytes`, `--sample`); what only some modes have (`preexisting`,
/// `per_process`) the caller sets.
fn context(mode: ReportMode, config: &Config, targets: Vec<Target>, (start_ns, end_ns): (u64, u64)) -> build::Context {
    build::Context {
        mode,
        targets,
        start_ns,
        end_ns,
        preexisting: vec![],
        max_examples: config.examples,
        kinds: config.kinds.to_vec(),
        min_bytes: config.min_bytes,
        sample: config.sample,
        per_process: false,
        interval_ns: u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX),
    }
}
