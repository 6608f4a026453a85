//! The daemon on a busy host: `leaktrace daemon` tracing every process while
//! N extra processes (`hold.c`) each hold 13 fds from three call sites,
//! against a fresh daemon on the same host without them, in the same run.
//! Measured: what it exports (the series of /metrics, the processes and
//! stacks of /report, the size of both), its memory, how long a sample takes,
//! and what one scrape of /metrics or /report costs: its latency and the
//! daemon's CPU time.
//!
//! The daemon is started and stopped here rather than by `tracer`: it says it
//! is ready in its own words and stops on SIGTERM. The N processes are
//! `hold.c`'s copies, which die with it.
//!
//! The GETs go through [`Client`], a few lines over std's `TcpStream`, not an
//! HTTP library: xtask is built unoptimised, and a library's parsing then
//! adds milliseconds per megabyte of body to the latencies measured (ureq
//! did: 6 ms against curl's 1.5 ms for a 3 MiB /report), while the body here
//! is one `read_exact`, which std, built optimised, does.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::markdown::{Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::stats::{self, median, percentile};
use super::{Bench, Plan};

/// The daemon's `--interval`: short, so the warm-up takes seconds.
const INTERVAL: Duration = Duration::from_secs(2);
/// What each copy of hold.c holds: 8 files, 2 pipes (4 fds), 1 socket.
const HELD_PER_PROCESS: u64 = 13;
/// The fewest GETs a scrape window times, however long they take.
const MIN_SCRAPES: usize = 50;
/// How long the daemon may take to load its programs, and hold.c to start
/// its copies.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a GET may take.
const GET_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn section(plan: &Plan) -> Section {
    let n = plan.daemon_processes;
    Section::new(
        &format!("daemon with {n} processes"),
        &format!(
            "`hold.c` starts {n} copies of itself (fork, then exec, so each is a process of its own); each \
             holds {HELD_PER_PROCESS} fds from three call sites (8 files from `open_files()`, 2 pipes from \
             `open_pipes()`, 1 socket from `open_socket()`) and every second closes one of its files and opens \
             it again. `leaktrace daemon --listen 127.0.0.1:PORT --interval {}s` traces the whole host; the \
             copies start once it serves, so it sees every acquisition. After {} samples (their \
             `leaktrace_sample_duration_seconds`, read from /metrics once a second; the sample under way when \
             the copies were ready is left out), the benchmark counts the sample lines of /metrics (all, and \
             those named `leaktrace_*`) and the `processes` and `stacks` of /report, and reads the size of \
             both, the daemon's VmRSS and VmHWM (/proc/PID/status) and `leaktrace_map_entries{{map=\"series\"}}`. \
             Then it reads the daemon's CPU time (utime+stime, /proc/PID/stat) over {} s without requests (its \
             idle rate: sampling, and the events of the copies' churn), then over {} s of GETs of /metrics, \
             then of /report, sent one after the other (at least {MIN_SCRAPES} of each) over a keep-alive \
             loopback connection; the latency is from the request's first byte to the body's last. A scrape's \
             CPU is its window's CPU time less the idle rate's share, divided by the GETs; every window spans \
             whole sampling intervals, so it holds as many samples as the idle one. The same is measured \
             first with no copies (the host as it is, \"idle host\"), each with a fresh daemon; the last column \
             is the difference divided by {n}.",
            INTERVAL.as_secs(),
            plan.daemon_samples,
            plan.daemon_window.as_secs(),
            plan.daemon_window.as_secs(),
        ),
    )
}

