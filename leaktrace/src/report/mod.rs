//! The report: the JSON contract (`leaktrace.report/1`, other tools depend on
//! it: keys may be added, never renamed), how it is built from a session's
//! outcome, and its renderings. The model is read back too (`diff`, and
//! tools built on leaktrace), so every key a later version added is optional
//! when reading: reports written before it still read.

pub(crate) mod build;
pub(crate) mod folded;
pub(crate) mod frame;
pub(crate) mod mapping;
pub(crate) mod outermost;
pub(crate) mod pprof;
pub(crate) mod preexisting;
pub(crate) mod program;
pub(crate) mod site;
#[cfg(test)]
mod snapshots;
pub(crate) mod text;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub(crate) use crate::resource::{Kind, Resource};
pub(crate) use crate::session::{KernelMaps, Losses, MapUse};
pub(crate) use crate::track::verdict::Verdict;

pub(crate) const SCHEMA: &str = "leaktrace.report/1";

/// A name from a fixed set (a socket family, a TCP state): borrowed when
/// written, owned when read back.
pub(crate) type Name = Cow<'static, str>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    pub schema: String,
    #[serde(default)]
    pub mode: Mode,
    /// The resource kinds this report covers (`--kinds`).
    #[serde(default)]
    pub kinds: Vec<Kind>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub window: Window,
    #[serde(default)]
    pub totals: Totals,
    /// fds the targets held before tracing began (attach mode), without stacks.
    #[serde(default)]
    pub preexisting: Vec<Preexisting>,
    /// `attach`: the fds open before tracing began, grouped (TCP connections
    /// by state and peer, files by path, the rest by kind), each counted in
    /// full; `preexisting` keeps at most 32 entries of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preexisting_groups: Vec<preexisting::Group>,
    #[serde(default)]
    pub stacks: Vec<StackEntry>,
    /// `--sample N`: one fd acquisition in N was recorded; fd and TCP counts
    /// are N times what was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// False when something was dropped: the counts are then lower bounds.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// What the kernel side could not store or deliver, by cause.
    #[serde(default)]
    pub losses: Losses,
    #[serde(default)]
    pub kernel_maps: KernelMaps,
    /// The daemon's: each process that holds something, with the container
    /// and pod it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<Process>>,
}

fn complete_by_default() -> bool {
    true
}

