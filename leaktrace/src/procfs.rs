//! What leaktrace reads from /proc about traced processes, and the clock the
//! eBPF programs stamp events with.

use std::collections::HashMap;
use std::path::Path;

use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`.
pub(crate) fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64).unwrap_or(0)
}

/// Converts a CLOCK_MONOTONIC stamp to wall-clock time.
pub(crate) fn wall_time(mono_ns: u64) -> time::OffsetDateTime {
    let now_mono = monotonic_ns();
    let now_wall = time::OffsetDateTime::now_utc();
    let back = now_mono.saturating_sub(mono_ns);
    now_wall - time::Duration::nanoseconds(back as i64)
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The fd table as thread `tid` of `tgid` sees it: fd number to link text
/// (path, `socket:[…]`, …). /proc/PID/fd shows the leader's view, which is
/// empty once the leader thread has exited, even while others still run.
pub(crate) fn fd_links(tgid: u32, tid: u32) -> std::io::Result<HashMap<u32, String>> {
    let dir = format!("/proc/{tgid}/task/{tid}/fd");
    let mut links = HashMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // The fd can be closed between readdir and readlink.
        if let Ok(target) = std::fs::read_link(entry.path()) {
            links.insert(fd, target.to_string_lossy().into_owned());
        }
    }
    Ok(links)
}

/// What fd `fd` of `tgid` refers to now.
pub(crate) fn fd_link(tgid: u32, fd: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The file mapped at exactly `[start, end)` in `tgid`, while it is.
pub(crate) fn mapped_file(tgid: u32, start: u64, end: u64) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{tgid}/map_files/{start:x}-{end:x}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The file mappings of `tgid` as thread `tid` sees them: (start, end,
/// path), sorted by start.
pub(crate) fn file_mappings(tgid: u32, tid: u32) -> std::io::Result<Vec<(u64, u64, String)>> {
    use procfs::process::MMapPath;
    use procfs::FromRead;
    let maps = procfs::process::MemoryMaps::from_file(format!("/proc/{tgid}/task/{tid}/maps"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut files: Vec<(u64, u64, String)> = maps
        .into_iter()
        .filter_map(|m| match m.pathname {
            MMapPath::Path(p) => Some((m.address.0, m.address.1, p.to_string_lossy().into_owned())),
            _ => None,
        })
        .collect();
    files.sort_by_key(|f| f.0);
    Ok(files)
}

pub(crate) fn comm(tgid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{tgid}/comm")).ok().map(|s| s.trim_end().to_string())
}

/// `/proc/PID/cgroup`: the process's cgroups (the v2 path on the `0::` line).
pub(crate) fn cgroup(tgid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()
}

/// The process's arguments, space-separated (empty for kernel threads);
/// with `redact`, only the program (see [`redact_args`]).
pub(crate) fn cmdline(tgid: u32, redact: bool) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{tgid}/cmdline")).ok()?;
    let args: Vec<String> =
        raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    Some(if redact { redact_args(&args) } else { args.join(" ") })
}

/// A command line without its arguments, which can hold passwords and
/// tokens (`--password=…`, a database URL): the program, then how many
/// arguments were left out. A secret cannot be told apart from a harmless
/// argument, so none is kept.
pub(crate) fn redact_args(args: &[String]) -> String {
    match args {
        [] => String::new(),
        [program] => program.clone(),
        [program, rest @ ..] => {
            format!("{program} [{} argument{} redacted]", rest.len(), if rest.len() == 1 { "" } else { "s" })
        }
    }
}

pub(crate) fn exe(tgid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/exe")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Thread-group id of a task.
pub(crate) fn tgid_of(tid: u32) -> Option<u32> {
    status_field(tid, "Tgid:").and_then(|v| v.parse().ok())
}

/// The process's pid in its own pid namespace (the last `NSpid` field).
pub(crate) fn namespace_pid(tgid: u32) -> Option<u32> {
    parse_namespace_pid(&status_field(tgid, "NSpid:")?)
}

/// Its pid in its own pid namespace, when that differs from `tgid` (it is
/// in a pid namespace other than the tracer's).
pub(crate) fn other_namespace_pid(tgid: u32) -> Option<u32> {
    namespace_pid(tgid).filter(|&n| n != tgid)
}

/// The pid in its own pid namespace of a process (not a thread: None when
/// `pid` is a thread's id), from one read of its status.
pub(crate) fn process_namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    if field("Tgid:")?.parse::<u32>().ok()? != pid {
        return None;
    }
    parse_namespace_pid(field("NSpid:")?)
}

/// The value of status's `NSpid:` line: the pid in each pid namespace the
/// process is in, from the reader's (here the host's) down to its own
/// (kernel/pid.c, `pid_nr_ns` per level). One field outside namespaces.
fn parse_namespace_pid(nspid: &str) -> Option<u32> {
    nspid.split_whitespace().last()?.parse().ok()
}

/// Pending-signal mask of one thread (`SigPnd`).
pub(crate) fn pending_signals(tid: u32) -> Option<u64> {
    status_field(tid, "SigPnd:").and_then(|v| u64::from_str_radix(&v, 16).ok())
}

/// True when the signal is pending for the thread or its whole process.
pub(crate) fn signal_pending(tid: u32, signal: i32) -> bool {
    let bit = 1u64 << (signal - 1);
    let thread = pending_signals(tid).unwrap_or(0);
    let shared = status_field(tid, "ShdPnd:").and_then(|v| u64::from_str_radix(&v, 16).ok()).unwrap_or(0);
    (thread | shared) & bit != 0
}

/// The state letter of /proc/PID/stat (R, S, Z, …), or None when gone.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field can hold spaces and parentheses: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True for a live user-space process (not a zombie, not a kernel thread).
/// When the process started, in clock ticks since boot (/proc/PID/stat
/// field 22): with the pid, it names one process, not whichever holds the
/// pid now.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 of a stat line; the name (field 2) may hold spaces and
/// parentheses, so fields are counted from its last ')'.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The process `pid` that started at `start` (from [`start_ticks`]) still
/// runs: it neither exited nor gave its pid to another process.
pub(crate) fn is_same_live_process(pid: u32, start: Option<u64>) -> bool {
    is_live_process(pid) && start.is_some() && start_ticks(pid) == start
}

pub(crate) fn is_live_process(pid: u32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
        && Path::new(&format!("/proc/{pid}/exe")).exists()
        && tgid_of(pid) == Some(pid)
}

fn status_field(pid: u32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string())
}

/// How many fds the process has open now.
pub(crate) fn open_fds(tgid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{tgid}/fd")).ok()?.count() as u64)
}

/// The process's soft RLIMIT_NOFILE: None when unreadable, Some(None)
/// when unlimited.
pub(crate) fn fd_limit(tgid: u32) -> Option<Option<u64>> {
    parse_fd_limit(&std::fs::read_to_string(format!("/proc/{tgid}/limits")).ok()?)
}

/// From `/proc/PID/limits`: `Max open files  1024  1048576  files`.
fn parse_fd_limit(limits: &str) -> Option<Option<u64>> {
    let soft = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?.split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_counted_from_the_end_of_the_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
        assert_eq!(parse_start_ticks("4242 (short"), None);
        assert!(start_ticks(std::process::id()).is_some());
    }

    #[test]
    fn redaction_keeps_the_program_only() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            redact_args(&args(&["/srv/app", "--db", "postgres://u:secret@db/x"])),
            "/srv/app [2 arguments redacted]"
        );
        assert_eq!(redact_args(&args(&["app", "--token=abc"])), "app [1 argument redacted]");
        assert_eq!(redact_args(&args(&["nginx"])), "nginx");
        assert_eq!(redact_args(&[]), "");
    }

    #[test]
    fn fd_limits_are_read_from_the_limits_table() {
        let table = "Limit                     Soft Limit           Hard Limit           Units     \n\
                     Max processes             95712                95712                processes \n\
                     Max open files            1024                 1048576              files     \n";
        assert_eq!(parse_fd_limit(table), Some(Some(1024)));
        assert_eq!(parse_fd_limit("Max open files  unlimited  unlimited  files\n"), Some(None));
        assert_eq!(parse_fd_limit("Max processes 1 1 processes\n"), None);
        let me = std::process::id();
        assert!(fd_limit(me).flatten().is_some_and(|n| n > 0));
        assert!(open_fds(me).is_some_and(|n| n >= 3));
    }

    #[test]
    fn namespace_pids_are_the_last_field_of_nspid() {
        assert_eq!(parse_namespace_pid("4242"), Some(4242));
        assert_eq!(parse_namespace_pid("4242\t1"), Some(1));
        assert_eq!(parse_namespace_pid("4242\t17\t2"), Some(2), "nested namespaces: the innermost");
        assert_eq!(parse_namespace_pid(""), None);
        assert_eq!(parse_namespace_pid("x"), None);
        let status = "Name:\tc-faults\nTgid:\t4668\nNgid:\t0\nPid:\t4668\nNSpid:\t4668\t1\nNSpgid:\t4667\t0\n";
        let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).expect("NSpid line");
        assert_eq!(parse_namespace_pid(line.trim()), Some(1), "not NSpgid, which follows it");
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(is_live_process(me));
        assert_eq!(tgid_of(me), Some(me));
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let links = fd_links(me, me).expect("fd links");
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd() as u32;
        assert_eq!(links.get(&fd).map(String::as_str), Some(format!("/proc/{me}/status").as_str()));
        assert!(!signal_pending(me, libc::SIGKILL));
        // The tests do not run in a pid namespace of their own.
        assert_eq!(namespace_pid(me), Some(me));
    }

    #[test]
    fn missing_pids_are_not_processes() {
        assert!(!is_live_process(u32::MAX - 1));
        assert_eq!(state(u32::MAX - 1), None);
    }

    #[test]
    fn wall_time_of_now_is_now() {
        let wall = wall_time(monotonic_ns());
        let diff = (time::OffsetDateTime::now_utc() - wall).whole_milliseconds().abs();
        assert!(diff < 1000, "{diff} ms");
    }
}
