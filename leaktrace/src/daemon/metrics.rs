//! `/metrics`: the daemon's current report as Prometheus series, built with
//! the `prometheus` crate. Which processes and call sites get series of
//! their own is decided here, purely, under the caps of `[metrics]`; the
//! rest is counted, not dropped silently.
//!
//! The names are a contract (alert rules and dashboards under `deploy/`
//! use them; `xtask/src/deploy/prometheus.rs` checks that they exist).

use std::collections::{BTreeMap, HashMap};

use prometheus::{
    core::Collector, Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::config::MetricsConfig;
use crate::report::{Kind, MapUse, Process, Report, Resource, StackEntry, Verdict};

/// The labels every per-process series carries.
const PROCESS_LABELS: [&str; 5] = ["pid", "comm", "container", "pod", "namespace"];

/// One process's totals, from the stacks that are its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcessRow {
    pub labels: [String; 5],
    /// (kind, resource) -> outstanding count.
    pub outstanding: BTreeMap<(Kind, Resource), u64>,
    pub mapped_bytes: u64,
    pub tcp_states: BTreeMap<String, u64>,
    pub leaking_stacks: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessRow {
    fn total(&self) -> u64 {
        self.outstanding.values().sum()
    }
}

/// One call site of one process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SiteRow {
    pub process: usize,
    pub kind: Kind,
    pub resource: Resource,
    pub site: String,
    pub outstanding: u64,
    pub growth_per_minute: f64,
    pub leaking: bool,
}

/// What is exported from one report.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Exported {
    pub processes: Vec<ProcessRow>,
    pub sites: Vec<SiteRow>,
    /// Processes and sites that held something but got no series of their own.
    pub processes_left_out: u64,
    pub sites_left_out: u64,
    /// By kind: what processes that exited since the last sample still held
    /// at their exit (they have no series: they are gone).
    pub held_at_exit: BTreeMap<Kind, u64>,
}

/// A site's label: the program's own innermost function with its file and
/// line (`load_config (config.c:16)`), else the innermost frame's symbol,
/// else its module and offset.
pub(crate) fn site_label(stack: &StackEntry) -> String {
    let frame = match &stack.site {
        Some(site) => stack.stack.iter().find(|f| f.symbol.as_ref() == Some(site)),
        None => stack.stack.iter().find(|f| f.symbol.is_some()),
    };
    match frame {
        Some(f) => {
            let symbol = f.symbol.clone().unwrap_or_default();
            match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    let base = file.rsplit('/').next().unwrap_or(file);
                    format!("{symbol} ({base}:{line})")
                }
                _ => symbol,
            }
        }
        None => match stack.stack.first() {
            Some(f) => match (&f.module, f.offset) {
                (Some(module), Some(offset)) => {
                    format!("{}+{offset:#x}", module.rsplit('/').next().unwrap_or(module))
                }
                _ => f.address.clone(),
            },
            None => "[no stack]".to_string(),
        },
    }
}