pub(super) fn run(bench: &Bench, section: &mut Section) -> Result<()> {
    let n = bench.plan.daemon_processes;
    let idle = measure(bench, 0)?;
    let busy = measure(bench, n)?;
    let per = |a: f64, b: f64| (b - a) / n as f64;

    let mut t = Table::new(&["", "idle host", &format!("{n} processes"), "per added process"]);
    let mut count = |label: &str, a: f64, b: f64| {
        t.row(vec![label.into(), stats::thousands(a, 0), stats::thousands(b, 0), stats::signed(per(a, b), 2)]);
    };
    count("processes in /report", idle.report.processes as f64, busy.report.processes as f64);
    count("leaktrace_traced_processes", idle.traced, busy.traced);
    count("stacks in /report", idle.report.stacks as f64, busy.report.stacks as f64);
    count("history series (leaktrace_map_entries{map=\"series\"})", idle.history_series, busy.history_series);
    count("/metrics series", idle.series as f64, busy.series as f64);
    count("of them leaktrace_*", idle.leaktrace_series as f64, busy.leaktrace_series as f64);
    let mut size = |label: &str, a: f64, b: f64| {
        t.row(vec![label.into(), bytes(a), bytes(b), format!("+{}", bytes(per(a, b)))]);
    };
    size("/metrics body", idle.metrics_bytes as f64, busy.metrics_bytes as f64);
    size("/report body", idle.report_bytes as f64, busy.report_bytes as f64);
    for (label, a, b) in [
        ("VmRSS after the warm-up", idle.rss_kib, busy.rss_kib),
        ("VmRSS after the scrapes", idle.rss_after_kib, busy.rss_after_kib),
        ("VmHWM (peak RSS)", idle.hwm_kib, busy.hwm_kib),
    ] {
        let growth = per(a as f64, b as f64) * 1024.0;
        t.row(vec![label.into(), stats::mib(a), stats::mib(b), format!("{}{}", sign(growth), bytes(growth.abs()))]);
    }
    let mut time = |label: &str, a: f64, b: f64| {
        t.row(vec![label.into(), ms(a), ms(b), format!("{} µs", stats::signed(per(a, b) * 1e6, 1))]);
    };
    time(&format!("sample duration, median of {}", idle.samples.len()), idle.sample(), busy.sample());
    time("sample duration, max", idle.sample_max(), busy.sample_max());
    for (name, a, b) in
        [("/metrics", &idle.metrics, &busy.metrics), ("/report", &idle.report_scrapes, &busy.report_scrapes)]
    {
        time(&format!("{name} latency, median"), a.median_s, b.median_s);
        time(&format!("{name} latency, p90"), a.p90_s, b.p90_s);
        time(&format!("{name} daemon CPU per scrape"), a.cpu_s, b.cpu_s);
    }
    t.row(vec!["GETs timed (/metrics, /report)".into(), gets(&idle), gets(&busy), String::new()]);
    t.row(vec![
        "daemon CPU without requests".into(),
        format!("{:.1}% of a CPU", idle.idle_cpu * 100.0),
        format!("{:.1}% of a CPU", busy.idle_cpu * 100.0),
        format!("{}% of a CPU", stats::signed(per(idle.idle_cpu, busy.idle_cpu) * 100.0, 3)),
    ]);
    section.tables.push(t);

    let hold = &busy.report;
    let expected = n as u64 * HELD_PER_PROCESS;
    section.notes.push(format!(
        "In /report at {n} processes, after {} samples: {} copies of hold.c holding {} fds (expected {}) in {} \
         stacks; their verdicts {}; {} of these stacks cut short (`truncated`).",
        bench.plan.daemon_samples,
        hold.hold_processes,
        stats::thousands(hold.hold_fds as f64, 0),
        stats::thousands(expected as f64, 0),
        stats::thousands(hold.hold_stacks as f64, 0),
        hold.verdicts.iter().map(|(v, k)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        stats::thousands(hold.hold_truncated as f64, 0),
    ));
    section.notes.push(format!(
        "The idle host is whatever else ran on this machine meanwhile ({} in /report at the time); the \
         daemon's memory there depends on it (the symbols of big binaries it met, such as a compiler's), \
         so the per-process column, what the {n} copies added, is the figure to compare between runs.",
        idle.report.processes
    ));

    section.results.push(Headline::target(
        "copies in /report",
        format!("{} of {n}", hold.hold_processes),
        "all",
        hold.hold_processes == n,
    ));
    section.results.push(Headline::info(
        "/metrics series per process",
        format!(
            "{} ({} at {n} processes, {} idle)",
            stats::thousands(per(idle.series as f64, busy.series as f64), 1),
            stats::thousands(busy.series as f64, 0),
            stats::thousands(idle.series as f64, 0)
        ),
    ));
    section.results.push(Headline::info(
        "RSS per process",
        format!(
            "{} ({} at {n} processes, {} idle; VmRSS after the warm-up)",
            bytes(per(idle.rss_kib as f64, busy.rss_kib as f64) * 1024.0),
            stats::mib(busy.rss_kib),
            stats::mib(idle.rss_kib)
        ),
    ));
    section.results.push(Headline::info(
        "sample duration",
        format!("{} at {n} processes ({} idle)", ms(busy.sample()), ms(idle.sample())),
    ));
    for (name, a, b) in
        [("/metrics", &idle.metrics, &busy.metrics), ("/report", &idle.report_scrapes, &busy.report_scrapes)]
    {
        section.results.push(Headline::info(
            &format!("{name} scrape at {n} processes"),
            format!(
                "p90 {}, {} daemon CPU, {} (idle: p90 {}, {} CPU)",
                ms(b.p90_s),
                ms(b.cpu_s),
                bytes(b.bytes as f64),
                ms(a.p90_s),
                ms(a.cpu_s)
            ),
        ));
    }
    Ok(())
}

/// Everything measured with one number of extra processes.
struct Measured {
    report: ReportFigures,
    /// `leaktrace_traced_processes`.
    traced: f64,
    /// `leaktrace_map_entries{map="series"}`.
    history_series: f64,
    series: u64,
    leaktrace_series: u64,
    metrics_bytes: usize,
    report_bytes: usize,
    rss_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    /// Seconds each sample of the warm-up took.
    samples: Vec<f64>,
    /// CPU seconds per second without requests.
    idle_cpu: f64,
    metrics: Scrapes,
    report_scrapes: Scrapes,
}

impl Measured {
    fn sample(&self) -> f64 {
        median(&self.samples).unwrap_or(f64::NAN)
    }

    fn sample_max(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// One window of GETs of one endpoint.
struct Scrapes {
    count: usize,
    median_s: f64,
    p90_s: f64,
    /// The daemon's CPU seconds per GET, its idle rate taken out.
    cpu_s: f64,
    /// The last body's size.
    bytes: usize,
}

fn measure(bench: &Bench, processes: usize) -> Result<Measured> {
    let plan = &bench.plan;
    eprintln!("bench:   {processes} processes");
    let mut daemon = Daemon::start(&bench.leaktrace)?;
    let hold = match processes {
        0 => None,
        n => Some(Hold::start(&bench.programs.hold, n)?),
    };
    let samples = daemon.sample_durations(plan.daemon_samples)?;

    let metrics = daemon.get("/metrics")?;
    let report = daemon.get("/report")?;
    let metrics_text = String::from_utf8_lossy(&metrics);
    let (series, leaktrace_series) = count_series(&metrics_text);
    let figures = ReportFigures::parse(&report, hold.as_ref().map(Hold::pid))?;
    let gauge = |name: &str| metric(&metrics_text, name).with_context(|| format!("/metrics has no {name}"));
    let traced = gauge("leaktrace_traced_processes")?;
    let history_series = gauge("leaktrace_map_entries{map=\"series\"}")?;
    let rss_kib = daemon.status_kib("VmRSS")?;
    eprintln!(
        "bench:     samples {}, {} series in /metrics, {} processes and {} stacks in /report, VmRSS {}",
        samples.iter().map(|s| ms(*s)).collect::<Vec<_>>().join(" "),
        series,
        figures.processes,
        figures.stacks,
        stats::mib(rss_kib)
    );

    let before = daemon.cpu_seconds()?;
    let start = Instant::now();
    daemon.pause(plan.daemon_window)?;
    let idle_cpu = (daemon.cpu_seconds()? - before) / start.elapsed().as_secs_f64();
    let metrics_scrapes = daemon.scrape("/metrics", plan.daemon_window, idle_cpu)?;
    let report_scrapes = daemon.scrape("/report", plan.daemon_window, idle_cpu)?;
    let rss_after_kib = daemon.status_kib("VmRSS")?;
    let hwm_kib = daemon.status_kib("VmHWM")?;
    eprintln!(
        "bench:     idle CPU {:.1}%; /metrics p90 {} CPU {}; /report p90 {} CPU {}; VmHWM {}",
        idle_cpu * 100.0,
        ms(metrics_scrapes.p90_s),
        ms(metrics_scrapes.cpu_s),
        ms(report_scrapes.p90_s),
        ms(report_scrapes.cpu_s),
        stats::mib(hwm_kib)
    );
    if let Some(hold) = hold {
        hold.stop()?;
    }
    daemon.stop()?;
    Ok(Measured {
        report: figures,
        traced,
        history_series,
        series,
        leaktrace_series,
        metrics_bytes: metrics.len(),
        report_bytes: report.len(),
        rss_kib,
        rss_after_kib,
        hwm_kib,
        samples,
        idle_cpu,
        metrics: metrics_scrapes,
        report_scrapes,
    })
}

/// `leaktrace daemon` on a loopback port of its own; dropping it kills it.
struct Daemon {
    proc: Proc,
    client: Client,
}

impl Daemon {
    fn start(leaktrace: &Path) -> Result<Self> {
        let addr = free_port()?;
        let mut cmd = Command::new(leaktrace);
        cmd.args(["daemon", "--listen", &addr.to_string(), "--interval", &format!("{}s", INTERVAL.as_secs())]);
        let how = Spawn { parent_death: libc::SIGTERM, ..Spawn::tracer() };
        let mut proc = Proc::spawn("leaktrace daemon", &mut cmd, how)?;
        proc.wait_line(Stream::Stderr, START_TIMEOUT, |l| l.contains("serving http://"))?;
        Ok(Self { proc, client: Client { addr, connection: None } })
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(exit) = self.proc.try_wait()? {
            let how = exit.describe();
            return Err(self.proc.error(format!("exited ({how})")));
        }
        Ok(())
    }

    /// GET `path`: the body of a 200.
    fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        match self.client.get(path) {
            Ok(body) => Ok(body),
            Err(err) => {
                self.check_alive()?;
                Err(err.context(format!("GET http://{}{path} failed", self.client.addr)))
            }
        }
    }

    /// Waits for `count` samples begun after this call and returns how long
    /// each took (`leaktrace_sample_duration_seconds`, told apart by
    /// `leaktrace_last_sample_timestamp_seconds`). The first sample to end may
    /// have begun before the call, so it is left out.
    fn sample_durations(&mut self, count: usize) -> Result<Vec<f64>> {
        let polls = u32::try_from(count + 3).context("too many samples")? * 4;
        let deadline = Instant::now() + INTERVAL * polls;
        let mut last = None;
        let mut ended = 0;
        let mut durations = Vec::new();
        while durations.len() < count {
            if Instant::now() > deadline {
                bail!("the daemon took {} samples in {:?}, not {}", durations.len(), INTERVAL * polls, count + 1);
            }
            let metrics = self.get("/metrics")?;
            let text = String::from_utf8_lossy(&metrics);
            let at = metric(&text, "leaktrace_last_sample_timestamp_seconds");
            if at.is_some() && at != last {
                ended += 1;
                if ended > 1 {
                    durations.push(
                        metric(&text, "leaktrace_sample_duration_seconds")
                            .context("/metrics has no leaktrace_sample_duration_seconds")?,
                    );
                }
            }
            last = at;
            self.pause(Duration::from_secs(1))?;
        }
        Ok(durations)
    }

    /// Sleeps, failing when the daemon exits or the run is interrupted.
    fn pause(&mut self, how_long: Duration) -> Result<()> {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            if process::interrupted() {
                bail!("interrupted");
            }
            self.check_alive()?;
            thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// GETs `path` one after the other for `window` (at least
    /// [`MIN_SCRAPES`] times).
    fn scrape(&mut self, path: &str, window: Duration, idle_cpu: f64) -> Result<Scrapes> {
        let before = self.cpu_seconds()?;
        let start = Instant::now();
        let mut latencies = Vec::new();
        let mut bytes = 0;
        while latencies.len() < MIN_SCRAPES || start.elapsed() < window {
            if process::interrupted() {
                bail!("interrupted");
            }
            let sent = Instant::now();
            bytes = self.get(path)?.len();
            latencies.push(sent.elapsed().as_secs_f64());
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = self.cpu_seconds()? - before;
        let count = latencies.len();
        Ok(Scrapes {
            count,
            median_s: median(&latencies).context("no GETs")?,
            p90_s: percentile(&latencies, 90.0).context("no GETs")?,
            cpu_s: (cpu - idle_cpu * elapsed) / count as f64,
            bytes,
        })
    }

    fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let ticks = parse_cpu_ticks(&stat).with_context(|| format!("{path} has no utime and stime"))?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if per_second <= 0 {
            bail!("sysconf(_SC_CLK_TCK) failed");
        }
        Ok(ticks as f64 / per_second as f64)
    }

    /// A `kB` field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        parse_status_kib(&status, field).with_context(|| format!("{path} has no {field}"))
    }

    /// SIGTERM, and a clean exit within [`STOP_TIMEOUT`].
    fn stop(mut self) -> Result<()> {
        self.check_alive()?;
        let exit = self.proc.stop(libc::SIGTERM, STOP_TIMEOUT)?;
        if !exit.success() {
            let how = exit.describe();
            return Err(self.proc.error(format!("failed on SIGTERM ({how})")));
        }
        Ok(())
    }
}

/// A loopback address no one listens on (the kernel picks the port; it is
/// free again when this returns, and stays so unless someone else binds it
/// in the moment before the daemon does).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    listener.local_addr().context("cannot read the bound loopback port")
}

/// HTTP/1.1 GETs over one keep-alive connection, opened again when the
/// daemon closes it. Answers need a Content-Length (the daemon's all have
/// one).
struct Client {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    /// The body of a 200.
    fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, GET_TIMEOUT).context("cannot connect")?;
                stream.set_read_timeout(Some(GET_TIMEOUT)).context("cannot set a read timeout")?;
                stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
                BufReader::with_capacity(64 << 10, stream)
            }
        };
        write!(connection.get_mut(), "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr)
            .context("cannot send the request")?;
        let mut head = String::new();
        loop {
            let before = head.len();
            if connection.read_line(&mut head).context("cannot read the answer's head")? == 0 {
                bail!("the connection closed in the answer's head");
            }
            if head[before..].trim_end().is_empty() {
                break;
            }
        }
        let head = parse_head(&head).with_context(|| format!("cannot parse the answer's head {head:?}"))?;
        let length = head.content_length.context("the answer has no Content-Length")?;
        let mut body = vec![0; length];
        connection.read_exact(&mut body).context("cannot read the answer's body")?;
        if head.status != 200 {
            bail!("answered {}: {}", head.status, String::from_utf8_lossy(&body).trim());
        }
        if !head.close {
            self.connection = Some(connection);
        }
        Ok(body)
    }
}

