//! The text report: for people, biggest stacks first, each named by its leak
//! site and shown with examples and its symbolized frames. fds and TCP
//! connections come first, by count; memory mappings follow, by bytes.

use std::fmt::Write;

use super::{frame, mapping, Kind, Mode, Report, StackEntry};

/// What the text shows.
pub(crate) struct View {
    /// Stacks per section.
    pub top: usize,
    /// List the dynamic loader's start-up mappings instead of summing them up.
    pub all_mappings: bool,
}

pub(crate) fn render(report: &Report, view: &View) -> String {
    let top = view.top;
    let mut out = String::new();
    header(report, &mut out);
    let (maps, fds): (Vec<&StackEntry>, Vec<&StackEntry>) = report.stacks.iter().partition(|s| s.kind.in_bytes());
    if report.kinds.iter().any(|k| k.is_fd()) {
        if fds.is_empty() {
            let what = if report.kinds.contains(&Kind::Fd) { "no fd" } else { "no TCP connection" };
            let _ = writeln!(out, "\n{what} acquired during the window is still held");
        }
        for entry in fds.iter().take(top) {
            out.push('\n');
            stack_entry(entry, &mut out);
        }
        if fds.len() > top {
            let _ = writeln!(
                out,
                "\n... and {} more stacks holding {} fds (--top {} or --format json shows them)",
                fds.len() - top,
                fds[top..].iter().map(|s| s.count).sum::<u64>(),
                fds.len()
            );
        }
    }
    if report.kinds.contains(&Kind::Mmap) {
        mappings(&maps, view, &mut out);
    }
    if !report.preexisting_groups.is_empty() {
        preexisting(report, top, &mut out);
    }
    if report.losses.any() {
        let _ = writeln!(out, "\n{}", losses_warning(report));
    }
    out
}

