//! The comparison itself, pure: per stack (see [`super::identity`]) what the
//! base and the new report hold, how it changed, and the totals per kind.
//! The types here serialize as parts of the `leaktrace.diff/1` contract
//! (see [`super::render`]): keys may be added, never renamed.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::identity::{stack_key, StackKey};
use crate::report::{Frame, Kind, Report, Resource, StackEntry, Verdict};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Comparison {
    pub totals: Totals,
    /// Every stack of either report, unchanged ones included, biggest change
    /// first: fds and TCP connections by count, then mappings by bytes.
    pub stacks: Vec<StackDiff>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(super) struct Totals {
    /// Per kind (`fd`, `tcp`, `mmap`, every kind either report traced or
    /// has stacks of): the sums over each report's stacks, and the change.
    pub outstanding: BTreeMap<String, KindTotals>,
    /// How many stacks changed which way; `same` ones are counted here only,
    /// not listed.
    pub stacks: ChangeCounts,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct KindTotals {
    pub base: Amount,
    pub new: Amount,
    pub delta: Delta,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct ChangeCounts {
    pub new: u64,
    pub grown: u64,
    pub shrunk: u64,
    pub gone: u64,
    pub same: u64,
}

/// What a stack holds in one report: resources, and bytes for mappings (0
/// for other kinds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Amount {
    pub count: u64,
    pub bytes: u64,
}

/// New minus base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Delta {
    pub count: i64,
    pub bytes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Change {
    /// Only in the new report.
    New,
    /// Holds more in the new report: more bytes for mappings (more mappings
    /// when the bytes are equal), more resources for other kinds.
    Grown,
    Shrunk,
    /// Only in the base report.
    Gone,
    Same,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct StackDiff {
    pub change: Change,
    /// `fd`, `tcp` or `mmap`.
    pub kind: Kind,
    /// What is held: `file`, `socket`, … for fds, `anon`, `file`, `shared`
    /// for mappings.
    pub resource: Resource,
    /// The function of the program that acquires, null when the stack has no
    /// frame of the program.
    pub site: Option<String>,
    /// Zero when the stack is new.
    pub base: Amount,
    /// Zero when the stack is gone.
    pub new: Amount,
    pub delta: Delta,
    /// The new report's verdict (`leak`, `suspect`, `steady`); null when the
    /// stack is gone or the report predates verdicts.
    pub verdict: Option<Verdict>,
    /// Innermost frame first, from the new report (the base one for gone
    /// stacks), without addresses: they are those of one run only.
    #[serde(serialize_with = "without_addresses")]
    pub stack: Vec<Frame>,
    #[serde(skip)]
    pub key: StackKey,
}

/// A report's stacks by key, entries with the same key added up.
struct Merged<'a> {
    amount: Amount,
    /// The first entry with the key, for its frames and site.
    first: &'a StackEntry,
    verdict: Option<Verdict>,
}

/// A report's frame as a diff writes it: without its `address`.
#[derive(Serialize)]
struct FrameWithoutAddress<'a> {
    symbol: &'a Option<String>,
    module: &'a Option<String>,
    file: &'a Option<String>,
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inlined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: &'a Option<String>,
}

fn without_addresses<S: serde::Serializer>(frames: &[Frame], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(frames.iter().map(|f| FrameWithoutAddress {
        symbol: &f.symbol,
        module: &f.module,
        file: &f.file,
        line: f.line,
        offset: f.offset,
        inlined: f.inlined,
        reason: &f.reason,
    }))
}

pub(super) fn compare(base: &Report, new: &Report) -> Comparison {
    let base_stacks = merge(base);
    let mut new_stacks = merge(new);
    let mut stacks = Vec::with_capacity(base_stacks.len().max(new_stacks.len()));
    for (key, old) in base_stacks {
        let now = new_stacks.remove(&key);
        stacks.push(stack_diff(key, Some(old), now));
    }
    for (key, now) in new_stacks {
        stacks.push(stack_diff(key, None, Some(now)));
    }
    stacks.sort_by(order);
    Comparison { totals: totals(base, new, &stacks), stacks }
}

fn merge(report: &Report) -> BTreeMap<StackKey, Merged<'_>> {
    let mut merged: BTreeMap<StackKey, Merged> = BTreeMap::new();
    for stack in &report.stacks {
        let verdict = stack.verdict;
        match merged.entry(stack_key(stack)) {
            Entry::Occupied(mut into) => {
                let into = into.get_mut();
                into.amount = add(into.amount, amount(stack));
                // A leak merged with a steady entry still leaks.
                if severity(verdict) > severity(into.verdict) {
                    into.verdict = verdict;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(Merged { amount: amount(stack), first: stack, verdict });
            }
        }
    }
    merged
}

fn severity(verdict: Option<Verdict>) -> u8 {
    verdict.map_or(0, Verdict::severity)
}

fn amount(stack: &StackEntry) -> Amount {
    Amount { count: stack.count, bytes: stack.bytes }
}

// Saturating: the numbers come from a file, and no file may make the diff
// panic on overflow.
fn add(a: Amount, b: Amount) -> Amount {
    Amount { count: a.count.saturating_add(b.count), bytes: a.bytes.saturating_add(b.bytes) }
}

fn delta(base: Amount, new: Amount) -> Delta {
    let minus = |new: u64, base: u64| {
        let d = i128::from(new) - i128::from(base);
        i64::try_from(d).unwrap_or(if d > 0 { i64::MAX } else { i64::MIN })
    };
    Delta { count: minus(new.count, base.count), bytes: minus(new.bytes, base.bytes) }
}

fn stack_diff(key: StackKey, old: Option<Merged>, now: Option<Merged>) -> StackDiff {
    let base = old.as_ref().map(|m| m.amount).unwrap_or_default();
    let new = now.as_ref().map(|m| m.amount).unwrap_or_default();
    let change = match (&old, &now) {
        (None, _) => Change::New,
        (_, None) => Change::Gone,
        _ => match measure(key.kind, new).cmp(&measure(key.kind, base)) {
            Ordering::Greater => Change::Grown,
            Ordering::Less => Change::Shrunk,
            Ordering::Equal => Change::Same,
        },
    };
    // The callers pass at least one of the two.
    let shown = now.as_ref().or(old.as_ref()).map(|m| m.first);
    StackDiff {
        change,
        kind: key.kind,
        resource: key.resource,
        site: shown.and_then(|s| s.site.clone()),
        base,
        new,
        delta: delta(base, new),
        verdict: now.and_then(|m| m.verdict),
        stack: shown.map(|s| s.stack.clone()).unwrap_or_default(),
        key,
    }
}

/// What "more" means for a kind, most significant first.
fn measure(kind: Kind, a: Amount) -> (u64, u64) {
    if kind.in_bytes() {
        (a.bytes, a.count)
    } else {
        (a.count, a.bytes)
    }
}

/// fds and connections first (their counts and mappings' bytes do not
/// compare), biggest change first, then by site and key so that equal
/// changes always come out in the same order.
fn order(a: &StackDiff, b: &StackDiff) -> Ordering {
    let size = |s: &StackDiff| {
        measure(s.kind, Amount { count: s.delta.count.unsigned_abs(), bytes: s.delta.bytes.unsigned_abs() })
    };
    a.kind
        .in_bytes()
        .cmp(&b.kind.in_bytes())
        .then_with(|| size(b).cmp(&size(a)))
        .then_with(|| (a.site.is_none(), &a.site).cmp(&(b.site.is_none(), &b.site)))
        .then_with(|| a.key.cmp(&b.key))
}

fn totals(base: &Report, new: &Report, stacks: &[StackDiff]) -> Totals {
    // By name: the JSON object's keys, in their order.
    let kinds: BTreeSet<&str> =
        base.kinds.iter().chain(&new.kinds).chain(stacks.iter().map(|s| &s.kind)).map(|k| k.name()).collect();
    let mut outstanding: BTreeMap<String, KindTotals> =
        kinds.into_iter().map(|k| (k.to_string(), KindTotals::default())).collect();
    let mut changes = ChangeCounts::default();
    for stack in stacks {
        if let Some(t) = outstanding.get_mut(stack.kind.name()) {
            t.base = add(t.base, stack.base);
            t.new = add(t.new, stack.new);
        }
        let counter = match stack.change {
            Change::New => &mut changes.new,
            Change::Grown => &mut changes.grown,
            Change::Shrunk => &mut changes.shrunk,
            Change::Gone => &mut changes.gone,
            Change::Same => &mut changes.same,
        };
        *counter += 1;
    }
    for t in outstanding.values_mut() {
        t.delta = delta(t.base, t.new);
    }
    Totals { outstanding, stacks: changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_never_overflow() {
        let big = Amount { count: u64::MAX, bytes: 0 };
        assert_eq!(delta(Amount::default(), big).count, i64::MAX);
        assert_eq!(delta(big, Amount::default()).count, i64::MIN);
        assert_eq!(add(big, big).count, u64::MAX);
    }

    #[test]
    fn mappings_grow_by_bytes_then_count() {
        let mmap = Kind::Mmap;
        assert!(measure(mmap, Amount { count: 1, bytes: 8192 }) > measure(mmap, Amount { count: 5, bytes: 4096 }));
        assert!(measure(mmap, Amount { count: 2, bytes: 4096 }) > measure(mmap, Amount { count: 1, bytes: 4096 }));
        assert!(measure(Kind::Fd, Amount { count: 2, bytes: 0 }) > measure(Kind::Fd, Amount { count: 1, bytes: 0 }));
    }
}
