//! Samples: what live processes hold now, per stack, recorded in the
//! history that verdicts are judged from; and the same, resource by
//! resource, for recordings. Entries become [`Held`] resources here, with
//! their stacks, paths and TCP connections.

use std::sync::Arc;

use leaktrace_common::fd::{FdEntry, FdKey, FLAG_STACK_LOST};
use leaktrace_common::stack::{StackTrace, NO_STACK};

use crate::kernel::{KernelError, Seam};
use crate::proc_id::{ImageId, ProcId};
use crate::procfs;
use crate::resource;
use crate::symbolize::NormStack;
use crate::track::aggregate::{Aggregator, Held, HeldFd, HeldMapping, What};
use crate::track::mmap::{Acquisition, AddressSpace};
use crate::track::tcp::{TcpIndex, TcpInfo};

use super::images::LINKS_FULL_READ;
use super::sweep::Entries;
use super::{held_per_process, MapUse, Session};

/// When a sample is taken: that decides what is read of live processes
/// with it, and whether the history must keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Moment {
    /// The periodic sweep.
    Periodic,
    /// A target's leader is about to exit (`run`): its last sample while it
    /// still holds everything, kept whatever the history's stride.
    TargetExit,
    /// The end of the window: fd paths, mapped files and code mappings of
    /// live processes are read as they are now; kept too.
    End,
}

impl<K: Seam> Session<K> {
    /// The periodic sweep: reads paths of live processes' fds while they can
    /// be read, samples what each stack holds, and frees stacks no
    /// outstanding entry uses any more. Returns the sample.
    pub(crate) fn refresh(&mut self) -> Result<Aggregator, KernelError> {
        // The sweep is unconditional here, unlike a sample's: it also finds
        // processes whose exit event was lost.
        let entries = self.sweep()?;
        self.read_fd_tables(&entries);
        self.name_new_mapped_files();
        let live = self.sample_of(&entries, Moment::Periodic)?;
        self.free_stacks(&entries)?;
        Ok(live)
    }

    /// A sample at `moment`, after what is pending is applied.
    pub(super) fn sample_at(&mut self, moment: Moment) -> Result<Aggregator, KernelError> {
        self.drain_events();
        let entries = if self.has_pending() { self.sweep()? } else { self.kernel.outstanding()? };
        self.sample_of(&entries, moment)
    }

    /// Reads the fd tables (for paths) and code mappings of the live
    /// processes that hold `entries`.
    fn read_fd_tables(&mut self, entries: &Entries) {
        for (proc, held) in held_per_process(entries) {
            if held <= LINKS_FULL_READ {
                self.read_fd_links(proc, proc.tgid);
            }
            self.ensure_snapshot(proc.tgid);
        }
    }

    /// A sample of `entries`, the outstanding map as just read: what live
    /// processes hold, aggregated per stack.
    fn sample_of(&mut self, entries: &Entries, moment: Moment) -> Result<Aggregator, KernelError> {
        let now = procfs::monotonic_ns();
        let socks = self.kernel.tcp_socks()?;
        let tcp = TcpIndex::new(&socks);
        let capacities = self.kernel.capacities();
        self.kernel_maps.outstanding = MapUse { used: entries.len() as u64, capacity: capacities.entries.into() };
        self.kernel_maps.tcp =
            MapUse { used: socks.len() as u64, capacity: if capacities.tcp { capacities.entries.into() } else { 0 } };
        self.kernel_maps.mapping_regions =
            MapUse { used: self.mappings.regions() as u64, capacity: self.mappings.max_regions() as u64 };
        let alive = self.liveness(entries);
        if moment == Moment::End {
            for (proc, held) in held_per_process(entries) {
                if alive[&proc] {
                    if held <= LINKS_FULL_READ {
                        self.read_fd_links(proc, proc.tgid);
                    }
                    self.ensure_snapshot(proc.tgid);
                }
            }
        }
        let mut sample = self.aggregator();
        for (key, entry) in entries.iter().filter(|(k, _)| alive[&ProcId::of_fd(k)]) {
            let held = self.held_fd(key, entry, now, tcp.get(key, entry));
            sample.add(held);
        }
        for proc in self.mappings.procs() {
            if !self.is_live(proc) {
                continue;
            }
            if moment == Moment::End {
                self.name_mapped_files(proc, proc.tgid);
                self.ensure_snapshot(proc.tgid);
            }
            for held in self.mappings_held(proc, now) {
                sample.add(held);
            }
        }
        match moment {
            Moment::Periodic => self.history.record(now, &sample.observed()),
            Moment::TargetExit => self.history.record_kept(now, &sample.observed()),
            // Under run's tracer the last sample was taken as the command
            // exited; what is left now are processes it left behind.
            Moment::End if self.held_by_tracer => {}
            Moment::End => self.history.record_kept(now, &sample.observed()),
        }
        Ok(sample)
    }

    /// The periodic sweep without a sample (recordings): what live processes
    /// hold now, entry by entry, with their fd paths and code mappings read.
    pub(crate) fn live_entries(&mut self) -> Result<Entries, KernelError> {
        let entries = self.sweep()?;
        self.read_fd_tables(&entries);
        self.free_stacks(&entries)?;
        // What ended processes held was taken by the sweep; a recording has
        // it already (it sees it gone at this checkpoint).
        self.agg = self.aggregator();
        Ok(entries)
    }

