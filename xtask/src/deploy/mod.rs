//! Checks of the deployment files under `deploy/`, run by `cargo xtask
//! test`: the Kubernetes manifests against the API schemas, the Prometheus
//! alert rules with promtool's own unit tests.

mod kubernetes;
mod prometheus;

use std::path::Path;

use anyhow::Result;

pub(crate) fn check(root: &Path) -> Result<()> {
    kubernetes::check(root)?;
    prometheus::check(root)
}