/// The rows to export: processes holding the most first, up to the cap,
/// and for each its sites, leaking and fastest-growing first.
pub(crate) fn export(report: &Report, caps: &MetricsConfig) -> Exported {
    // Live processes: an exited one's entry may share its pid with a live
    // process given it since, whose stacks are not `exited`.
    let about: HashMap<u32, &Process> =
        report.processes.iter().flatten().filter(|p| !p.exited).map(|p| (p.pid, p)).collect();
    let mut rows: BTreeMap<u32, ProcessRow> = BTreeMap::new();
    let mut sites: BTreeMap<u32, BTreeMap<(Kind, Resource, String), SiteRow>> = BTreeMap::new();
    let mut held_at_exit: BTreeMap<Kind, u64> = BTreeMap::new();
    for stack in &report.stacks {
        // The daemon's stacks are per process: one pid each.
        let Some(&pid) = stack.pids.first() else { continue };
        if stack.exited {
            *held_at_exit.entry(stack.kind).or_default() += stack.count;
            continue;
        }
        let row = rows.entry(pid).or_insert_with(|| ProcessRow {
            labels: labels(pid, about.get(&pid).copied()),
            open_fds: about.get(&pid).and_then(|p| p.open_fds),
            max_fds: about.get(&pid).and_then(|p| p.max_fds),
            ..ProcessRow::default()
        });
        *row.outstanding.entry((stack.kind, stack.resource)).or_default() += stack.count;
        if stack.kind.in_bytes() {
            row.mapped_bytes += stack.bytes;
        }
        for (state, n) in stack.states.iter().flatten() {
            *row.tcp_states.entry(state.clone()).or_default() += n;
        }
        let leaking = stack.verdict == Some(Verdict::Leak);
        row.leaking_stacks += u64::from(leaking);
        let site =
            sites.entry(pid).or_default().entry((stack.kind, stack.resource, site_label(stack))).or_insert_with_key(
                |(kind, resource, site)| SiteRow {
                    process: 0,
                    kind: *kind,
                    resource: *resource,
                    site: site.clone(),
                    outstanding: 0,
                    growth_per_minute: 0.0,
                    leaking: false,
                },
            );
        site.outstanding += stack.count;
        site.growth_per_minute += stack.growth_per_minute.unwrap_or(0.0);
        site.leaking |= leaking;
    }
    let mut ranked: Vec<(u32, ProcessRow)> = rows.into_iter().collect();
    ranked.sort_by(|(pa, a), (pb, b)| {
        b.leaking_stacks.cmp(&a.leaking_stacks).then(b.total().cmp(&a.total())).then(pa.cmp(pb))
    });
    let mut out = Exported {
        processes_left_out: ranked.len().saturating_sub(caps.max_processes) as u64,
        held_at_exit,
        ..Exported::default()
    };
    ranked.truncate(caps.max_processes);
    for (index, (pid, row)) in ranked.into_iter().enumerate() {
        let mut own: Vec<SiteRow> = sites.remove(&pid).unwrap_or_default().into_values().collect();
        own.sort_by(|a, b| {
            b.leaking
                .cmp(&a.leaking)
                .then(b.growth_per_minute.total_cmp(&a.growth_per_minute))
                .then(b.outstanding.cmp(&a.outstanding))
                .then(a.site.cmp(&b.site))
        });
        let room = caps.sites_per_process.min(caps.max_sites.saturating_sub(out.sites.len()));
        out.sites_left_out += own.len().saturating_sub(room) as u64;
        out.sites.extend(own.into_iter().take(room).map(|s| SiteRow { process: index, ..s }));
        out.processes.push(row);
    }
    // Sites of processes left out entirely.
    out.sites_left_out += sites.values().map(|s| s.len() as u64).sum::<u64>();
    out
}

fn labels(pid: u32, p: Option<&Process>) -> [String; 5] {
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    [
        pid.to_string(),
        text(p.and_then(|p| p.comm.as_ref())),
        // The short id, as `docker ps` and `crictl ps` show it.
        p.and_then(|p| p.container.as_ref()).map(|c| c.chars().take(12).collect()).unwrap_or_default(),
        text(p.and_then(|p| p.pod.as_ref())),
        text(p.and_then(|p| p.namespace.as_ref())),
    ]
}

/// What the daemon knows besides the report.
pub(crate) struct Extra {
    /// History series followed, and their cap.
    pub series: MapUse,
    /// Seconds the last sample took.
    pub sample_seconds: f64,
    /// Wall-clock seconds since the epoch of the last sample.
    pub sampled_at: f64,
    /// Pod lists that failed since the start.
    pub kubernetes_errors: u64,
}

