//! The few ptrace and wait operations the tracer needs, over libc.
//!
//! nix's `WaitStatus` cannot represent realtime signals (glibc uses them for
//! thread cancellation), so wait statuses are decoded here instead.

use std::io;

pub(super) const PTRACE_EVENT_FORK: i32 = 1;
pub(super) const PTRACE_EVENT_VFORK: i32 = 2;
pub(super) const PTRACE_EVENT_CLONE: i32 = 3;
pub(super) const PTRACE_EVENT_EXEC: i32 = 4;
pub(super) const PTRACE_EVENT_EXIT: i32 = 6;
pub(super) const PTRACE_EVENT_STOP: i32 = 128;

/// `si_code` of signals the kernel sends itself (`SEND_SIG_PRIV`), which is
/// how bpf_send_signal's SIGSTOP differs from a user's `kill -STOP`.
pub(super) const SI_KERNEL: i32 = 0x80;

/// What `waitpid` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Exited(i32),
    Killed(i32),
    /// A ptrace event stop (`event` is PTRACE_EVENT_*), including
    /// PTRACE_EVENT_STOP for group stops and new tracees' first stop.
    Event {
        signal: i32,
        event: i32,
    },
    /// A signal is about to be delivered; the tracer decides whether it is.
    Signal(i32),
    Other,
}

pub(super) fn decode_status(status: i32) -> Status {
    if status & 0x7f == 0 {
        Status::Exited((status >> 8) & 0xff)
    } else if status & 0xff == 0x7f {
        let signal = (status >> 8) & 0xff;
        match status >> 16 {
            0 => Status::Signal(signal),
            event => Status::Event { signal, event },
        }
    } else if ((status & 0x7f) + 1) as i8 >> 1 > 0 {
        Status::Killed(status & 0x7f)
    } else {
        Status::Other
    }
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

// SAFETY (all below): plain ptrace requests on a pid with integer arguments;
// the kernel validates the pid and state.

pub(super) fn seize(pid: i32, options: libc::c_int) -> io::Result<()> {
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, options as libc::c_long) })
}

pub(super) fn cont(pid: i32, signal: i32) -> io::Result<()> {
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal as libc::c_long) })
}

/// Leaves a tracee in its group stop while still reporting later events.
pub(super) fn listen(pid: i32) -> io::Result<()> {
    check(unsafe { libc::ptrace(libc::PTRACE_LISTEN, pid, 0, 0) })
}

pub(super) fn interrupt(pid: i32) -> io::Result<()> {
    check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) })
}

pub(super) fn detach(pid: i32, signal: i32) -> io::Result<()> {
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, signal as libc::c_long) })
}

pub(super) fn event_message(pid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    check(unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut msg as *mut libc::c_ulong) })?;
    Ok(msg as u64)
}

pub(super) fn signal_code(pid: i32) -> io::Result<i32> {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    check(unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut info as *mut libc::siginfo_t) })?;
    Ok(info.si_code)
}

/// Waits for any tracee (threads included).
pub(super) fn wait_any() -> io::Result<(i32, Status)> {
    wait(-1)
}

pub(super) fn wait(pid: i32) -> io::Result<(i32, Status)> {
    let mut status = 0;
    loop {
        let pid = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if pid >= 0 {
            return Ok((pid, decode_status(status)));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_like_the_wait_macros() {
        assert_eq!(decode_status(0x0000), Status::Exited(0));
        assert_eq!(decode_status(0x0300), Status::Exited(3));
        assert_eq!(decode_status(0x0009), Status::Killed(9));
        assert_eq!(decode_status(0x0089), Status::Killed(9), "with core dump flag");
        assert_eq!(decode_status(0x137f), Status::Signal(libc::SIGSTOP));
        // SIGRTMIN+1: nix cannot represent it.
        assert_eq!(decode_status((35 << 8) | 0x7f), Status::Signal(35));
        assert_eq!(
            decode_status((PTRACE_EVENT_EXIT << 16) | (libc::SIGTRAP << 8) | 0x7f),
            Status::Event { signal: libc::SIGTRAP, event: PTRACE_EVENT_EXIT }
        );
        assert_eq!(
            decode_status((PTRACE_EVENT_STOP << 16) | (libc::SIGSTOP << 8) | 0x7f),
            Status::Event { signal: libc::SIGSTOP, event: PTRACE_EVENT_STOP }
        );
    }
}
