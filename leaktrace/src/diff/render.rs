//! A comparison as output: the `leaktrace.diff/1` JSON other tools read, and
//! the text people read, which follows the main text report's ways (amount
//! and leak site first, then the frames, innermost first).

use std::cmp::Ordering;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::compare::{Amount, Change, Comparison, StackDiff, Totals};
use crate::report::text::format_age;
use crate::report::{frame, mapping, Kind, Mode, Report, Window};

/// The diff's JSON contract: other tools depend on it, keys may be added,
/// never renamed.
pub(super) const SCHEMA: &str = "leaktrace.diff/1";

/// Frames shown per stack in the text, at least: enough to reach past libc
/// into the program. Stacks whose leak site is deeper are shown down to the
/// site's caller.
const FRAMES_SHOWN: usize = 5;

/// A report and the path it was read from.
#[derive(Clone, Copy)]
pub(super) struct Named<'a> {
    pub path: &'a Path,
    pub report: &'a Report,
}

/// The whole output; see [`json`] for its keys.
#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    base: Side<'a>,
    new: Side<'a>,
    totals: &'a Totals,
    stacks: Vec<&'a StackDiff>,
}

#[derive(Serialize)]
struct Side<'a> {
    path: String,
    window: &'a Window,
    mode: &'static str,
    kinds: &'a [Kind],
    complete: bool,
}

