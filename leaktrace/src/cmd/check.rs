//! `leaktrace check`: what works on this host and what each missing piece
//! disables. leaktrace's own programs are loaded and attached for real (then
//! dropped) when the privileges allow; the rest is read from the kernel's
//! files, without changing anything (tracefs is not mounted here).

use std::path::Path;

use caps::{CapSet, Capability};
use serde::Serialize;

use super::Failure;
use crate::kernel::{btf, Kernel, LoadOptions};
use crate::output::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum State {
    Ok,
    Missing,
    /// A fact that enables or disables nothing by itself.
    Info,
}

#[derive(Debug, Serialize)]
pub(super) struct Item {
    pub name: String,
    pub state: State,
    pub detail: String,
    /// What does not work without it (missing items only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disables: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Findings {
    pub kernel: String,
    /// leaktrace's programs loaded and attached here.
    pub ready: bool,
    pub items: Vec<Item>,
}

fn item(name: &str, state: State, detail: impl Into<String>, disables: Option<&str>) -> Item {
    Item {
        name: name.into(),
        state,
        detail: detail.into(),
        disables: (state == State::Missing).then(|| disables.map(String::from)).flatten(),
    }
}

/// Each tracepoint leaktrace attaches to, and what it gives.
const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("raw_syscalls", "sys_enter", "every acquisition and release (fd, mmap)"),
    ("raw_syscalls", "sys_exit", "every acquisition and release (fd, mmap)"),
    ("sched", "sched_process_fork", "following children and threads"),
    ("sched", "sched_process_exec", "exec (O_CLOEXEC releases, new images)"),
    ("sched", "sched_process_exit", "what a process held at its exit"),
    ("sock", "inet_sock_set_state", "--kinds tcp (connection states, CLOSE_WAIT)"),
    ("tcp", "tcp_destroy_sock", "--kinds tcp (connections closed by the kernel)"),
];

/// The capabilities leaktrace uses, with what each missing one disables.
const CAPABILITIES: &[(Capability, &str)] = &[
    (Capability::CAP_BPF, "every mode: loading the eBPF programs (unless CAP_SYS_ADMIN)"),
    (Capability::CAP_PERFMON, "every mode: attaching to tracepoints and reading stacks (unless CAP_SYS_ADMIN)"),
    (Capability::CAP_SYS_PTRACE, "attach, top, record and daemon: other processes' fd tables and mappings"),
    (Capability::CAP_DAC_READ_SEARCH, "attach, top, record and daemon: other users' /proc/PID/fd"),
    (
        Capability::CAP_CHECKPOINT_RESTORE,
        "code deleted or replaced since it was mapped, and code in other mount namespaces, is read \
         through /proc/PID/map_files; without it, by path, when the path still names it",
    ),
];

pub(super) fn check(format: Format) -> Result<u8, Failure> {
    let findings = findings();
    let body = match format {
        Format::Json => serde_json::to_string_pretty(&findings).unwrap_or_default() + "\n",
        _ => render(&findings),
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Output(crate::output::OutputError::Write(e)))?;
    Ok(if findings.ready { 0 } else { 1 })
}

