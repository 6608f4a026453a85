//! A real server under load: Debian's nginx serving a small static file to
//! wrk, untraced and with `leaktrace attach --all` tracing the whole host.
//!
//! The nginx is the benchmark's own: a configuration, pid file, logs and
//! document root in a temporary directory of its own, listening on
//! a fixed high port of 127.0.0.1, run in the foreground (`daemon off`) so
//! its master is our child, and stopped (with its worker) on every path out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::loops::MEASURED_CPU;
use super::markdown::{Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::stats::{self, median};
use super::tracer::Tracer;
use super::{Bench, Plan};

const PORT: u16 = 18437;
/// wrk runs on the other CPU than nginx, so the two do not take turns on one.
const WRK_CPU: u32 = 0;
/// About the size of nginx's own welcome page.
const PAGE_BYTES: usize = 612;

pub(super) fn section(plan: &Plan) -> Section {
    Section::new(
        "nginx under wrk",
        &format!(
            "Debian's nginx with a generated configuration (`worker_processes 1`, `access_log off`, \
             `open_file_cache off`, so every request opens and closes the file) serves a {PAGE_BYTES}-byte \
             static file on 127.0.0.1:{PORT}, pinned to CPU {MEASURED_CPU}; `wrk -t2 -c32 -d{}s --latency` on \
             CPU {WRK_CPU} loads it. Conditions: untraced; `leaktrace attach --all -o /dev/null` tracing \
             every process on the host (nginx, wrk and everything else); the same with `--sample 100`. {} rounds per condition, taking turns \
             (the first condition of each round rotating), after an uncounted warm-up run; the figures are the \
             medians of the rounds' requests/s and p99 latencies. Target: at most 3% fewer requests/s.",
            plan.wrk_seconds, plan.nginx_rounds
        ),
    )
}

pub(super) fn run(bench: &Bench, section: &mut Section) -> Result<()> {
    if let Some(pid) = system_nginx() {
        section.notes.push(format!(
            "The system's nginx service was running (pid {pid}); it served nothing during the benchmark."
        ));
    }
    let dir = std::env::temp_dir().join(format!("leaktrace-bench-nginx-{}", std::process::id()));
    let mut server = Server::start(&dir)?;
    let conditions: [(&str, Option<Tracer>); 3] = [
        ("untraced", None),
        ("leaktrace --all", Some(Tracer::leaktrace(&["attach", "--all", "-o", "/dev/null"]))),
        (
            "leaktrace --all --sample 100",
            Some(Tracer::leaktrace(&["attach", "--all", "--sample", "100", "-o", "/dev/null"])),
        ),
    ];

    wrk(server.url(), 2).context("warm-up run")?;
    let rounds = bench.plan.nginx_rounds;
    let mut results: Vec<Vec<Wrk>> = conditions.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let mut progress = Vec::new();
        for k in 0..conditions.len() {
            let i = (round + k) % conditions.len();
            let (label, tracer) = &conditions[i];
            let running = match tracer {
                Some(t) => Some(t.start(&bench.leaktrace).with_context(|| format!("starting {label}"))?),
                None => None,
            };
            let result = wrk(server.url(), bench.plan.wrk_seconds).with_context(|| format!("wrk under {label}"))?;
            if let Some(t) = running {
                t.stop(Duration::from_secs(120)).with_context(|| format!("stopping {label}"))?;
            }
            server.check()?;
            progress.push(format!("{label} {} req/s", stats::thousands(result.requests_per_sec, 0)));
            results[i].push(result);
        }
        eprintln!("bench:   round {}/{rounds}: {}", round + 1, progress.join(", "));
    }

    let rps = |i: usize| median(&results[i].iter().map(|r| r.requests_per_sec).collect::<Vec<_>>());
    let p99 = |i: usize| median(&results[i].iter().map(|r| r.p99_us).collect::<Vec<_>>());
    let (Some(base_rps), Some(traced_rps), Some(base_p99), Some(traced_p99)) = (rps(0), rps(1), p99(0), p99(1)) else {
        bail!("no wrk results");
    };
    let mut t = Table::new(&["condition", "median requests/s", "median p99 latency", "rounds (requests/s; p99)"]);
    for (i, (label, _)) in conditions.iter().enumerate() {
        let rounds: Vec<String> = results[i]
            .iter()
            .map(|r| format!("{}; {}", stats::thousands(r.requests_per_sec, 0), micros(r.p99_us)))
            .collect();
        let (r, p) = (rps(i).unwrap_or(f64::NAN), p99(i).unwrap_or(f64::NAN));
        t.row(vec![label.to_string(), stats::thousands(r, 0), micros(p), rounds.join(", ")]);
    }
    section.tables.push(t);

    let fewer = 100.0 * (base_rps - traced_rps) / base_rps;
    section.results.push(Headline::info(
        "untraced",
        format!("{} requests/s, p99 {}", stats::thousands(base_rps, 0), micros(base_p99)),
    ));
    section.results.push(Headline::target(
        "`--all` requests/s",
        format!("{} ({})", stats::thousands(traced_rps, 0), stats::percent_of(traced_rps - base_rps, base_rps)),
        "≤ 3% fewer",
        fewer <= 3.0,
    ));
    section.results.push(Headline::info(
        "`--all` p99 latency",
        format!("{} ({})", micros(traced_p99), stats::percent_of(traced_p99 - base_p99, base_p99)),
    ));
    if let (Some(sampled_rps), Some(sampled_p99)) = (rps(2), p99(2)) {
        section.results.push(Headline::info(
            "`--all --sample 100`",
            format!(
                "{} requests/s ({}), p99 {}",
                stats::thousands(sampled_rps, 0),
                stats::percent_of(sampled_rps - base_rps, base_rps),
                micros(sampled_p99)
            ),
        ));
    }
    Ok(())
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The pid of a running system nginx, if any (Debian's service writes
/// /run/nginx.pid).
fn system_nginx() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string("/run/nginx.pid").ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

struct Server {
    proc: Proc,
    dir: PathBuf,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Result<Self> {
        if TcpListener::bind(("127.0.0.1", PORT)).is_err() {
            bail!("port {PORT} of 127.0.0.1 is in use; the nginx benchmark needs it");
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        let www = dir.join("www");
        std::fs::create_dir_all(dir.join("tmp"))
            .and_then(|()| std::fs::create_dir_all(&www))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // The worker runs as nobody and must reach the document root.
        set_mode(dir, 0o755)?;
        set_mode(&www, 0o755)?;
        let (head, foot) = ("<!DOCTYPE html>\n<title>bench</title>\n<p>", "</p>\n");
        let page = format!("{head}{}{foot}", "x".repeat(PAGE_BYTES - head.len() - foot.len()));
        std::fs::write(www.join("index.html"), &page).context("cannot write nginx's page")?;
        set_mode(&www.join("index.html"), 0o644)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir)).context("cannot write nginx.conf")?;

        let mut cmd = process::pinned(MEASURED_CPU, "nginx");
        cmd.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("error.log"));
        let how = Spawn { stdin: false, stdout: true, stderr: true, parent_death: libc::SIGTERM };
        let proc = Proc::spawn("nginx", &mut cmd, how)?;
        let mut server = Self { proc, dir: dir.to_path_buf(), url: format!("http://127.0.0.1:{PORT}/index.html") };
        server.wait_ready()?;
        Ok(server)
    }

    fn url(&self) -> &str {
        &self.url
    }

    /// Until it answers a GET with 200.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if get_ok().is_ok() {
                return Ok(());
            }
            if let Some(exit) = self.proc.try_wait()? {
                let how = exit.describe();
                bail!("nginx exited ({how}){}{}", self.proc.tail(), self.error_log());
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer on port {PORT} within 15 s{}", self.error_log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails when nginx exited during a round.
    fn check(&mut self) -> Result<()> {
        if let Some(exit) = self.proc.try_wait()? {
            let how = exit.describe();
            bail!("nginx exited during the benchmark ({how}){}", self.error_log());
        }
        Ok(())
    }

    fn error_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; error.log ends:\n    {}", tail.into_iter().rev().collect::<Vec<_>>().join("\n    "))
        }
    }

    /// The worker processes, children of the master.
    fn workers(&self) -> Vec<libc::pid_t> {
        let master = self.proc.pid();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        children.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

impl Drop for Server {
    /// SIGTERM is nginx's fast shutdown: the master stops its worker and
    /// exits. Should it not, the worker and the master are killed by pid.
    fn drop(&mut self) {
        let workers = self.workers();
        let stopped = self.proc.stop(libc::SIGTERM, Duration::from_secs(10)).is_ok();
        if !stopped {
            for pid in workers {
                // SAFETY: kill has no memory-safety preconditions; these are
                // the worker pids read from the master just before.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "# Generated by `cargo xtask bench`; removed when the benchmark ends.
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    open_file_cache off;
    sendfile on;
    keepalive_requests 1000000;
    default_type text/html;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{PORT};
        root {d}/www;
    }}
}}
"
    )
}

