//! The processes a benchmark starts: spawned with their output read line by
//! line on threads (so no pipe ever fills and blocks them), waited for with
//! `wait4` (which also gives the peak RSS), and killed and reaped when their
//! guard is dropped, on every path out of a benchmark.
//!
//! Children stay in xtask's process group, so a Ctrl-C at the terminal
//! reaches them too (leaktrace and bpftrace then end as they would on
//! SIGINT, nginx shuts down); xtask itself notes it ([`catch_interrupt`])
//! and fails its waits, so the guards on the way out clean up. Each child
//! also gets a parent-death signal, so none outlives an xtask that is
//! killed outright.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Lines of output kept to explain a failure.
const LOG_LINES: usize = 40;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT (Ctrl-C) makes waits fail instead of killing xtask,
/// so guards get to stop what runs. Children still get the default action:
/// exec resets caught signals.
pub(super) fn catch_interrupt() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// How a child is started.
pub(super) struct Spawn {
    /// Whether the benchmark writes to its stdin (otherwise /dev/null).
    pub stdin: bool,
    /// Whether its stdout is read (otherwise /dev/null).
    pub stdout: bool,
    /// Whether its stderr is read (otherwise /dev/null).
    pub stderr: bool,
    /// The signal it gets if xtask dies first: SIGINT lets a tracer write
    /// its report, SIGTERM lets nginx stop its workers.
    pub parent_death: libc::c_int,
}

impl Spawn {
    pub(super) fn piped() -> Self {
        Self { stdin: true, stdout: true, stderr: true, parent_death: libc::SIGKILL }
    }

    /// A tracer: nothing on stdin, its output read for its ready line.
    pub(super) fn tracer() -> Self {
        Self { stdin: false, stdout: true, stderr: true, parent_death: libc::SIGINT }
    }
}

/// How a reaped child ended.
pub(super) struct Exit {
    status: libc::c_int,
    rusage: libc::rusage,
}

impl Exit {
    pub(super) fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    /// The signal that ended it, if one did.
    pub(super) fn signal(&self) -> Option<libc::c_int> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    pub(super) fn success(&self) -> bool {
        self.code() == Some(0)
    }

    /// Peak resident set size in KiB (Linux reports ru_maxrss in KiB).
    pub(super) fn max_rss_kib(&self) -> u64 {
        u64::try_from(self.rusage.ru_maxrss).unwrap_or(0)
    }

    pub(super) fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

pub(super) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Stream, String)>,
    log: VecDeque<String>,
    exit: Option<Exit>,
}

impl Proc {
    pub(super) fn spawn(name: &str, cmd: &mut Command, how: Spawn) -> Result<Self> {
        let pipe_or_null = |piped: bool| if piped { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(pipe_or_null(how.stdin)).stdout(pipe_or_null(how.stdout)).stderr(pipe_or_null(how.stderr));
        let signal = how.parent_death;
        // SAFETY: the closure runs between fork and exec and only makes
        // prctl, an async-signal-safe system call. Every child is spawned from
        // the main thread, whose exit is what PR_SET_PDEATHSIG watches.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward(out, Stream::Stdout, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward(err, Stream::Stderr, tx);
        }
        let stdin = child.stdin.take();
        Ok(Self { name: name.to_string(), child, stdin, lines, log: VecDeque::new(), exit: None })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn send_line(&mut self, line: &str) -> Result<()> {
        let name = &self.name;
        let stdin = self.stdin.as_mut().with_context(|| format!("{name}'s stdin is closed"))?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).with_context(|| format!("cannot write to {name}"))
    }

    /// Closes its stdin: the benchmark programs end on EOF.
    pub(super) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a line on `stream` that `wanted` accepts, keeping the others
    /// for error messages; fails when the process exits first or on timeout.
    pub(super) fn wait_line(
        &mut self,
        stream: Stream,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok((from, line)) => {
                    let matched = from == stream && wanted(&line);
                    self.remember(&line);
                    if matched {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if interrupted() {
                        bail!("interrupted");
                    }
                    if self.try_wait()?.is_some() {
                        // Lines it wrote before exiting may still be queued.
                        while let Ok((from, line)) = self.lines.try_recv() {
                            let matched = from == stream && wanted(&line);
                            self.remember(&line);
                            if matched {
                                return Ok(line);
                            }
                        }
                        let how = self.exit.as_ref().map(Exit::describe).unwrap_or_default();
                        return Err(self.error(format!("ended ({how}) before the expected output")));
                    }
                    if left.is_zero() {
                        return Err(self.error(format!("gave no expected output within {timeout:?}")));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Both streams closed: the process is ending.
                    let exit = self.wait_timeout(left)?;
                    let how = exit.map(|e| e.describe()).unwrap_or_else(|| "closed its output".into());
                    return Err(self.error(format!("ended ({how}) before the expected output")));
                }
            }
        }
    }

