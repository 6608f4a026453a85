//! The report: the JSON contract (`leaktrace.report/1`, other tools depend on
//! it: keys may be added, never renamed) and its text rendering for people.

pub mod build;
pub mod site;
pub mod text;

use serde::Serialize;

pub const SCHEMA: &str = "leaktrace.report/1";

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub mode: &'static str,
    pub targets: Vec<Target>,
    pub window: Window,
    pub totals: Totals,
    /// fds the targets held before tracing began (attach mode), without stacks.
    pub preexisting: Vec<Preexisting>,
    pub stacks: Vec<StackEntry>,
    /// False when something was dropped: the counts are then lower bounds.
    pub complete: bool,
    /// What the kernel side could not store or deliver, by cause.
    pub losses: Losses,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub pid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// Exit status (128+signal when killed), or null while still running.
    pub exit_code: Option<i32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub acquired: u64,
    pub released: u64,
    pub outstanding: u64,
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Losses {
    /// Acquisitions not stored: the outstanding map was full (`--max-entries`).
    pub map_full: u64,
    /// Acquisitions stored without a stack: the stack map was full (`--max-stacks`).
    pub stacks_dropped: u64,
    /// Stacks the kernel could not read.
    pub stack_errors: u64,
    /// Process events not delivered: the ring buffer was full.
    pub events_lost: u64,
    /// Child processes not followed: the process map was full (`--max-procs`).
    pub procs_dropped: u64,
    /// Register or user-memory reads that failed.
    pub read_errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Preexisting {
    pub pid: u32,
    pub fd: u32,
    pub resource: &'static str,
    pub path: Option<String>,
    /// Whether the fd still referred to the same object when tracing ended.
    pub open_at_end: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StackEntry {
    pub kind: &'static str,
    pub resource: &'static str,
    pub count: u64,
    pub bytes: u64,
    pub pids: Vec<u32>,
    pub oldest_age_seconds: f64,
    /// Innermost frame first.
    pub stack: Vec<Frame>,
    pub examples: Vec<Example>,
    /// The innermost frame of the program's own code (not libc, not a
    /// language runtime), which the text report names.
    pub site: Option<String>,
    /// Why the stack ends early, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Frame {
    pub address: String,
    pub symbol: Option<String>,
    pub module: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
    /// Why the frame has no symbol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Example {
    pub pid: u32,
    pub fd: u32,
    pub path: Option<String>,
    pub age_seconds: f64,
}

impl Report {
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