/// What wrote the report (`"mode"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Run,
    Attach,
    Top,
    Daemon,
    /// `leaktrace report FILE`.
    Recording,
    /// A report without a mode, or with one this leaktrace does not know
    /// (read back only, never written).
    #[default]
    #[serde(other)]
    Unknown,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Attach => "attach",
            Mode::Top => "top",
            Mode::Daemon => "daemon",
            Mode::Recording => "recording",
            Mode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A process as the daemon attributes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct Process {
    pub pid: u32,
    /// Its pid in its own pid namespace (a container's), when that differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    pub comm: Option<String>,
    /// The command line; by default in the daemon without its arguments
    /// (`--redact-args`).
    pub cmdline: Option<String>,
    /// The container id, from the process's cgroup.
    pub container: Option<String>,
    /// `containerd`, `cri-o`, `docker` (`unknown` for a bare id in a pod).
    pub runtime: Option<Name>,
    pub pod_uid: Option<String>,
    /// From the Kubernetes API, when the daemon reads it.
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// fds open now (all of them, traced or not) and the soft limit
    /// (RLIMIT_NOFILE; null when unlimited).
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// It exited since the previous sample: its stacks are what it held at
    /// its exit, reported this once.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Sampling {
    pub one_in: u32,
    /// Acquisitions counted but not recorded.
    pub sampled_out: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Target {
    pub pid: u32,
    /// Its pid in its own pid namespace, when that differs from `pid` (the
    /// host's, or rather the tracer's, view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub exe: Option<String>,
    /// Exit status (128+signal when killed), or null while still running.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

impl Target {
    /// A live process as /proc shows it now (the daemon's and top's targets).
    pub(crate) fn live(pid: u32) -> Target {
        Target {
            pid,
            ns_pid: crate::procfs::other_namespace_pid(pid),
            comm: crate::procfs::comm(pid),
            exe: crate::procfs::exe(pid),
            exit_code: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Window {
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct Totals {
    /// fds (TCP connections included).
    pub acquired: u64,
    pub released: u64,
    /// fds acquired in the window and still held, of every kind (shown or
    /// not: `--kinds tcp` shows only the TCP ones).
    pub outstanding: u64,
    pub dropped: u64,
    /// Memory mappings, when traced (`--kinds …,mmap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mappings: Option<MappingTotals>,
}

/// Mappings made by mmap calls of the traced processes during the window.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct MappingTotals {
    /// Successful mmap calls.
    pub acquired: u64,
    /// Of those, the ones entirely unmapped again (or gone with an exec).
    pub released: u64,
    /// The ones still holding bytes.
    pub outstanding: u64,
    /// The bytes they hold.
    pub bytes: u64,
    pub bytes_mapped: u64,
    pub bytes_unmapped: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Preexisting {
    pub pid: u32,
    pub fd: u32,
    pub resource: Resource,
    pub path: Option<String>,
    /// Whether the fd still referred to the same object when tracing ended.
    pub open_at_end: bool,
    /// TCP connections: their state and addresses when tracing ended (or
    /// began, for one closed since), as `ss` shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// What one stack holds. Read back, only `kind`, `resource` and `count` are
/// required: the first reports had nothing else a diff needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StackEntry {
    /// `leak`, `suspect` or `steady`: how the count from this stack moved
    /// over the window (see [`crate::track::verdict`]). Always written; null
    /// only when read from a report that predates verdicts.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// Why, in words: the evidence behind the verdict.
    #[serde(default)]
    pub verdict_reason: String,
    /// Outstanding resources gained per minute over the window (Theil-Sen
    /// slope of the sampled counts); null with fewer than two samples.
    #[serde(default)]
    pub growth_per_minute: Option<f64>,
    /// When the oldest resource this stack still holds was acquired.
    #[serde(default)]
    pub first_seen: Option<String>,
    /// The sampled counts, oldest first (bounded: older samples are thinned).
    #[serde(default)]
    pub history: History,
    /// `count` (and `history.count`) estimated from sampled acquisitions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    pub kind: Kind,
    pub resource: Resource,
    pub count: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub pids: Vec<u32>,
    /// The daemon's: the process that held these has exited; they are what
    /// it held at its exit, reported this once. (A live process given its
    /// pid since has entries of its own.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
    /// `attach`'s: of `count`, what processes that exited during the window
    /// held at their exit (the rest is held by live processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_at_exit: Option<u64>,
    /// `run`'s: the process held these at its last sample and released them
    /// all before it exited (an interpreter's shutdown closing leaked
    /// files): `count` is what it held then, judged on its history up to
    /// then; `totals.outstanding` does not count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at_exit: Option<u64>,
    #[serde(default)]
    pub oldest_age_seconds: f64,
    /// Innermost frame first.
    #[serde(default)]
    pub stack: Vec<Frame>,
    #[serde(default)]
    pub examples: Vec<Example>,
    /// The innermost frame of the program's own code (not libc, not a
    /// language runtime), which the text report names.
    #[serde(default)]
    pub site: Option<String>,
    /// Why the stack ends early, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// TCP entries: connections per current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<BTreeMap<String, u64>>,
    /// TCP entries: connections that have been in CLOSE_WAIT for more than
    /// 5 s (the peer closed them, the program never did); any makes the
    /// stack a `leak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_close_wait: Option<u64>,
    /// TCP entries: connections per local and per remote address (the first
    /// 32 distinct of each; `other` counts the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locals: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remotes: Option<BTreeMap<String, u64>>,
}

impl StackEntry {
    /// An entry of `kind` holding `resource`, with nothing in it yet.
    pub(crate) fn new(kind: Kind, resource: Resource) -> StackEntry {
        StackEntry {
            verdict: None,
            verdict_reason: String::new(),
            growth_per_minute: None,
            first_seen: None,
            history: History::default(),
            estimated: false,
            kind,
            resource,
            count: 0,
            bytes: 0,
            pids: Vec::new(),
            exited: false,
            held_at_exit: None,
            released_at_exit: None,
            oldest_age_seconds: 0.0,
            stack: Vec::new(),
            examples: Vec::new(),
            site: None,
            truncated: None,
            states: None,
            stale_close_wait: None,
            locals: None,
            remotes: None,
        }
    }
}

/// A stack's samples: parallel arrays, one element per sample.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct History {
    /// Seconds since the start of the window.
    pub seconds: Vec<f64>,
    pub count: Vec<u64>,
    /// Memory mappings: bytes still mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u64>>,
    /// Age of the oldest resource held at each sample.
    pub oldest_age_seconds: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Absolute, as in the process that took the stack (one of them).
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    /// Offset in the symbol when there is one, else in the module's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
    /// Why the frame has no symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Example {
    pub pid: u32,
    /// Its pid in its own pid namespace, when that differs from `pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// Fd kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    pub path: Option<String>,
    pub age_seconds: f64,
    /// Mappings: the lowest address still mapped (hex), the bytes still
    /// mapped, `rw-`-style protection, mmap flags, and how many pieces
    /// (regions) the call's mapping is in now when more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<u32>,
    /// Sockets: `AF_UNIX`, `AF_INET`, … and `SOCK_STREAM`, `SOCK_DGRAM`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Name>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<Name>,
    /// TCP connections: their addresses, state and time in that state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_age_seconds: Option<f64>,
    /// `attach` and the daemon: its process exited during the window, and
    /// this is what it held then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
}

impl Report {
    pub(crate) fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn every_loss_has_a_cause_named_as_its_json_key() {
        let value = serde_json::to_value(Losses::default()).expect("losses serialize");
        let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
        let mut causes: Vec<&str> = Losses::default().by_cause().iter().map(|(name, _, _)| *name).collect();
        keys.sort_unstable();
        causes.sort_unstable();
        assert_eq!(causes, keys);
    }

    /// A report as a run of a small C program produces it.
    pub(crate) fn sample() -> Report {
        Report {
            schema: SCHEMA.into(),
            mode: Mode::Run,
            kinds: vec![Kind::Fd, Kind::Tcp],
            targets: vec![Target {
                pid: 123,
                ns_pid: None,
                comm: Some("x".into()),
                exe: Some("/path/x".into()),
                exit_code: Some(0),
            }],
            window: Window { start: "2026-11-23T10:00:00Z".into(), end: "2026-11-23T10:00:01.5Z".into(), seconds: 1.5 },
            totals: Totals { acquired: 1010, released: 910, outstanding: 100, dropped: 0, mappings: None },
            preexisting: vec![],
            preexisting_groups: vec![],
            stacks: vec![StackEntry {
                verdict: Some(Verdict::Leak),
                verdict_reason: "grew in 10 of 10 samples".into(),
                growth_per_minute: Some(4000.0),
                first_seen: Some("2026-11-23T10:00:00.1Z".into()),
                history: History {
                    seconds: vec![0.5, 1.0, 1.5],
                    count: vec![30, 65, 100],
                    bytes: None,
                    oldest_age_seconds: vec![0.2, 0.7, 1.2],
                },
                estimated: false,
                kind: Kind::Fd,
                resource: Resource::File,
                count: 100,
                bytes: 0,
                pids: vec![123],
                exited: false,
                held_at_exit: None,
                released_at_exit: None,
                oldest_age_seconds: 1.2,
                stack: vec![
                    Frame {
                        address: "0x7f0000001000".into(),
                        symbol: Some("__libc_open64".into()),
                        module: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
                        file: Some("open64.c".into()),
                        line: Some(41),
                        offset: Some(0x51),
                        inlined: false,
                        reason: None,
                    },
                    Frame {
                        address: "0x401136".into(),
                        symbol: Some("load_config".into()),
                        module: Some("/path/x".into()),
                        file: Some("x.c".into()),
                        line: Some(16),
                        offset: Some(0x16),
                        inlined: false,
                        reason: None,
                    },
                    Frame {
                        address: "0x22286e65706f006c".into(),
                        symbol: None,
                        module: None,
                        file: None,
                        line: None,
                        offset: None,
                        inlined: false,
                        reason: Some("address outside every code mapping".into()),
                    },
                ],
                examples: vec![Example {
                    pid: 123,
                    ns_pid: None,
                    fd: Some(7),
                    address: None,
                    length: None,
                    prot: None,
                    flags: None,
                    regions: None,
                    path: Some("/etc/hostname".into()),
                    age_seconds: 1.0,
                    family: None,
                    sock_type: None,
                    local: None,
                    remote: None,
                    state: None,
                    state_age_seconds: None,
                    exited: false,
                }],
                site: Some("load_config".into()),
                truncated: None,
                states: None,
                stale_close_wait: None,
                locals: None,
                remotes: None,
            }],
            sampling: None,
            complete: true,
            losses: Losses::default(),
            kernel_maps: KernelMaps {
                outstanding: MapUse { used: 100, capacity: 65536 },
                tcp: MapUse { used: 0, capacity: 65536 },
                stacks: MapUse { used: 1, capacity: 16384 },
                mapping_regions: MapUse { used: 0, capacity: 65536 },
            },
            processes: None,
        }
    }

    /// A mapping entry's example and the mapping totals, as other tools read them.
    #[test]
    fn mapping_json_snapshot() {
        let example = Example {
            pid: 7,
            ns_pid: None,
            fd: None,
            path: Some("/data/cache.bin".into()),
            age_seconds: 2.5,
            address: Some("0x7f0000010000".into()),
            length: Some(24576),
            prot: Some("rw-".into()),
            flags: Some("MAP_SHARED".into()),
            regions: Some(2),
            family: None,
            sock_type: None,
            local: None,
            remote: None,
            state: None,
            state_age_seconds: None,
            exited: false,
        };
        assert_eq!(
            serde_json::to_string(&example).expect("json"),
            r#"{"pid":7,"path":"/data/cache.bin","age_seconds":2.5,"address":"0x7f0000010000","length":24576,"prot":"rw-","flags":"MAP_SHARED","regions":2}"#
        );
        let totals = Totals {
            acquired: 0,
            released: 0,
            outstanding: 0,
            dropped: 0,
            mappings: Some(MappingTotals {
                acquired: 3,
                released: 1,
                outstanding: 2,
                bytes: 8192,
                bytes_mapped: 12288,
                bytes_unmapped: 4096,
            }),
        };
        assert_eq!(
            serde_json::to_string(&totals).expect("json"),
            r#"{"acquired":0,"released":0,"outstanding":0,"dropped":0,"mappings":{"acquired":3,"released":1,"outstanding":2,"bytes":8192,"bytes_mapped":12288,"bytes_unmapped":4096}}"#
        );
    }

    /// The contract other tools rely on: these keys, these names, these types.
    #[test]
    fn json_snapshot() {
        let expected = r#"{
  "schema": "leaktrace.report/1",
  "mode": "run",
  "kinds": [
    "fd",
    "tcp"
  ],
  "targets": [
    {
      "pid": 123,
      "comm": "x",
      "exe": "/path/x",
      "exit_code": 0
    }
  ],
  "window": {
    "start": "2026-11-23T10:00:00Z",
    "end": "2026-11-23T10:00:01.5Z",
    "seconds": 1.5
  },
  "totals": {
    "acquired": 1010,
    "released": 910,
    "outstanding": 100,
    "dropped": 0
  },
  "preexisting": [],
  "stacks": [
    {
      "verdict": "leak",
      "verdict_reason": "grew in 10 of 10 samples",
      "growth_per_minute": 4000.0,
      "first_seen": "2026-11-23T10:00:00.1Z",
      "history": {
        "seconds": [
          0.5,
          1.0,
          1.5
        ],
        "count": [
          30,
          65,
          100
        ],
        "oldest_age_seconds": [
          0.2,
          0.7,
          1.2
        ]
      },
      "kind": "fd",
      "resource": "file",
      "count": 100,
      "bytes": 0,
      "pids": [
        123
      ],
      "oldest_age_seconds": 1.2,
      "stack": [
        {
          "address": "0x7f0000001000",
          "symbol": "__libc_open64",
          "module": "/usr/lib/x86_64-linux-gnu/libc.so.6",
          "file": "open64.c",
          "line": 41,
          "offset": 81
        },
        {
          "address": "0x401136",
          "symbol": "load_config",
          "module": "/path/x",
          "file": "x.c",
          "line": 16,
          "offset": 22
        },
        {
          "address": "0x22286e65706f006c",
          "symbol": null,
          "module": null,
          "file": null,
          "line": null,
          "reason": "address outside every code mapping"
        }
      ],
      "examples": [
        {
          "pid": 123,
          "fd": 7,
          "path": "/etc/hostname",
          "age_seconds": 1.0
        }
      ],
      "site": "load_config"
    }
  ],
  "complete": true,
  "losses": {
    "map_full": 0,
    "stacks_dropped": 0,
    "stack_errors": 0,
    "events_lost": 0,
    "procs_dropped": 0,
    "read_errors": 0,
    "undecodable_events": 0,
    "unwind_modules_dropped": 0,
    "unwind_mappings_dropped": 0,
    "mappings_dropped": 0,
    "series_dropped": 0
  },
  "kernel_maps": {
    "outstanding": {
      "used": 100,
      "capacity": 65536
    },
    "tcp": {
      "used": 0,
      "capacity": 65536
    },
    "stacks": {
      "used": 1,
      "capacity": 16384
    },
    "mapping_regions": {
      "used": 0,
      "capacity": 65536
    }
  }
}"#;
        assert_eq!(sample().to_json(), expected);
    }

    #[test]
    fn text_leads_with_count_site_and_caller() {
        let text = text::render(&sample(), &text::View { top: 10, all_mappings: false });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "leaktrace run: /path/x (pid 123) exited with status 0 after 1.50s");
        assert_eq!(lines[1], "fds: 1010 acquired, 910 released, 100 still held at exit, 0 dropped");
        assert_eq!(lines[3], "leak: 100 files (+4000.0/min ▃▆█), oldest 1.20s, from load_config, held by pid 123");
        assert!(lines[4].contains("fd 7 /etc/hostname (1.00s) and 99 more"), "{}", lines[4]);
        assert!(lines[6].contains("load_config+0x16  x.c:16"), "{}", lines[6]);
        assert!(lines[7].contains("[unknown: address outside every code mapping]"), "{}", lines[7]);
    }

    #[test]
    fn processes_in_another_pid_namespace_are_named_by_both_pids() {
        let mut r = sample();
        r.targets[0].ns_pid = Some(1);
        r.stacks[0].examples[0].ns_pid = Some(1);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!((&json["targets"][0]["pid"], &json["targets"][0]["ns_pid"]), (&123.into(), &1.into()));
        assert_eq!(json["stacks"][0]["examples"][0]["ns_pid"], 1);
        // Absent, not null, in the host's namespace (see the snapshot above).
        assert!(sample().to_json().find("ns_pid").is_none());
        let text = text::render(&r, &text::View { top: 10, all_mappings: false });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "leaktrace run: /path/x (pid 123, 1 in its namespace) exited with status 0 after 1.50s");
        assert!(lines[3].ends_with(", held by pid 123 (1 in its namespace)"), "{}", lines[3]);
        r.mode = Mode::Attach;
        let text = text::render(&r, &text::View { top: 10, all_mappings: false });
        assert!(text.starts_with("leaktrace attach: pid 123 (x, 1 in its namespace) for 1.50s"), "{text}");
    }

    #[test]
    fn attach_says_apart_what_exited_processes_held() {
        let mut r = sample();
        r.mode = Mode::Attach;
        r.totals.outstanding = 40;
        r.stacks[0].held_at_exit = Some(60);
        let text = text::render(&r, &text::View { top: 10, all_mappings: false });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "fds: 1010 acquired, 910 released, 40 acquired while tracing and still held \
             (and 60 held by processes that exited, at their exit), 0 dropped"
        );
        assert!(
            lines[3].ends_with("held by pid 123 (60 of them by processes that exited, at their exit)"),
            "{}",
            lines[3]
        );
        r.stacks[0].held_at_exit = Some(100);
        let text = text::render(&r, &text::View { top: 10, all_mappings: false });
        assert!(text.contains("held by pid 123 (held by processes that exited, at their exit)\n"), "{text}");
    }

    #[test]
    fn incomplete_reports_say_what_was_lost() {
        let mut r = sample();
        r.complete = false;
        r.losses.map_full = 1200;
        r.totals.dropped = 1200;
        let text = text::render(&r, &text::View { top: 10, all_mappings: false });
        assert!(
            text.contains("1200 acquisitions were dropped because the outstanding map was full (raise --max-entries)")
        );
    }

    #[test]
    fn top_limits_the_text_report() {
        let mut r = sample();
        let mut second = r.stacks[0].clone();
        second.count = 3;
        r.stacks.push(second);
        let text = text::render(&r, &text::View { top: 1, all_mappings: false });
        assert!(text.contains("... and 1 more stacks holding 3 fds"), "{text}");
    }
}
