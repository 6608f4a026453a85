//! Harness for the integration tests: builds the fixture programs, runs the
//! leaktrace binary on them and reads its JSON report.
//!
//! The tests need root (they load eBPF programs) and run one at a time
//! (`cargo xtask test` passes `--test-threads=1`): each leaktrace process
//! owns its kernel state, which goes away when it exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The binary under test: `LEAKTRACE_BIN`, set by `cargo xtask test`.
pub fn leaktrace() -> PathBuf {
    std::env::var_os("LEAKTRACE_BIN").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/release/leaktrace"))
}

fn fixtures_out() -> PathBuf {
    let dir = workspace().join("target/fixtures");
    std::fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Builds each output once per test process.
fn once(out: &Path, build: impl FnOnce(&Path)) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<PathBuf>>> = OnceLock::new();
    let mut done = BUILT.get_or_init(Default::default).lock().expect("lock");
    if !done.iter().any(|p| p == out) {
        build(out);
        done.push(out.to_path_buf());
    }
    out.to_path_buf()
}

/// `tests/fixtures/c/NAME.c` built as distributions build C: `gcc -O2`,
/// without frame pointers, with debug info.
pub fn c_fixture(name: &str) -> PathBuf {
    once(&fixtures_out().join(format!("c-{name}")), |out| {
        let src = workspace().join(format!("tests/fixtures/c/{name}.c"));
        must(Command::new("gcc").args(["-O2", "-g", "-pthread", "-o"]).arg(out).arg(&src).arg("-ldl"));
    })
}

/// `tests/fixtures/c/NAME.c` built as a shared library.
pub fn c_library(name: &str) -> PathBuf {
    once(&fixtures_out().join(format!("lib{name}.so")), |out| {
        let src = workspace().join(format!("tests/fixtures/c/{name}.c"));
        must(Command::new("gcc").args(["-O2", "-g", "-shared", "-fPIC", "-o"]).arg(out).arg(&src));
    })
}

/// `tests/fixtures/cpp/NAME.cpp` built with `g++ -O2`.
pub fn cpp_fixture(name: &str) -> PathBuf {
    once(&fixtures_out().join(format!("cpp-{name}")), |out| {
        let src = workspace().join(format!("tests/fixtures/cpp/{name}.cpp"));
        must(Command::new("g++").args(["-O2", "-g", "-o"]).arg(out).arg(&src));
    })
}

/// A copy of `binary` in `dir`, stripped of all symbols, with its debug
/// information in `dir/NAME.debug` and, with `link`, a .gnu_debuglink to it.
/// Returns the stripped binary and its debug file.
pub fn stripped_copy(binary: &Path, dir: &Path, link: bool) -> (PathBuf, PathBuf) {
    let name = binary.file_name().expect("file name").to_string_lossy().into_owned();
    let stripped = dir.join(&name);
    let debug = dir.join(format!("{name}.debug"));
    std::fs::copy(binary, &stripped).expect("copy");
    must(Command::new("objcopy").arg("--only-keep-debug").arg(&stripped).arg(&debug));
    must(Command::new("strip").arg("--strip-all").arg(&stripped));
    if link {
        must(Command::new("objcopy").current_dir(dir).arg(format!("--add-gnu-debuglink={name}.debug")).arg(&stripped));
    }
    (stripped, debug)
}

/// The GNU build id of an ELF file, as hex.
pub fn build_id(binary: &Path) -> String {
    let out = Command::new("readelf").arg("-n").arg(binary).output().expect("readelf");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
        .expect("the fixture has a build id")
}

/// `tests/fixtures/go/NAME` built with Debian's Go.
pub fn go_fixture(name: &str) -> PathBuf {
    let out = fixtures_out().join(format!("go-{name}"));
    let cache = fixtures_out().join("go-cache");
    must(
        Command::new("go")
            .current_dir(workspace().join(format!("tests/fixtures/go/{name}")))
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "-buildvcs=false"),
    );
    out
}

/// `tests/fixtures/rust` built in release mode with debug info.
pub fn rust_fixture() -> PathBuf {
    let target = fixtures_out().join("rust");
    must(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--quiet", "--release", "--manifest-path"])
            .arg(workspace().join("tests/fixtures/rust/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target),
    );
    target.join("release/leaky-rs")
}

/// Runs leaktrace with `args`.
pub fn leaktrace_output(args: &[&str]) -> Output {
    Command::new(leaktrace()).args(args).output().expect("run leaktrace")
}

pub struct Run {
    pub status: i32,
    pub report: Value,
    pub stderr: String,
}

/// `leaktrace run --format json [OPTIONS] -- PROGRAM ARGS...`.
pub fn run_json(options: &[&str], program: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(leaktrace());
    cmd.args(["run", "--format", "json"]).args(options).arg("--").arg(program).args(args);
    let out = cmd.output().expect("run leaktrace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{stderr}"));
    Run { status: out.status.code().unwrap_or(-1), report, stderr }
}

/// The report's stack entries.
pub fn stacks(report: &Value) -> &Vec<Value> {
    report["stacks"].as_array().expect("stacks array")
}

/// Entries whose stack contains a frame with this symbol.
pub fn with_symbol<'a>(report: &'a Value, symbol: &str) -> Vec<&'a Value> {
    stacks(report)
        .iter()
        .filter(|s| s["stack"].as_array().is_some_and(|f| f.iter().any(|f| f["symbol"] == symbol)))
        .collect()
}

/// Entries with this resource whose examples name this path.
pub fn with_path<'a>(report: &'a Value, resource: &str, path: &str) -> Vec<&'a Value> {
    stacks(report)
        .iter()
        .filter(|s| s["resource"] == resource)
        .filter(|s| s["examples"].as_array().is_some_and(|e| e.iter().any(|e| e["path"] == path)))
        .collect()
}

