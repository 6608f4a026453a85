//! `run` mode's launcher: starts the command under ptrace so every process it
//! creates can be held at the moments its state is about to vanish.
//!
//! The tracer thread forks the command, seizes it before it execs, and from
//! then on reports stops to the session and waits for its answer:
//! - after each exec, before the new image runs (mappings of the new image);
//! - when a thread maps new code: the eBPF side sends it a SIGSTOP, which the
//!   tracer suppresses after the session read the mappings (dlopen, ld.so);
//! - when a thread is about to exit (its process's fds and mappings may be
//!   about to vanish);
//! - when a process forks (the child's mappings before it can exec).
//!
//! Ptrace only stops processes at these events, never at syscalls, so the
//! traced program runs at full speed in between.

mod ptrace;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::OnceLock;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::procfs;
use ptrace::Status;

#[derive(Debug, Error)]
pub(crate) enum LaunchError {
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("cannot execute {path}: {source}")]
    Exec {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {path} under the tracer: {detail}")]
    Tracer { path: String, detail: String },
}

impl LaunchError {
    /// Shell conventions: 127 when the command is missing, 126 when it cannot run.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            LaunchError::NotFound(_) => 127,
            LaunchError::Exec { .. } => 126,
            LaunchError::Tracer { .. } => 1,
        }
    }
}

/// A moment at which a tracee is held until the session answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The command's process exists and waits to exec: trace it now.
    Started {
        pid: u32,
    },
    Forked {
        child: u32,
    },
    Execed {
        tgid: u32,
    },
    CodeMapped {
        tgid: u32,
    },
    Exiting {
        tgid: u32,
        tid: u32,
    },
    /// The command exited with this status (128+signal when killed). After
    /// the answer the tracer lets go of every remaining process.
    CommandExited {
        status: i32,
    },
}

pub(crate) enum TracerMsg {
    Hold(Hold, oneshot::Sender<()>),
    Failed(LaunchError),
}

/// RLIMIT_NOFILE as leaktrace was started with it, before it raised its own
/// soft limit: the command gets it back, so that it runs out of fds
/// (EMFILE) where it would untraced.
static COMMAND_FD_LIMIT: OnceLock<libc::rlimit> = OnceLock::new();

/// Keeps `limit` for the command, before leaktrace changes its own.
pub(crate) fn keep_fd_limit_for_command(limit: libc::rlimit) {
    let _ = COMMAND_FD_LIMIT.set(limit);
}

/// Finds `command` like a shell would.
pub(crate) fn resolve(command: &OsString) -> Result<PathBuf, LaunchError> {
    let shown = command.to_string_lossy().into_owned();
    let path = if command.as_bytes().contains(&b'/') {
        PathBuf::from(command)
    } else {
        which::which(command).map_err(|_| LaunchError::NotFound(shown.clone()))?
    };
    if !path.exists() {
        return Err(LaunchError::NotFound(shown));
    }
    Ok(path)
}

