//! What leaktrace follows, typed from the tracker to the JSON: the kinds of
//! resources (`fd`, `tcp`, `mmap`), what each holds (`file`, `socket`, … for
//! fds, `anon`, `file`, `shared` for mappings) and a selection of kinds
//! (`--kinds`, `kinds = [...]` in a config file).
//!
//! Every per-kind decision in userspace is a `match` on [`Kind`] without a
//! wildcard, most of them here: a new kind is its variant plus the arms the
//! compiler then asks for (README, "Adding a resource kind"). The lists of
//! variants and their names are derived (strum, serde), never written out.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantArray};

/// A kind of resource, as reports name it (`"kind"`). Ordered by name, as
/// reports and diffs sort them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, VariantArray)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub(crate) enum Kind {
    /// File descriptors of every sort (TCP sockets too, unless `tcp` is
    /// followed: then they are connections).
    Fd,
    /// TCP sockets as connections, with their states and peers.
    Tcp,
    /// Memory mappings (mmap, munmap, mremap), in bytes.
    Mmap,
}

impl Kind {
    /// Every kind, in the order reports list them (as declared).
    pub(crate) const ALL: &'static [Kind] = Kind::VARIANTS;

    /// The name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        self.into()
    }

    /// The kind reports name `name`.
    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The kinds' names for a message: `fd, tcp or mmap`.
    pub(crate) fn names_listed() -> String {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// Measured, ordered and judged by the bytes held rather than by count.
    pub(crate) fn in_bytes(self) -> bool {
        match self {
            Kind::Fd | Kind::Tcp => false,
            Kind::Mmap => true,
        }
    }

    /// Acquired through an fd (one entry of the kernel's outstanding map):
    /// counted in `totals.outstanding` and sampled by `--sample`.
    pub(crate) fn is_fd(self) -> bool {
        match self {
            Kind::Fd | Kind::Tcp => true,
            Kind::Mmap => false,
        }
    }

    /// What `count` resources of this kind holding `resource` are called.
    pub(crate) fn noun(self, resource: Resource, count: u64) -> String {
        match self {
            Kind::Fd => resource.fd_noun(count).to_string(),
            Kind::Tcp => if count == 1 { "TCP connection" } else { "TCP connections" }.to_string(),
            Kind::Mmap => {
                format!("{} {}", resource.mapping_adjective(), if count == 1 { "mapping" } else { "mappings" })
            }
        }
    }

    /// The unit a verdict's growth is stated in: "files", "connections",
    /// "bytes".
    pub(crate) fn unit(self, resource: Resource) -> String {
        match self {
            Kind::Fd => resource.fd_noun(2).to_string(),
            Kind::Tcp => "connections".to_string(),
            Kind::Mmap => "bytes".to_string(),
        }
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stack holds, as reports name it (`"resource"`). fds name the
/// object behind them; mappings name what they map. Ordered by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, VariantArray)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub(crate) enum Resource {
    /// A regular file (fds), or a mapping of one (mappings).
    File,
    Socket,
    Pipe,
    EventFd,
    Epoll,
    TimerFd,
    SignalFd,
    Inotify,
    MemFd,
    PidFd,
    /// Anonymous private memory.
    Anon,
    /// Anonymous shared memory.
    Shared,
    /// An fd of a sort the report does not name (fanotify, userfaultfd,
    /// perf events, io_uring, mounts, or one not known). Also what a reader
    /// makes of a name this leaktrace does not know.
    #[serde(other)]
    Other,
}

impl Resource {
    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        self.into()
    }

    /// The resource a report names `name`; names this leaktrace does not
    /// know are `other`, as in reports.
    pub(crate) fn from_name(name: &str) -> Resource {
        Resource::ALL.iter().copied().find(|r| r.name() == name).unwrap_or(Resource::Other)
    }

    const ALL: &'static [Resource] = Resource::VARIANTS;

    /// An fd holding this, `count` of them, in words.
    fn fd_noun(self, count: u64) -> &'static str {
        let (one, many) = match self {
            Resource::File => ("file", "files"),
            Resource::Socket => ("socket", "sockets"),
            Resource::Pipe => ("pipe end", "pipe ends"),
            Resource::EventFd => ("eventfd", "eventfds"),
            Resource::Epoll => ("epoll instance", "epoll instances"),
            Resource::TimerFd => ("timerfd", "timerfds"),
            Resource::SignalFd => ("signalfd", "signalfds"),
            Resource::Inotify => ("inotify instance", "inotify instances"),
            Resource::MemFd => ("memfd", "memfds"),
            Resource::PidFd => ("pidfd", "pidfds"),
            Resource::Anon | Resource::Shared | Resource::Other => ("other fd", "other fds"),
        };
        if count == 1 {
            one
        } else {
            many
        }
    }

    /// A mapping of this, in words ("anonymous mapping").
    fn mapping_adjective(self) -> &'static str {
        match self {
            Resource::Anon => "anonymous",
            Resource::Shared => "shared anonymous",
            other => other.name(),
        }
    }
}