/// The daemon's series, updated once per sample.
pub(crate) struct Metrics {
    registry: Registry,
    outstanding: IntGaugeVec,
    mapped_bytes: IntGaugeVec,
    tcp: IntGaugeVec,
    leaking: IntGaugeVec,
    open_fds: IntGaugeVec,
    max_fds: GaugeVec,
    site_outstanding: IntGaugeVec,
    site_growth: GaugeVec,
    acquisitions: IntCounterVec,
    releases: IntCounterVec,
    held_at_exit: IntCounterVec,
    lost: IntCounterVec,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    traced_processes: IntGauge,
    last_sample: Gauge,
    sample_duration: Gauge,
    kubernetes_errors: IntCounter,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let process_vec = |name: &str, help: &str, extra: &[&str]| {
            let labels: Vec<&str> = PROCESS_LABELS.iter().chain(extra).copied().collect();
            IntGaugeVec::new(Opts::new(name, help), &labels)
        };
        let metrics = Metrics {
            outstanding: process_vec(
                "leaktrace_outstanding_resources",
                "Resources acquired while traced and still held, by process, kind and resource type.",
                &["kind", "resource"],
            )?,
            mapped_bytes: process_vec("leaktrace_mapped_bytes", "Bytes of traced memory mappings still held.", &[])?,
            tcp: process_vec("leaktrace_tcp_connections", "Traced TCP connections held, by state.", &["state"])?,
            leaking: process_vec(
                "leaktrace_leaking_stacks",
                "Call stacks judged leak (growing over the history).",
                &[],
            )?,
            open_fds: process_vec("leaktrace_process_open_fds", "File descriptors the process has open now.", &[])?,
            max_fds: GaugeVec::new(
                Opts::new("leaktrace_process_max_fds", "The process's soft RLIMIT_NOFILE (+Inf when unlimited)."),
                &PROCESS_LABELS,
            )?,
            site_outstanding: process_vec(
                "leaktrace_site_outstanding_resources",
                "Resources held from a call site (the top sites per process).",
                &["kind", "resource", "site"],
            )?,
            site_growth: GaugeVec::new(
                Opts::new(
                    "leaktrace_site_growth_per_minute",
                    "Growth per minute of what a call site holds (Theil-Sen slope of its history).",
                ),
                &PROCESS_LABELS.iter().chain(&["kind", "resource", "site"]).copied().collect::<Vec<_>>(),
            )?,
            acquisitions: IntCounterVec::new(
                Opts::new("leaktrace_acquisitions_total", "Acquisitions seen, by kind."),
                &["kind"],
            )?,
            releases: IntCounterVec::new(Opts::new("leaktrace_releases_total", "Releases seen, by kind."), &["kind"])?,
            held_at_exit: IntCounterVec::new(
                Opts::new(
                    "leaktrace_held_at_exit_total",
                    "Resources acquired while traced that their process still held when it exited, by kind.",
                ),
                &["kind"],
            )?,
            lost: IntCounterVec::new(
                Opts::new("leaktrace_lost_total", "What the tracer could not keep or export, by cause."),
                &["cause"],
            )?,
            map_entries: IntGaugeVec::new(Opts::new("leaktrace_map_entries", "Entries in use, by map."), &["map"])?,
            map_capacity: IntGaugeVec::new(Opts::new("leaktrace_map_capacity", "Capacity, by map."), &["map"])?,
            traced_processes: IntGauge::new("leaktrace_traced_processes", "Processes holding traced resources.")?,
            last_sample: Gauge::new(
                "leaktrace_last_sample_timestamp_seconds",
                "When the last sample was taken (Unix time).",
            )?,
            sample_duration: Gauge::new("leaktrace_sample_duration_seconds", "How long the last sample took.")?,
            kubernetes_errors: IntCounter::new(
                "leaktrace_kubernetes_errors_total",
                "Pod lists from the Kubernetes API that failed.",
            )?,
            registry: registry.clone(),
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.outstanding.clone()),
            Box::new(metrics.mapped_bytes.clone()),
            Box::new(metrics.tcp.clone()),
            Box::new(metrics.leaking.clone()),
            Box::new(metrics.open_fds.clone()),
            Box::new(metrics.max_fds.clone()),
            Box::new(metrics.site_outstanding.clone()),
            Box::new(metrics.site_growth.clone()),
            Box::new(metrics.acquisitions.clone()),
            Box::new(metrics.releases.clone()),
            Box::new(metrics.held_at_exit.clone()),
            Box::new(metrics.lost.clone()),
            Box::new(metrics.map_entries.clone()),
            Box::new(metrics.map_capacity.clone()),
            Box::new(metrics.traced_processes.clone()),
            Box::new(metrics.last_sample.clone()),
            Box::new(metrics.sample_duration.clone()),
            Box::new(metrics.kubernetes_errors.clone()),
            // The tracer's own RSS, fds and CPU time (process_*).
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(metrics)
    }

    /// A handle for the HTTP server to encode from.
    pub(crate) fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Replaces every per-process series with the report's: processes
    /// that are gone lose their series here.
    pub(crate) fn update(&mut self, report: &Report, extra: &Extra, caps: &MetricsConfig) {
        let exported = export(report, caps);
        self.set_processes(&exported);
        self.traced_processes.set(gauge((exported.processes.len() as u64) + exported.processes_left_out));

        let totals = &report.totals;
        // Totals count every fd, TCP connections included, under `fd`.
        advance(&self.acquisitions.with_label_values(&[Kind::Fd.name()]), totals.acquired);
        advance(&self.releases.with_label_values(&[Kind::Fd.name()]), totals.released);
        if let Some(m) = &totals.mappings {
            advance(&self.acquisitions.with_label_values(&[Kind::Mmap.name()]), m.acquired);
            advance(&self.releases.with_label_values(&[Kind::Mmap.name()]), m.released);
        }
        for (cause, n, _) in report.losses.by_cause() {
            advance(&self.lost.with_label_values(&[cause]), n);
        }
        for (kind, n) in &exported.held_at_exit {
            self.held_at_exit.with_label_values(&[kind.name()]).inc_by(*n);
        }
        // Left out at this sample: added up over samples, like the drops.
        self.lost.with_label_values(&["process_series"]).inc_by(exported.processes_left_out);
        self.lost.with_label_values(&["site_series"]).inc_by(exported.sites_left_out);
        advance(&self.kubernetes_errors, extra.kubernetes_errors);

        let maps = &report.kernel_maps;
        for (map, usage) in [
            ("outstanding", maps.outstanding),
            ("tcp", maps.tcp),
            ("stacks", maps.stacks),
            ("mapping_regions", maps.mapping_regions),
            ("series", extra.series),
        ] {
            self.map_entries.with_label_values(&[map]).set(gauge(usage.used));
            self.map_capacity.with_label_values(&[map]).set(gauge(usage.capacity));
        }
        self.last_sample.set(extra.sampled_at);
        self.sample_duration.set(extra.sample_seconds);
    }

    fn set_processes<'a>(&self, exported: &'a Exported) {
        for vec in [&self.outstanding, &self.mapped_bytes, &self.tcp, &self.leaking, &self.open_fds] {
            vec.reset();
        }
        self.max_fds.reset();
        self.site_outstanding.reset();
        self.site_growth.reset();
        for row in &exported.processes {
            let l: Vec<&str> = row.labels.iter().map(String::as_str).collect();
            let with = |extra: &[&'a str]| -> Vec<&'a str> { l.iter().copied().chain(extra.iter().copied()).collect() };
            for ((kind, resource), n) in &row.outstanding {
                self.outstanding.with_label_values(&with(&[kind.name(), resource.name()])).set(gauge(*n));
            }
            if row.outstanding.keys().any(|(kind, _)| kind.in_bytes()) {
                self.mapped_bytes.with_label_values(&l).set(gauge(row.mapped_bytes));
            }
            for (state, n) in &row.tcp_states {
                self.tcp.with_label_values(&with(&[state])).set(gauge(*n));
            }
            self.leaking.with_label_values(&l).set(gauge(row.leaking_stacks));
            if let Some(open) = row.open_fds {
                self.open_fds.with_label_values(&l).set(gauge(open));
                self.max_fds.with_label_values(&l).set(row.max_fds.map_or(f64::INFINITY, |m| m as f64));
            }
        }
        for site in &exported.sites {
            let row = &exported.processes[site.process];
            let l: Vec<&str> = row
                .labels
                .iter()
                .map(String::as_str)
                .chain([site.kind.name(), site.resource.name(), site.site.as_str()])
                .collect();
            self.site_outstanding.with_label_values(&l).set(gauge(site.outstanding));
            self.site_growth.with_label_values(&l).set(site.growth_per_minute);
        }
    }
}

