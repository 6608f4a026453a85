//! What the daemon serves (`cmd/daemon.rs` runs it): the HTTP endpoints,
//! the report as Prometheus series, and who each process is (its container
//! and pod, from /proc and the Kubernetes API).

pub(crate) mod attribution;
pub(crate) mod http;
pub(crate) mod kubernetes;
pub(crate) mod metrics;
