//! tracefs: mounting it when missing, and reading tracepoint record layouts
//! from its `format` files, which differ between kernel versions.

use std::path::{Path, PathBuf};

use leaktrace_common::config::{TracepointOffsets, ABSENT};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it failed ({detail}); \
         mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    NotMounted { detail: String },
    #[error(
        "tracepoint {name} is missing on this kernel (needs CONFIG_FTRACE_SYSCALLS \
         and CONFIG_TRACEPOINTS){hint}"
    )]
    MissingTracepoint { name: String, hint: &'static str },
    #[error("tracepoint {tracepoint} has no field {field} in {path}")]
    MissingField { tracepoint: String, field: &'static str, path: PathBuf },
}

pub(crate) const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs root, mounting it at /sys/kernel/tracing if needed.
pub(crate) fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in CANDIDATES {
        if Path::new(root).join("events").is_dir() {
            return Ok(PathBuf::from(root));
        }
    }
    let target = Path::new(CANDIDATES[0]);
    nix::mount::mount(Some("tracefs"), target, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| TracefsError::NotMounted { detail: e.desc().to_lowercase() })?;
    if target.join("events").is_dir() {
        Ok(target.to_path_buf())
    } else {
        Err(TracefsError::NotMounted { detail: "no events directory after mounting".into() })
    }
}

/// Offset of `field` in a tracepoint `format` file, e.g. from
/// `field:pid_t child_pid; offset:20; size:4; signed:1;` (tab-separated).
pub(crate) fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
        // Arrays are declared like `char comm[16]`.
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let offset = rest.split(';').find_map(|p| p.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

fn read_format(root: &Path, category: &str, name: &str) -> Result<(String, PathBuf), TracefsError> {
    let path = root.join("events").join(category).join(name).join("format");
    std::fs::read_to_string(&path).map(|s| (s, path)).map_err(|_| TracefsError::MissingTracepoint {
        name: format!("{category}:{name}"),
        hint: if matches!(category, "sock" | "tcp") {
            "; use --kinds fd to trace without TCP states"
        } else {
            "; leaktrace cannot follow fds without it"
        },
    })
}

/// Reads the offsets the programs need and checks every tracepoint they
/// attach to; the TCP ones only when TCP is traced.
pub(crate) fn read_offsets(root: &Path, tcp: bool) -> Result<TracepointOffsets, TracefsError> {
    read_format(root, "raw_syscalls", "sys_enter")?;
    read_format(root, "raw_syscalls", "sys_exit")?;
    let field = |category: &str, name: &str, field: &'static str, required: bool| {
        let (format, path) = read_format(root, category, name)?;
        match field_offset(&format, field) {
            Some(off) => Ok(off),
            None if !required => Ok(ABSENT),
            None => Err(TracefsError::MissingField { tracepoint: format!("{category}:{name}"), field, path }),
        }
    };
    let offsets = TracepointOffsets {
        fork_child_pid: field("sched", "sched_process_fork", "child_pid", true)?,
        // Added in Linux 6.16; older kernels fall back to the leader's exit.
        exit_group_dead: field("sched", "sched_process_exit", "group_dead", false)?,
        exec_pid: field("sched", "sched_process_exec", "pid", true)?,
        exec_old_pid: field("sched", "sched_process_exec", "old_pid", true)?,
    };
    if tcp {
        // Raw tracepoints: their arguments are the kernel's, not a record.
        read_format(root, "sock", "inet_sock_set_state")?;
        read_format(root, "tcp", "tcp_destroy_sock")?;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork
ID: 366
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:__data_loc char[] parent_comm;	offset:8;	size:4;	signed:0;
	field:pid_t parent_pid;	offset:12;	size:4;	signed:1;
	field:__data_loc char[] child_comm;	offset:16;	size:4;	signed:0;
	field:pid_t child_pid;	offset:20;	size:4;	signed:1;
";

    const FORK_6_1: &str = "name: sched_process_fork
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:char parent_comm[16];	offset:8;	size:16;	signed:0;
	field:pid_t parent_pid;	offset:24;	size:4;	signed:1;
	field:char child_comm[16];	offset:28;	size:16;	signed:0;
	field:pid_t child_pid;	offset:44;	size:4;	signed:1;
";

    #[test]
    fn offsets_follow_the_kernel_layout() {
        assert_eq!(field_offset(FORK_6_18, "child_pid"), Some(20));
        assert_eq!(field_offset(FORK_6_1, "child_pid"), Some(44));
        assert_eq!(field_offset(FORK_6_1, "child_comm"), Some(28));
        assert_eq!(field_offset(FORK_6_18, "parent_comm"), Some(8));
        assert_eq!(field_offset(FORK_6_18, "group_dead"), None);
        assert_eq!(field_offset(FORK_6_18, "pid"), None, "must not match a suffix");
    }
}
