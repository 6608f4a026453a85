//! leaktrace as a library: the tracer's modules, for the `leaktrace`
//! binary (src/main.rs) and for the fuzz targets under `fuzz/`, which
//! reach the readers of untrusted files (recordings, reports) directly.

pub mod attach;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod diff;
pub mod elf;
pub mod failure;
pub mod host;
pub mod kernel;
pub mod launch;
pub mod output;
pub mod procfs;
pub mod progress;
pub mod record;
pub mod report;
pub mod run;
pub mod session;
pub mod symbolize;
pub mod top;
pub mod track;
pub mod unwind;