impl Ord for Resource {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Resource {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resource an fd holds, from the class the kernel side gave it (`None`
/// for a dup of an fd it did not know; its /proc link tells later).
pub(crate) fn of_fd(class: leaktrace_common::fd::Resource) -> Option<Resource> {
    use leaktrace_common::fd::Resource as Fd;
    Some(match class {
        Fd::Unknown => return None,
        Fd::File => Resource::File,
        Fd::Socket => Resource::Socket,
        Fd::Pipe => Resource::Pipe,
        Fd::EventFd => Resource::EventFd,
        Fd::Epoll => Resource::Epoll,
        Fd::TimerFd => Resource::TimerFd,
        Fd::SignalFd => Resource::SignalFd,
        Fd::Inotify => Resource::Inotify,
        Fd::MemFd => Resource::MemFd,
        Fd::PidFd => Resource::PidFd,
        Fd::Fanotify | Fd::UserFaultFd | Fd::PerfEvent | Fd::IoUring | Fd::Mount => Resource::Other,
    })
}

/// What a mapping holds, from the kernel side's class.
pub(crate) fn of_mapping(class: leaktrace_common::mmap::MapResource) -> Resource {
    use leaktrace_common::mmap::MapResource;
    match class {
        MapResource::Anon => Resource::Anon,
        MapResource::File => Resource::File,
        MapResource::Shared => Resource::Shared,
    }
}

/// A selection of kinds: each at most once, listed in [`Kind::ALL`]'s order.
/// Named on the command line and in config files by kind names, or `all`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub(crate) struct Kinds(Vec<Kind>);

impl Kinds {
    pub(crate) fn all() -> Kinds {
        Kinds(Kind::ALL.to_vec())
    }

    pub(crate) fn of(kinds: &[Kind]) -> Kinds {
        Kinds(Kind::ALL.iter().copied().filter(|k| kinds.contains(k)).collect())
    }

    /// `fd`, `tcp`, `mmap` or `all`.
    pub(crate) fn parse(name: &str) -> Result<Kinds, String> {
        if name == "all" {
            return Ok(Kinds::all());
        }
        match Kind::from_name(name) {
            Some(kind) => Ok(Kinds::of(&[kind])),
            None => {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                Err(format!("unknown kind '{name}' (expected {} or all)", names.join(", ")))
            }
        }
    }

    /// The union of several selections (`--kinds fd --kinds mmap`).
    pub(crate) fn union<'a>(parts: impl IntoIterator<Item = &'a Kinds>) -> Kinds {
        let all: Vec<Kind> = parts.into_iter().flat_map(|k| k.0.iter().copied()).collect();
        Kinds::of(&all)
    }

    pub(crate) fn contains(&self, kind: Kind) -> bool {
        self.0.contains(&kind)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Kind> + '_ {
        self.0.iter().copied()
    }

    pub(crate) fn to_vec(&self) -> Vec<Kind> {
        self.0.clone()
    }

    /// The names, comma-separated (as a recording's meta keeps them).
    pub(crate) fn joined(&self) -> String {
        self.iter().map(Kind::name).collect::<Vec<_>>().join(",")
    }
}

impl TryFrom<Vec<String>> for Kinds {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Kinds, String> {
        let parts = names.iter().map(|n| Kinds::parse(n)).collect::<Result<Vec<_>, _>>()?;
        Ok(Kinds::union(&parts))
    }
}

impl From<Kinds> for Vec<String> {
    fn from(kinds: Kinds) -> Vec<String> {
        kinds.iter().map(|k| k.name().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json() {
        for &kind in Kind::ALL {
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<Kind>(&json).expect("kind"), kind);
        }
        for &resource in Resource::ALL {
            let json = serde_json::to_string(&resource).expect("json");
            assert_eq!(json, format!("\"{}\"", resource.name()));
            assert_eq!(serde_json::from_str::<Resource>(&json).expect("resource"), resource);
            assert_eq!(Resource::from_name(resource.name()), resource);
        }
        assert_eq!(serde_json::from_str::<Resource>("\"goroutine\"").expect("unknown"), Resource::Other);
        assert_eq!(Resource::from_name("anonymous"), Resource::Other);
        assert!(serde_json::from_str::<Kind>("\"goroutine\"").is_err());
        assert_eq!(Kind::names_listed(), "fd, tcp or mmap");
        assert_eq!(Kind::from_name("tcp"), Some(Kind::Tcp));
    }

    #[test]
    fn every_fd_class_has_a_resource() {
        use leaktrace_common::fd::Resource as Fd;
        assert_eq!(of_fd(Fd::Unknown), None);
        assert_eq!(of_fd(Fd::Pipe), Some(Resource::Pipe));
        assert_eq!(of_fd(Fd::IoUring), Some(Resource::Other));
        assert_eq!(of_mapping(leaktrace_common::mmap::MapResource::Anon).name(), "anon");
    }

    #[test]
    fn kinds_and_resources_sort_by_name_as_reports_did() {
        let mut kinds = Kind::ALL.to_vec();
        kinds.sort();
        assert_eq!(kinds, vec![Kind::Fd, Kind::Mmap, Kind::Tcp]);
        assert!(Resource::Anon < Resource::File && Resource::Socket < Resource::TimerFd);
    }

    #[test]
    fn nouns_agree_with_counts() {
        assert_eq!(Kind::Fd.noun(Resource::File, 1), "file");
        assert_eq!(Kind::Fd.noun(Resource::File, 100), "files");
        assert_eq!(Kind::Fd.noun(Resource::Pipe, 2), "pipe ends");
        assert_eq!(Kind::Fd.noun(Resource::Other, 3), "other fds");
        assert_eq!(Kind::Tcp.noun(Resource::Socket, 1), "TCP connection");
        assert_eq!(Kind::Mmap.noun(Resource::Anon, 2), "anonymous mappings");
        assert_eq!(Kind::Mmap.noun(Resource::File, 1), "file mapping");
        assert_eq!(Kind::Fd.unit(Resource::Socket), "sockets");
        assert_eq!(Kind::Tcp.unit(Resource::Socket), "connections");
    }

    #[test]
    fn selections_expand_all_and_keep_the_report_order() {
        assert_eq!(Kinds::parse("all").expect("all").to_vec(), Kind::ALL.to_vec());
        let picked = Kinds::union(&[Kinds::parse("mmap").expect("mmap"), Kinds::parse("fd").expect("fd")]);
        assert_eq!(picked.to_vec(), vec![Kind::Fd, Kind::Mmap]);
        assert_eq!(picked.joined(), "fd,mmap");
        assert_eq!(Kinds::parse("files").expect_err("unknown"), "unknown kind 'files' (expected fd, tcp, mmap or all)");
        let from_toml: Kinds = serde_json::from_str(r#"["tcp", "all"]"#).expect("kinds");
        assert_eq!(from_toml, Kinds::all());
        assert_eq!(serde_json::to_string(&Kinds::of(&[Kind::Tcp, Kind::Fd])).expect("json"), r#"["fd","tcp"]"#);
    }
}