#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    /// `Connection: close`: the server ends the connection after this answer.
    close: bool,
}

/// The status line and headers of an HTTP/1.1 answer.
fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.lines();
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?.split_whitespace().next()?.parse().ok()?;
    let mut parsed = Head { status, content_length: None, close: false };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.content_length = Some(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        }
    }
    Some(parsed)
}

/// hold.c and its copies; dropping it kills them.
struct Hold {
    proc: Proc,
}

impl Hold {
    fn start(program: &Path, count: usize) -> Result<Self> {
        let mut cmd = Command::new(program);
        cmd.arg(count.to_string());
        let mut proc = Proc::spawn("hold", &mut cmd, Spawn::piped())?;
        let began = Instant::now();
        proc.wait_line(Stream::Stdout, START_TIMEOUT, |l| l.starts_with("ready "))?;
        eprintln!(
            "bench:     {count} copies of hold.c hold their fds after {}",
            stats::seconds(began.elapsed().as_secs_f64())
        );
        Ok(Self { proc })
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Closes its stdin: it kills and reaps its copies and exits.
    fn stop(mut self) -> Result<()> {
        self.proc.close_stdin();
        match self.proc.wait_timeout(STOP_TIMEOUT)? {
            Some(exit) if exit.success() => Ok(()),
            Some(exit) => {
                let how = exit.describe();
                Err(self.proc.error(format!("failed ({how})")))
            }
            None => Err(self.proc.error(format!("did not stop within {STOP_TIMEOUT:?} of its stdin closing"))),
        }
    }
}

/// What the benchmark reads in /report.
#[derive(Debug, PartialEq)]
struct ReportFigures {
    processes: usize,
    stacks: usize,
    /// Processes named hold other than hold.c's parent: its copies.
    hold_processes: usize,
    /// The stacks that belong to copies only, their fds, how many of them
    /// were cut short, and their verdicts.
    hold_stacks: u64,
    hold_fds: u64,
    hold_truncated: u64,
    verdicts: BTreeMap<String, u64>,
}

impl ReportFigures {
    fn parse(body: &[u8], parent: Option<u32>) -> Result<Self> {
        let report: Value = serde_json::from_slice(body).context("/report is not JSON")?;
        let processes = report.get("processes").and_then(Value::as_array).context("/report has no processes")?;
        let stacks = report.get("stacks").and_then(Value::as_array).context("/report has no stacks")?;
        let copies: HashSet<u64> = processes
            .iter()
            .filter(|p| p.get("comm").and_then(Value::as_str) == Some("hold"))
            .filter_map(|p| p.get("pid").and_then(Value::as_u64))
            .filter(|pid| Some(*pid) != parent.map(u64::from))
            .collect();
        let mut figures = Self {
            processes: processes.len(),
            stacks: stacks.len(),
            hold_processes: copies.len(),
            hold_stacks: 0,
            hold_fds: 0,
            hold_truncated: 0,
            verdicts: BTreeMap::new(),
        };
        for stack in stacks {
            let pids: Vec<u64> =
                stack.get("pids").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64).collect();
            if pids.is_empty() || !pids.iter().all(|pid| copies.contains(pid)) {
                continue;
            }
            figures.hold_stacks += 1;
            figures.hold_fds += stack.get("count").and_then(Value::as_u64).unwrap_or(0);
            if stack.get("truncated").is_some_and(|t| !t.is_null()) {
                figures.hold_truncated += 1;
            }
            let verdict = stack.get("verdict").and_then(Value::as_str).unwrap_or("none");
            *figures.verdicts.entry(verdict.to_string()).or_default() += 1;
        }
        Ok(figures)
    }
}

