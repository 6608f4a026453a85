//! The script the guest runs as PID 1 once it is on the host's root: the
//! mounts the CI host has (not debugfs: with it, tracefs is also reachable
//! at /sys/kernel/debug/tracing, and the test that unmounts tracefs to see
//! leaktrace mount it again finds it there instead), then the integration suite's test
//! binaries as `cargo test` runs them (from `tests/`, `LEAKTRACE_BIN`, one
//! test at a time), each under a timeout, their output on the console and
//! in the results directory, and last the exit status, which the host reads
//! from there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One test binary of `leaktrace-tests` and the tests it runs in the guest.
#[derive(Clone, Debug)]
pub(super) struct Binary {
    /// The test target's name (`run_c`), for messages.
    pub name: String,
    pub path: PathBuf,
    /// Exact names to run; empty: the binary is not run.
    pub run: Vec<String>,
}

pub(super) struct GuestPlan<'a> {
    pub workspace: &'a Path,
    pub leaktrace: &'a Path,
    pub results: &'a Path,
    pub binaries: &'a [Binary],
    /// Bound of each test binary's run.
    pub binary_timeout: Duration,
}

/// Files the guest writes in the results directory.
pub(super) const STATUS: &str = "status";
pub(super) const TESTS_LOG: &str = "tests.log";
pub(super) const PROBE: &str = "probe.txt";
pub(super) const PROBE_STATUS: &str = "probe.status";

/// Single-quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

