//! Checks the capabilities each mode needs before anything is tried, so a
//! missing one is named instead of surfacing as an EPERM from deep inside.

use caps::{CapSet, Capability};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error(
        "leaktrace needs {missing} to {purpose}; run it as root or grant them \
         (setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search,cap_checkpoint_restore+ep leaktrace)"
    )]
    Missing { missing: String, purpose: &'static str },
    #[error("cannot read this process's capabilities: {0}")]
    Unreadable(String),
}

/// What the caller is about to do, each needing its own capabilities.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// Load and attach eBPF tracing programs and read user stacks.
    Trace,
    /// Read another user's /proc/PID/{fd,maps} (attach to existing processes).
    InspectOthers,
}

pub fn check(needs: &[Need]) -> Result<(), PrivilegeError> {
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
    Ok(())
}

/// Whether tracefs is there but this user may not read it.
fn tracefs_unreadable() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
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
