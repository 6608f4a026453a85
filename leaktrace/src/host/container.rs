//! Which container and Kubernetes pod a process runs in, from its cgroup v2
//! path (`/proc/PID/cgroup`, the `0::` line). Pure parsing: the layouts of
//! the container runtimes and of the kubelet's two cgroup drivers.
//!
//! - kubelet, systemd driver: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid with _>.slice/<runtime>-<id>.scope`
//!   (Guaranteed pods have no QoS level: `kubepods-pod<uid>.slice`);
//! - kubelet, cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`;
//! - runtimes: containerd `cri-containerd-<id>.scope`, CRI-O `crio-<id>.scope`
//!   (its monitor `crio-conmon-<id>.scope` is not the container), Docker
//!   `docker-<id>.scope` or `/docker/<id>`.
//!
//! Pod names and namespaces are not in the path; they come from the
//! Kubernetes API, by pod uid.

/// A container, as far as its cgroup path says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Container {
    /// `containerd`, `cri-o`, `docker`, or `unknown` (a pod's cgroup with a
    /// bare id, as the cgroupfs driver names it).
    pub runtime: &'static str,
    /// The container id (64 hex digits).
    pub id: String,
    /// The pod's uid (dashes restored), when the container is in a pod.
    pub pod_uid: Option<String>,
}

/// The container of a process whose `/proc/PID/cgroup` reads `cgroup`;
/// None for processes outside containers.
pub(crate) fn from_proc_cgroup(cgroup: &str) -> Option<Container> {
    // cgroup v2: a single "0::<path>" line (v1 lines are ignored).
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    from_path(path.trim())
}

/// The container whose cgroup is (or contains) `path`.
pub(crate) fn from_path(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod_uid = parts.iter().find_map(|p| pod_uid(p));
    // The innermost component that names a container: a process may sit in
    // a sub-cgroup of its container's (systemd in a container, for one).
    parts.iter().rev().find_map(|p| container(p, pod_uid.is_some())).map(|(runtime, id)| Container {
        runtime,
        id,
        pod_uid: pod_uid.clone(),
    })
}

fn container(part: &str, in_pod: bool) -> Option<(&'static str, String)> {
    let (runtime, rest) = if let Some(rest) = part.strip_prefix("cri-containerd-") {
        ("containerd", rest)
    } else if let Some(rest) = part.strip_prefix("crio-") {
        if rest.starts_with("conmon-") {
            return None;
        }
        ("cri-o", rest)
    } else if let Some(rest) = part.strip_prefix("docker-") {
        ("docker", rest)
    } else if is_id(part) {
        // cgroupfs layouts name the container by its id alone.
        (if in_pod { "unknown" } else { "docker" }, part)
    } else {
        return None;
    };
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_id(id).then(|| (runtime, id.to_string()))
}

/// A pod's uid from `kubepods-<qos>-pod<uid>.slice` (underscores for the
/// uid's dashes) or `pod<uid>`.
fn pod_uid(part: &str) -> Option<String> {
    let uid = if let Some(slice) = part.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        uid.replace('_', "-")
    } else {
        part.strip_prefix("pod")?.to_string()
    };
    is_uid(&uid).then_some(uid)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A UUID: 8-4-4-4-12 hex digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8c2d0e3a-5f1b-4c7e-9a2d-0b1c2d3e4f5a";

    fn uid_underscored() -> String {
        UID.replace('-', "_")
    }

    #[test]
    fn containerd_under_the_systemd_driver() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid_underscored()
        );
        let c = from_path(&path).expect("a container");
        assert_eq!(c, Container { runtime: "containerd", id: ID.into(), pod_uid: Some(UID.into()) });
    }

    #[test]
    fn guaranteed_pods_have_no_qos_level() {
        let path = format!("/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope", uid_underscored());
        assert_eq!(from_path(&path).and_then(|c| c.pod_uid), Some(UID.to_string()));
    }

    #[test]
    fn cri_o_and_its_monitor() {
        let pod =
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice", uid_underscored());
        let c = from_path(&format!("{pod}/crio-{ID}.scope")).expect("a container");
        assert_eq!((c.runtime, c.id.as_str(), c.pod_uid.as_deref()), ("cri-o", ID, Some(UID)));
        assert_eq!(from_path(&format!("{pod}/crio-conmon-{ID}.scope")), None);
    }

    #[test]
    fn the_cgroupfs_driver() {
        let c = from_path(&format!("/kubepods/burstable/pod{UID}/{ID}")).expect("a container");
        assert_eq!((c.runtime, c.pod_uid.as_deref()), ("unknown", Some(UID)));
        assert_eq!(c.id, ID);
    }

    #[test]
    fn docker_outside_kubernetes() {
        for path in [format!("/system.slice/docker-{ID}.scope"), format!("/docker/{ID}")] {
            let c = from_path(&path).expect("a container");
            assert_eq!((c.runtime, c.id.as_str(), c.pod_uid), ("docker", ID, None), "{path}");
        }
    }

    #[test]
    fn a_sub_cgroup_of_a_container_is_still_the_container() {
        let path = format!("/system.slice/docker-{ID}.scope/init.scope");
        assert_eq!(from_path(&path).map(|c| c.id), Some(ID.to_string()));
    }

    #[test]
    fn processes_outside_containers() {
        for path in ["/", "/user.slice/user-0.slice/session-3.scope", "/system.slice/nginx.service", "/init.scope"] {
            assert_eq!(from_path(path), None, "{path}");
        }
        // Lookalikes: short ids, a pod slice with a malformed uid.
        assert_eq!(from_path("/system.slice/docker-abc.scope"), None);
        assert_eq!(from_path("/kubepods.slice/kubepods-podnot_a_uid.slice/x.scope"), None);
    }

    #[test]
    fn reads_the_v2_line_of_proc_cgroup() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(from_proc_cgroup(&text).map(|c| c.runtime), Some("docker"));
        // A hybrid hierarchy lists v1 controllers first.
        let hybrid = format!("12:memory:/docker/{ID}\n0::/docker/{ID}\n");
        assert_eq!(from_proc_cgroup(&hybrid).map(|c| c.id), Some(ID.to_string()));
        assert_eq!(from_proc_cgroup("1:name=systemd:/init.scope\n"), None);
    }
}
