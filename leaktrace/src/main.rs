//! leaktrace: finds the call stacks that acquire resources and never release
//! them, with eBPF.

use std::process::ExitCode;

use leaktrace::{attach, check, daemon, diff, failure, output, record, run, top};

use clap::Parser;

use failure::Failure;
use leaktrace::cli::{self, Cli, Command};

fn main() -> ExitCode {
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
            Command::Run { common, command } => run::run(common, command).await,
            Command::Attach { common, pids, all, duration } => attach::attach(common, pids, *all, *duration).await,
            Command::Diff { base, new, format } => {
                diff::diff(base, new, *format).map_err(Failure::from).and_then(|out| {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(out.as_bytes())
                        .and_then(|_| stdout.flush())
                        .map_err(|e| Failure::Output(output::OutputError::Write(e)))?;
                    Ok(0)
                })
            }
            Command::Top { pids, kinds, interval } => top::live::top(pids, kinds, *interval).await,
            Command::Daemon(args) => daemon::daemon(args).await,
            Command::Record(args) => record::record(args).await,
            Command::Check { format } => check::check(*format),
            Command::Report { file, at, from, pid, format, output } => {
                record::report(file, at.as_deref(), from.as_deref(), *pid, *format, output.as_deref())
            }
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
            leaktrace::launch::keep_fd_limit_for_command(limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