/// The sample lines of a Prometheus text exposition: all of them, and those
/// of leaktrace's own metrics.
fn count_series(text: &str) -> (u64, u64) {
    let samples = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    samples.fold((0, 0), |(all, ours), l| (all + 1, ours + u64::from(l.starts_with("leaktrace_"))))
}

/// The value of the series `series` (a name, with its labels as exposed if
/// it has any) in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

/// utime + stime, in clock ticks, from /proc/PID/stat (fields 14 and 15,
/// counted after the parenthesised comm, which may hold spaces).
pub(super) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

fn gets(m: &Measured) -> String {
    format!("{}, {}", stats::thousands(m.metrics.count as f64, 0), stats::thousands(m.report_scrapes.count as f64, 0))
}

fn ms(secs: f64) -> String {
    format!("{:.2} ms", secs * 1000.0)
}

fn bytes(n: f64) -> String {
    if n.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n.abs() >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

fn sign(n: f64) -> &'static str {
    if n < 0.0 {
        "-"
    } else {
        "+"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP leaktrace_map_entries Entries in each kernel map.
# TYPE leaktrace_map_entries gauge
leaktrace_map_entries{map=\"outstanding\"} 3
leaktrace_map_entries{map=\"series\"} 2
leaktrace_sample_duration_seconds 0.000916877
leaktrace_sample_duration_seconds_other 5
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 130191360

";

    #[test]
    fn reads_metrics() {
        assert_eq!(count_series(METRICS), (5, 4));
        assert_eq!(metric(METRICS, "leaktrace_map_entries{map=\"series\"}"), Some(2.0));
        assert_eq!(metric(METRICS, "leaktrace_sample_duration_seconds"), Some(0.000916877));
        assert_eq!(metric(METRICS, "process_resident_memory_bytes"), Some(130191360.0));
        assert_eq!(metric(METRICS, "leaktrace_map_entries"), None);
        assert_eq!(metric(METRICS, "leaktrace_traced_processes"), None);
    }

    #[test]
    fn reads_proc() {
        let stat = "579 (leak trace) S 1 579 579 0 -1 4194560 6262 0 0 0 137 42 0 0 20 0 1 0 4957 141996032";
        assert_eq!(parse_cpu_ticks(stat), Some(179));
        assert_eq!(parse_cpu_ticks("579 (x) S 1"), None);
        let status = "Name:\tleaktrace\nVmHWM:\t  131072 kB\nVmRSS:\t   78784 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(78784));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(131072));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn finds_the_copies_in_the_report() {
        let report = br#"{"processes": [
                {"pid": 10, "comm": "hold"}, {"pid": 11, "comm": "hold"}, {"pid": 12, "comm": "hold"},
                {"pid": 20, "comm": "bash"}],
            "stacks": [
                {"pids": [11], "count": 8, "verdict": "leak", "truncated": null},
                {"pids": [12], "count": 4, "verdict": "steady", "truncated": "the walk ended"},
                {"pids": [10], "count": 3, "verdict": "steady"},
                {"pids": [11, 20], "count": 2, "verdict": "steady"},
                {"pids": [20], "count": 1, "verdict": "suspect"}]}"#;
        let figures = ReportFigures::parse(report, Some(10)).unwrap();
        assert_eq!(
            figures,
            ReportFigures {
                processes: 4,
                stacks: 5,
                hold_processes: 2,
                hold_stacks: 2,
                hold_fds: 12,
                hold_truncated: 1,
                verdicts: BTreeMap::from([("leak".into(), 1), ("steady".into(), 1)]),
            }
        );
        assert_eq!(ReportFigures::parse(report, None).unwrap().hold_processes, 3);
        assert!(ReportFigures::parse(b"{}", None).is_err());
    }

    #[test]
    fn reads_an_answers_head() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 3439045\r\n\r\n";
        assert_eq!(parse_head(head), Some(Head { status: 200, content_length: Some(3439045), close: false }));
        let head = "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_head(head), Some(Head { status: 404, content_length: None, close: true }));
        assert_eq!(parse_head("HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n"), None);
        assert_eq!(parse_head("SSH-2.0-OpenSSH\r\n"), None);
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(50058.0), "48.9 KiB");
        assert_eq!(bytes(12.5 * 1024.0 * 1024.0), "12.5 MiB");
        assert_eq!(ms(0.000916877), "0.92 ms");
    }
}
