//! Pod names and namespaces by pod uid, from the Kubernetes API: the pods
//! of this node (`GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`),
//! listed again every `refresh` and soon after a process of a pod not yet
//! known appears. The cgroup path gives the uid (see `container`); only the
//! API knows the name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use thiserror::Error;
use tokio::sync::Notify;

use crate::config::{KubernetesConfig, KubernetesMode};

/// A pod list is asked for again at most this often when unknown pods
/// appear, so a crash-looping pod cannot hammer the API server.
const MIN_RELIST: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodName {
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Error)]
pub(crate) enum KubernetesError {
    #[error(
        "cannot configure a Kubernetes client: {0} (in a pod this needs the service account token; \
         elsewhere KUBECONFIG; set [kubernetes] mode = \"off\" to go without pod names)"
    )]
    Config(#[source] kube::Error),
}

/// The node's pods, shared between the lister and the daemon's loop.
#[derive(Default)]
pub(crate) struct Pods {
    names: RwLock<HashMap<String, PodName>>,
    errors: AtomicU64,
    wake: Notify,
}

impl Pods {
    /// The name of the pod with this uid; an unknown uid asks for a new list.
    pub(crate) fn name(&self, uid: &str) -> Option<PodName> {
        let found = self.names.read().ok()?.get(uid).cloned();
        if found.is_none() {
            self.wake.notify_one();
        }
        found
    }

    /// Pod lists that failed.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The names of `pods` by uid.
pub(crate) fn index<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> HashMap<String, PodName> {
    pods.into_iter()
        .filter_map(|p| {
            let m = &p.metadata;
            Some((
                m.uid.clone()?,
                PodName { name: m.name.clone()?, namespace: m.namespace.clone().unwrap_or_else(|| "default".into()) },
            ))
        })
        .collect()
}

/// Whether to read pod names, by the config and the environment.
pub(crate) fn wanted(config: &KubernetesConfig) -> bool {
    match config.mode {
        KubernetesMode::On => true,
        KubernetesMode::Off => false,
        KubernetesMode::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    }
}

/// This node's name: the config's, else `$NODE_NAME` (the downward API),
/// else the host name.
pub(crate) fn node_name(config: &KubernetesConfig) -> String {
    if !config.node_name.is_empty() {
        return config.node_name.clone();
    }
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default())
}

/// A client from the in-cluster config, else the kubeconfig.
pub(crate) async fn client() -> Result<kube::Client, KubernetesError> {
    kube::Client::try_default().await.map_err(KubernetesError::Config)
}

/// Lists the node's pods until the daemon ends.
pub(crate) async fn follow(client: kube::Client, node: String, refresh: Duration, pods: Arc<Pods>) {
    let api: Api<Pod> = Api::all(client);
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let mut last_error = String::new();
    loop {
        match api.list(&params).await {
            Ok(list) => {
                let names = index(&list.items);
                if let Ok(mut current) = pods.names.write() {
                    *current = names;
                }
                last_error.clear();
            }
            Err(e) => {
                pods.errors.fetch_add(1, Ordering::Relaxed);
                // Said once until it changes, not at every retry.
                let text = e.to_string();
                if text != last_error {
                    eprintln!("leaktrace: cannot list the pods of node {node}: {text}");
                    last_error = text;
                }
            }
        }
        tokio::time::sleep(MIN_RELIST).await;
        let _ = tokio::time::timeout(refresh.saturating_sub(MIN_RELIST), pods.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod list in the shape the API server answers
    /// `GET /api/v1/pods?fieldSelector=spec.nodeName=worker-1` with (fields
    /// leaktrace does not read trimmed); the integration test serves it too.
    const RECORDED: &str = include_str!("../../../tests/fixtures/kubernetes/pods.json");

    #[test]
    fn pods_are_named_by_uid() {
        let list: kube::core::ObjectList<Pod> = serde_json::from_str(RECORDED).expect("a pod list");
        let names = index(&list.items);
        assert_eq!(names.len(), 3);
        assert_eq!(
            names.get("8c2d0e3a-5f1b-4c7e-9a2d-0b1c2d3e4f5a"),
            Some(&PodName { name: "checkout-7d9f8b6c5-x2k4q".into(), namespace: "shop".into() })
        );
        assert_eq!(names.get("00000000-0000-0000-0000-000000000000"), None);
    }

    #[test]
    fn unknown_uids_ask_for_a_new_list() {
        let pods = Pods::default();
        assert_eq!(pods.name("8c2d0e3a-5f1b-4c7e-9a2d-0b1c2d3e4f5a"), None);
        // The lister would wake now: the permit is stored.
        let woken =
            tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime").block_on(async {
                tokio::time::timeout(Duration::from_millis(10), pods.wake.notified()).await.is_ok()
            });
        assert!(woken);
    }
}