fn get_ok() -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    ensure!(response.starts_with(b"HTTP/1.1 200 "), "nginx answered {}", String::from_utf8_lossy(&response));
    Ok(())
}

/// What one wrk run measured.
#[derive(Debug, PartialEq)]
pub(super) struct Wrk {
    pub requests_per_sec: f64,
    /// 99th percentile latency in µs.
    pub p99_us: f64,
}

fn wrk(url: &str, seconds: u64) -> Result<Wrk> {
    let mut cmd = process::pinned(WRK_CPU, "wrk");
    cmd.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency", url]);
    let mut proc = Proc::spawn("wrk", &mut cmd, Spawn { stdin: false, ..Spawn::piped() })?;
    let (lines, exit) = proc.finish(Stream::Stdout, Duration::from_secs(seconds + 60))?;
    if !exit.success() {
        let how = exit.describe();
        bail!("wrk failed ({how}){}", proc.tail());
    }
    parse_wrk(&lines.join("\n"))
}

/// Reads `Requests/sec:` and the 99% line of `--latency`'s distribution;
/// any non-2xx response or socket error fails the run.
pub(super) fn parse_wrk(text: &str) -> Result<Wrk> {
    let mut requests_per_sec = None;
    let mut p99_us = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99_us = Some(wrk_duration_us(rest.trim()).with_context(|| format!("cannot read wrk's {line:?}"))?);
        } else if line.starts_with("Non-2xx or 3xx responses:") || line.starts_with("Socket errors:") {
            bail!("wrk reported {line:?}");
        }
    }
    Ok(Wrk {
        requests_per_sec: requests_per_sec.context("wrk printed no Requests/sec")?,
        p99_us: p99_us.context("wrk printed no 99% latency (was --latency given?)")?,
    })
}

