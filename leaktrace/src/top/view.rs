//! What `leaktrace top` shows: a header with the totals, the stacks in a
//! table, the selected stack's frames and the keys. Pure: it draws a
//! [`Report`] into a ratatui frame, so the tests render it into a
//! `TestBackend`; the terminal and the keys are [`super::screen`]'s.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::report::text::{format_age, losses_warning, sparkline};
use crate::report::{frame as frames, mapping, outermost, Kind, Report, StackEntry, Verdict};

/// What the screen says about the session besides the report.
pub(crate) struct Status {
    /// Who is traced: `pid 1234 (nginx)`, `all processes`.
    pub targets: String,
    /// How often the report is refreshed.
    pub interval: Duration,
    /// Since tracing began.
    pub elapsed: Duration,
    /// Refreshing is suspended: the report on screen stays as it is.
    pub paused: bool,
    /// Why the last refresh failed, while the previous report stays on screen.
    pub error: Option<String>,
}

/// The order of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Sort {
    /// Leaks first, then suspects, then steady stacks; fastest growth, then
    /// most held, first within each.
    #[default]
    Verdict,
    Growth,
    Count,
    /// The oldest resource still held.
    Age,
}

impl Sort {
    /// The order `s` switches to.
    pub(super) fn next(self) -> Sort {
        match self {
            Sort::Verdict => Sort::Growth,
            Sort::Growth => Sort::Count,
            Sort::Count => Sort::Age,
            Sort::Age => Sort::Verdict,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Verdict => "verdict",
            Sort::Growth => "growth",
            Sort::Count => "count",
            Sort::Age => "age",
        }
    }
}

/// What the user chose: the order and the selected stack. Kept across
/// refreshes; the selection follows its stack when a refresh reorders the
/// rows, as in htop.
#[derive(Debug, Default)]
pub(super) struct ViewState {
    sort: Sort,
    /// Row of the selected stack in the last frame drawn.
    selected: usize,
    /// Identity of the selected stack (see [`identity`]): the selection
    /// stays on it when a refresh or a new order moves it.
    follow: Option<u64>,
    /// Rows in the last frame drawn.
    rows: usize,
    /// Keeps the table's scroll offset between frames.
    table: TableState,
}

impl ViewState {
    pub(super) fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
    }

    pub(super) fn up(&mut self) {
        self.selected = self.selected.saturating_sub(1);
        self.follow = None;
    }

    pub(super) fn down(&mut self) {
        self.selected = (self.selected + 1).min(self.rows.saturating_sub(1));
        self.follow = None;
    }

    /// Places the selection on this frame's rows.
    fn settle(&mut self, rows: &[&StackEntry]) {
        self.rows = rows.len();
        if let Some(follow) = self.follow {
            if let Some(row) = rows.iter().position(|e| identity(e) == follow) {
                self.selected = row;
            }
        }
        self.selected = self.selected.min(rows.len().saturating_sub(1));
        self.follow = rows.get(self.selected).map(|e| identity(e));
        self.table.select(if rows.is_empty() { None } else { Some(self.selected) });
    }
}

/// Draws the whole screen.
pub(super) fn draw(frame: &mut Frame, report: &Report, status: &Status, state: &mut ViewState) {
    let rows = sorted(report, state.sort);
    state.settle(&rows);
    let area = frame.area();

    let mut header = vec![title_line(status), totals_line(report)];
    let warn = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    if let Some(error) = &status.error {
        header.push(Line::styled(format!("error: {error}"), warn));
    }
    if report.losses.any() {
        header.push(Line::styled(losses_warning(report), warn));
    }
    // The losses warning names the option that avoids the loss at its end:
    // it wraps rather than being cut.
    let width = usize::from(area.width.max(1));
    let header_height: usize = header.iter().map(|line| line.width().div_ceil(width).max(1)).sum();

    let selected = rows.get(state.selected).copied();
    let detail = selected.map(detail_lines).unwrap_or_default();
    // Borders included; at most half the screen, so the table stays in view.
    let detail_height = if detail.is_empty() { 0 } else { (detail.len() + 2).min(usize::from(area.height / 2)) };

    let [header_area, table_area, detail_area, footer_area] = Layout::vertical([
        Constraint::Length(clamp_u16(header_height)),
        Constraint::Min(3),
        Constraint::Length(clamp_u16(detail_height)),
        Constraint::Length(1),
    ])
    .areas(area);

    frame.render_widget(Paragraph::new(header).wrap(Wrap { trim: false }), header_area);
    draw_table(frame, table_area, &rows, state);
    if let Some(entry) = selected {
        let block = Block::bordered().title(format!(" stack of {} ", site_name(entry)));
        frame.render_widget(Paragraph::new(detail).block(block), detail_area);
    }
    frame.render_widget(footer(status, state.sort), footer_area);
}

