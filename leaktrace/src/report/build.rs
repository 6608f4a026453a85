//! Builds the report from a finished session: symbolizes each stack once and
//! converts monotonic stamps to wall-clock times and seconds.

use crate::procfs;
use crate::session::Outcome;
use crate::symbolize::{Resolver, SymFrame};

use super::{site::leak_site, Example, Frame, Preexisting, Report, StackEntry, Target, Totals, Window, SCHEMA};

pub struct Context {
    pub mode: &'static str,
    pub targets: Vec<Target>,
    /// CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    pub end_ns: u64,
    pub preexisting: Vec<Preexisting>,
    /// Examples kept per stack.
    pub max_examples: usize,
}

const NS: f64 = 1e9;

pub fn build(ctx: Context, outcome: Outcome, resolver: &mut Resolver) -> Report {
    let entries: Vec<StackEntry> = outcome
        .groups
        .iter()
        .map(|g| {
            let frames = resolver.symbolize(&g.stack);
            let site = leak_site(&frames).and_then(|i| frames[i].symbol.clone());
            let truncated = match (&g.stack.truncated, &g.stack.unresolved) {
                (Some(why), _) => Some((*why).to_string()),
                (None, Some(crate::symbolize::Unresolved::NoStack(why))) => Some(format!("no stack: {why}")),
                _ => None,
            };
            StackEntry {
                kind: g.kind,
                resource: g.resource,
                count: g.count,
                bytes: 0,
                pids: g.pids.iter().copied().collect(),
                oldest_age_seconds: g.oldest_age_ns as f64 / NS,
                stack: frames.iter().map(frame).collect(),
                examples: g
                    .examples
                    .iter()
                    .map(|e| Example { pid: e.pid, fd: e.fd, path: e.path.clone(), age_seconds: e.age_ns as f64 / NS })
                    .collect(),
                site,
                truncated,
            }
        })
        .collect();
    let stacks = merge_same_source(entries, ctx.max_examples);
    let outstanding = stacks.iter().map(|s| s.count).sum();
    let losses = outcome.losses;
    let complete =
        losses.map_full == 0 && losses.events_lost == 0 && losses.procs_dropped == 0 && losses.undecodable_events == 0;
    Report {
        schema: SCHEMA,
        mode: ctx.mode,
        targets: ctx.targets,
        window: Window {
            start: procfs::rfc3339(procfs::wall_time(ctx.start_ns)),
            end: procfs::rfc3339(procfs::wall_time(ctx.end_ns)),
            seconds: ctx.end_ns.saturating_sub(ctx.start_ns) as f64 / NS,
        },
        totals: Totals {
            acquired: outcome.acquired,
            released: outcome.released,
            outstanding,
            dropped: losses.map_full,
        },
        preexisting: ctx.preexisting,
        stacks,
        complete,
        losses,
    }
}

fn frame(f: &SymFrame) -> Frame {
    Frame {
        address: format!("{:#x}", f.addr),
        symbol: f.symbol.clone(),
        module: f.module.clone(),
        file: f.file.clone(),
        line: f.line,
        offset: f.symbol_offset,
        inlined: f.inlined,
        reason: f.reason.clone(),
    }
}

/// What makes two symbolized frames the same for people: the function and
/// the source line, or the exact code address when there is no line info.
type FrameKey = (Option<String>, Option<String>, Option<String>, Option<u32>, Option<String>, bool);

fn frame_key(f: &Frame) -> FrameKey {
    let exact = if f.line.is_some() { None } else { Some(f.address.clone()) };
    (f.module.clone(), f.symbol.clone(), f.file.clone(), f.line, exact, f.inlined)
}

/// Merges entries whose stacks differ only in addresses that map to the same
/// source lines (an unrolled loop, or one call site reached at several
/// offsets): one entry per source stack, counts added, oldest kept.
fn merge_same_source(entries: Vec<StackEntry>, max_examples: usize) -> Vec<StackEntry> {
    let mut merged: Vec<StackEntry> = Vec::with_capacity(entries.len());
    let mut index: std::collections::HashMap<(&'static str, &'static str, Vec<FrameKey>), usize> =
        std::collections::HashMap::new();
    for entry in entries {
        let key = (entry.kind, entry.resource, entry.stack.iter().map(frame_key).collect::<Vec<_>>());
        match index.get(&key) {
            Some(&i) => {
                let into = &mut merged[i];
                into.count += entry.count;
                into.bytes += entry.bytes;
                into.oldest_age_seconds = into.oldest_age_seconds.max(entry.oldest_age_seconds);
                into.pids.extend(entry.pids);
                into.pids.sort_unstable();
                into.pids.dedup();
                into.examples.extend(entry.examples);
                into.examples.sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
                into.examples.truncate(max_examples);
            }
            None => {
                index.insert(key, merged.len());
                merged.push(entry);
            }
        }
    }
    merged.sort_by(|a, b| b.count.cmp(&a.count).then(b.oldest_age_seconds.total_cmp(&a.oldest_age_seconds)));
    merged
}