impl<'a> Side<'a> {
    fn of(named: Named<'a>) -> Side<'a> {
        Side {
            path: named.path.to_string_lossy().into_owned(),
            window: &named.report.window,
            // A report without a mode says nothing of it.
            mode: if named.report.mode == Mode::Unknown { "" } else { named.report.mode.name() },
            kinds: &named.report.kinds,
            complete: named.report.complete,
        }
    }
}

/// The `leaktrace.diff/1` document, pretty-printed, ending with a newline:
///
/// ```text
/// {
///   "schema": "leaktrace.diff/1",
///   "base": SIDE, "new": SIDE,
///   "totals": {
///     "outstanding": { KIND: { "base": AMOUNT, "new": AMOUNT, "delta": AMOUNT }, ... },
///     "stacks": { "new": N, "grown": N, "shrunk": N, "gone": N, "same": N }
///   },
///   "stacks": [ {
///     "change": "new" | "grown" | "shrunk" | "gone",
///     "kind": "fd" | "tcp" | "mmap", "resource": "file" | "socket" | "anon" | ...,
///     "site": "load_config" | null,
///     "base": AMOUNT, "new": AMOUNT, "delta": AMOUNT (signed: new minus base),
///     "verdict": "leak" | "suspect" | "steady" | null,
///     "stack": [ { "symbol", "module", "file", "line" (each null when unknown),
///                  "offset"?, "inlined"?, "reason"? } ]
///   } ]
/// }
/// SIDE = { "path", "window": { "start", "end", "seconds" }, "mode": "run" | "attach",
///          "kinds": [KIND], "complete": bool }
/// AMOUNT = { "count", "bytes" }   (bytes are 0 for kinds other than mmap)
/// ```
///
/// `stacks` lists the stacks that changed, biggest change first (fds and TCP
/// connections by count, then mappings by bytes); unchanged ones are only
/// counted in `totals.stacks.same`. A stack's frames come from the new
/// report (the base one for gone stacks) and have no `address`: addresses
/// are those of one run. `complete: false` means that report lost data and
/// its counts are lower bounds.
pub(super) fn json(base: Named, new: Named, comparison: &Comparison) -> String {
    let document = Document {
        schema: SCHEMA,
        base: Side::of(base),
        new: Side::of(new),
        totals: &comparison.totals,
        stacks: comparison.stacks.iter().filter(|s| s.change != Change::Same).collect(),
    };
    // Plain data with string keys (f64 infinities become null): serializing
    // cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

pub(super) fn text(base: Named, new: Named, comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "leaktrace diff: {} → {}", side_header(base), side_header(new));
    let _ = writeln!(out, "{}", summary(&comparison.totals));
    for note in notes(base.report, new.report) {
        let _ = writeln!(out, "{note}");
    }
    let changed: Vec<&StackDiff> = comparison.stacks.iter().filter(|s| s.change != Change::Same).collect();
    if changed.is_empty() {
        let same = comparison.totals.stacks.same;
        let _ = match same {
            0 => writeln!(out, "\nnothing changed: neither report has stacks"),
            1 => writeln!(out, "\nnothing changed: the 1 stack holds the same in both reports"),
            n => writeln!(out, "\nnothing changed: the {n} stacks hold the same in both reports"),
        };
    }
    for stack in changed {
        out.push('\n');
        stack_text(stack, &mut out);
    }
    out
}

/// `/tmp/base.json (run, 1.50s from 2026-11-23T10:00:00Z)`
fn side_header(side: Named) -> String {
    let window = &side.report.window;
    let mut what = Vec::new();
    if side.report.mode != Mode::Unknown {
        what.push(side.report.mode.to_string());
    }
    let from = if window.start.is_empty() { String::new() } else { format!(" from {}", window.start) };
    what.push(format!("{}{from}", format_age(window.seconds)));
    format!("{} ({})", side.path.display(), what.join(", "))
}

/// `fds: 110 → 135 (+25); 1 new stack, 1 grown, 0 shrunk, 1 gone, 1 unchanged`
fn summary(totals: &Totals) -> String {
    let mut kinds: Vec<(&String, _)> = totals.outstanding.iter().collect();
    kinds.sort_by_key(|(kind, _)| (kind_rank(kind), kind.as_str()));
    let amounts: Vec<String> = kinds
        .iter()
        .map(|(kind, t)| match Kind::from_name(kind) {
            Some(Kind::Mmap) => {
                format!("mappings: {} → {} ({})", bytes_in(t.base), bytes_in(t.new), signed_bytes(t.delta.bytes))
            }
            Some(Kind::Fd) => format!("fds: {} → {} ({})", t.base.count, t.new.count, signed(t.delta.count)),
            Some(Kind::Tcp) => {
                format!("TCP connections: {} → {} ({})", t.base.count, t.new.count, signed(t.delta.count))
            }
            None => format!("{kind}: {} → {} ({})", t.base.count, t.new.count, signed(t.delta.count)),
        })
        .collect();
    let c = &totals.stacks;
    let changes = format!(
        "{} new {}, {} grown, {} shrunk, {} gone, {} unchanged",
        c.new,
        if c.new == 1 { "stack" } else { "stacks" },
        c.grown,
        c.shrunk,
        c.gone,
        c.same
    );
    if amounts.is_empty() {
        changes
    } else {
        format!("{}; {changes}", amounts.join(", "))
    }
}

/// The order of the main report: fds, TCP connections, then mappings.
fn kind_rank(kind: &str) -> usize {
    Kind::ALL.iter().position(|k| k.name() == kind).unwrap_or(Kind::ALL.len())
}

/// What makes the numbers compare less than they seem to.
fn notes(base: &Report, new: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    // Older reports may not list their kinds: nothing to say then.
    if !base.kinds.is_empty() && !new.kinds.is_empty() {
        for kind in &new.kinds {
            if !base.kinds.contains(kind) {
                notes.push(format!("note: {kind} was traced in the new report only: all its stacks show as new"));
            }
        }
        for kind in &base.kinds {
            if !new.kinds.contains(kind) {
                notes.push(format!("note: {kind} was traced in the base report only: all its stacks show as gone"));
            }
        }
    }
    let incomplete = match (base.complete, new.complete) {
        (true, true) => None,
        (false, true) => Some("the base report is incomplete: its counts are lower bounds"),
        (true, false) => Some("the new report is incomplete: its counts are lower bounds"),
        (false, false) => Some("both reports are incomplete: their counts are lower bounds"),
    };
    if let Some(what) = incomplete {
        notes.push(format!("warning: {what} (data was lost while tracing; see each report's losses)"));
    }
    notes
}

/// `+15 files  (10 → 25) grown  from load_config  [leak]`, then the frames.
fn stack_text(stack: &StackDiff, out: &mut String) {
    let (amount, before_after) = if stack.kind.in_bytes() {
        let noun = stack.kind.noun(stack.resource, stack.base.count.max(stack.new.count));
        (
            format!("{} in {noun}", signed_bytes(stack.delta.bytes)),
            format!("{} → {}", bytes_in(stack.base), bytes_in(stack.new)),
        )
    } else {
        let noun = stack.kind.noun(stack.resource, stack.delta.count.unsigned_abs());
        (format!("{} {noun}", signed(stack.delta.count)), format!("{} → {}", stack.base.count, stack.new.count))
    };
    let change = match stack.change {
        Change::New => "new",
        Change::Grown => "grown",
        Change::Shrunk => "shrunk",
        Change::Gone => "gone",
        Change::Same => "same",
    };
    let from = match &stack.site {
        Some(site) => format!("  from {site}"),
        // As the main report says it: no frame of the program, so the
        // outermost library function names the stack.
        None => stack
            .stack
            .iter()
            .rev()
            .filter_map(|f| f.symbol.as_deref())
            .find(|s| !crate::report::outermost::is_end(s))
            .map(|s| format!("  only library frames, outermost {s}"))
            .unwrap_or_default(),
    };
    let verdict = stack.verdict.map(|v| format!("  [{}]", v.name())).unwrap_or_default();
    let _ = writeln!(out, "{amount}  ({before_after}) {change}{from}{verdict}");
    let site_at =
        stack.site.as_deref().and_then(|site| stack.stack.iter().position(|f| f.symbol.as_deref() == Some(site)));
    let shown = site_at.map_or(FRAMES_SHOWN, |i| FRAMES_SHOWN.max(i + 2));
    for (i, frame) in stack.stack.iter().take(shown).enumerate() {
        let _ = writeln!(out, "    #{i:<2} {}", frame::line(frame));
    }
    if stack.stack.len() > shown {
        let _ = writeln!(out, "    ... {} more frames (--format json lists them)", stack.stack.len() - shown);
    }
}

fn signed(n: i64) -> String {
    match n.cmp(&0) {
        Ordering::Greater => format!("+{n}"),
        Ordering::Less => n.to_string(),
        Ordering::Equal => "±0".to_string(),
    }
}

fn signed_bytes(n: i64) -> String {
    match n.cmp(&0) {
        Ordering::Greater => format!("+{}", mapping::bytes(n.unsigned_abs())),
        Ordering::Less => format!("-{}", mapping::bytes(n.unsigned_abs())),
        Ordering::Equal => "±0 B".to_string(),
    }
}

/// `12.0 KiB in 3`
fn bytes_in(a: Amount) -> String {
    format!("{} in {}", mapping::bytes(a.bytes), a.count)
}