fn clamp_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn title_line(status: &Status) -> Line<'static> {
    // Whole seconds: a live clock with fractions only flickers.
    let elapsed = humantime::format_duration(Duration::from_secs(status.elapsed.as_secs()));
    let mut spans = vec![
        Span::styled("leaktrace top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            " · {} · {elapsed} elapsed · refresh every {}",
            status.targets,
            humantime::format_duration(status.interval)
        )),
    ];
    if status.paused {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(" PAUSED ", Style::new().fg(Color::Black).bg(Color::Yellow)));
    }
    Line::from(spans)
}

/// Only the kinds traced: "0 TCP connections" when TCP is not traced would
/// read as good news.
fn totals_line(report: &Report) -> Line<'static> {
    let traced = |kind: Kind| report.kinds.contains(&kind);
    let mut parts = Vec::new();
    if traced(Kind::Fd) || traced(Kind::Tcp) {
        let n = report.totals.outstanding;
        parts.push(Span::raw(format!("{n} {} outstanding", if n == 1 { "fd" } else { "fds" })));
    }
    if traced(Kind::Tcp) {
        let n: u64 = report.stacks.iter().filter(|e| e.kind == Kind::Tcp).map(|e| e.count).sum();
        parts.push(Span::raw(format!("{n} TCP {}", if n == 1 { "connection" } else { "connections" })));
    }
    if traced(Kind::Mmap) {
        let bytes = match &report.totals.mappings {
            Some(m) => m.bytes,
            None => report.stacks.iter().filter(|e| e.kind == Kind::Mmap).map(|e| e.bytes).sum(),
        };
        parts.push(Span::raw(format!("{} mapped", mapping::bytes(bytes))));
    }
    let leaks = report.stacks.iter().filter(|e| e.verdict == Some(Verdict::Leak)).count();
    let leak_style = if leaks > 0 { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) } else { Style::new() };
    parts
        .push(Span::styled(format!("{leaks} {} judged leak", if leaks == 1 { "stack" } else { "stacks" }), leak_style));
    let mut spans = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        spans.push(part);
    }
    Line::from(spans)
}

fn draw_table(frame: &mut Frame, area: Rect, rows: &[&StackEntry], state: &mut ViewState) {
    let title = match state.sort {
        Sort::Verdict => " stacks by verdict, then growth ".to_string(),
        sort => format!(" stacks by {} ", sort.name()),
    };
    let block = Block::bordered().title(title);
    if rows.is_empty() {
        let empty = Paragraph::new("nothing outstanding yet: everything acquired since tracing began was released")
            .block(block);
        frame.render_widget(empty, area);
        return;
    }
    let right = |text: &'static str| Cell::from(Line::from(text).right_aligned());
    let header = Row::new([
        Cell::from("verdict"),
        right("count"),
        right("growth/min"),
        right("trend"),
        right("oldest"),
        Cell::from("what"),
        Cell::from("site"),
        Cell::from("pids"),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(TREND),
        Constraint::Length(7),
        Constraint::Length(16),
        Constraint::Fill(1),
        Constraint::Length(12),
    ];
    let table = Table::new(rows.iter().map(|e| row(e)), widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    frame.render_stateful_widget(table, area, &mut state.table);
}

/// Samples in the trend column.
const TREND: u16 = 20;

fn row(entry: &StackEntry) -> Row<'static> {
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let growth = match entry.growth_per_minute {
        Some(g) => {
            let g = format!("{g:+.1}");
            // -0.0 and slight declines round to "-0.0".
            if g == "-0.0" {
                "+0.0".to_string()
            } else {
                g
            }
        }
        None => "-".to_string(),
    };
    let site = match &entry.site {
        Some(site) => Cell::from(site.clone()),
        None => Cell::from(site_name(entry)).style(Style::new().fg(Color::DarkGray)),
    };
    let pids = match entry.pids.as_slice() {
        [] => String::new(),
        [pid] => pid.to_string(),
        [pid, rest @ ..] => format!("{pid} +{}", rest.len()),
    };
    Row::new([
        Cell::from(verdict_name(entry.verdict)).style(verdict_style(entry.verdict)),
        right(amount(entry)),
        right(growth),
        right(trend(entry)),
        right(format_age(entry.oldest_age_seconds)),
        Cell::from(what(entry)),
        site,
        Cell::from(pids),
    ])
}

fn verdict_name(verdict: Option<Verdict>) -> &'static str {
    verdict.map_or("-", Verdict::name)
}

