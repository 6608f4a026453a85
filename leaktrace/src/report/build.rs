//! Builds the report from a finished session: symbolizes each stack once and
//! converts monotonic stamps to wall-clock times and seconds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use leaktrace_common::socket;

use crate::kernel::Seam;
use crate::procfs;
use crate::resource::Kind;
use crate::session::{Outcome, Session};
use crate::symbolize::{Resolver, SymFrame};
use crate::track::aggregate::{ExampleWhat, GroupKey};
use crate::track::history::{History, Samples};
use crate::track::verdict::{self, judgement, Rule, Verdict};

use super::{
    mapping, outermost, site::leak_site, Example, Frame, MappingTotals, Mode, Preexisting, Report, Sampling,
    StackEntry, Target, Totals, Window, SCHEMA,
};

pub(crate) struct Context {
    pub mode: Mode,
    pub targets: Vec<Target>,
    /// CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    pub end_ns: u64,
    pub preexisting: Vec<Preexisting>,
    /// Examples kept per stack.
    pub max_examples: usize,
    /// The kinds reported (`--kinds`). Without fd the kernel still follows
    /// fds, as TCP connections are found through them, but they are not shown.
    pub kinds: Vec<Kind>,
    /// Mapping stacks holding fewer bytes are left out (`--min-bytes`).
    pub min_bytes: u64,
    /// One fd acquisition in this many was recorded (`--sample`).
    pub sample: u32,
    /// Each process's stacks are its own (the daemon): the same code in
    /// two processes is two entries.
    pub per_process: bool,
    /// The sampling interval, ns: what a stack held at a sample had been
    /// held across the sample before only if it is at least this old.
    pub interval_ns: u64,
}

const NS: f64 = 1e9;

/// The report of a session's `outcome`: each stack's history is the
/// session's, and its frames are symbolized by it.
pub(crate) fn from_session<K: Seam>(ctx: Context, outcome: Outcome, session: &mut Session<K>) -> Report {
    let (history, resolver) = session.history_and_resolver();
    build(ctx, outcome, history, resolver)
}