/// The example paths of every entry, for scenarios whose leaks share a stack.
pub fn example_paths(report: &Value) -> Vec<&str> {
    stacks(report)
        .iter()
        .flat_map(|s| s["examples"].as_array().expect("examples"))
        .filter_map(|e| e["path"].as_str())
        .collect()
}

/// Entries whose leak site (innermost frame of the program's own code) is `function`.
pub fn with_site<'a>(report: &'a Value, function: &str) -> Vec<&'a Value> {
    stacks(report).iter().filter(|s| s["site"] == function).collect()
}

/// The symbols of an entry's frames, innermost first.
pub fn symbols(entry: &Value) -> Vec<&str> {
    entry["stack"].as_array().expect("frames").iter().filter_map(|f| f["symbol"].as_str()).collect()
}

pub fn count(entries: &[&Value]) -> u64 {
    entries.iter().map(|s| s["count"].as_u64().expect("count")).sum()
}

pub fn total(report: &Value, key: &str) -> u64 {
    report["totals"][key].as_u64().unwrap_or_else(|| panic!("totals.{key}"))
}

/// The text report's stack summary lines without their verdict, e.g.
/// `100 files, oldest 0.02s, from load_config <- main, held by pid 42`
/// (with ` (+3.0/min ▁▃█)` after the noun when there were samples).
pub fn summary_lines(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| ["leak: ", "suspect: ", "steady: "].iter().find_map(|v| l.strip_prefix(v))).collect()
}

/// A background process, killed when dropped.
pub struct Background(pub Child);

impl Background {
    pub fn spawn(program: &Path, args: &[&str]) -> Background {
        Background(Command::new(program).args(args).stdin(Stdio::null()).spawn().expect("spawn background program"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `leaktrace attach` (or any mode that traces in the background),
/// returned once it has said on stderr that tracing has begun
/// (`leaktrace: tracing ...`). Loading and verifying its programs takes a
/// fraction of a second here and several seconds on a busy host or in an
/// emulated VM; what a fixture does before then is not seen, so tests that
/// count exactly wait for this, not for a fixed time. Killed if the test
/// ends before it does: one left running would go on tracing (and its
/// fixture on waiting) into the next test.
pub struct Tracer {
    child: Option<Child>,
    /// All it said on stderr, once it has ended (None when not piped).
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Tracer {
    pub fn start(args: &[&str]) -> Tracer {
        Tracer::start_until(args, "leaktrace: tracing")
    }

    /// Starts leaktrace with `args`, stdout piped, and returns once a line
    /// of its stderr begins with `ready`.
    pub fn start_until(args: &[&str], ready: &str) -> Tracer {
        let mut child = Command::new(leaktrace())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leaktrace");
        let pipe = child.stderr.take().expect("stderr");
        let (began, tracing) = std::sync::mpsc::channel();
        let ready_line = ready.to_string();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.starts_with(&ready_line) {
                    let _ = began.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        // Also ends, at once, when leaktrace exits without tracing.
        if tracing.recv_timeout(std::time::Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            let status = child.wait();
            let said = stderr.join().unwrap_or_default();
            panic!("leaktrace {args:?} never said {ready:?} ({status:?}): {said}");
        }
        Tracer { child: Some(child), stderr: Some(stderr) }
    }

    /// Looks after a leaktrace started otherwise (its output not piped).
    pub fn adopt(child: Child) -> Tracer {
        Tracer { child: Some(child), stderr: None }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Ends it with SIGKILL; returns how it ended.
    pub fn kill(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait for leaktrace")
    }

    /// Waits for it to end; stderr holds all it said, the tracing line too.
    pub fn wait_with_output(mut self) -> Output {
        let out = self.child.take().expect("running").wait_with_output().expect("wait for leaktrace");
        let stderr = self.stderr.take().map(|s| s.join().expect("stderr reader")).unwrap_or_default();
        Output { status: out.status, stdout: out.stdout, stderr: stderr.into_bytes() }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `path` exists (the fixture's readiness signal).
pub fn wait_for_file(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = fixtures_out().join("scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A `leaktrace daemon` on a free loopback port, stopped with SIGTERM when
/// dropped.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts the daemon with `args` (besides `--listen`) and `envs`, and
    /// waits until it serves.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let mut child = Command::new(leaktrace())
            .arg("daemon")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leaktrace daemon");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let (ready, serving) = std::sync::mpsc::channel();
        let log = stderr.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("serving http://") {
                    let _ = ready.send(());
                }
                log.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let mut daemon = Daemon { child: Some(child), port, stderr };
        if serving.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            let status = daemon.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!("the daemon did not start ({status:?}): {}", daemon.stderr());
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// GET `path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response =
            agent.get(&format!("http://127.0.0.1:{}{path}", self.port)).call().expect("an HTTP response");
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(256 << 20).read_to_vec().expect("a body");
        (status, body)
    }

    pub fn text(&self, path: &str) -> String {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        String::from_utf8(body).expect("utf-8")
    }

    pub fn report(&self) -> Value {
        serde_json::from_str(&self.text("/report")).expect("a JSON report")
    }

    /// Stops it with SIGTERM; its exit status and everything it said.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait for the daemon");
        // The reader thread sees the pipe close after the exit.
        std::thread::sleep(std::time::Duration::from_millis(100));
        (status, self.stderr())
    }

    /// Resident memory of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in stop().
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The value of the sample `name{labels}` in Prometheus text, where
/// `labels` must all be among the sample's labels.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Every sample of `name` with its label text.
pub fn metric_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))).collect()
}