pub(super) fn findings() -> Findings {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "unknown".into());
    let kernel = format!("{} {}", release.trim(), std::env::consts::ARCH);
    let mut items = Vec::new();

    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    let admin = effective.contains(&Capability::CAP_SYS_ADMIN);
    for (cap, disables) in CAPABILITIES {
        let name = cap.to_string();
        let covered =
            admin && matches!(cap, Capability::CAP_BPF | Capability::CAP_PERFMON | Capability::CAP_CHECKPOINT_RESTORE);
        let state = if effective.contains(cap) || covered { State::Ok } else { State::Missing };
        let detail = match (effective.contains(cap), covered) {
            (true, _) => "effective",
            (false, true) => "covered by CAP_SYS_ADMIN",
            (false, false) => "not in the effective set",
        };
        items.push(item(&name, state, detail, Some(disables)));
    }
    let can_load = admin || (effective.contains(&Capability::CAP_BPF) && effective.contains(&Capability::CAP_PERFMON));

    items.push(lockdown());
    items.push(match crate::kernel::privileges::perf_event_paranoid() {
        Some(level) if !admin && crate::kernel::privileges::perf_restricted().is_some() => item(
            "perf_event_paranoid",
            State::Missing,
            format!("{level}, enforced by this kernel: perf_event_open needs CAP_SYS_ADMIN"),
            Some("every mode: attaching the tracepoints (grant CAP_SYS_ADMIN or set kernel.perf_event_paranoid=2)"),
        ),
        Some(level) => item("perf_event_paranoid", State::Ok, level.to_string(), None),
        None => item("perf_event_paranoid", State::Info, "unknown (/proc/sys/kernel/perf_event_paranoid)", None),
    });
    let tracefs = crate::kernel::tracefs::CANDIDATES.into_iter().find(|r| Path::new(r).join("events").is_dir());
    items.push(match tracefs {
        Some(root) => item("tracefs", State::Ok, format!("mounted at {root}"), None),
        None => match tracefs_mount() {
            Some(at) => {
                item("tracefs", State::Info, format!("mounted at {at} but not readable by this user (root only)"), None)
            }
            None => item(
                "tracefs",
                State::Info,
                "not mounted; leaktrace mounts it at /sys/kernel/tracing when it starts (needs CONFIG_TRACING)",
                None,
            ),
        },
    });
    let offsets = btf::kernel_offsets();
    // Parsed once above; read again alone only when a TCP offset is missing.
    let exit_offsets_known = match &offsets {
        Ok(o) => o.task_signal != 0,
        Err(_) => btf::exit_only().task_signal != 0,
    };
    items.push(match offsets {
        Ok(_) => item("BTF", State::Ok, format!("{} describes the socket layout", btf::VMLINUX), None),
        Err(e) => item(
            "BTF",
            State::Missing,
            e.to_string(),
            Some("--kinds tcp (run with --kinds fd,mmap), and socket families and types in reports"),
        ),
    });
    let events = tracefs.map(|r| Path::new(r).join("events"));
    for (category, name, gives) in TRACEPOINTS {
        let tp = format!("tracepoint {category}:{name}");
        items.push(match &events {
            Some(events) if events.join(category).join(name).join("format").is_file() => {
                item(&tp, State::Ok, "present", None)
            }
            Some(_) => item(&tp, State::Missing, "absent from tracefs", Some(gives)),
            None => item(&tp, State::Info, "not checked: tracefs is not readable here", None),
        });
    }
    if let Some(events) = &events {
        let format = std::fs::read_to_string(events.join("sched/sched_process_exit/format")).unwrap_or_default();
        let group_dead = crate::kernel::tracefs::field_offset(&format, "group_dead").is_some();
        items.push(item(
            "sched_process_exit group_dead",
            if group_dead { State::Ok } else { State::Info },
            if group_dead {
                "present (Linux 6.16 and later)"
            } else if exit_offsets_known {
                "absent (before Linux 6.16): a process's last thread is told by its signal->live count, \
                 read with the BTF's offsets"
            } else {
                "absent (before Linux 6.16) and no BTF: a thread-group leader calling pthread_exit while \
                 other threads run ends its process's tracing early"
            },
            None,
        ));
    }

    // The real test: leaktrace's programs, every kind on.
    let ready = if can_load {
        match Kernel::load(&LoadOptions {
            tcp: true,
            mmap: true,
            trace_all: false,
            ..crate::config::Config::default().load_options()
        }) {
            Ok(kernel) => {
                drop(kernel);
                items.push(item(
                    "eBPF programs",
                    State::Ok,
                    "leaktrace's programs load, pass the verifier and attach (tracepoints, raw tracepoints, \
                     ring buffer)",
                    None,
                ));
                true
            }
            Err(e) => {
                items.push(item("eBPF programs", State::Missing, e.to_string(), Some("every mode")));
                false
            }
        }
    } else {
        items.push(item(
            "eBPF programs",
            State::Missing,
            "not tried: loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)",
            Some("every mode"),
        ));
        false
    };
    for (pmu, used) in
        [("uprobe", "not used by leaktrace"), ("kprobe", "not used by leaktrace (syscall tracepoints are its hooks)")]
    {
        let present = Path::new("/sys/bus/event_source/devices").join(pmu).is_dir();
        items.push(item(
            &format!("{pmu}s"),
            State::Info,
            format!("{}; {used}", if present { "available" } else { "not available (no perf PMU)" }),
            None,
        ));
    }
    items.push(item("fentry/fexit", State::Info, "not probed: not used by leaktrace", None));
    Findings { kernel, ready, items }
}

/// Where tracefs is mounted, from this process's mount table (readable
/// when tracefs itself is not).
fn tracefs_mount() -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "tracefs").then(|| left.split_whitespace().nth(4).map(String::from))?
    })
}

/// Kernel lockdown (securityfs): in `confidentiality` mode eBPF may not
/// read kernel memory.
fn lockdown() -> Item {
    match std::fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(modes) => {
            let active = modes.split_whitespace().find(|m| m.starts_with('[')).unwrap_or("[none]");
            let mode = active.trim_matches(|c| c == '[' || c == ']');
            if mode == "confidentiality" {
                item(
                    "lockdown",
                    State::Missing,
                    "confidentiality: eBPF may not read kernel memory",
                    Some("the programs' reads of kernel memory (fd tables, sockets): see the eBPF programs line"),
                )
            } else {
                item("lockdown", State::Ok, mode, None)
            }
        }
        Err(_) => item("lockdown", State::Info, "unknown (securityfs is not mounted or has no lockdown file)", None),
    }
}

pub(super) fn render(f: &Findings) -> String {
    let mut out = format!("leaktrace check: kernel {}\n", f.kernel);
    let width = f.items.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in &f.items {
        let state = match i.state {
            State::Ok => "ok",
            State::Missing => "MISSING",
            State::Info => "note",
        };
        out += &format!("  {state:<8} {:<width$}  {}\n", i.name, i.detail);
        if let Some(d) = &i.disables {
            out += &format!("  {:<8} {:<width$}  disables: {d}\n", "", "");
        }
    }
    out += if f.ready {
        "leaktrace can trace on this host.\n"
    } else {
        "leaktrace cannot trace on this host: see MISSING above.\n"
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_items_say_what_they_disable_and_the_verdict_follows_the_load() {
        let f = Findings {
            kernel: "6.1.0 x86_64".into(),
            ready: false,
            items: vec![
                item("BTF", State::Missing, "no /sys/kernel/btf/vmlinux", Some("--kinds tcp")),
                item("tracefs", State::Ok, "mounted", Some("ignored: not missing")),
            ],
        };
        let text = render(&f);
        assert!(text.contains("MISSING  BTF"), "{text}");
        assert!(text.contains("disables: --kinds tcp"), "{text}");
        assert!(!text.contains("ignored"), "{text}");
        assert!(text.ends_with("cannot trace on this host: see MISSING above.\n"), "{text}");
    }
}