pub(crate) fn build(
    ctx: Context,
    mut outcome: Outcome,
    history: &History<GroupKey>,
    resolver: &mut Resolver,
) -> Report {
    // What processes that exited during the window held at their exit is
    // told apart where the tracer outlives them: `attach` and the daemon.
    let apart = ctx.mode == Mode::Attach || ctx.per_process;
    let entries: Vec<(StackEntry, Samples)> = outcome
        .groups
        .iter_mut()
        .filter(|g| ctx.kinds.contains(&g.kind))
        .map(|g| {
            let mut samples = history.samples(&g.key()).unwrap_or_default();
            // Sampled fds stand for `scale` each (mappings are never sampled).
            let scale = if g.kind.is_fd() { u64::from(ctx.sample.max(1)) } else { 1 };
            for p in &mut samples.points {
                p.count *= scale;
            }
            samples.first_acquired_ns =
                samples.first_acquired_ns.map_or(Some(g.first_acquired_ns), |t| Some(t.min(g.first_acquired_ns)));
            // Moved, not copied: a million acquisition times at scale.
            samples.survivors = std::mem::take(&mut g.survivors);
            samples.until_ns = g.last_seen_ns;
            samples.since_ns = g.since_ns;
            let (frames, site, truncated) = symbolized(resolver, &g.stack);
            let tcp = g.kind == Kind::Tcp;
            let entry = StackEntry {
                verdict: Some(Verdict::Suspect),
                verdict_reason: String::new(),
                growth_per_minute: None,
                first_seen: None,
                history: super::History::default(),
                estimated: scale > 1,
                kind: g.kind,
                resource: g.resource,
                count: g.count * scale,
                bytes: g.bytes,
                pids: g.pids.iter().copied().collect(),
                exited: ctx.per_process && g.exited,
                held_at_exit: (ctx.mode == Mode::Attach).then_some(g.held_at_exit * scale),
                released_at_exit: None,
                oldest_age_seconds: g.oldest_age_ns as f64 / NS,
                stack: frames,
                examples: g.examples.iter().map(|e| example(e, apart)).collect(),
                site,
                truncated,
                states: tcp.then(|| g.states.iter().map(|(s, n)| (s.to_string(), *n * scale)).collect()),
                stale_close_wait: tcp.then_some(g.stale_close_wait * scale),
                locals: tcp.then(|| peers(&g.locals, g.other_locals)),
                remotes: tcp.then(|| peers(&g.remotes, g.other_remotes)),
            };
            (entry, samples)
        })
        .collect();
    let mut entries = entries;
    if ctx.mode == Mode::Run {
        let held: std::collections::HashSet<GroupKey> = outcome.groups.iter().map(|g| g.key()).collect();
        entries.extend(released_at_exit(&ctx, &held, history, resolver));
    }
    let mut stacks: Vec<StackEntry> = merge_same_source(entries, ctx.max_examples, ctx.per_process)
        .into_iter()
        .map(|(mut entry, samples)| {
            judge(&mut entry, &samples, ctx.start_ns);
            entry
        })
        .collect();
    stacks.retain(|s| !s.kind.in_bytes() || s.bytes >= ctx.min_bytes);
    // Every fd still held, shown or not (TCP connections are fds too).
    let scale = u64::from(ctx.sample.max(1));
    // `attach`: what live processes hold; what exited ones held at their
    // exit is in their stacks' `held_at_exit`, not held any more.
    let at_exit = |g: &crate::track::aggregate::Group| if ctx.mode == Mode::Attach { g.held_at_exit } else { 0 };
    let outstanding: u64 =
        outcome.groups.iter().filter(|g| g.kind.is_fd()).map(|g| (g.count - at_exit(g)) * scale).sum();
    let sampling = (scale > 1).then_some(Sampling { one_in: ctx.sample, sampled_out: outcome.sampled_out });
    // Releases of fds that were not recorded are not seen: estimated too.
    let released = if scale > 1 { outcome.acquired.saturating_sub(outstanding) } else { outcome.released };
    let mapped = outcome.groups.iter().filter(|g| g.kind == Kind::Mmap);
    let mappings = ctx.kinds.contains(&Kind::Mmap).then(|| MappingTotals {
        acquired: outcome.mappings.acquired,
        released: outcome.mappings.released,
        outstanding: mapped.clone().map(|g| g.count).sum(),
        bytes: mapped.map(|g| g.bytes).sum(),
        bytes_mapped: outcome.mappings.bytes_mapped,
        bytes_unmapped: outcome.mappings.bytes_unmapped,
    });
    let losses = outcome.losses;
    // Grouped, each group kept to a few entries: an incident's 10,000
    // sockets are one line, not 10,000.
    let (preexisting, preexisting_groups) = super::preexisting::group(ctx.preexisting);
    let complete = losses.map_full == 0
        && losses.events_lost == 0
        && losses.procs_dropped == 0
        && losses.undecodable_events == 0
        && losses.mappings_dropped == 0;
    Report {
        schema: SCHEMA.to_string(),
        mode: ctx.mode,
        kinds: ctx.kinds,
        targets: ctx.targets,
        window: Window {
            start: procfs::rfc3339(procfs::wall_time(ctx.start_ns)),
            end: procfs::rfc3339(procfs::wall_time(ctx.end_ns)),
            seconds: ctx.end_ns.saturating_sub(ctx.start_ns) as f64 / NS,
        },
        // Unstored acquisitions still held, where fd tables were counted;
        // otherwise every unstored acquisition (a bound).
        totals: Totals {
            acquired: outcome.acquired,
            released,
            outstanding,
            dropped: outcome.dropped_held.unwrap_or(losses.map_full),
            mappings,
        },
        preexisting,
        preexisting_groups,
        stacks,
        sampling,
        complete,
        losses,
        kernel_maps: outcome.kernel_maps,
        processes: None,
    }
}