/// wrk's durations: 452.31us, 1.20ms, 2.00s, 1.50m.
fn wrk_duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
Running 10s test @ http://127.0.0.1:18437/index.html
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   452.31us  241.00us   9.87ms   90.12%
    Req/Sec    35.12k     2.31k   40.01k    70.00%
  Latency Distribution
     50%  400.00us
     75%  500.00us
     90%  700.00us
     99%    1.20ms
  699000 requests in 10.00s, 500.00MB read
Requests/sec:  69900.25
Transfer/sec:     50.00MB
";

    #[test]
    fn reads_requests_and_p99() {
        let wrk = parse_wrk(OUTPUT).unwrap();
        assert_eq!(wrk.requests_per_sec, 69900.25);
        assert!((wrk.p99_us - 1200.0).abs() < 1e-6, "{wrk:?}");
    }

    #[test]
    fn errors_and_missing_lines_fail() {
        let errors =
            OUTPUT.replace("Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec:");
        assert!(parse_wrk(&errors).unwrap_err().to_string().contains("Socket errors"));
        let non_2xx = OUTPUT.replace("Requests/sec:", "  Non-2xx or 3xx responses: 12\nRequests/sec:");
        assert!(parse_wrk(&non_2xx).is_err());
        assert!(parse_wrk(&OUTPUT.replace("     99%    1.20ms\n", "")).unwrap_err().to_string().contains("99%"));
        assert!(parse_wrk("").is_err());
    }

    #[test]
    fn wrk_units() {
        assert_eq!(wrk_duration_us("452.31us"), Some(452.31));
        assert_eq!(wrk_duration_us("2.00s"), Some(2e6));
        assert_eq!(wrk_duration_us("1.50m"), Some(90e6));
        assert_eq!(wrk_duration_us("12"), None);
        assert_eq!(wrk_duration_us("3.0ns"), None);
    }

    #[test]
    fn config_is_self_contained() {
        let conf = config(Path::new("/x/nginx"));
        for line in ["pid /x/nginx/nginx.pid;", "listen 127.0.0.1:18437;", "open_file_cache off;", "access_log off;"] {
            assert!(conf.contains(line), "{conf}");
        }
    }
}