/// What was open before tracing began, by group, largest first. No stack
/// can be known for it: the fds were acquired before the probes were there.
fn preexisting(report: &Report, top: usize, out: &mut String) {
    let groups = &report.preexisting_groups;
    let total: u64 = groups.iter().map(|g| g.count).sum();
    let open: u64 = groups.iter().map(|g| g.open_at_end).sum();
    let _ = writeln!(
        out,
        "\n{total} fds were open before tracing began ({open} still open at the end; no stacks: acquired before \
         tracing began)"
    );
    for g in groups.iter().take(top) {
        let what = g.kind.noun(g.resource, g.count);
        let detail = match (&g.state, &g.peer, &g.path) {
            (Some(state), Some(peer), _) => format!(" in {state} to {peer}"),
            (_, _, Some(path)) => format!(" {path}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "    {} {what}{detail} ({} still open)", g.count, g.open_at_end);
    }
    if groups.len() > top {
        let _ = writeln!(out, "    ... and {} more groups (--format json lists them)", groups.len() - top);
    }
}

/// Says what was lost and which option avoids it.
pub(crate) fn losses_warning(report: &Report) -> String {
    let parts: Vec<String> = report
        .losses
        .by_cause()
        .iter()
        .filter(|(_, count, _)| *count > 0)
        .map(|(_, count, what)| format!("{count} {what}"))
        .collect();
    let what = if report.complete { "stacks are missing" } else { "the report is incomplete" };
    format!("warning: {what}: {}", parts.join("; "))
}

/// The memory section: stacks by bytes. Mappings with no frame of the
/// program on their stacks (the dynamic loader's of shared libraries, a
/// runtime's heap reservations) are real and mostly stay for the process's
/// life; they would lead every report, so they are summed up unless asked
/// for.
fn mappings(maps: &[&StackEntry], view: &View, out: &mut String) {
    let (internal, shown): (Vec<&StackEntry>, Vec<&StackEntry>) =
        maps.iter().partition(|e| !view.all_mappings && e.site.is_none());
    let (loader, runtime): (Vec<&StackEntry>, Vec<&StackEntry>) = internal.iter().partition(|e| is_loader(e));
    if shown.is_empty() {
        let _ = writeln!(out, "\nno memory the program mapped during the window is still mapped");
    }
    for entry in shown.iter().take(view.top) {
        out.push('\n');
        stack_entry(entry, out);
    }
    if shown.len() > view.top {
        let _ = writeln!(
            out,
            "\n... and {} more stacks holding {} (--top {} or --format json shows them)",
            shown.len() - view.top,
            mapping::bytes(shown[view.top..].iter().map(|s| s.bytes).sum()),
            shown.len()
        );
    }
    let sum = |entries: &[&StackEntry]| {
        let count: u64 = entries.iter().map(|e| e.count).sum();
        let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
        format!("{} in {count} {}", mapping::bytes(bytes), if count == 1 { "mapping" } else { "mappings" })
    };
    if !internal.is_empty() {
        out.push('\n');
    }
    if !loader.is_empty() {
        let _ = writeln!(out, "{} made by the dynamic loader for shared libraries", sum(&loader));
    }
    if !runtime.is_empty() {
        let _ = writeln!(out, "{} made by libraries or a language runtime with no frame of the program", sum(&runtime));
    }
    if !internal.is_empty() {
        let _ = writeln!(out, "(--all-mappings lists them)");
    }
}

/// A stack through the dynamic loader (ld-linux, ld-musl).
fn is_loader(entry: &StackEntry) -> bool {
    entry.stack.iter().any(|f| {
        let module = f.module.as_deref().unwrap_or("");
        let name = module.rsplit('/').next().unwrap_or(module);
        name.starts_with("ld-linux") || name.starts_with("ld-musl") || name == "ld.so"
    })
}

fn header(report: &Report, out: &mut String) {
    mode_header(report, out);
    if let Some(s) = &report.sampling {
        let _ = writeln!(
            out,
            "sampled: one fd acquisition in {} was recorded ({} left out); fd and TCP counts are estimates (~)",
            s.one_in, s.sampled_out
        );
    }
}

fn mode_header(report: &Report, out: &mut String) {
    let t = &report.totals;
    let seconds = format_age(report.window.seconds);
    match report.mode {
        Mode::Run => {
            for target in &report.targets {
                let name = target.exe.as_deref().or(target.comm.as_deref()).unwrap_or("?");
                let status = match target.exit_code {
                    Some(code) => format!("exited with status {code}"),
                    None => "is still running".to_string(),
                };
                let ns = target.ns_pid.map(|n| format!(", {n} in its namespace")).unwrap_or_default();
                let _ = writeln!(out, "leaktrace run: {name} (pid {}{ns}) {status} after {seconds}", target.pid);
            }
            let _ = writeln!(
                out,
                "fds: {} acquired, {} released, {} still held at exit, {} dropped",
                t.acquired, t.released, t.outstanding, t.dropped
            );
            if let Some(m) = &t.mappings {
                let _ = writeln!(
                    out,
                    "mappings: {} mmap calls, {} unmapped entirely, {} still mapped at exit holding {}",
                    m.acquired,
                    m.released,
                    m.outstanding,
                    mapping::bytes(m.bytes)
                );
            }
        }
        _ => {
            let pids: Vec<String> = report
                .targets
                .iter()
                .map(|t| {
                    let ns = t.ns_pid.map(|n| format!(", {n} in its namespace")).unwrap_or_default();
                    format!("{} ({}{ns})", t.pid, t.comm.as_deref().unwrap_or("?"))
                })
                .collect();
            let who = if pids.is_empty() { "every process".to_string() } else { format!("pid {}", pids.join(", ")) };
            let _ = writeln!(out, "leaktrace {}: {who} for {seconds}", report.mode);
            // What processes that exited held at their exit is not held any
            // more: apart, so the figure is what /proc would show now.
            let at_exit: u64 = report.stacks.iter().filter(|s| s.kind.is_fd()).filter_map(|s| s.held_at_exit).sum();
            let at_exit = if at_exit > 0 {
                format!(" (and {at_exit} held by processes that exited, at their exit)")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "fds: {} acquired, {} released, {} acquired while tracing and still held{at_exit}, {} dropped",
                t.acquired, t.released, t.outstanding, t.dropped
            );
            if let Some(m) = &t.mappings {
                let _ = writeln!(
                    out,
                    "mappings: {} mmap calls, {} unmapped entirely, {} made while tracing and still mapped, holding {}",
                    m.acquired,
                    m.released,
                    m.outstanding,
                    mapping::bytes(m.bytes)
                );
            }
        }
    }
}

fn stack_entry(entry: &StackEntry, out: &mut String) {
    let what = match &entry.states {
        Some(states) => tcp_summary(entry, states),
        None => entry.kind.noun(entry.resource, entry.count),
    };
    let site = match entry.site.as_deref() {
        Some(site) => {
            let caller = entry
                .stack
                .iter()
                .skip_while(|f| f.symbol.as_deref() != Some(site))
                .skip(1)
                .find_map(|f| f.symbol.as_deref());
            match caller {
                Some(caller) => format!(", from {} <- {}", short(site), short(caller)),
                None => format!(", from {}", short(site)),
            }
        }
        // No frame of the program (a runtime's own goroutine or thread, as
        // Go's net/http dialing): name the outermost library function.
        None => entry
            .stack
            .iter()
            .rev()
            .filter_map(|f| f.symbol.as_deref())
            .find(|s| !super::outermost::is_end(s))
            .map(|s| format!(", only library frames, outermost {}", short(s)))
            .unwrap_or_default(),
    };
    // A process in another pid namespace (a container) also by the pid it
    // knows itself by, as far as the examples say.
    let pid = |pid: &u32| match entry.examples.iter().find(|e| e.pid == *pid).and_then(|e| e.ns_pid) {
        Some(ns) => format!("{pid} ({ns} in its namespace)"),
        None => pid.to_string(),
    };
    let pids = if entry.pids.len() == 1 {
        format!("pid {}", pid(&entry.pids[0]))
    } else {
        format!("pids {}", entry.pids.iter().map(pid).collect::<Vec<_>>().join(","))
    };
    // The order follows what a reader needs first: how many of what, how
    // old, then who made them.
    let amount = if entry.kind.in_bytes() {
        format!("{} in {}", mapping::bytes(entry.bytes), entry.count)
    } else if entry.estimated {
        format!("~{}", entry.count)
    } else {
        entry.count.to_string()
    };
    // Released at exit: held by nobody now.
    let holders = if entry.released_at_exit.is_some() && entry.pids.is_empty() {
        "all released as the process exited".to_string()
    } else {
        format!("held by {pids}")
    };
    let exited = match entry.held_at_exit {
        Some(n) if n == entry.count => " (held by processes that exited, at their exit)".to_string(),
        Some(n) if n > 0 => format!(" ({n} of them by processes that exited, at their exit)"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{}: {amount} {what}{}, oldest {}{site}, {holders}{exited}",
        entry.verdict.map_or("unjudged", |v| v.name()),
        trend(entry),
        format_age(entry.oldest_age_seconds)
    );
    if !entry.examples.is_empty() {
        let shown: Vec<String> = entry.examples.iter().map(example).collect();
        let more = entry.count.saturating_sub(entry.examples.len() as u64);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let _ = writeln!(out, "    e.g. {}{more}", shown.join(", "));
    }
    for (i, frame) in entry.stack.iter().enumerate() {
        let _ = writeln!(out, "    #{i:<2} {:<18} {}", frame.address, frame::line(frame));
    }
    if let Some(why) = &entry.truncated {
        let _ = writeln!(out, "    ... (stack truncated: {why})");
    }
}

fn example(e: &super::Example) -> String {
    let age = format_age(e.age_seconds);
    let path = e.path.as_deref().map(|p| format!("{p} ")).unwrap_or_default();
    if let (Some(address), Some(length)) = (&e.address, e.length) {
        let regions = e.regions.map(|n| format!(" in {n} regions")).unwrap_or_default();
        let prot = e.prot.as_deref().unwrap_or("");
        let flags = e.flags.as_deref().unwrap_or("");
        return format!("{address} {}{regions} {prot} {flags} {path}({age})", mapping::bytes(length));
    }
    let fd = e.fd.unwrap_or_default();
    match (&e.local, &e.remote, &e.state, e.state_age_seconds) {
        (Some(local), Some(remote), Some(state), Some(state_age)) => {
            format!("fd {fd} {local} -> {remote} ({state} {}, open {age})", format_age(state_age))
        }
        _ => {
            let socket: String =
                [&e.family, &e.sock_type].into_iter().flatten().map(|name| format!("{name} ")).collect();
            format!("fd {fd} {socket}{path}({age})")
        }
    }
}

/// "TCP connections in CLOSE_WAIT to 127.0.0.1:8080": the states first, then
/// who they are with.
fn tcp_summary(entry: &StackEntry, states: &std::collections::BTreeMap<String, u64>) -> String {
    let mut by_count: Vec<(&String, &u64)> = states.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let in_states = match by_count.as_slice() {
        [(state, _)] => state.to_string(),
        many => many.iter().map(|(s, n)| format!("{s} ({n})")).collect::<Vec<_>>().join(", "),
    };
    let single = |peers: &Option<std::collections::BTreeMap<String, u64>>| match peers {
        Some(p) if p.len() == 1 && !p.contains_key("other") => p.keys().next().cloned(),
        _ => None,
    };
    let unconnected = |addr: &str| addr.starts_with("0.0.0.0:") || addr.starts_with("[::]:");
    let peer_count = entry.remotes.as_ref().map_or(0, |r| r.values().sum::<u64>());
    let plural = if entry.count == 1 { "" } else { "s" };
    if states.len() == 1 && states.contains_key("LISTEN") {
        let on = single(&entry.locals).map(|l| format!(" on {l}")).unwrap_or_default();
        return format!("TCP listening socket{plural}{on}");
    }
    let with = match (single(&entry.remotes), single(&entry.locals)) {
        (Some(remote), _) if unconnected(&remote) => " never connected".to_string(),
        (Some(remote), _) => format!(" to {remote}"),
        (None, Some(local)) => format!(" on {local} with {peer_count} peers"),
        (None, None) => format!(" with {peer_count} peers"),
    };
    format!("TCP connection{plural} in {in_states}{with}")
}

/// A name for the one-line summary: C++ parameter lists are dropped, and
/// what is still long keeps its last 60 characters.
fn short(symbol: &str) -> &str {
    // The parameter list is the parenthesized group that ends the name (Go
    // methods have parentheses inside, `main.(*T).m`, but never at the end).
    let mut name = symbol;
    if symbol.ends_with(')') {
        let mut depth = 0i32;
        for (i, c) in symbol.char_indices().rev() {
            match c {
                ')' => depth += 1,
                '(' => {
                    depth -= 1;
                    if depth == 0 {
                        if i > 0 {
                            name = &symbol[..i];
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    if name.len() <= 60 {
        return name;
    }
    let cut = name.len() - 60;
    let start = name.char_indices().map(|(i, _)| i).find(|&i| i >= cut).unwrap_or(0);
    &name[start..]
}

/// Growth per minute and the history's shape, e.g. ` (+300/min ▁▂▄▆█)`.
fn trend(entry: &StackEntry) -> String {
    let values = match &entry.history.bytes {
        Some(bytes) if entry.kind.in_bytes() => bytes,
        _ => &entry.history.count,
    };
    let growth = match entry.growth_per_minute {
        Some(g) if g != 0.0 => format!("{g:+.1}/min"),
        Some(_) => "flat".to_string(),
        None => return String::new(),
    };
    format!(" ({growth} {})", sparkline(values, SPARK_WIDTH))
}

/// Samples a sparkline shows: the most recent ones.
pub(crate) const SPARK_WIDTH: usize = 24;

/// The last `width` values as block characters, scaled from 0 to the
/// largest (a flat line of held resources stays at the same height).
pub(crate) fn sparkline(values: &[u64], width: usize) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| if max == 0 { BLOCKS[0] } else { BLOCKS[((v as u128 * 7 + max as u128 / 2) / max as u128) as usize] })
        .collect()
}

pub(crate) fn format_age(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.2}s")
    } else if seconds < 60.0 {
        format!("{seconds:.0}s")
    } else if seconds < 3600.0 {
        let s = seconds as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let s = seconds as u64;
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(format_age(0.2), "0.20s");
        assert_eq!(format_age(41.3), "41s");
        assert_eq!(format_age(125.0), "2m05s");
        assert_eq!(format_age(7300.0), "2h01m");
    }

    fn tcp_entry(states: &[(&str, u64)], locals: &[&str], remotes: &[&str]) -> StackEntry {
        let map = |pairs: Vec<(String, u64)>| Some(pairs.into_iter().collect());
        let count = states.iter().map(|(_, n)| n).sum();
        StackEntry {
            verdict: Some(super::super::Verdict::Steady),
            verdict_reason: String::new(),
            growth_per_minute: None,
            first_seen: None,
            history: crate::report::History::default(),
            estimated: false,
            kind: Kind::Tcp,
            resource: super::super::Resource::Socket,
            count,
            bytes: 0,
            pids: vec![1],
            exited: false,
            held_at_exit: None,
            released_at_exit: None,
            oldest_age_seconds: 41.0,
            stack: vec![],
            examples: vec![],
            site: None,
            truncated: None,
            states: map(states.iter().map(|(s, n)| (s.to_string(), *n)).collect()),
            stale_close_wait: Some(0),
            locals: map(locals.iter().map(|l| (l.to_string(), 1)).collect()),
            remotes: map(remotes.iter().map(|r| (r.to_string(), count / remotes.len() as u64)).collect()),
        }
    }

    #[test]
    fn tcp_entries_lead_with_state_and_peer() {
        let e = tcp_entry(&[("CLOSE_WAIT", 50)], &["127.0.0.1:41000", "127.0.0.1:41001"], &["127.0.0.1:8080"]);
        assert_eq!(
            tcp_summary(&e, e.states.as_ref().expect("states")),
            "TCP connections in CLOSE_WAIT to 127.0.0.1:8080"
        );
        let e = tcp_entry(&[("CLOSE_WAIT", 18), ("ESTABLISHED", 2)], &["[::1]:8080"], &["[::1]:50001", "[::1]:50002"]);
        assert_eq!(
            tcp_summary(&e, e.states.as_ref().expect("states")),
            "TCP connections in CLOSE_WAIT (18), ESTABLISHED (2) on [::1]:8080 with 20 peers"
        );
        let e = tcp_entry(&[("LISTEN", 1)], &["0.0.0.0:8080"], &["0.0.0.0:0"]);
        assert_eq!(tcp_summary(&e, e.states.as_ref().expect("states")), "TCP listening socket on 0.0.0.0:8080");
        let e = tcp_entry(&[("CLOSE", 3)], &["0.0.0.0:0"], &["0.0.0.0:0"]);
        assert_eq!(tcp_summary(&e, e.states.as_ref().expect("states")), "TCP connections in CLOSE never connected");
    }

    #[test]
    fn summary_names_drop_parameter_lists() {
        assert_eq!(
            short("cache::Store<int>::open_entries(std::__cxx11::basic_string<char> const&, int)"),
            "cache::Store<int>::open_entries"
        );
        assert_eq!(short("main.(*service).reloadConfig"), "main.(*service).reloadConfig");
        assert_eq!(short("load_config"), "load_config");
        assert_eq!(short("Widget::operator()(int) const"), "Widget::operator()(int) const");
        assert_eq!(short("Widget::operator()(int)"), "Widget::operator()");
    }

    #[test]
    fn sparklines_scale_to_the_largest() {
        assert_eq!(sparkline(&[30, 65, 100], 24), "▃▆█");
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], 24), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[4, 4, 4], 24), "███");
        assert_eq!(sparkline(&[0, 0], 24), "▁▁");
        assert_eq!(sparkline(&[], 24), "");
        assert_eq!(sparkline(&[1, 2, 3, 4], 2), "▆█");
    }
}