/// Moves `counter` up to `total`, a cumulative count of the session's (which
/// only grows); the counter's own value is what it was moved to last time.
fn advance(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The registry in Prometheus's text format.
pub(crate) fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Frame, Report};

    fn frame(symbol: Option<&str>, file: Option<&str>, line: Option<u32>) -> Frame {
        Frame {
            address: "0x401136".into(),
            symbol: symbol.map(String::from),
            module: Some("/usr/bin/app".into()),
            file: file.map(String::from),
            line,
            offset: Some(0x1136),
            inlined: false,
            reason: None,
        }
    }

    fn stack(pid: u32, kind: &'static str, resource: &'static str, count: u64, site: &str, leak: bool) -> StackEntry {
        let mut s = crate::report::tests::sample().stacks[0].clone();
        s.pids = vec![pid];
        s.kind = Kind::from_name(kind).expect("a kind");
        s.resource = Resource::from_name(resource);
        s.count = count;
        s.verdict = Some(if leak { Verdict::Leak } else { Verdict::Steady });
        s.growth_per_minute = Some(if leak { count as f64 } else { 0.0 });
        s.site = Some(site.to_string());
        s.stack = vec![frame(Some("open"), None, None), frame(Some(site), Some("/src/app/config.c"), Some(16))];
        s.states = None;
        s
    }

    fn report(stacks: Vec<StackEntry>, processes: Vec<Process>) -> Report {
        let mut r = crate::report::tests::sample();
        r.mode = crate::report::Mode::Daemon;
        r.stacks = stacks;
        r.processes = Some(processes);
        r
    }

    fn process(pid: u32, comm: &str) -> Process {
        Process {
            pid,
            comm: Some(comm.into()),
            container: Some("0123456789abcdef0123".into()),
            pod: Some("web-1".into()),
            namespace: Some("shop".into()),
            open_fds: Some(40),
            max_fds: Some(1024),
            ..Process::default()
        }
    }

    #[test]
    fn sites_are_named_by_function_file_and_line() {
        let s = stack(1, "fd", "file", 3, "load_config", true);
        assert_eq!(site_label(&s), "load_config (config.c:16)");
        let mut bare = s.clone();
        bare.site = None;
        bare.stack = vec![frame(None, None, None)];
        assert_eq!(site_label(&bare), "app+0x1136");
        bare.stack.clear();
        assert_eq!(site_label(&bare), "[no stack]");
    }

    #[test]
    fn processes_are_summed_by_kind_and_resource_and_leaks_counted() {
        let r = report(
            vec![
                stack(10, "fd", "file", 30, "load_config", true),
                stack(10, "fd", "file", 4, "open_pool", false),
                stack(10, "fd", "pipe", 2, "spawn", false),
                stack(20, "fd", "file", 8, "ring", false),
            ],
            vec![process(10, "leaky"), process(20, "steady")],
        );
        let e = export(&r, &MetricsConfig::default());
        assert_eq!(e.processes.len(), 2);
        let leaky = &e.processes[0];
        assert_eq!(leaky.labels, ["10", "leaky", "0123456789ab", "web-1", "shop"].map(String::from));
        assert_eq!(leaky.outstanding[&(Kind::Fd, Resource::File)], 34);
        assert_eq!(leaky.outstanding[&(Kind::Fd, Resource::Pipe)], 2);
        assert_eq!(leaky.leaking_stacks, 1);
        assert_eq!(e.processes[1].leaking_stacks, 0);
        // Leaking sites first.
        assert_eq!(e.sites[0].site, "load_config (config.c:16)");
        assert_eq!((e.sites[0].outstanding, e.sites[0].leaking), (30, true));
        assert_eq!((e.processes_left_out, e.sites_left_out), (0, 0));
    }

    #[test]
    fn processes_that_exited_are_counted_not_exported() {
        let gone = Process { exited: true, ..process(20, "job") };
        let held_at_exit = StackEntry { exited: true, ..stack(20, "fd", "file", 30, "load_config", true) };
        let r =
            report(vec![stack(10, "fd", "file", 3, "serve", false), held_at_exit], vec![process(10, "server"), gone]);
        let e = export(&r, &MetricsConfig::default());
        assert_eq!(e.processes.len(), 1);
        assert_eq!(e.processes[0].labels[0], "10");
        assert!(e.sites.iter().all(|s| s.process == 0));
        assert_eq!(e.held_at_exit.get(&Kind::Fd), Some(&30));
    }

    #[test]
    fn a_live_process_on_the_pid_of_one_that_exited_is_itself() {
        // pid 20 exited holding 4; another process got pid 20 and holds 6.
        let old = StackEntry { exited: true, ..stack(20, "fd", "file", 4, "first_owner", false) };
        let new = stack(20, "fd", "file", 6, "second_owner", false);
        let gone = Process { exited: true, comm: None, ..process(20, "") };
        let r = report(vec![old, new], vec![process(20, "second"), gone]);
        let e = export(&r, &MetricsConfig::default());
        assert_eq!(e.held_at_exit.get(&Kind::Fd), Some(&4));
        assert_eq!(e.processes.len(), 1);
        assert_eq!((e.processes[0].labels[0].as_str(), e.processes[0].labels[1].as_str()), ("20", "second"));
        assert_eq!(e.sites.len(), 1);
        assert_eq!((e.sites[0].site.as_str(), e.sites[0].outstanding), ("second_owner (config.c:16)", 6));
    }

    #[test]
    fn caps_bound_the_series_and_count_what_they_leave_out() {
        let mut stacks = Vec::new();
        for pid in 1..=5u32 {
            for site in ["a", "b", "c", "d"] {
                stacks.push(stack(pid, "fd", "file", u64::from(pid), site, false));
            }
        }
        let r = report(stacks, vec![]);
        let caps = MetricsConfig { max_processes: 3, sites_per_process: 2, max_sites: 5 };
        let e = export(&r, &caps);
        // The three holding the most.
        let pids: Vec<&str> = e.processes.iter().map(|p| p.labels[0].as_str()).collect();
        assert_eq!(pids, ["5", "4", "3"]);
        assert_eq!(e.processes_left_out, 2);
        assert_eq!(e.sites.len(), 5);
        // 2 + 2 + 1 kept of 3 x 4, plus the 2 x 4 of the processes left out.
        assert_eq!(e.sites_left_out, 7 + 8);
    }

    #[test]
    fn the_text_format_has_the_contract_names_and_labels() {
        let mut metrics = Metrics::new().expect("registry");
        let r = report(vec![stack(10, "fd", "file", 30, "load_config", true)], vec![process(10, "leaky")]);
        let extra = Extra {
            series: MapUse { used: 1, capacity: 16 },
            sample_seconds: 0.01,
            sampled_at: 1.7e9,
            kubernetes_errors: 0,
        };
        metrics.update(&r, &extra, &MetricsConfig::default());
        let text = String::from_utf8(encode(&metrics.registry()).expect("encodes")).expect("utf-8");
        // The encoder sorts labels by name.
        let labels = r#"comm="leaky",container="0123456789ab",namespace="shop",pid="10",pod="web-1""#;
        let with_kind =
            r#"comm="leaky",container="0123456789ab",kind="fd",namespace="shop",pid="10",pod="web-1",resource="file""#;
        for line in [
            format!(r#"leaktrace_outstanding_resources{{{with_kind}}} 30"#),
            format!("leaktrace_leaking_stacks{{{labels}}} 1"),
            format!("leaktrace_process_open_fds{{{labels}}} 40"),
            format!("leaktrace_process_max_fds{{{labels}}} 1024"),
            format!(r#"leaktrace_site_outstanding_resources{{{with_kind},site="load_config (config.c:16)"}} 30"#),
            r#"leaktrace_map_capacity{map="series"} 16"#.to_string(),
            "leaktrace_traced_processes 1".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        // The process is gone at the next sample: so are its series; the
        // counters only move forward.
        let mut gone = report(vec![], vec![]);
        gone.totals.acquired = r.totals.acquired + 5;
        metrics.update(&gone, &extra, &MetricsConfig::default());
        let text = String::from_utf8(encode(&metrics.registry()).expect("encodes")).expect("utf-8");
        assert!(!text.contains("pid=\"10\""), "{text}");
        let acquired = format!(r#"leaktrace_acquisitions_total{{kind="fd"}} {}"#, r.totals.acquired + 5);
        assert!(text.lines().any(|l| l == acquired), "{text}");
    }
}