/// Starts the tracer thread, which forks and runs `program`.
pub(crate) fn start(program: &Path, args: &[OsString]) -> Result<mpsc::UnboundedReceiver<TracerMsg>, LaunchError> {
    let shown = program.display().to_string();
    let cstr = |s: &[u8]| {
        CString::new(s)
            .map_err(|_| LaunchError::Tracer { path: shown.clone(), detail: "argument contains a NUL byte".into() })
    };
    let path = cstr(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = args.iter().map(|a| cstr(a.as_bytes())).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<_, _>>()?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("leaktrace-tracer".into())
        .spawn(move || {
            let tracer = Tracer { tx, tracees: HashMap::new() };
            tracer.run(&shown, &path, &argv, &envp);
        })
        .map_err(|e| LaunchError::Tracer { path: program.display().to_string(), detail: e.to_string() })?;
    Ok(rx)
}

#[derive(Clone, Copy, Debug)]
struct Tracee {
    tgid: u32,
    /// Its first stop (the auto-attach stop) has been seen.
    started: bool,
}

struct Tracer {
    tx: mpsc::UnboundedSender<TracerMsg>,
    tracees: HashMap<u32, Tracee>,
}

/// EXITKILL: a tracer that dies without letting go (SIGKILL) takes its
/// tracees with it. Detached by the kernel instead, a tracee held in the
/// SIGSTOP of a code mapping, or with one still queued, gets that SIGSTOP
/// delivered and stays stopped for good (4 runs in 5 killed mid-hold left
/// the command in state T). Inherited by every auto-attached child; `let_go`
/// detaches the survivors of a normal end first, so they live on.
const OPTIONS: libc::c_int = libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT
    | libc::PTRACE_O_EXITKILL;

impl Tracer {
    /// Sends a hold and waits until the session is done with it.
    fn hold(&self, hold: Hold) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(TracerMsg::Hold(hold, reply)).is_ok() {
            let _ = done.blocking_recv();
        }
    }

    fn fail(&self, error: LaunchError) {
        let _ = self.tx.send(TracerMsg::Failed(error));
    }

    fn run(mut self, shown: &str, path: &CString, argv: &[CString], envp: &[CString]) {
        let root = match self.launch(shown, path, argv, envp) {
            Ok(Some(root)) => root,
            Ok(None) => return,
            Err(detail) => return self.fail(LaunchError::Tracer { path: shown.into(), detail }),
        };
        self.tracees.insert(root, Tracee { tgid: root, started: true });
        let status = self.trace(root);
        self.hold(Hold::CommandExited { status });
        self.let_go();
    }

    /// Forks the command, seizes it, has it traced, then lets it exec.
    /// Returns None when the exec failed (already reported).
    fn launch(&self, shown: &str, path: &CString, argv: &[CString], envp: &[CString]) -> Result<Option<u32>, String> {
        let argv_ptrs: Vec<*const libc::c_char> =
            argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp_ptrs: Vec<*const libc::c_char> =
            envp.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let (go_r, go_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let fd_limit = COMMAND_FD_LIMIT.get().copied();
        // SAFETY: between fork and exec the child only makes async-signal-safe
        // calls (read, setrlimit, execve, write, _exit) on memory prepared
        // before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork failed: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            unsafe {
                libc::close(go_w);
                libc::close(err_r);
                let mut byte = 0u8;
                // Wait until the tracer has seized us and the kernel traces us.
                if libc::read(go_r, (&mut byte as *mut u8).cast(), 1) != 1 {
                    libc::_exit(127);
                }
                if let Some(limit) = &fd_limit {
                    libc::setrlimit(libc::RLIMIT_NOFILE, limit);
                }
                libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_w, (&errno as *const i32).cast(), 4);
                libc::_exit(127);
            }
        }
        // SAFETY: closing the child's ends in the parent.
        unsafe {
            libc::close(go_r);
            libc::close(err_w);
        }
        if let Err(e) = ptrace::seize(pid, OPTIONS) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::close(go_w);
                libc::close(err_r);
            }
            return Err(format!("PTRACE_SEIZE failed: {e}"));
        }
        self.hold(Hold::Started { pid: pid as u32 });
        let mut errno = 0i32;
        // SAFETY: writing one byte and reading up to 4 into a local.
        let n = unsafe {
            libc::write(go_w, b"g".as_ptr().cast(), 1);
            libc::close(go_w);
            // EOF when the exec closed the close-on-exec pipe; 4 bytes of errno
            // when it failed.
            let n = libc::read(err_r, (&mut errno as *mut i32).cast(), 4);
            libc::close(err_r);
            n
        };
        if n == 4 {
            // The failed child stops at its exit like any tracee: let it finish.
            while let Ok((_, Status::Event { .. } | Status::Signal(_))) = ptrace::wait(pid) {
                let _ = ptrace::cont(pid, 0);
            }
            self.fail(LaunchError::Exec { path: shown.into(), source: std::io::Error::from_raw_os_error(errno) });
            return Ok(None);
        }
        Ok(Some(pid as u32))
    }

    fn tracee(&mut self, tid: u32) -> Tracee {
        *self.tracees.entry(tid).or_insert_with(|| Tracee { tgid: procfs::tgid_of(tid).unwrap_or(tid), started: false })
    }

    /// Services stops until the command's process exits; returns its status.
    fn trace(&mut self, root: u32) -> i32 {
        loop {
            let (pid, status) = match ptrace::wait_any() {
                Ok(r) => r,
                // ECHILD: nothing left to wait for.
                Err(_) => return 0,
            };
            let tid = pid as u32;
            match status {
                Status::Exited(code) | Status::Killed(code) => {
                    self.tracees.remove(&tid);
                    if tid == root {
                        return if matches!(status, Status::Killed(_)) { 128 + code } else { code };
                    }
                }
                Status::Event { signal, event } => {
                    let tracee = self.tracee(tid);
                    self.on_event(tid, tracee, signal, event);
                }
                Status::Signal(signal) => {
                    self.tracee(tid);
                    let ours = signal == libc::SIGSTOP && ptrace::signal_code(pid).ok() == Some(ptrace::SI_KERNEL);
                    if ours {
                        let tgid = self.tracees[&tid].tgid;
                        self.hold(Hold::CodeMapped { tgid });
                        let _ = ptrace::cont(pid, 0);
                    } else {
                        let _ = ptrace::cont(pid, signal);
                    }
                }
                Status::Other => {}
            }
        }
    }

    fn on_event(&mut self, tid: u32, tracee: Tracee, signal: i32, event: i32) {
        let pid = tid as i32;
        match event {
            ptrace::PTRACE_EVENT_FORK | ptrace::PTRACE_EVENT_VFORK | ptrace::PTRACE_EVENT_CLONE => {
                if let Ok(child) = ptrace::event_message(pid) {
                    let child = child as u32;
                    let is_process = event != ptrace::PTRACE_EVENT_CLONE;
                    let tgid = if is_process { child } else { procfs::tgid_of(child).unwrap_or(tracee.tgid) };
                    let entry = self.tracees.entry(child).or_insert(Tracee { tgid, started: false });
                    entry.tgid = tgid;
                    if tgid == child {
                        self.hold(Hold::Forked { child });
                    }
                }
            }
            ptrace::PTRACE_EVENT_EXEC => {
                // A non-leader thread that execs takes over the tgid (de_thread).
                if let Ok(old) = ptrace::event_message(pid) {
                    if old as u32 != tid {
                        self.tracees.remove(&(old as u32));
                    }
                }
                self.tracees.insert(tid, Tracee { tgid: tid, started: true });
                self.hold(Hold::Execed { tgid: tid });
            }
            // Whether this thread is the process's last cannot be told
            // reliably here (the others may be dying of an exit_group at this
            // very moment), so every thread's exit is a hold; the fd table is
            // read each time and the last read wins.
            ptrace::PTRACE_EVENT_EXIT => self.hold(Hold::Exiting { tgid: tracee.tgid, tid }),
            ptrace::PTRACE_EVENT_STOP => {
                let job_control = matches!(signal, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU);
                if tracee.started && job_control {
                    // A real group stop (Ctrl-Z, kill -STOP): stay stopped.
                    let _ = ptrace::listen(pid);
                    return;
                }
                if let Some(t) = self.tracees.get_mut(&tid) {
                    t.started = true;
                }
            }
            _ => {}
        }
        let _ = ptrace::cont(pid, 0);
    }

    /// Detaches every remaining tracee, so the command's background
    /// processes keep running untraced. The session has already stopped the
    /// eBPF side from sending them stop signals; one already in flight is
    /// suppressed here instead of being delivered.
    fn let_go(&mut self) {
        let tids: Vec<u32> = self.tracees.keys().copied().collect();
        for tid in tids {
            let pid = tid as i32;
            if ptrace::interrupt(pid).is_err() {
                continue;
            }
            while let Ok((_, status)) = ptrace::wait(pid) {
                match status {
                    Status::Exited(_) | Status::Killed(_) => break,
                    Status::Signal(signal) => {
                        let ours = signal == libc::SIGSTOP && ptrace::signal_code(pid).ok() == Some(ptrace::SI_KERNEL);
                        let _ = ptrace::detach(pid, if ours { 0 } else { signal });
                        break;
                    }
                    Status::Event { .. } if procfs::signal_pending(tid, libc::SIGSTOP) => {
                        // Let the pending stop signal arrive, to suppress it.
                        let _ = ptrace::cont(pid, 0);
                    }
                    Status::Event { .. } => {
                        let _ = ptrace::detach(pid, 0);
                        break;
                    }
                    Status::Other => break,
                }
            }
        }
        self.tracees.clear();
    }
}

fn pipe() -> Result<(i32, i32), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe2 failed: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}
