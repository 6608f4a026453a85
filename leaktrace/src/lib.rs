//! leaktrace as a library: the `leaktrace` binary (src/main.rs calls
//! [`cmd::main`]) and the fuzz targets under `fuzz/`, which reach the
//! readers of untrusted files (recordings) through [`fuzzing`].
//!
//! The layers, each depending only on those listed after it:
//! - the commands (`cmd`), parsing (`cli`) and each mode's settings
//!   (`config`);
//! - what the modes produce: reports and their renderings (`report`,
//!   `output`), the daemon's endpoints (`daemon`), recordings (`record`),
//!   diffs (`diff`), the live view (`top`);
//! - the engine: the session (`session`) over the kernel side (`kernel`,
//!   behind its seam) with its events (`decode`), the pure tracking logic
//!   (`track`), symbolization (`symbolize`) and unwinding tables (`unwind`),
//!   and `run`'s ptrace tracer (`launch`);
//! - what everything shares: the kinds and resources followed
//!   (`resource`), process identities (`proc_id`), what /proc and the host
//!   say (`procfs`, `host`, `elf`).

pub mod cmd;

mod cli;
mod config;
mod daemon;
mod decode;
mod diff;
mod elf;
mod host;
mod kernel;
mod launch;
mod output;
mod proc_id;
mod procfs;
mod record;
mod report;
mod resource;
mod session;
mod symbolize;
mod top;
mod track;
mod unwind;

/// Entry points for the fuzz targets under `fuzz/`: each reads an untrusted
/// file as leaktrace would, and must end in a value or an error, never a
/// panic (or a sanitizer's finding).
pub mod fuzzing {
    /// Opens `path` as a recording, reports from it at its last checkpoint
    /// and reads a moment in it, as `leaktrace report` and `diff` do.
    pub fn recording(path: &std::path::Path) {
        if let Ok(recording) = crate::record::reader::Recording::open(path) {
            let at = recording.last_checkpoint_ns.unwrap_or(recording.started_ns);
            let _ = recording.report_at(at, None);
            let _ = recording.moment("1s");
        }
    }
}
