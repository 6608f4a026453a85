//! The tracers the benchmarks compare: starting leaktrace, bpftrace or
//! strace on a process, waiting until each says it is tracing, and stopping
//! it with SIGINT the way a person at the terminal would.
//!
//! What each prints once it traces: leaktrace `leaktrace: tracing pid P
//! (comm); …` or `leaktrace: tracing every process; …` on stderr, bpftrace
//! `Attaching N probes...` on stdout, strace `strace: Process P attached` on
//! stderr. bpftrace prints its line just before it attaches, so every tracer
//! gets the same short settling time after its line before anything is
//! measured.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::process::{Proc, Spawn, Stream};

/// Time between a tracer's ready line and the first measured operation.
pub(super) const SETTLE: Duration = Duration::from_millis(200);
/// How long a tracer may take to load its programs and say so.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) enum Tracer {
    /// `leaktrace` with these arguments (`attach --pid P -o /dev/null`, …).
    Leaktrace(Vec<String>),
    /// `bpftrace -e PROGRAM`.
    Bpftrace(String),
    /// `strace -f -p PID -o /dev/null`.
    Strace(u32),
}

impl Tracer {
    pub(super) fn leaktrace(args: &[&str]) -> Self {
        Self::Leaktrace(args.iter().map(|a| a.to_string()).collect())
    }

    pub(super) fn bpftrace_fd_leaks(pid: u32) -> Self {
        Self::Bpftrace(fd_leaks_script(&pid.to_string()))
    }

    /// Starts it and returns once it traces.
    pub(super) fn start(&self, leaktrace: &Path) -> Result<Running> {
        let (name, mut cmd) = match self {
            Self::Leaktrace(args) => {
                let mut cmd = Command::new(leaktrace);
                cmd.args(args);
                ("leaktrace", cmd)
            }
            Self::Bpftrace(program) => {
                let mut cmd = Command::new("bpftrace");
                cmd.arg("-e").arg(program);
                ("bpftrace", cmd)
            }
            Self::Strace(pid) => {
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-o", "/dev/null", "-p"]).arg(pid.to_string());
                ("strace", cmd)
            }
        };
        let mut proc = Proc::spawn(name, &mut cmd, Spawn::tracer())?;
        match self {
            Self::Leaktrace(_) => {
                proc.wait_line(Stream::Stderr, READY_TIMEOUT, |l| l.starts_with("leaktrace: tracing"))?;
            }
            Self::Bpftrace(_) => {
                proc.wait_line(Stream::Stdout, READY_TIMEOUT, |l| l.starts_with("Attaching "))?;
            }
            Self::Strace(pid) => {
                let attached = format!("strace: Process {pid} attached");
                proc.wait_line(Stream::Stderr, READY_TIMEOUT, |l| l.starts_with(&attached))?;
            }
        }
        thread::sleep(SETTLE);
        Ok(Running { proc, strace: matches!(self, Self::Strace(_)) })
    }
}

/// A tracer that traces; dropping it kills it.
pub(super) struct Running {
    proc: Proc,
    strace: bool,
}

/// How a tracer ended.
pub(super) struct Stopped {
    /// From SIGINT to its exit: for leaktrace, the time to write the report.
    pub took: Duration,
    /// Its peak RSS in KiB.
    pub max_rss_kib: u64,
}

impl Running {
    pub(super) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Fails when it has exited on its own (an error while tracing).
    pub(super) fn check_alive(&mut self) -> Result<()> {
        if let Some(exit) = self.proc.try_wait()? {
            let how = exit.describe();
            return Err(self.proc.error(format!("exited while tracing ({how})")));
        }
        Ok(())
    }

    /// SIGINT, then waits for it to finish (writing its report) and exit.
    pub(super) fn stop(mut self, timeout: Duration) -> Result<Stopped> {
        self.check_alive()?;
        let start = Instant::now();
        let exit = self.proc.stop(libc::SIGINT, timeout)?;
        let took = start.elapsed();
        // strace detaches and then ends itself with the signal it got.
        let ok = exit.success() || (self.strace && exit.signal() == Some(libc::SIGINT));
        if !ok {
            let how = exit.describe();
            return Err(self.proc.error(format!("failed on SIGINT ({how})")));
        }
        Ok(Stopped { took, max_rss_kib: exit.max_rss_kib() })
    }
}

/// The script people write by hand to find fd leaks with bpftrace: the user
/// stack of every openat's result, deleted on close. Every fd the loop opens
/// is closed, so the map it prints on SIGINT is empty and stopping is quick.
pub(super) fn fd_leaks_script(pid: &str) -> String {
    format!(
        "tracepoint:syscalls:sys_exit_openat /pid == {pid}/ {{ @open[pid, args->ret] = ustack; }} \
         tracepoint:syscalls:sys_enter_close /pid == {pid}/ {{ delete(@open[pid, args->fd]); }}"
    )
}

/// Whether this leaktrace has `attach --sample N` (work in progress when the
/// benchmark was written).
pub(super) fn leaktrace_has_sample(leaktrace: &Path) -> bool {
    crate::util::output(Command::new(leaktrace).args(["attach", "--help"]))
        .is_some_and(|help| help.contains("--sample"))
}
