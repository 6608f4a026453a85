//! File-descriptor rules that userspace applies: what an fd link in /proc
//! says about its object, and the range releases (exec of
//! FD_CLOEXEC fds, close_range) the kernel side leaves to userspace.

use std::collections::{HashMap, HashSet};

use leaktrace_common::fd::{FdEntry, FdKey, Resource, FLAG_CLOEXEC};
use leaktrace_common::syscalls::CLOSE_RANGE_CLOEXEC;

use crate::proc_id::ProcId;

/// What the fd behind a /proc/PID/fd/N link holds, as reports name it
/// (`other` when the link does not say).
pub(crate) fn resource_of_link(link: &str) -> crate::resource::Resource {
    crate::resource::of_fd(resource_from_link(link)).unwrap_or(crate::resource::Resource::Other)
}

/// Whether a /proc/PID/fd/N link read for an fd acquired as `resource` can
/// be that fd's: read late, it may be another acquisition's that got the
/// number since (a socket's link on a file's `open()`). Kinds either side
/// does not name (`Other`: a namespace file's `net:[…]`) fit anything, and
/// a file's `open()` may give a pipe (a FIFO reopened through /proc).
pub(crate) fn link_fits(resource: crate::resource::Resource, link: &str) -> bool {
    use crate::resource::Resource::{File, Other, Pipe};
    let linked = resource_of_link(link);
    resource == Other || linked == Other || linked == resource || (resource, linked) == (File, Pipe)
}

/// What a /proc/PID/fd/N link says the fd refers to, for fds whose
/// acquiring syscall did not say (dups of fds acquired before tracing).
pub(crate) fn resource_from_link(link: &str) -> Resource {
    if link.starts_with("socket:[") {
        Resource::Socket
    } else if link.starts_with("pipe:[") {
        Resource::Pipe
    } else if link.starts_with("/memfd:") {
        Resource::MemFd
    } else if let Some(kind) = link.strip_prefix("anon_inode:") {
        match kind.trim_matches(|c| c == '[' || c == ']') {
            "eventfd" => Resource::EventFd,
            "eventpoll" => Resource::Epoll,
            "timerfd" => Resource::TimerFd,
            "signalfd" => Resource::SignalFd,
            "inotify" => Resource::Inotify,
            "pidfd" => Resource::PidFd,
            "fanotify" => Resource::Fanotify,
            "userfaultfd" => Resource::UserFaultFd,
            "perf_event" => Resource::PerfEvent,
            "io_uring" => Resource::IoUring,
            _ => Resource::Unknown,
        }
    } else if link.starts_with('/') {
        Resource::File
    } else {
        Resource::Unknown
    }
}

/// A release the kernel cannot apply itself because it spans an unbounded
/// set of fds. It applies to the process's entries acquired before `at_ns`:
/// later ones reuse numbers the operation already freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RangeOp {
    pub proc: ProcId,
    pub at_ns: u64,
    pub kind: RangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeKind {
    /// A successful exec closed every FD_CLOEXEC fd.
    Exec,
    /// close_range(first, last, 0 or CLOSE_RANGE_UNSHARE).
    Close { first: u32, last: u32 },
    /// close_range(first, last, CLOSE_RANGE_CLOEXEC): marks, closes nothing.
    MarkCloexec { first: u32, last: u32 },
}

impl RangeOp {
    pub(crate) fn close_range(proc: ProcId, at_ns: u64, first: u32, last: u32, flags: u32) -> RangeOp {
        // CLOSE_RANGE_UNSHARE only gives the caller a private copy of the
        // table before closing, which changes nothing for the caller's entries.
        let kind = if flags & CLOSE_RANGE_CLOEXEC != 0 {
            RangeKind::MarkCloexec { first, last }
        } else {
            RangeKind::Close { first, last }
        };
        RangeOp { proc, at_ns, kind }
    }
}

/// Entries marked close-on-exec by close_range(CLOSE_RANGE_CLOEXEC); the
/// kernel entry's own flag covers O_CLOEXEC, fcntl and ioctl.
#[derive(Debug, Default)]
pub(crate) struct CloexecMarks {
    marked: HashSet<(ProcId, u32, u64)>,
}

impl CloexecMarks {
    pub(crate) fn forget(&mut self, proc: ProcId) {
        self.marked.retain(|(p, _, _)| *p != proc);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marked.len()
    }
}