fn verdict_style(verdict: Option<Verdict>) -> Style {
    match verdict {
        Some(Verdict::Leak) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Verdict::Suspect) => Style::new().fg(Color::Yellow),
        Some(Verdict::Steady) | None => Style::new(),
    }
}

/// Mappings are measured in bytes, as in the text report.
fn amount(entry: &StackEntry) -> String {
    if entry.kind.in_bytes() {
        mapping::bytes(entry.bytes)
    } else {
        entry.count.to_string()
    }
}

/// The history of what the count column shows, as the text report draws
/// it: bytes for mappings (a mapping count can stay flat while the mappings
/// grow).
fn trend(entry: &StackEntry) -> String {
    let values = match &entry.history.bytes {
        Some(bytes) if entry.kind.in_bytes() => bytes,
        _ => &entry.history.count,
    };
    sparkline(values, usize::from(TREND))
}

/// `fd/file`, `mmap/anon`; TCP connections by their most common state,
/// `tcp/CLOSE_WAIT`, with a `+` when they are in several (the detail pane
/// lists them).
fn what(entry: &StackEntry) -> String {
    let top_state = entry.states.as_ref().and_then(|states| {
        let (state, _) = states.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        Some(if states.len() > 1 { format!("{state}+") } else { state.clone() })
    });
    match top_state {
        Some(state) => format!("{}/{state}", entry.kind),
        None => format!("{}/{}", entry.kind, entry.resource),
    }
}

/// The leak site; with no frame of the program, the outermost library
/// function, as the text report names it.
fn site_name(entry: &StackEntry) -> String {
    if let Some(site) = &entry.site {
        return site.clone();
    }
    entry
        .stack
        .iter()
        .rev()
        .filter_map(|f| f.symbol.as_deref())
        .find(|s| !outermost::is_end(s))
        .map_or_else(|| "(no symbol)".to_string(), |s| format!("(library) {s}"))
}

/// The selected stack: the verdict and why, TCP states, then the frames,
/// innermost first, the leak site in bold.
fn detail_lines(entry: &StackEntry) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        Span::styled(verdict_name(entry.verdict), verdict_style(entry.verdict)),
        Span::raw(format!(": {}", entry.verdict_reason)),
    ])];
    if let Some(states) = &entry.states {
        let states: Vec<String> = states.iter().map(|(state, n)| format!("{state} {n}")).collect();
        lines.push(Line::raw(format!("states: {}", states.join(", "))));
    }
    if entry.stack.is_empty() {
        lines.push(Line::styled("no frames", Style::new().fg(Color::DarkGray)));
    }
    // Aligned columns over the symbolized frames; a long C++ name does not
    // push every line right.
    let symbolized = entry.stack.iter().filter(|f| f.symbol.is_some());
    let source = |f| frames::source(f).unwrap_or_default();
    let symbol_width = symbolized.clone().map(|f| frames::symbol(f).chars().count()).max().unwrap_or(0).min(60);
    let place_width = symbolized.map(|f| source(f).chars().count()).max().unwrap_or(0).min(30);
    for (i, frame) in entry.stack.iter().enumerate() {
        let line = if frame.symbol.is_some() {
            let module = frames::module(frame).unwrap_or("");
            let style =
                if frame.symbol == entry.site { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
            Line::styled(
                format!("#{i:<2} {:<symbol_width$}  {:<place_width$}  {module}", frames::symbol(frame), source(frame)),
                style,
            )
        } else {
            Line::styled(
                format!("#{i:<2} {}  {}", frames::symbol(frame), frame.address),
                Style::new().fg(Color::DarkGray),
            )
        };
        lines.push(line);
    }
    if let Some(why) = &entry.truncated {
        lines.push(Line::raw(format!("... (stack truncated: {why})")));
    }
    lines
}

