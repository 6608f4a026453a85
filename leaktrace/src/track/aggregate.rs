//! Aggregation of held resources per (kind, resource, stack): counts, bytes,
//! pids, ages and a few examples, in memory proportional to the number of
//! distinct stacks, not of resources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use super::fd::resource_of_link;
use super::history::{earliest_known, Observed};
use super::survivors::Survivors;
use super::tcp::TcpInfo;
use crate::proc_id::ProcId;
use crate::resource::{Kind, Resource};
use crate::symbolize::NormStack;

/// One resource still held at the end of the window (or at its process's exit).
#[derive(Clone, Debug)]
pub(crate) struct Held {
    pub proc: ProcId,
    /// Its pid in its own pid namespace, when that is not `proc.tgid`.
    pub ns_pid: Option<u32>,
    pub acquired_ns: u64,
    /// When it was last seen held: its process's exit, or the report.
    pub held_until_ns: u64,
    /// When its stack was first seen acquiring anything (0: not known).
    pub stack_since_ns: u64,
    pub stack: Arc<NormStack>,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum What {
    Fd(HeldFd),
    Mapping(HeldMapping),
}

impl What {
    /// The kind and resource it is reported under.
    pub(crate) fn kind_and_resource(&self) -> (Kind, Resource) {
        match self {
            What::Fd(fd) => {
                // A dup of an fd acquired before tracing says what it holds
                // through its /proc link only.
                let resource =
                    fd.resource.unwrap_or_else(|| fd.link.as_deref().map_or(Resource::Other, resource_of_link));
                // A TCP socket is reported once, as a connection, not also as an fd.
                (if fd.tcp.is_some() { Kind::Tcp } else { Kind::Fd }, resource)
            }
            What::Mapping(m) => (Kind::Mmap, m.resource),
        }
    }
}

/// What a stack is aggregated and followed over time under: with
/// `owner`, one process's use of the stack apart from other processes'
/// (the daemon follows and judges each process by itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub kind: Kind,
    pub resource: Resource,
    pub stack: Arc<NormStack>,
    pub owner: Option<ProcId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeldFd {
    pub fd: u32,
    /// What it holds; None for a dup of an fd the kernel side did not know.
    pub resource: Option<Resource>,
    /// The /proc fd link (a path, `socket:[…]`, `pipe:[…]`, …) when known.
    pub link: Option<String>,
    /// For sockets: family and type (`leaktrace_common::socket`), 0 unknown.
    pub socket: (u16, u16),
    /// The TCP connection this fd is, if it is one.
    pub tcp: Option<TcpInfo>,
}

/// What is left of one mmap call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeldMapping {
    /// The lowest address it still holds.
    pub address: u64,
    pub bytes: u64,
    pub regions: u32,
    pub prot: u32,
    pub flags: u32,
    pub resource: Resource,
    pub path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Example {
    /// The process instance, not only its pid: paths filled in at the end
    /// must come from this process, not from a later one given its pid.
    pub proc: ProcId,
    pub ns_pid: Option<u32>,
    pub age_ns: u64,
    pub what: ExampleWhat,
    /// Held by its process at its exit (see [`Aggregator::mark_exited`]).
    pub exited: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExampleWhat {
    Fd {
        fd: u32,
        path: Option<String>,
        /// For sockets: family and type.
        socket: (u16, u16),
        /// For TCP connections: the connection and how long it has been in its state.
        tcp: Option<(TcpInfo, u64)>,
    },
    Mapping(HeldMapping),
}

impl Example {
    /// The fd, for fd kinds.
    pub(crate) fn fd(&self) -> Option<u32> {
        match &self.what {
            ExampleWhat::Fd { fd, .. } => Some(*fd),
            ExampleWhat::Mapping(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub kind: Kind,
    pub resource: Resource,
    pub stack: Arc<NormStack>,
    /// The one process it belongs to, when aggregated per process.
    pub owner: Option<ProcId>,
    /// What processes held when they exited (see [`Aggregator::mark_exited`]).
    pub exited: bool,
    pub count: u64,
    /// Of `count`, what processes held at their exit (the rest is held by
    /// live ones).
    pub held_at_exit: u64,
    /// Memory mappings: bytes still mapped.
    pub bytes: u64,
    pub pids: BTreeSet<u32>,
    pub oldest_age_ns: u64,
    /// CLOCK_MONOTONIC ns of the earliest acquisition held.
    pub first_acquired_ns: u64,
    /// When they were acquired (bounded), and when last seen held.
    pub survivors: Survivors,
    pub last_seen_ns: u64,
    /// The first acquisition with this stack, released ones included (0:
    /// not known).
    pub since_ns: u64,
    /// The oldest few, oldest first.
    pub examples: Vec<Example>,
    /// TCP: connections per state name.
    pub states: BTreeMap<&'static str, u64>,
    /// TCP: connections in CLOSE_WAIT for at least [`STALE_CLOSE_WAIT_NS`]
    /// when last seen held.
    pub stale_close_wait: u64,
    /// TCP: connections per local and per remote address, for the first
    /// [`MAX_PEERS`] distinct addresses; the rest are counted in `*_others`.
    pub locals: BTreeMap<SocketAddr, u64>,
    pub remotes: BTreeMap<SocketAddr, u64>,
    pub other_locals: u64,
    pub other_remotes: u64,
}

impl Group {
    fn new(key: GroupKey) -> Group {
        Group {
            kind: key.kind,
            resource: key.resource,
            stack: key.stack,
            owner: key.owner,
            exited: false,
            count: 0,
            held_at_exit: 0,
            bytes: 0,
            pids: BTreeSet::new(),
            oldest_age_ns: 0,
            first_acquired_ns: u64::MAX,
            survivors: Survivors::default(),
            last_seen_ns: 0,
            since_ns: 0,
            examples: Vec::new(),
            states: BTreeMap::new(),
            stale_close_wait: 0,
            locals: BTreeMap::new(),
            remotes: BTreeMap::new(),
            other_locals: 0,
            other_remotes: 0,
        }
    }

    pub(crate) fn key(&self) -> GroupKey {
        GroupKey { kind: self.kind, resource: self.resource, stack: self.stack.clone(), owner: self.owner }
    }
}

/// How long a connection may sit in CLOSE_WAIT before it counts as stale:
/// the peer closed it that long ago and the program has not, which no
/// request handling explains (it reads the end of the stream at once).
pub(crate) const STALE_CLOSE_WAIT_NS: u64 = 5_000_000_000;

/// Distinct local or remote addresses kept per group: a server with a
/// connection from every port of a client must not grow a group without bound.
pub(crate) const MAX_PEERS: usize = 32;

fn count_peer(peers: &mut BTreeMap<SocketAddr, u64>, others: &mut u64, addr: SocketAddr) {
    if let Some(n) = peers.get_mut(&addr) {
        *n += 1;
    } else if peers.len() < MAX_PEERS {
        peers.insert(addr, 1);
    } else {
        *others += 1;
    }
}

/// Keeps the `max` oldest examples.
fn keep_oldest(examples: &mut Vec<Example>, example: Example, max: usize) {
    if examples.len() < max {
        examples.push(example);
    } else if let Some(youngest) = examples.iter_mut().min_by_key(|e| e.age_ns) {
        if youngest.age_ns < example.age_ns {
            *youngest = example;
        }
    }
}

/// A stack's `Arc` address, kind, resource and owner.
type AddressKey = (usize, Kind, Resource, Option<ProcId>);

#[derive(Clone)]
pub(crate) struct Aggregator {
    groups: Vec<Group>,
    index: HashMap<GroupKey, usize>,
    /// A group by the address of its stack's `Arc`, found without hashing
    /// the frames: the resolver hands out one `Arc` per stack of an image, so
    /// a million entries bring a few thousand addresses. The `Arc` is kept,
    /// so its address cannot be reused by another stack while it is here.
    by_address: HashMap<AddressKey, (usize, Arc<NormStack>)>,
    max_examples: usize,
    per_process: bool,
}

impl Aggregator {
    pub(crate) fn new(max_examples: usize) -> Self {
        Aggregator {
            groups: Vec::new(),
            index: HashMap::new(),
            by_address: HashMap::new(),
            max_examples,
            per_process: false,
        }
    }

    /// Keeps each process's use of a stack in a group of its own.
    pub(crate) fn per_process(mut self, yes: bool) -> Self {
        self.per_process = yes;
        self
    }

    /// The index of the group of (kind, resource, stack, owner), a new one
    /// if need be.
    fn slot(&mut self, kind: Kind, resource: Resource, stack: &Arc<NormStack>, owner: Option<ProcId>) -> usize {
        let address = Arc::as_ptr(stack) as usize;
        if let Some((i, _)) = self.by_address.get(&(address, kind, resource, owner)) {
            return *i;
        }
        let next = self.groups.len();
        let key = GroupKey { kind, resource, stack: stack.clone(), owner };
        let i = *self.index.entry(key.clone()).or_insert(next);
        if i == next {
            self.groups.push(Group::new(key));
        }
        self.by_address.insert((address, kind, resource, owner), (i, stack.clone()));
        i
    }

    pub(crate) fn add(&mut self, held: Held) {
        let (kind, resource) = held.what.kind_and_resource();
        let age_ns = held.held_until_ns.saturating_sub(held.acquired_ns);
        let owner = self.per_process.then_some(held.proc);
        let i = self.slot(kind, resource, &held.stack, owner);
        let group = &mut self.groups[i];
        group.count += 1;
        group.pids.insert(held.proc.tgid);
        group.oldest_age_ns = group.oldest_age_ns.max(age_ns);
        group.first_acquired_ns = group.first_acquired_ns.min(held.acquired_ns);
        group.survivors.add(held.acquired_ns, held.held_until_ns);
        group.last_seen_ns = group.last_seen_ns.max(held.held_until_ns);
        group.since_ns = earliest_known(group.since_ns, held.stack_since_ns);
        let what = match held.what {
            What::Fd(fd) => {
                if let Some(t) = fd.tcp {
                    *group.states.entry(t.state_name()).or_default() += 1;
                    if t.state == leaktrace_common::tcp::TCP_CLOSE_WAIT
                        && held.held_until_ns.saturating_sub(t.state_ns) >= STALE_CLOSE_WAIT_NS
                    {
                        group.stale_close_wait += 1;
                    }
                    count_peer(&mut group.locals, &mut group.other_locals, t.local);
                    count_peer(&mut group.remotes, &mut group.other_remotes, t.remote);
                }
                let tcp = fd.tcp.map(|t| (t, held.held_until_ns.saturating_sub(t.state_ns)));
                ExampleWhat::Fd { fd: fd.fd, path: fd.link, socket: fd.socket, tcp }
            }
            What::Mapping(m) => {
                group.bytes += m.bytes;
                ExampleWhat::Mapping(m)
            }
        };
        let example = Example { proc: held.proc, ns_pid: held.ns_pid, age_ns, what, exited: false };
        keep_oldest(&mut group.examples, example, self.max_examples);
    }

    /// Adds what `other` holds, stack by stack.
    pub(crate) fn merge(&mut self, other: Aggregator) {
        for from in other.groups {
            let owner = if self.per_process { from.owner } else { None };
            let i = self.slot(from.kind, from.resource, &from.stack, owner);
            let into = &mut self.groups[i];
            if into.count == 0 && into.examples.is_empty() {
                *into = from;
                continue;
            }
            into.exited &= from.exited;
            into.count += from.count;
            into.held_at_exit += from.held_at_exit;
            into.bytes += from.bytes;
            into.pids.extend(from.pids);
            into.oldest_age_ns = into.oldest_age_ns.max(from.oldest_age_ns);
            into.first_acquired_ns = into.first_acquired_ns.min(from.first_acquired_ns);
            into.survivors.merge(&from.survivors);
            into.last_seen_ns = into.last_seen_ns.max(from.last_seen_ns);
            into.since_ns = earliest_known(into.since_ns, from.since_ns);
            for (state, n) in from.states {
                *into.states.entry(state).or_default() += n;
            }
            into.stale_close_wait += from.stale_close_wait;
            for (addr, n) in from.locals {
                for _ in 0..n {
                    count_peer(&mut into.locals, &mut into.other_locals, addr);
                }
            }
            for (addr, n) in from.remotes {
                for _ in 0..n {
                    count_peer(&mut into.remotes, &mut into.other_remotes, addr);
                }
            }
            into.other_locals += from.other_locals;
            into.other_remotes += from.other_remotes;
            for example in from.examples {
                keep_oldest(&mut into.examples, example, self.max_examples);
            }
        }
    }

    /// Fills in the paths of fd examples that have none and whose process
    /// `readable(proc)` says can be asked (it is still the process that
    /// holds the fd, not a later one with its pid), with `read(pid, fd)`, on
    /// a few threads: each is a readlink in /proc, and there can be tens of
    /// thousands.
    pub(crate) fn fill_paths(
        &mut self,
        mut readable: impl FnMut(ProcId) -> bool,
        read: impl Fn(u32, u32) -> Option<String> + Sync,
    ) {
        let mut wanted: Vec<(usize, usize, u32, u32)> = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            for (e, example) in group.examples.iter().enumerate() {
                if let ExampleWhat::Fd { fd, path: None, .. } = &example.what {
                    if readable(example.proc) {
                        wanted.push((g, e, example.proc.tgid, *fd));
                    }
                }
            }
        }
        const THREADS: usize = 4;
        let per_thread = wanted.len().div_ceil(THREADS).max(1);
        let read = &read;
        let found: Vec<Vec<(usize, usize, Option<String>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = wanted
                .chunks(per_thread)
                .map(|chunk| scope.spawn(move || chunk.iter().map(|&(g, e, pid, fd)| (g, e, read(pid, fd))).collect()))
                .collect();
            // A worker that failed leaves its examples without paths.
            workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
        });
        for (g, e, path) in found.into_iter().flatten() {
            let resource = self.groups[g].resource;
            if let ExampleWhat::Fd { path: slot, .. } = &mut self.groups[g].examples[e].what {
                *slot = path.filter(|link| crate::track::fd::link_fits(resource, link));
            }
        }
    }

    /// Marks everything here as held by processes at their exit, so that
    /// a process given one of their pids since is not taken for them.
    pub(crate) fn mark_exited(&mut self) {
        for g in &mut self.groups {
            g.exited = true;
            g.held_at_exit = g.count;
            for e in &mut g.examples {
                e.exited = true;
            }
        }
    }

    /// What each stack holds now, as one sample of the history.
    pub(crate) fn observed(&self) -> HashMap<GroupKey, Observed> {
        self.groups
            .iter()
            .map(|g| (g.key(), Observed { count: g.count, bytes: g.bytes, oldest_acquired_ns: g.first_acquired_ns }))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.groups.iter().map(|g| g.count).sum()
    }

    /// Fds and connections by count, largest first, then mappings by bytes;
    /// ties by oldest age, then stack depth so the order is stable.
    pub(crate) fn into_groups(self) -> Vec<Group> {
        let mut groups = self.groups;
        for g in &mut groups {
            g.examples.sort_by(|a, b| b.age_ns.cmp(&a.age_ns).then(a.proc.cmp(&b.proc)).then(a.fd().cmp(&b.fd())));
        }
        groups.sort_by(|a, b| {
            a.kind
                .in_bytes()
                .cmp(&b.kind.in_bytes())
                .then(b.bytes.cmp(&a.bytes))
                .then(b.count.cmp(&a.count))
                .then(b.oldest_age_ns.cmp(&a.oldest_age_ns))
                .then(a.resource.cmp(&b.resource))
                .then(a.stack.frames.len().cmp(&b.stack.frames.len()))
        });
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::maps::{Location, Module};
    use crate::symbolize::NormFrame;
    use std::path::Path;

    fn stack(offsets: &[u64], base: u64) -> Arc<NormStack> {
        let module = Module::File { path: Arc::from(Path::new("/bin/app")), id: None };
        Arc::new(NormStack {
            frames: offsets
                .iter()
                .map(|&o| NormFrame {
                    addr: base + o,
                    location: Location::InModule { module: module.clone(), file_offset: o },
                })
                .collect(),
            truncated: None,
            unresolved: None,
            frame_pointers: false,
        })
    }

    fn held(pid: u32, fd: u32, resource: Resource, stack: Arc<NormStack>, age: u64) -> Held {
        Held {
            stack_since_ns: 0,
            proc: ProcId { tgid: pid, gen: 1 },
            ns_pid: None,
            acquired_ns: 1000,
            held_until_ns: 1000 + age,
            stack,
            what: What::Fd(HeldFd { fd, resource: Some(resource), link: None, socket: (0, 0), tcp: None }),
        }
    }

    fn fd_of(h: &mut Held) -> &mut HeldFd {
        match &mut h.what {
            What::Fd(fd) => fd,
            What::Mapping(_) => panic!("not an fd"),
        }
    }

    #[test]
    fn same_code_at_different_load_addresses_is_one_stack() {
        let mut agg = Aggregator::new(3);
        for fd in 0..100 {
            agg.add(held(10, fd, Resource::File, stack(&[0x10, 0x20], 0x5500_0000_0000), fd as u64));
        }
        // Same binary in a child, loaded elsewhere (ASLR).
        agg.add(held(11, 3, Resource::File, stack(&[0x10, 0x20], 0x5600_0000_0000), 5));
        agg.add(held(10, 200, Resource::Pipe, stack(&[0x10, 0x20], 0x5500_0000_0000), 1));
        agg.add(held(10, 201, Resource::File, stack(&[0x10, 0x30], 0x5500_0000_0000), 1));
        assert_eq!(agg.total(), 103);
        let groups = agg.into_groups();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].count, 101);
        assert_eq!(groups[0].pids.iter().copied().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(groups[0].resource.name(), "file");
        assert_eq!(groups[0].oldest_age_ns, 99);
        let ages: Vec<u64> = groups[0].examples.iter().map(|e| e.age_ns).collect();
        assert_eq!(ages, vec![99, 98, 97], "the oldest examples, oldest first");
        assert_eq!(groups[1].count + groups[2].count, 2);
    }

    #[test]
    fn what_exited_processes_held_stays_apart_from_what_live_ones_hold() {
        // pid 10 exited holding 5 from the stack; pid 11 lives holding 2.
        let (mut ended, mut live) = (Aggregator::new(3), Aggregator::new(3));
        for fd in 0..5 {
            ended.add(held(10, fd, Resource::File, stack(&[0x10], 0x5500_0000_0000), 100 + u64::from(fd)));
        }
        for fd in 0..2 {
            live.add(held(11, fd, Resource::File, stack(&[0x10], 0x5500_0000_0000), u64::from(fd)));
        }
        ended.mark_exited();
        ended.merge(live);
        let groups = ended.into_groups();
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].count, groups[0].held_at_exit, groups[0].exited), (7, 5, false));
        let examples: Vec<(u32, bool)> = groups[0].examples.iter().map(|e| (e.proc.tgid, e.exited)).collect();
        assert_eq!(examples, vec![(10, true), (10, true), (10, true)], "the oldest, the exited one's");
    }

