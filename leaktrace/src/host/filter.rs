//! Which processes are traced (`--comm`, `--cgroup`, `--container`):
//! pure matching on what /proc says of a process. (`--pid` is not here: the
//! kernel follows the named processes and their children itself.)

use crate::config::FilterConfig;
use crate::procfs;

use super::container;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    comms: Vec<String>,
    cgroups: Vec<String>,
    containers: Vec<String>,
}

impl Filter {
    /// None when nothing but pids (or nothing) is filtered on.
    pub(crate) fn new(config: &FilterConfig) -> Option<Filter> {
        let cgroups: Vec<String> = config
            .cgroups
            .iter()
            .map(|c| format!("/{}", c.trim_matches('/')))
            .map(|c| if c == "/" { String::new() } else { c })
            .collect();
        let filter = Filter {
            comms: config.comms.clone(),
            cgroups,
            containers: config.containers.iter().map(|c| c.to_ascii_lowercase()).collect(),
        };
        (!filter.comms.is_empty() || !filter.cgroups.is_empty() || !filter.containers.is_empty()).then_some(filter)
    }

    /// Whether a process with this comm and `/proc/PID/cgroup` text is
    /// traced. Within a list any entry matches; all lists given must.
    pub(crate) fn admits(&self, comm: Option<&str>, proc_cgroup: Option<&str>) -> bool {
        let path = proc_cgroup.and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::"))).map(str::trim);
        let comm_ok = self.comms.is_empty() || comm.is_some_and(|c| self.comms.iter().any(|w| w == c));
        let cgroup_ok = self.cgroups.is_empty()
            || path.is_some_and(|p| {
                self.cgroups.iter().any(|w| {
                    p == w || p.strip_prefix(w.as_str()).is_some_and(|rest| rest.starts_with('/')) || w.is_empty()
                })
            });
        let container_ok = self.containers.is_empty()
            || path.and_then(container::from_path).is_some_and(|c| self.containers.iter().any(|w| c.id.starts_with(w)));
        comm_ok && cgroup_ok && container_ok
    }

    /// Whether the live process `pid` is traced; a process already gone is not.
    pub(crate) fn admits_pid(&self, pid: u32) -> bool {
        let comm = procfs::comm(pid);
        let cgroup = if self.cgroups.is_empty() && self.containers.is_empty() { None } else { procfs::cgroup(pid) };
        if comm.is_none() {
            return false;
        }
        self.admits(comm.as_deref(), cgroup.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn filter(comms: &[&str], cgroups: &[&str], containers: &[&str]) -> Filter {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Filter::new(&FilterConfig {
            pids: vec![],
            comms: strings(comms),
            cgroups: strings(cgroups),
            containers: strings(containers),
        })
        .expect("a filter")
    }

    #[test]
    fn nothing_to_filter_on_is_no_filter() {
        assert_eq!(Filter::new(&FilterConfig::default()), None);
        assert_eq!(Filter::new(&FilterConfig { pids: vec![1], ..FilterConfig::default() }), None);
    }

    #[test]
    fn comms_match_exactly() {
        let f = filter(&["nginx", "redis-server"], &[], &[]);
        assert!(f.admits(Some("nginx"), None));
        assert!(f.admits(Some("redis-server"), None));
        assert!(!f.admits(Some("nginx2"), None));
        assert!(!f.admits(None, None));
    }

    #[test]
    fn cgroups_match_themselves_and_below_not_siblings_with_a_longer_name() {
        let f = filter(&[], &["/kubepods.slice/"], &[]);
        assert!(f.admits(Some("x"), Some("0::/kubepods.slice\n")));
        assert!(f.admits(Some("x"), Some("0::/kubepods.slice/kubepods-besteffort.slice/a.scope\n")));
        assert!(!f.admits(Some("x"), Some("0::/kubepods.slice2/a\n")));
        assert!(!f.admits(Some("x"), Some("0::/system.slice\n")));
        // cgroup v1 lines say nothing of the v2 path.
        assert!(!f.admits(Some("x"), Some("4:memory:/kubepods.slice\n")));
    }

    #[test]
    fn containers_match_by_id_prefix() {
        let f = filter(&[], &[], &["0123456789AB"]);
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        assert!(f.admits(Some("x"), Some(&text)));
        assert!(!f.admits(Some("x"), Some("0::/system.slice/cron.service\n")));
    }

    #[test]
    fn every_list_given_must_match() {
        let f = filter(&["nginx"], &["/system.slice"], &[]);
        assert!(f.admits(Some("nginx"), Some("0::/system.slice/nginx.service\n")));
        assert!(!f.admits(Some("nginx"), Some("0::/user.slice\n")));
        assert!(!f.admits(Some("bash"), Some("0::/system.slice/nginx.service\n")));
    }
}