    /// Waits for it to exit on its own within `timeout` and returns what it
    /// printed on `stream` and how it ended.
    pub(super) fn finish(&mut self, stream: Stream, timeout: Duration) -> Result<(Vec<String>, &Exit)> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            if interrupted() {
                bail!("interrupted");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok((from, line)) => {
                    self.remember(&line);
                    if from == stream {
                        out.push(line);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(self.error(format!("did not finish within {timeout:?}; killed it")));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.wait_timeout(left.max(Duration::from_secs(1)))?.is_none() {
            self.kill();
            bail!("{} closed its output but did not exit; killed it", self.name);
        }
        let exit = self.exit.as_ref().context("reaped without an exit status")?;
        Ok((out, exit))
    }

    fn remember(&mut self, line: &str) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line.to_string());
    }

    /// "NAME WHAT; its last output: …", for a failure of this process.
    pub(super) fn error(&mut self, what: impl std::fmt::Display) -> anyhow::Error {
        let tail = self.tail();
        anyhow::anyhow!("{} {what}{tail}", self.name)
    }

    /// The last lines it printed, for error messages.
    pub(super) fn tail(&mut self) -> String {
        while let Ok((_, line)) = self.lines.try_recv() {
            self.remember(&line);
        }
        if self.log.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = self.log.iter().map(String::as_str).collect();
        format!("; its last output:\n    {}", lines.join("\n    "))
    }

    pub(super) fn signal(&self, signal: libc::c_int) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // unreaped child, so it cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot signal {}", self.name));
        }
        Ok(())
    }

    /// Reaps it if it has exited.
    pub(super) fn try_wait(&mut self) -> Result<Option<&Exit>> {
        if self.exit.is_none() {
            self.exit = self.wait4(libc::WNOHANG)?;
        }
        Ok(self.exit.as_ref())
    }

    /// Waits for it to exit, polling every millisecond (the precision of the
    /// stop times the benchmarks report); `None` on timeout.
    pub(super) fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<&Exit>> {
        let deadline = Instant::now() + timeout;
        while self.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(self.exit.as_ref())
    }

    /// Sends `signal` and waits up to `timeout` for the exit; kills it and
    /// fails when it does not come.
    pub(super) fn stop(&mut self, signal: libc::c_int, timeout: Duration) -> Result<&Exit> {
        self.signal(signal)?;
        if self.wait_timeout(timeout)?.is_none() {
            self.kill();
            return Err(self.error(format!("did not exit within {timeout:?} of signal {signal}; killed it")));
        }
        self.exit.as_ref().context("reaped without an exit status")
    }

    fn wait4(&mut self, flags: libc::c_int) -> Result<Option<Exit>> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: status and rusage are valid for writes; pid is our child.
            let got = unsafe { libc::wait4(pid, &mut status, flags, &mut rusage) };
            if got == pid {
                return Ok(Some(Exit { status, rusage }));
            }
            if got == 0 {
                return Ok(None);
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("cannot wait for {}", self.name));
            }
        }
    }

    /// SIGKILL and reap; for cleanup, where there is nobody to tell.
    pub(super) fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let _ = self.signal(libc::SIGKILL);
        if let Ok(exit) = self.wait4(0) {
            self.exit = exit;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.close_stdin();
        self.kill();
    }
}

fn forward(stream: impl Read + Send + 'static, which: Stream, tx: Sender<(Stream, String)>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        // Bytes, not `lines()`: output that is not UTF-8 must not stop the
        // reading, or the child would block on a full pipe.
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
            buf.clear();
            if tx.send((which, line)).is_err() {
                break;
            }
        }
    });
}

/// Runs `taskset -c CPU program args…` (taskset execs it, so the pid is the
/// program's).
pub(super) fn pinned(cpu: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu.to_string()).arg(program);
    cmd
}