fn footer(status: &Status, sort: Sort) -> Line<'static> {
    let key = Style::new().add_modifier(Modifier::REVERSED);
    let pause = if status.paused { " resume" } else { " pause" };
    Line::from(vec![
        Span::styled(" q ", key),
        Span::raw(" quit  "),
        Span::styled(" ↑/↓ ", key),
        Span::raw(" select  "),
        Span::styled(" s ", key),
        Span::raw(format!(" sort (now by {})  ", sort.name())),
        Span::styled(" p ", key),
        Span::raw(pause),
    ])
}

fn sorted(report: &Report, sort: Sort) -> Vec<&StackEntry> {
    let mut rows: Vec<&StackEntry> = report.stacks.iter().collect();
    let growth = |e: &StackEntry| e.growth_per_minute.unwrap_or(f64::NEG_INFINITY);
    let by_growth = |a: &StackEntry, b: &StackEntry| growth(b).total_cmp(&growth(a));
    let by_count = |a: &StackEntry, b: &StackEntry| b.count.cmp(&a.count).then(b.bytes.cmp(&a.bytes));
    let by_age = |a: &StackEntry, b: &StackEntry| b.oldest_age_seconds.total_cmp(&a.oldest_age_seconds);
    // Stable: ties keep the report's order.
    rows.sort_by(|a, b| -> Ordering {
        match sort {
            Sort::Verdict => {
                rank(a.verdict).cmp(&rank(b.verdict)).then_with(|| by_growth(a, b)).then_with(|| by_count(a, b))
            }
            Sort::Growth => by_growth(a, b).then_with(|| by_count(a, b)),
            Sort::Count => by_count(a, b).then_with(|| by_growth(a, b)),
            Sort::Age => by_age(a, b).then_with(|| by_count(a, b)),
        }
    });
    rows
}

/// Leaks first, then suspects, then steady stacks.
fn rank(verdict: Option<Verdict>) -> u8 {
    3 - verdict.map_or(0, Verdict::severity)
}

