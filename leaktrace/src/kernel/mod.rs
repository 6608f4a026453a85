//! The thin layer that touches the kernel: loading and attaching the eBPF
//! programs, and reading and trimming their maps behind the [`Seam`] a
//! session uses. Everything that decides what the map contents mean lives
//! in `session` and `track`.

mod batch;
pub(crate) mod btf;
mod load;
mod mmap;
pub(crate) mod privileges;
mod seam;
pub(crate) mod tracefs;

pub(crate) use load::{Kernel, LoadOptions};
pub(crate) use seam::{Capacities, Counters, Seam};

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum KernelError {
    #[error("this leaktrace binary was built without its eBPF object; build it with `cargo xtask build`")]
    NoEbpfObject,
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("needs Linux {since} or newer: this kernel ({release}) has no {missing}, and no option avoids it")]
    TooOld { release: String, missing: &'static str, since: &'static str },
    #[error("cannot load the eBPF programs: {source}")]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("cannot load eBPF program {program}: {detail}")]
    Program { program: &'static str, detail: String },
    #[error("cannot attach to tracepoint {tracepoint}: {detail}")]
    Attach { tracepoint: String, detail: String },
    #[error("eBPF map {name}: {detail}")]
    Map { name: &'static str, detail: String },
    #[error("cannot read eBPF map {name}: {source}")]
    MapIo {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}