pub(super) fn script(plan: &GuestPlan) -> String {
    let mut s = String::from(
        "#!/bin/bash\n\
         # Written by cargo xtask test --kernel: PID 1 of the test VM, on an overlay of the host's root.\n\
         set -u\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts /dev/shm\n\
         mount -t devpts -o ptmxmode=0666 devpts /dev/pts\n\
         mount -t tmpfs tmpfs /dev/shm\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         mount -t tracefs tracefs /sys/kernel/tracing\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         ip link set lo up\n\
         hostname leaktrace-vm\n\
         export PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root CARGO_NET_OFFLINE=true LANG=C.UTF-8\n",
    );
    // Fresh /run and /tmp as on a booted host, except where the workspace
    // (a clone under /tmp, say) is: an empty tmpfs would hide it, and the
    // overlay already makes the host's directory writable.
    for dir in ["/run", "/tmp"] {
        if !plan.workspace.starts_with(dir) {
            let _ = writeln!(s, "mount -t tmpfs tmpfs {dir}");
        }
    }
    let results = path(plan.results);
    let _ = writeln!(s, "export LEAKTRACE_BIN={}", path(plan.leaktrace));
    let _ = writeln!(s, "R={results}");
    s.push_str(
        "echo \"leaktrace-vm: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2}' /proc/meminfo) KiB\"\n\
         poweroff() { sync; echo o > /proc/sysrq-trigger; sleep 60; }\n\
         # Can leaktrace load its programs here? Its one-line error says why not.\n\
         \"$LEAKTRACE_BIN\" run --format json -- /bin/true > /dev/null 2> \"$R/probe.txt\"\n\
         echo $? > \"$R/probe.status\"\n\
         echo \"leaktrace-vm: probe exited $(cat \"$R/probe.status\"): $(cat \"$R/probe.txt\")\"\n",
    );
    let _ = writeln!(s, "cd {}", path(&plan.workspace.join("tests")));
    s.push_str("rc=0\n");
    for binary in plan.binaries.iter().filter(|b| !b.run.is_empty()) {
        let names: Vec<String> = binary.run.iter().map(|n| quote(n)).collect();
        let _ = writeln!(s, "echo \"leaktrace-vm: running {} ({} tests)\"", binary.name, binary.run.len());
        let run = format!(
            "timeout -k 10 {secs} {bin} --test-threads=1 --exact",
            secs = plan.binary_timeout.as_secs(),
            bin = path(&binary.path),
        );
        let _ =
            writeln!(s, "{run} {names} 2>&1 | tee \"$R/last.log\" | tee -a \"$R/tests.log\"", names = names.join(" "));
        let _ = writeln!(s, "st=${{PIPESTATUS[0]}}");
        // Failed tests (libtest's last `failures:` list) run once more,
        // alone: under emulation a kernel runs tens of times slower than the
        // fixtures' timing was made for. Both tries are in the log, and the
        // summary names every test that needed a second one.
        let _ = writeln!(
            s,
            "if [ $st -ne 0 ] && [ $st -ne 124 ] && [ $st -ne 137 ]; then\n\
             \x20 again=$(awk '/^failures:$/ {{f=1; n=\"\"; next}} f && /^    / {{n=n\" \"substr($0,5); next}} /^test result:/ {{if (f) print n; f=0}}' \"$R/last.log\")\n\
             \x20 if [ -n \"$again\" ]; then\n\
             \x20   echo \"leaktrace-vm: {name}: a second try of$again\"\n\
             \x20   {run} $again 2>&1 | tee -a \"$R/tests.log\"\n\
             \x20   st=${{PIPESTATUS[0]}}\n\
             \x20 fi\n\
             fi\n\
             echo \"{name} $st\" >> \"$R/binaries\"; [ $st -eq 0 ] || rc=1\n\
             [ $st -eq 124 ] || [ $st -eq 137 ] && echo \"leaktrace-vm: {name} timed out after {secs} s\"",
            name = binary.name,
            secs = plan.binary_timeout.as_secs(),
        );
    }
    s.push_str("echo $rc > \"$R/status\"\necho \"leaktrace-vm: done, status $rc\"\npoweroff\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_each_binary_with_its_tests_then_powers_off() {
        let binaries = vec![
            Binary { name: "errors".into(), path: "/w/target/release/deps/errors-1".into(), run: vec!["a".into()] },
            Binary { name: "tcp".into(), path: "/w/target/release/deps/tcp-2".into(), run: vec![] },
            Binary {
                name: "run_c".into(),
                path: "/w/target/release/deps/run_c-3".into(),
                run: vec!["b".into(), "it's".into()],
            },
        ];
        let s = script(&GuestPlan {
            workspace: Path::new("/w"),
            leaktrace: Path::new("/w/target/release/leaktrace"),
            results: Path::new("/w/target/vm/run/debian-6.1"),
            binaries: &binaries,
            binary_timeout: Duration::from_secs(900),
        });
        assert!(s.contains("export LEAKTRACE_BIN='/w/target/release/leaktrace'\n"));
        assert!(s.contains("cd '/w/tests'\n"));
        assert!(s.contains(
            "timeout -k 10 900 '/w/target/release/deps/errors-1' --test-threads=1 --exact 'a' 2>&1 | tee \"$R/last.log\" | tee -a \"$R/tests.log\"\n"
        ));
        assert!(s.contains("timeout -k 10 900 '/w/target/release/deps/errors-1' --test-threads=1 --exact $again 2>&1"));
        assert!(s.contains("--exact 'b' 'it'\\''s'"));
        assert!(!s.contains("tcp-2"), "a binary with nothing to run is left out");
        assert!(s.find("errors-1").unwrap() < s.find("run_c-3").unwrap());
        assert!(s.contains("mount -t cgroup2"));
        assert!(s.contains("mount -t tmpfs tmpfs /tmp\n"));
        let in_tmp = script(&GuestPlan {
            workspace: Path::new("/tmp/ci"),
            leaktrace: Path::new("/tmp/ci/target/release/leaktrace"),
            results: Path::new("/tmp/ci/target/vm/run/debian-6.1"),
            binaries: &binaries,
            binary_timeout: Duration::from_secs(900),
        });
        assert!(!in_tmp.contains("tmpfs /tmp"), "a workspace under /tmp stays visible");
        assert!(in_tmp.contains("mount -t tmpfs tmpfs /run\n"));
        assert!(s.ends_with("poweroff\n"));
    }
}
