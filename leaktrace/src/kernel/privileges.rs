//! Checks the capabilities each mode needs before anything is tried, so a
//! missing one is named instead of surfacing as an EPERM from deep inside.

use caps::{CapSet, Capability};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum PrivilegeError {
    #[error(
        "needs {missing} to {purpose}; run it as root or grant them \
         (setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search,cap_checkpoint_restore+ep leaktrace)"
    )]
    Missing { missing: String, purpose: &'static str },
    #[error(
        "needs CAP_SYS_ADMIN to attach to tracepoints: this kernel refuses perf_event_open to \
         processes without it while kernel.perf_event_paranoid is {0} (a Debian and Ubuntu restriction); \
         run it as root, grant CAP_SYS_ADMIN, or set kernel.perf_event_paranoid=2"
    )]
    PerfRestricted(i32),
    #[error("cannot read this process's capabilities: {0}")]
    Unreadable(String),
}

/// What the caller is about to do, each needing its own capabilities.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// Load and attach eBPF tracing programs and read user stacks.
    Trace,
    /// Read another user's /proc/PID/{fd,maps} (attach to existing processes).
    InspectOthers,
}

pub(crate) fn check(needs: &[Need]) -> Result<(), PrivilegeError> {
    let effective = caps::read(None, CapSet::Effective).map_err(|e| PrivilegeError::Unreadable(e.to_string()))?;
    let has = |c: Capability| effective.contains(&c);
    for need in needs {
        let (missing, purpose): (Vec<&str>, &'static str) = match need {
            // CAP_SYS_ADMIN covers both on kernels before 5.8 and still works.
            Need::Trace if has(Capability::CAP_SYS_ADMIN) => (vec![], ""),
            Need::Trace => (
                [
                    (!has(Capability::CAP_BPF)).then_some("CAP_BPF"),
                    (!has(Capability::CAP_PERFMON)).then_some("CAP_PERFMON"),
                    // tracefs is root's only (mode 0700): the tracepoints'
                    // ids and record layouts are read from it.
                    (!has(Capability::CAP_DAC_READ_SEARCH) && tracefs_unreadable()).then_some("CAP_DAC_READ_SEARCH"),
                ]
                .into_iter()
                .flatten()
                .collect(),
                "load its eBPF tracing programs",
            ),
            // /proc/PID/fd is readable by its owner only, whatever ptrace
            // allows: another user's fds need CAP_DAC_READ_SEARCH too.
            Need::InspectOthers => (
                [
                    (!has(Capability::CAP_SYS_PTRACE)).then_some("CAP_SYS_PTRACE"),
                    (!has(Capability::CAP_DAC_READ_SEARCH)).then_some("CAP_DAC_READ_SEARCH"),
                ]
                .into_iter()
                .flatten()
                .collect(),
                "read the fd tables and mappings of processes it attaches to",
            ),
        };
        if !missing.is_empty() {
            return Err(PrivilegeError::Missing { missing: and_list(&missing), purpose });
        }
    }
    // Only once every capability is there: what is missing is named first.
    if needs.iter().any(|n| matches!(n, Need::Trace)) && !has(Capability::CAP_SYS_ADMIN) {
        if let Some(paranoid) = perf_restricted() {
            return Err(PrivilegeError::PerfRestricted(paranoid));
        }
    }
    Ok(())
}

/// kernel.perf_event_paranoid, when readable.
pub(crate) fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok()?.trim().parse().ok()
}

/// `Some(level)` when kernel.perf_event_paranoid is above 2 and this kernel
/// enforces it: mainline treats every level above 2 as 2, but Debian's and
/// Ubuntu's kernels then refuse perf_event_open, which attaches tracepoint
/// programs, to anyone without CAP_SYS_ADMIN (CAP_PERFMON is not enough).
/// Told apart by trying: a counting event on one tracepoint, for this
/// process, closed at once.
pub(crate) fn perf_restricted() -> Option<i32> {
    let paranoid = perf_event_paranoid().filter(|p| *p > 2)?;
    let id: u64 = super::tracefs::CANDIDATES
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/events/raw_syscalls/sys_enter/id")).ok())?
        .trim()
        .parse()
        .ok()?;
    use aya_obj::generated::{perf_event_attr, perf_type_id::PERF_TYPE_TRACEPOINT, PERF_FLAG_FD_CLOEXEC};
    // SAFETY: an all-zero perf_event_attr is valid (a plain C struct).
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = PERF_TYPE_TRACEPOINT as u32;
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.config = id;
    // SAFETY: perf_event_open reads `attr`, which outlives the call; the fd
    // it returns is ours and closed here.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const perf_event_attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC)
    };
    if fd >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd as i32) };
        return None;
    }
    let refused = matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EACCES | libc::EPERM));
    refused.then_some(paranoid)
}

/// Whether tracefs is there but this user may not read it.
fn tracefs_unreadable() -> bool {
    super::tracefs::CANDIDATES
        .iter()
        .any(|root| matches!(std::fs::read_dir(root), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied))
}

/// "A", "A and B", "A, B and C".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_listed_in_words() {
        assert_eq!(and_list(&["CAP_BPF"]), "CAP_BPF");
        assert_eq!(and_list(&["CAP_BPF", "CAP_PERFMON"]), "CAP_BPF and CAP_PERFMON");
        assert_eq!(
            and_list(&["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"]),
            "CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH"
        );
    }
}