    /// `entries` of live processes as held resources, with their stacks and
    /// TCP connections.
    pub(crate) fn held_entries(&mut self, entries: &[(FdKey, FdEntry)]) -> Result<Vec<Held>, KernelError> {
        let now = procfs::monotonic_ns();
        let tcp = TcpIndex::new(&self.kernel.tcp_socks()?);
        Ok(entries.iter().map(|(key, entry)| self.held_fd(key, entry, now, tcp.get(key, entry))).collect())
    }

    /// The mappings live processes hold now, one by one (recordings).
    pub(crate) fn live_mappings(&mut self) -> Vec<Held> {
        let now = procfs::monotonic_ns();
        let mut held = Vec::new();
        for proc in self.mappings.procs() {
            if self.is_live(proc) {
                if self.mappings.space_mut(proc).is_some_and(|s| s.has_unnamed_files()) {
                    self.name_mapped_files(proc, proc.tgid);
                }
                held.extend(self.mappings_held(proc, now));
            }
        }
        held
    }

    /// The mappings `proc` holds, with their stacks.
    fn mappings_held(&mut self, proc: ProcId, until: u64) -> Vec<Held> {
        let held = self.mappings.space_mut(proc).map(acquisitions).unwrap_or_default();
        self.held_mappings(proc, held, until)
    }

    /// The mappings `proc` holds, with their stacks, forgotten here (it ended).
    pub(super) fn take_mappings(&mut self, proc: ProcId, until: u64) -> Vec<Held> {
        let held = self.mappings.take(proc).as_mut().map(acquisitions).unwrap_or_default();
        self.held_mappings(proc, held, until)
    }

    fn held_mappings(&mut self, proc: ProcId, held: Vec<(Acquisition, u64)>, until: u64) -> Vec<Held> {
        held.into_iter()
            .map(|(acq, address)| {
                let image = ImageId { proc, exec_seq: acq.exec_seq };
                let stack = self.stack_of(image, acq.stack_id, false);
                Held {
                    proc,
                    ns_pid: self.procs.get(proc).and_then(|p| p.other_ns_pid(proc.tgid)),
                    acquired_ns: acq.acquired_ns,
                    held_until_ns: until,
                    stack_since_ns: self.since(acq.stack_id),
                    stack,
                    what: What::Mapping(HeldMapping {
                        address,
                        bytes: acq.bytes,
                        regions: acq.regions,
                        prot: acq.prot,
                        flags: acq.flags,
                        resource: resource::of_mapping(acq.resource),
                        path: acq.path,
                    }),
                }
            })
            .collect()
    }

    /// An outstanding fd entry as a held resource, held until `until`.
    pub(super) fn held_fd(&mut self, key: &FdKey, entry: &FdEntry, until: u64, tcp: Option<TcpInfo>) -> Held {
        let proc = ProcId::of_fd(key);
        let image = ImageId { proc, exec_seq: entry.exec_seq };
        let stack = self.stack_of(image, entry.stack_id, entry.flags & FLAG_STACK_LOST != 0);
        let resource = resource::of_fd(leaktrace_common::fd::Resource::from_u8(entry.resource));
        let link = self
            .procs
            .get(proc)
            .and_then(|p| p.fd_links.as_ref())
            .and_then(|l| l.link_for(key.fd, entry.acquired_ns))
            .filter(|link| resource.is_none_or(|r| crate::track::fd::link_fits(r, link)))
            .map(str::to_owned);
        Held {
            proc,
            ns_pid: self.procs.get(proc).and_then(|p| p.other_ns_pid(proc.tgid)),
            acquired_ns: entry.acquired_ns,
            held_until_ns: until,
            stack_since_ns: self.since(entry.stack_id),
            stack,
            what: What::Fd(HeldFd { fd: key.fd, resource, link, socket: (entry.sock_family, entry.sock_type), tcp }),
        }
    }

    fn stack_of(&mut self, image: ImageId, stack_id: u64, lost: bool) -> Arc<NormStack> {
        if lost || stack_id == NO_STACK {
            self.resolver.normalize(image, NO_STACK, None)
        } else if let Some(done) = self.resolver.cached_stack(image, stack_id) {
            done
        } else {
            let trace: Option<StackTrace> = self.kernel.stack(stack_id);
            if let Some(t) = &trace {
                self.stack_since.entry(stack_id).or_insert(t.first_ns);
            }
            self.resolver.normalize(image, stack_id, trace.as_ref())
        }
    }

    /// When the kernel first saw stack `stack_id` (0: not known).
    fn since(&self, stack_id: u64) -> u64 {
        self.stack_since.get(&stack_id).copied().unwrap_or(0)
    }
}

/// What an address space still holds: each mmap call's acquisition, with
/// the lowest address it still maps.
fn acquisitions(space: &mut AddressSpace) -> Vec<(Acquisition, u64)> {
    space.held().into_iter().map(|h| (h.acquisition.clone(), h.address)).collect()
}