    #[test]
    fn merged_aggregates_equal_one_fed_everything() {
        let (mut whole, mut first, mut second) = (Aggregator::new(3), Aggregator::new(3), Aggregator::new(3));
        for fd in 0..50 {
            let h = held(10 + fd % 2, fd, Resource::File, stack(&[0x10, 0x20], 0x5500_0000_0000), fd as u64);
            whole.add(h.clone());
            if fd < 20 {
                first.add(h)
            } else {
                second.add(h)
            }
        }
        first.merge(second);
        let (a, b) = (whole.into_groups(), first.into_groups());
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].count, a[0].oldest_age_ns, &a[0].pids), (b[0].count, b[0].oldest_age_ns, &b[0].pids));
        assert_eq!(a[0].examples, b[0].examples);
        assert_eq!(b[0].first_acquired_ns, a[0].first_acquired_ns);
    }

    #[test]
    fn tcp_sockets_are_connections_counted_by_state_and_peer() {
        use crate::track::tcp::TcpInfo;
        let mut agg = Aggregator::new(2);
        let server: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        for (i, state) in [8u32, 8, 8, 1].iter().enumerate() {
            let mut h = held(10, 3 + i as u32, Resource::Socket, stack(&[0x10], 0), 50);
            let local: SocketAddr = format!("127.0.0.1:{}", 41000 + i).parse().expect("addr");
            fd_of(&mut h).tcp = Some(TcpInfo { state: *state, local, remote: server, state_ns: 1020 });
            agg.add(h);
        }
        // A UDP socket from the same stack stays an fd.
        agg.add(held(10, 9, Resource::Socket, stack(&[0x10], 0), 50));
        let groups = agg.into_groups();
        assert_eq!(groups.len(), 2);
        let tcp = groups.iter().find(|g| g.kind.name() == "tcp").expect("tcp group");
        assert_eq!(tcp.count, 4);
        assert_eq!(tcp.states.get("CLOSE_WAIT"), Some(&3));
        assert_eq!(tcp.states.get("ESTABLISHED"), Some(&1));
        assert_eq!(tcp.remotes.get(&server), Some(&4));
        assert_eq!(tcp.locals.len(), 4);
        assert!(matches!(tcp.examples[0].what, ExampleWhat::Fd { tcp: Some((_, 30)), .. }));
        let fd = groups.iter().find(|g| g.kind.name() == "fd").expect("fd group");
        assert_eq!((fd.count, fd.resource.name()), (1, "socket"));
    }

    #[test]
    fn peers_are_bounded() {
        let mut peers = BTreeMap::new();
        let mut others = 0;
        for port in 0..100u16 {
            count_peer(&mut peers, &mut others, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        assert_eq!((peers.len(), others), (MAX_PEERS, 100 - MAX_PEERS as u64));
    }

    #[test]
    fn unknown_resources_take_their_kind_from_the_fd_link() {
        let mut agg = Aggregator::new(3);
        let mut h = held(10, 7, Resource::File, stack(&[0x10], 0), 1);
        fd_of(&mut h).resource = None;
        fd_of(&mut h).link = Some("pipe:[4242]".into());
        agg.add(h);
        let groups = agg.into_groups();
        assert_eq!(groups[0].resource.name(), "pipe");
        assert!(matches!(&groups[0].examples[0].what, ExampleWhat::Fd { path: Some(p), .. } if p == "pipe:[4242]"));
    }

    #[test]
    fn paths_are_filled_in_only_from_the_process_that_held_the_fd() {
        // pid 10 exited holding fd 3 (gen 1); a new process got pid 10
        // (gen 2) and holds its own fd 3.
        let mut agg = Aggregator::new(3);
        let old = held(10, 3, Resource::File, stack(&[0x10], 0), 5);
        let mut new = held(10, 3, Resource::File, stack(&[0x20], 0), 1);
        new.proc.gen = 2;
        new.ns_pid = Some(1);
        agg.add(old);
        agg.add(new);
        agg.fill_paths(|p| p.gen == 2, |pid, fd| Some(format!("/proc/{pid}/fd/{fd} now")));
        let groups = agg.into_groups();
        let path = |g: &Group| match &g.examples[0].what {
            ExampleWhat::Fd { path, .. } => path.clone(),
            ExampleWhat::Mapping(_) => None,
        };
        let old = groups.iter().find(|g| g.examples[0].proc.gen == 1).expect("old");
        let new = groups.iter().find(|g| g.examples[0].proc.gen == 2).expect("new");
        assert_eq!(path(old), None, "the new process's fd 3 is not the old one's");
        assert_eq!(path(new).as_deref(), Some("/proc/10/fd/3 now"));
        assert_eq!((old.examples[0].ns_pid, new.examples[0].ns_pid), (None, Some(1)));
    }

    #[test]
    fn mappings_are_counted_per_call_and_summed_in_bytes_after_the_fds() {
        let mut agg = Aggregator::new(3);
        let mapping = |bytes: u64, regions: u32| {
            What::Mapping(HeldMapping {
                address: 0x7f00_0000_0000,
                bytes,
                regions,
                prot: 3,
                flags: 0x22,
                resource: Resource::Anon,
                path: None,
            })
        };
        for (bytes, regions) in [(8192, 1), (4096, 2)] {
            agg.add(Held {
                stack_since_ns: 0,
                proc: ProcId { tgid: 10, gen: 1 },
                ns_pid: None,
                acquired_ns: 1000,
                held_until_ns: 1010,
                stack: stack(&[0x40], 0),
                what: mapping(bytes, regions),
            });
        }
        agg.add(held(10, 3, Resource::File, stack(&[0x10], 0), 5));
        let groups = agg.into_groups();
        assert_eq!(groups.iter().map(|g| g.kind.name()).collect::<Vec<_>>(), vec!["fd", "mmap"]);
        assert_eq!((groups[1].count, groups[1].bytes, groups[1].resource.name()), (2, 12288, "anon"));
        assert_eq!(groups[0].bytes, 0);
    }
}