/// Applies `ops` in order to `entries` and returns the keys they release.
pub(crate) fn plan_releases(ops: &[RangeOp], entries: &[(FdKey, FdEntry)], marks: &mut CloexecMarks) -> Vec<FdKey> {
    let mut by_proc: HashMap<ProcId, Vec<&(FdKey, FdEntry)>> = HashMap::new();
    for e in entries {
        by_proc.entry(ProcId::of_fd(&e.0)).or_default().push(e);
    }
    let mut released: HashSet<FdKey> = HashSet::new();
    for op in ops {
        for (key, entry) in by_proc.get(&op.proc).into_iter().flatten().copied() {
            if entry.acquired_ns >= op.at_ns {
                continue;
            }
            if released.contains(key) {
                continue;
            }
            let proc = op.proc;
            match op.kind {
                RangeKind::Exec => {
                    let marked = marks.marked.contains(&(proc, key.fd, entry.acquired_ns));
                    if entry.flags & FLAG_CLOEXEC != 0 || marked {
                        released.insert(*key);
                    }
                }
                RangeKind::Close { first, last } => {
                    if (first..=last).contains(&key.fd) {
                        released.insert(*key);
                    }
                }
                RangeKind::MarkCloexec { first, last } => {
                    if (first..=last).contains(&key.fd) {
                        marks.marked.insert((proc, key.fd, entry.acquired_ns));
                    }
                }
            }
        }
    }
    let mut out: Vec<FdKey> = released.into_iter().collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_read_after_the_number_was_reused_is_not_taken() {
        use crate::resource::Resource;
        assert!(link_fits(Resource::File, "/etc/hostname"));
        assert!(!link_fits(Resource::File, "socket:[742642]"), "a socket got the number since");
        assert!(!link_fits(Resource::Socket, "/etc/hostname"));
        assert!(link_fits(Resource::File, "net:[4026531840]"), "a namespace file");
        assert!(link_fits(Resource::File, "pipe:[12]"), "a FIFO reopened through /proc");
        assert!(link_fits(Resource::Other, "socket:[1]"));
    }

    const P: ProcId = ProcId { tgid: 100, gen: 7 };

    fn entry(fd: u32, at: u64, cloexec: bool) -> (FdKey, FdEntry) {
        (
            FdKey { tgid: P.tgid, fd, gen: P.gen },
            FdEntry {
                acquired_ns: at,
                stack_id: 1,
                tid: 100,
                exec_seq: 1,
                syscall: 257,
                resource: Resource::File as u8,
                flags: if cloexec { FLAG_CLOEXEC } else { 0 },
                sock_family: 0,
                sock_type: 0,
                sk: 0,
            },
        )
    }

    fn fds(keys: &[FdKey]) -> Vec<u32> {
        keys.iter().map(|k| k.fd).collect()
    }

    #[test]
    fn exec_releases_only_older_cloexec_entries_of_that_process() {
        let other = ProcId { tgid: 101, gen: 7 };
        let mut entries = vec![entry(3, 10, true), entry(4, 11, false), entry(5, 50, true)];
        let (mut k, e) = entry(6, 10, true);
        k.tgid = other.tgid;
        entries.push((k, e));
        let ops = [RangeOp { proc: P, at_ns: 20, kind: RangeKind::Exec }];
        let released = plan_releases(&ops, &entries, &mut CloexecMarks::default());
        assert_eq!(fds(&released), vec![3], "fd 5 was opened after the exec, fd 6 is another process's");
    }

    #[test]
    fn close_range_releases_the_range() {
        let entries = vec![entry(3, 10, false), entry(4, 11, false), entry(9, 12, false), entry(10, 30, false)];
        let ops = [RangeOp::close_range(P, 20, 4, u32::MAX, 0)];
        let released = plan_releases(&ops, &entries, &mut CloexecMarks::default());
        assert_eq!(fds(&released), vec![4, 9]);
    }

    #[test]
    fn close_range_cloexec_marks_then_exec_releases() {
        let entries = vec![entry(3, 10, false), entry(4, 11, false), entry(5, 12, false)];
        let mut marks = CloexecMarks::default();
        let ops = [
            RangeOp::close_range(P, 20, 4, 5, CLOSE_RANGE_CLOEXEC),
            RangeOp { proc: P, at_ns: 30, kind: RangeKind::Exec },
        ];
        let released = plan_releases(&ops, &entries, &mut marks);
        assert_eq!(fds(&released), vec![4, 5]);
        assert_eq!(marks.len(), 2);
        marks.forget(P);
        assert_eq!(marks.len(), 0);
    }

    #[test]
    fn links_name_their_objects() {
        assert_eq!(resource_from_link("socket:[12345]"), Resource::Socket);
        assert_eq!(resource_from_link("pipe:[99]"), Resource::Pipe);
        assert_eq!(resource_from_link("anon_inode:[eventfd]"), Resource::EventFd);
        assert_eq!(resource_from_link("anon_inode:[eventpoll]"), Resource::Epoll);
        assert_eq!(resource_from_link("anon_inode:inotify"), Resource::Inotify);
        assert_eq!(resource_from_link("/memfd:cache (deleted)"), Resource::MemFd);
        assert_eq!(resource_from_link("/etc/hostname"), Resource::File);
        assert_eq!(resource_from_link("anon_inode:[weird]"), Resource::Unknown);
        assert_eq!(resource_of_link("anon_inode:[perf_event]").name(), "other");
    }
}