/// Samples at the end that may follow a stack's last one holding something
/// and still count as its exit: the target's exit and the session's end.
const EXIT_SAMPLES: usize = 2;

/// `run`'s stacks that held fds at the last sample before the exit and
/// none at the exit: the process released them as it shut down (Python
/// closes the files it leaked when its objects are finalized). The growth
/// seen while it ran is what it did: each is judged on its samples up to
/// the exit (an interpreter's call of one line of code may be several
/// native stacks, a few before its specialization and the rest after).
fn released_at_exit(
    ctx: &Context,
    held: &std::collections::HashSet<GroupKey>,
    history: &History<GroupKey>,
    resolver: &mut Resolver,
) -> Vec<(StackEntry, Samples)> {
    let scale = u64::from(ctx.sample.max(1));
    let mut found = Vec::new();
    for key in history.keys() {
        if !key.kind.is_fd() || !ctx.kinds.contains(&key.kind) || held.contains(key) {
            continue;
        }
        let Some(mut samples) = history.samples(key) else { continue };
        let Some(last) = samples.points.iter().rposition(|p| p.count > 0) else { continue };
        let trailing = samples.points.len() - 1 - last;
        if trailing == 0 || trailing > EXIT_SAMPLES {
            continue;
        }
        samples.points.truncate(last + 1);
        samples.times_ns.truncate(last + 1);
        for p in &mut samples.points {
            p.count *= scale;
        }
        let at_last = samples.points[last];
        // Held across two samples, not a churn's or an exec's passing fds:
        // a close between the last sample and the exit (by the program,
        // or of close-on-exec fds) is not the interpreter's shutdown.
        if at_last.oldest_age_ns < ctx.interval_ns {
            continue;
        }
        let (stack, site, truncated) = symbolized(resolver, &key.stack);
        let entry = StackEntry {
            count: at_last.count,
            released_at_exit: Some(at_last.count),
            estimated: scale > 1,
            oldest_age_seconds: at_last.oldest_age_ns as f64 / NS,
            stack,
            site,
            truncated,
            ..StackEntry::new(key.kind, key.resource)
        };
        found.push((entry, samples));
    }
    found
}

/// A stack's frames as the report shows them, its leak site, and why it
/// ends early when it does.
fn symbolized(
    resolver: &mut Resolver,
    stack: &crate::symbolize::NormStack,
) -> (Vec<Frame>, Option<String>, Option<String>) {
    let frames = resolver.symbolize(stack);
    let site = leak_site(&frames).and_then(|i| frames[i].symbol.clone());
    let last = frames.last().and_then(|f| f.symbol.as_deref());
    let truncated = match (&stack.truncated, &stack.unresolved) {
        // An entry point written in assembly without CFI (the dynamic
        // loader's _start) stops the walk where it would end anyway.
        (Some(why), _) if *why == crate::symbolize::UNWIND_STOPPED && last.is_some_and(outermost::is_end) => None,
        (Some(why), _) => Some((*why).to_string()),
        (None, Some(crate::symbolize::Unresolved::NoStack(why))) => Some(format!("no stack: {why}")),
        (None, _) if stack.frame_pointers => outermost::fp_truncation(last),
        _ => None,
    };
    (frames.iter().map(frame).collect(), site, truncated)
}

/// `apart`: examples of processes that exited say so.
fn example(e: &crate::track::aggregate::Example, apart: bool) -> Example {
    let mut out = Example {
        pid: e.proc.tgid,
        ns_pid: e.ns_pid,
        fd: None,
        path: None,
        age_seconds: e.age_ns as f64 / NS,
        address: None,
        length: None,
        prot: None,
        flags: None,
        regions: None,
        family: None,
        sock_type: None,
        local: None,
        remote: None,
        state: None,
        state_age_seconds: None,
        exited: apart && e.exited,
    };
    match &e.what {
        ExampleWhat::Fd { fd, path, socket: (family, kind), tcp } => {
            out.fd = Some(*fd);
            out.path = path.clone();
            out.family = socket::family_name(*family).map(Cow::Borrowed);
            out.sock_type = socket::type_name(*kind).map(Cow::Borrowed);
            out.local = tcp.map(|(t, _)| t.local.to_string());
            out.remote = tcp.map(|(t, _)| t.remote.to_string());
            out.state = tcp.map(|(t, _)| Cow::Borrowed(t.state_name()));
            out.state_age_seconds = tcp.map(|(_, age)| age as f64 / NS);
        }
        ExampleWhat::Mapping(m) => {
            out.path = m.path.clone();
            out.address = Some(format!("{:#x}", m.address));
            out.length = Some(m.bytes);
            out.prot = Some(mapping::prot(m.prot));
            out.flags = Some(mapping::flags(m.flags));
            out.regions = (m.regions > 1).then_some(m.regions);
        }
    }
    out
}

