//! Aggregation of held resources per (kind, resource, stack): counts, pids,
//! ages and a few examples, in memory proportional to the number of distinct
//! stacks, not of resources.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use leaktrace_common::fd::Resource;

use super::fd::{resource_from_link, resource_name};
use super::ProcId;
use crate::symbolize::NormStack;

/// One resource still held at the end of the window (or at its process's exit).
#[derive(Clone, Debug)]
pub struct Held {
    pub proc: ProcId,
    pub fd: u32,
    pub resource: Resource,
    /// The /proc fd link (a path, `socket:[…]`, `pipe:[…]`, …) when known.
    pub link: Option<String>,
    pub acquired_ns: u64,
    /// When it was last seen held: its process's exit, or the report.
    pub held_until_ns: u64,
    pub stack: Arc<NormStack>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub pid: u32,
    pub fd: u32,
    pub path: Option<String>,
    pub age_ns: u64,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub kind: &'static str,
    pub resource: &'static str,
    pub stack: Arc<NormStack>,
    pub count: u64,
    pub pids: BTreeSet<u32>,
    pub oldest_age_ns: u64,
    /// The oldest few, oldest first.
    pub examples: Vec<Example>,
}

pub struct Aggregator {
    groups: HashMap<(&'static str, Arc<NormStack>), Group>,
    max_examples: usize,
}

impl Aggregator {
    pub fn new(max_examples: usize) -> Self {
        Aggregator { groups: HashMap::new(), max_examples }
    }

    pub fn add(&mut self, held: Held) {
        let resource = match (held.resource, &held.link) {
            (Resource::Unknown, Some(link)) => resource_from_link(link),
            (r, _) => r,
        };
        let resource = resource_name(resource);
        let age_ns = held.held_until_ns.saturating_sub(held.acquired_ns);
        let group = self.groups.entry((resource, held.stack.clone())).or_insert_with(|| Group {
            kind: "fd",
            resource,
            stack: held.stack.clone(),
            count: 0,
            pids: BTreeSet::new(),
            oldest_age_ns: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        group.pids.insert(held.proc.tgid);
        group.oldest_age_ns = group.oldest_age_ns.max(age_ns);
        let example = Example { pid: held.proc.tgid, fd: held.fd, path: held.link, age_ns };
        if group.examples.len() < self.max_examples {
            group.examples.push(example);
        } else if let Some(youngest) = group.examples.iter_mut().min_by_key(|e| e.age_ns) {
            if youngest.age_ns < example.age_ns {
                *youngest = example;
            }
        }
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.groups.values().map(|g| g.count).sum()
    }

    /// Groups by count, largest first; ties by oldest age, then stack depth
    /// so the order is stable.
    pub fn into_groups(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        for g in &mut groups {
            g.examples.sort_by(|a, b| b.age_ns.cmp(&a.age_ns).then(a.pid.cmp(&b.pid)).then(a.fd.cmp(&b.fd)));
        }
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.oldest_age_ns.cmp(&a.oldest_age_ns))
                .then(a.resource.cmp(b.resource))
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
        })
    }

    fn held(pid: u32, fd: u32, resource: Resource, stack: Arc<NormStack>, age: u64) -> Held {
        Held {
            proc: ProcId { tgid: pid, gen: 1 },
            fd,
            resource,
            link: None,
            acquired_ns: 1000,
            held_until_ns: 1000 + age,
            stack,
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
        assert_eq!(groups[0].resource, "file");
        assert_eq!(groups[0].oldest_age_ns, 99);
        let ages: Vec<u64> = groups[0].examples.iter().map(|e| e.age_ns).collect();
        assert_eq!(ages, vec![99, 98, 97], "the oldest examples, oldest first");
        assert_eq!(groups[1].count + groups[2].count, 2);
    }

    #[test]
    fn unknown_resources_take_their_kind_from_the_fd_link() {
        let mut agg = Aggregator::new(3);
        let mut h = held(10, 7, Resource::Unknown, stack(&[0x10], 0), 1);
        h.link = Some("pipe:[4242]".into());
        agg.add(h);
        let groups = agg.into_groups();
        assert_eq!(groups[0].resource, "pipe");
        assert_eq!(groups[0].examples[0].path.as_deref(), Some("pipe:[4242]"));
    }
}