/// A stack across refreshes: the report has no id for it, but the same
/// frames acquiring the same kind of resource are the same row.
fn identity(entry: &StackEntry) -> u64 {
    let mut hasher = DefaultHasher::new();
    entry.kind.hash(&mut hasher);
    entry.resource.hash(&mut hasher);
    for frame in &entry.stack {
        frame.address.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::report::tests::sample;
    use crate::report::{History, MappingTotals};

    fn status() -> Status {
        Status {
            targets: "pid 123 (x)".into(),
            interval: Duration::from_secs(2),
            elapsed: Duration::from_millis(65_400),
            paused: false,
            error: None,
        }
    }

    /// The sample's leak from load_config, a steady stack holding more fds
    /// from read_cache, and a suspect mapping stack from alloc_arena.
    fn report() -> Report {
        let mut report = sample();
        let leak = report.stacks[0].clone();

        let mut steady = leak.clone();
        steady.verdict = Some(Verdict::Steady);
        steady.verdict_reason = "flat for 10 samples".into();
        steady.growth_per_minute = Some(0.0);
        steady.count = 250;
        steady.oldest_age_seconds = 61.0;
        steady.history.count = vec![250, 250, 250];
        steady.site = Some("read_cache".into());
        steady.stack[1].symbol = Some("read_cache".into());
        steady.stack[1].address = "0x401200".into();
        steady.stack[1].line = Some(40);

        let mut mmap = leak;
        mmap.verdict = Some(Verdict::Suspect);
        mmap.verdict_reason = "grew in 6 of 10 samples".into();
        mmap.growth_per_minute = Some(1.5);
        mmap.kind = Kind::Mmap;
        mmap.resource = crate::report::Resource::Anon;
        mmap.count = 3;
        mmap.bytes = 12 << 20;
        mmap.history = History {
            seconds: vec![0.5, 1.0],
            count: vec![3, 3],
            bytes: Some(vec![4 << 20, 12 << 20]),
            oldest_age_seconds: vec![0.1, 0.6],
        };
        mmap.site = Some("alloc_arena".into());
        mmap.stack[0].symbol = Some("mmap64".into());
        mmap.stack[1].symbol = Some("alloc_arena".into());
        mmap.stack[1].address = "0x401300".into();

        report.stacks = vec![steady, report.stacks[0].clone(), mmap];
        report.kinds = vec![Kind::Fd, Kind::Tcp, Kind::Mmap];
        report.totals.mappings = Some(MappingTotals {
            acquired: 5,
            released: 2,
            outstanding: 3,
            bytes: 12 << 20,
            bytes_mapped: 20 << 20,
            bytes_unmapped: 8 << 20,
        });
        report
    }

    fn render(report: &Report, status: &Status, state: &mut ViewState) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("test backend");
        terminal.draw(|frame| draw(frame, report, status, state)).expect("draw");
        let buffer = terminal.backend().buffer();
        buffer
            .content()
            .chunks(usize::from(buffer.area.width))
            .map(|row| row.iter().map(|cell| cell.symbol()).collect())
            .collect()
    }

    fn line_of(screen: &[String], text: &str) -> usize {
        screen.iter().position(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?} in\n{}", screen.join("\n")))
    }

    /// The table row of the stack with this verdict (only one has it).
    fn row_of(screen: &[String], verdict: &str) -> usize {
        let row = |l: &&String| [format!("│▶ {verdict} "), format!("│  {verdict} ")].iter().any(|p| l.starts_with(p));
        screen.iter().position(|l| row(&l)).unwrap_or_else(|| panic!("no {verdict} row in\n{}", screen.join("\n")))
    }

    #[test]
    fn leaks_lead_and_the_selected_stack_is_detailed() {
        let screen = render(&report(), &status(), &mut ViewState::default());
        let text = screen.join("\n");
        assert!(screen[0].contains("leaktrace top · pid 123 (x) · 1m 5s elapsed · refresh every 2s"), "{text}");
        assert!(screen[1].contains("100 fds outstanding · 0 TCP connections · 12.0 MiB mapped · 1 stack judged leak"));

        let leak = row_of(&screen, "leak");
        let suspect = row_of(&screen, "suspect");
        let steady = row_of(&screen, "steady");
        assert!(screen[leak].starts_with("│▶ leak "), "the first row is selected: {text}");
        assert!(leak < suspect && suspect < steady, "{text}");
        for cell in ["100", "+4000.0", "▃▆█", "1.20s", "fd/file", "load_config", "123"] {
            assert!(screen[leak].contains(cell), "{cell:?} missing from {:?}", screen[leak]);
        }
        for cell in ["12.0 MiB", "+1.5", "▃█", "mmap/anon", "alloc_arena"] {
            assert!(screen[suspect].contains(cell), "{cell:?} missing from {:?}", screen[suspect]);
        }
        for cell in ["250", "+0.0", "███", "1m01s", "read_cache"] {
            assert!(screen[steady].contains(cell), "{cell:?} missing from {:?}", screen[steady]);
        }

        let detail = line_of(&screen, "stack of load_config");
        assert!(screen[detail + 1].contains("leak: grew in 10 of 10 samples"), "{text}");
        assert!(screen[detail + 2].contains("#0  __libc_open64  open64.c:41  libc.so.6"), "{text}");
        assert!(screen[detail + 3].contains("#1  load_config    x.c:16       x"), "{text}");
        assert!(screen[detail + 4].contains("#2  [unknown: address outside every code mapping]  0x22286e65706f006c"));
        assert!(screen[29].contains("q  quit") && screen[29].contains("p  pause"), "{text}");
    }

    #[test]
    fn sorting_by_count_reorders_and_the_selection_follows_its_stack() {
        let report = report();
        let mut state = ViewState::default();
        render(&report, &status(), &mut state);
        state.cycle_sort();
        state.cycle_sort();
        let screen = render(&report, &status(), &mut state);
        let steady = row_of(&screen, "steady");
        let leak = row_of(&screen, "leak");
        assert!(steady < leak, "{}", screen.join("\n"));
        assert!(screen[leak].contains("▶ leak"), "{}", screen.join("\n"));
        line_of(&screen, "stack of load_config");
        line_of(&screen, "stacks by count");

        state.up();
        let screen = render(&report, &status(), &mut state);
        assert!(screen[row_of(&screen, "steady")].contains("▶ steady"));
        line_of(&screen, "stack of read_cache");
        line_of(&screen, "read_cache     x.c:40");
    }

    #[test]
    fn selection_stays_within_the_rows() {
        let report = report();
        let mut state = ViewState::default();
        render(&report, &status(), &mut state);
        for _ in 0..5 {
            state.down();
        }
        let screen = render(&report, &status(), &mut state);
        assert!(screen[row_of(&screen, "steady")].contains("▶ steady"));
        state.up();
        let screen = render(&report, &status(), &mut state);
        assert!(screen[row_of(&screen, "suspect")].contains("▶ suspect"));
    }

    #[test]
    fn an_empty_report_says_so() {
        let mut report = sample();
        report.stacks.clear();
        report.totals.outstanding = 0;
        let screen = render(&report, &status(), &mut ViewState::default());
        line_of(&screen, "nothing outstanding yet");
        assert!(screen[1].contains("0 fds outstanding · 0 TCP connections · 0 stacks judged leak"), "{}", screen[1]);
        assert!(!screen.iter().any(|l| l.contains("stack of")));
    }

    #[test]
    fn losses_errors_and_pauses_show_in_the_header() {
        let mut report = sample();
        report.losses.map_full = 1200;
        report.complete = false;
        let status = Status { paused: true, error: Some("reading the stack map failed".into()), ..status() };
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("test backend");
        terminal.draw(|frame| draw(frame, &report, &status, &mut ViewState::default())).expect("draw");
        let buffer = terminal.backend().buffer();
        let line = |y: u16| (0..120).map(|x| buffer[(x, y)].symbol()).collect::<String>();
        assert!(line(0).contains("PAUSED"), "{}", line(0));
        assert!(line(2).starts_with("error: reading the stack map failed"), "{}", line(2));
        assert!(line(3).starts_with("warning: the report is incomplete: 1200 acquisitions were dropped"));
        let warning = format!("{} {}", line(3).trim_end(), line(4).trim_end());
        assert!(warning.ends_with("full (raise --max-entries)"), "the warning wraps whole: {warning}");
        assert!(line(5).starts_with("┌ stacks"), "the table follows the header: {}", line(5));
        assert_eq!(buffer[(0, 3)].fg, Color::Red);
        assert!(line(29).contains("p  resume"));
    }

    #[test]
    fn tcp_stacks_are_named_by_state() {
        let mut entry = sample().stacks[0].clone();
        entry.kind = Kind::Tcp;
        entry.resource = crate::report::Resource::Socket;
        entry.states = Some([("CLOSE_WAIT".to_string(), 18), ("ESTABLISHED".to_string(), 2)].into_iter().collect());
        assert_eq!(what(&entry), "tcp/CLOSE_WAIT+");
        assert_eq!(detail_lines(&entry)[1].to_string(), "states: CLOSE_WAIT 18, ESTABLISHED 2");
        entry.states = Some([("CLOSE_WAIT".to_string(), 20)].into_iter().collect());
        assert_eq!(what(&entry), "tcp/CLOSE_WAIT");
    }

    #[test]
    fn small_terminals_do_not_panic() {
        for (width, height) in [(0, 0), (1, 1), (20, 4), (40, 8)] {
            let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
            terminal.draw(|frame| draw(frame, &report(), &status(), &mut ViewState::default())).expect("draw");
        }
    }

    #[test]
    fn trends_show_the_latest_samples_of_the_count_column() {
        let mut entry = sample().stacks[0].clone();
        assert_eq!(trend(&entry), "▃▆█");
        entry.history.count = (1..=30).collect();
        assert_eq!(trend(&entry), "▄▄▄▄▅▅▅▅▅▆▆▆▆▇▇▇▇███", "the last 20 of 11..=30");
        entry.history.count = vec![7, 7, 7];
        assert_eq!(trend(&entry), "███");
        entry.history.count = vec![];
        assert_eq!(trend(&entry), "");
        entry.kind = Kind::Mmap;
        entry.history.count = vec![3, 3];
        entry.history.bytes = Some(vec![4096, 16384]);
        assert_eq!(trend(&entry), "▃█", "mappings by bytes");
    }
}