fn peers(counts: &std::collections::BTreeMap<std::net::SocketAddr, u64>, others: u64) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = counts.iter().map(|(a, n)| (a.to_string(), *n)).collect();
    if others > 0 {
        out.insert("other".into(), others);
    }
    out
}

/// Adds `from`'s counts into `into`.
fn add_counts(into: &mut Option<BTreeMap<String, u64>>, from: Option<BTreeMap<String, u64>>) {
    if let (Some(into), Some(from)) = (into.as_mut(), from) {
        for (k, n) in from {
            *into.entry(k).or_default() += n;
        }
    }
}

pub(crate) fn frame(f: &SymFrame) -> Frame {
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
fn merge_same_source(
    entries: Vec<(StackEntry, Samples)>,
    max_examples: usize,
    per_process: bool,
) -> Vec<(StackEntry, Samples)> {
    type Key = (Kind, super::Resource, Vec<FrameKey>, (Vec<u32>, bool));
    let mut merged: Vec<(StackEntry, Samples)> = Vec::with_capacity(entries.len());
    let mut index: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    for (entry, samples) in entries {
        // Per process, what an exited process held and what a live one
        // given its pid holds are two owners.
        let owner = if per_process { (entry.pids.clone(), entry.exited) } else { (Vec::new(), false) };
        let key = (entry.kind, entry.resource, entry.stack.iter().map(frame_key).collect::<Vec<_>>(), owner);
        match index.get(&key) {
            Some(&i) => {
                let (into, into_samples) = &mut merged[i];
                into_samples.add(&samples);
                into.count += entry.count;
                if let Some(n) = entry.held_at_exit {
                    *into.held_at_exit.get_or_insert(0) += n;
                }
                if let Some(n) = entry.released_at_exit {
                    *into.released_at_exit.get_or_insert(0) += n;
                }
                into.bytes += entry.bytes;
                into.oldest_age_seconds = into.oldest_age_seconds.max(entry.oldest_age_seconds);
                into.pids.extend(entry.pids);
                into.pids.sort_unstable();
                into.pids.dedup();
                add_counts(&mut into.states, entry.states);
                if let Some(n) = entry.stale_close_wait {
                    *into.stale_close_wait.get_or_insert(0) += n;
                }
                add_counts(&mut into.locals, entry.locals);
                add_counts(&mut into.remotes, entry.remotes);
                into.examples.extend(entry.examples);
                into.examples.sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
                into.examples.truncate(max_examples);
            }
            None => {
                index.insert(key, merged.len());
                merged.push((entry, samples));
            }
        }
    }
    // fds and connections by count, then mappings by bytes.
    merged.sort_by(|(a, _), (b, _)| {
        a.kind
            .in_bytes()
            .cmp(&b.kind.in_bytes())
            .then(b.bytes.cmp(&a.bytes))
            .then(b.count.cmp(&a.count))
            .then(b.oldest_age_seconds.total_cmp(&a.oldest_age_seconds))
    });
    merged
}

/// The verdict, growth and history of a stack from its samples. A stack that
/// held resources at its process's exit but was never sampled holding them
/// (a process shorter than the interval) has no evidence either way.
pub(crate) fn judge(entry: &mut StackEntry, samples: &Samples, start_ns: u64) {
    let seconds = seconds_since(samples, start_ns);
    let mapping = entry.kind.in_bytes();
    // Sampled only once it held something: a stack whose first acquisition
    // came after the window began held nothing before its first sample.
    let born = if samples.since_ns > 0 { samples.since_ns } else { samples.first_acquired_ns.unwrap_or(0) };
    let born_in_window = born > start_ns && born != u64::MAX;
    let mut judgement = judgement(entry.kind, entry.resource, samples, &seconds, born_in_window);
    let sampled = samples.points.len();
    let survivors = samples.survivors.len();
    if samples.points.is_empty() && entry.held_at_exit == Some(entry.count) {
        // `attach`: processes that lived less than an interval, whose exit
        // released all of it: nothing is held, and nothing was seen to grow.
        judgement.verdict = Verdict::Steady;
        judgement.reason =
            format!("held only by processes that exited before a sample, whose exit released all {}", entry.count);
    } else if sampled < Rule::COUNT.min_points && !entry.kind.in_bytes() && survivors >= 2 {
        // Too few samples (a short run): judge how what is still held was
        // acquired since the stack's first acquisition instead (released
        // ones included: a ring that replaces its oldest holds only recent
        // ones, a loop that leaks holds them from all along).
        let from = if samples.since_ns > 0 { samples.since_ns } else { start_ns };
        let (x, y) = samples.survivors.curve(entry.count, from, samples.until_ns.max(from), SURVIVOR_POINTS);
        let mut by_time = verdict::judge(&x, &y, &Rule::COUNT, &entry.kind.unit(entry.resource));
        // A ring that replaces its oldest holds only what it acquired last,
        // which also rises: a leak must still hold some of what it acquired
        // in the first half of the stack's life.
        let until = samples.until_ns.max(from);
        let half = from + (until - from) / 2;
        if by_time.verdict == Verdict::Leak && samples.survivors.oldest().is_some_and(|t| t > half) {
            by_time.verdict = Verdict::Suspect;
            by_time.reason = format!(
                "rose late: everything still held was acquired in the last {:.0}% of the stack's {:.2}s",
                100.0 * (until - samples.survivors.oldest().unwrap_or(until)) as f64 / (until - from).max(1) as f64,
                (until - from) as f64 / NS
            );
        }
        judgement.verdict = by_time.verdict;
        judgement.burst = by_time.burst;
        judgement.reason = format!(
            "{}, judged from when the {} still held were acquired (sampled {sampled} time{})",
            by_time.reason,
            entry.count,
            if sampled == 1 { "" } else { "s" }
        );
        // The acquisition times of all still held say more than a few samples.
        judgement.per_minute = by_time.per_minute;
    } else if samples.points.is_empty() {
        judgement.reason = "not sampled while held (its process lived less than an interval)".to_string();
    } else if judgement.burst && judgement.verdict == Verdict::Suspect {
        turned_over(samples, &mut judgement);
    }
    by_state(entry, &mut judgement);
    if let Some(n) = entry.released_at_exit {
        judgement.reason = format!("{}; then all {n} released as the process exited", judgement.reason);
    }
    entry.verdict = Some(judgement.verdict);
    entry.verdict_reason = judgement.reason;
    entry.growth_per_minute = judgement.per_minute.map(|g| (g * 100.0).round() / 100.0);
    entry.first_seen =
        samples.first_acquired_ns.filter(|t| *t != u64::MAX).map(|t| procfs::rfc3339(procfs::wall_time(t)));
    entry.history = super::History {
        seconds: seconds.iter().map(|s| (s * 1000.0).round() / 1000.0).collect(),
        count: samples.points.iter().map(|p| p.count).collect(),
        bytes: mapping.then(|| samples.points.iter().map(|p| p.bytes).collect()),
        oldest_age_seconds: samples.points.iter().map(|p| (p.oldest_age_ns as f64 / 1e6).round() / 1000.0).collect(),
    };
}

/// A burst that stopped holds what it acquired then; a ring or a pool that
/// replaces its entries holds the same number, but all of it recent. The
/// oldest age at the last sample tells them apart: kept since the level was
/// reached, or younger than half the time the level has held.
fn turned_over(samples: &Samples, judgement: &mut verdict::Judgement) {
    let (Some(last), Some(&end)) = (samples.points.last(), samples.times_ns.last()) else { return };
    let Some(reached) = samples.points.iter().position(|p| p.count >= last.count) else { return };
    let level_ns = end.saturating_sub(samples.times_ns[reached]);
    if level_ns > 0 && last.oldest_age_ns < level_ns / 2 {
        judgement.verdict = Verdict::Steady;
        judgement.reason = format!(
            "holds {} since {:.1}s, each younger than {:.2}s: it replaces what it holds (a ring, a pool)",
            last.count,
            level_ns as f64 / NS,
            last.oldest_age_ns as f64 / NS
        );
    }
}

/// What the state of TCP connections says beyond their curve: connections
/// left in CLOSE_WAIT are leaked whatever the curve (the peer closed, the
/// program never did, and nothing else will), and a burst of connections
/// all ESTABLISHED is a pool of them, whatever its size.
fn by_state(entry: &StackEntry, judgement: &mut verdict::Judgement) {
    if entry.kind != Kind::Tcp {
        return;
    }
    let stale = entry.stale_close_wait.unwrap_or(0);
    if stale > 0 {
        judgement.verdict = Verdict::Leak;
        judgement.reason = format!(
            "{stale} connection{} in CLOSE_WAIT for over {} s: the peer closed, the program never did ({})",
            if stale == 1 { "" } else { "s" },
            crate::track::aggregate::STALE_CLOSE_WAIT_NS / 1_000_000_000,
            judgement.reason
        );
        return;
    }
    let states = entry.states.as_ref();
    let all_established = states.is_some_and(|s| !s.is_empty() && s.keys().all(|k| k == "ESTABLISHED"));
    if judgement.burst && judgement.verdict == Verdict::Suspect && all_established {
        judgement.verdict = Verdict::Steady;
        judgement.reason = format!("{}; all ESTABLISHED: a pool of connections", judgement.reason);
    }
}

/// Moments the acquisition times of a stack too briefly sampled are judged
/// at: more than the rule's minimum, fewer than would make one acquisition
/// a trend.
const SURVIVOR_POINTS: usize = 12;

fn seconds_since(samples: &Samples, start_ns: u64) -> Vec<f64> {
    samples.times_ns.iter().map(|t| t.saturating_sub(start_ns) as f64 / NS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::history::Point;

    const S: u64 = 1_000_000_000;

    /// A burst judged `suspect` by its curve, then by its ages.
    fn after_ages(counts: &[u64], oldest_age_ns: impl Fn(usize) -> u64) -> Verdict {
        let samples = Samples {
            times_ns: (0..counts.len() as u64).map(|i| (i + 1) * S).collect(),
            points: counts
                .iter()
                .enumerate()
                .map(|(i, &count)| Point { count, bytes: 0, oldest_age_ns: oldest_age_ns(i) })
                .collect(),
            ..Samples::default()
        };
        let mut j =
            verdict::Judgement { verdict: Verdict::Suspect, reason: String::new(), per_minute: None, burst: true };
        turned_over(&samples, &mut j);
        j.verdict
    }

    #[test]
    fn a_ring_turns_over_and_a_burst_is_kept() {
        // Two rings of 8, every entry younger than 0.4 s at each sample.
        assert_eq!(after_ages(&[16; 10], |_| 400_000_000), Verdict::Steady);
        // 50 opened in the first seconds and held since: as old as the run.
        let burst = [10, 20, 30, 40, 50, 50, 50, 50, 50, 50];
        assert_eq!(after_ages(&burst, |i| (i as u64 + 1) * S), Verdict::Suspect);
        // Reached its level only at the last sample: nothing to tell by.
        assert_eq!(after_ages(&[0, 0, 20], |_| 0), Verdict::Suspect);
    }
}
