//! Everything that ends leaktrace with an error, and the exit status each
//! gives. Messages are one line: what failed and what to do.

use thiserror::Error;

use crate::kernel::{privileges::PrivilegeError, KernelError};
use crate::launch::LaunchError;
use crate::output::OutputError;

#[derive(Debug, Error)]
pub(super) enum Failure {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
    #[error("cannot show the live view: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} exited before leaktrace could attach to it")]
    ExitedBeforeTracing { pid: u32 },
    #[error("cannot set up the event loop: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the tracer thread stopped unexpectedly")]
    TracerLost,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Kubernetes(#[from] crate::daemon::kubernetes::KubernetesError),
    #[error("cannot listen on {addr}: {source} (choose another address with --listen)")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot set up the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Recording(#[from] crate::record::schema::RecordingError),
    #[error("the HTTP server stopped: {0}")]
    Server(String),
}

impl Failure {
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            Failure::Launch(e) => e.exit_code(),
            _ => 1,
        }
    }
}
