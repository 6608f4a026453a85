//! What `attach` finds open before tracing began: no stack can be known for
//! it (it was acquired before the probes were there), but during an
//! incident it is most of what there is. Each fd is described as `ss` and
//! `ls -l /proc/PID/fd` would (TCP state and peer from the process's
//! network namespace, by the socket's inode), and like ones are grouped:
//! 50 connections in CLOSE_WAIT to one peer are one line to act on.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::resource::{Kind, Resource};
use crate::track::fd::resource_of_link;

use super::Preexisting;

/// Entries kept per group: the groups count them all.
pub(crate) const MAX_PER_GROUP: usize = 32;

/// Like fds open before tracing: TCP connections by state and peer, files by
/// path, the rest by kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Group {
    pub kind: Kind,
    pub resource: Resource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub count: u64,
    /// Of `count`, those still open when tracing ended.
    pub open_at_end: u64,
}

/// A TCP connection as /proc/PID/net/tcp{,6} lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    pub state: &'static str,
    pub local: String,
    pub remote: String,
}

/// The TCP connections in `pid`'s network namespace, by socket inode.
pub(crate) fn connections(pid: u32) -> HashMap<u64, Connection> {
    let Ok(process) = procfs::process::Process::new(pid as i32) else { return HashMap::new() };
    let v4 = process.tcp().unwrap_or_default();
    let v6 = process.tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .map(|e| {
            let state = leaktrace_common::tcp::state_name(u32::from(e.state.to_u8()));
            (e.inode, Connection { state, local: e.local_address.to_string(), remote: e.remote_address.to_string() })
        })
        .collect()
}

/// The inode of a `socket:[N]` link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// One fd open before tracing, described.
pub(crate) fn describe(
    pid: u32,
    fd: u32,
    link: String,
    open_at_end: bool,
    tcp: &HashMap<u64, Connection>,
) -> Preexisting {
    let connection = socket_inode(&link).and_then(|inode| tcp.get(&inode));
    Preexisting {
        pid,
        fd,
        resource: resource_of_link(&link),
        open_at_end,
        state: connection.map(|c| c.state.to_string()),
        local: connection.map(|c| c.local.clone()),
        remote: connection.map(|c| c.remote.clone()),
        path: Some(link),
    }
}

/// The grouping of one entry: (kind, resource, state, peer, path).
type Key = (Kind, Resource, Option<String>, Option<String>, Option<String>);

fn key(p: &Preexisting) -> Key {
    if p.state.is_some() {
        return (Kind::Tcp, p.resource, p.state.clone(), p.remote.clone(), None);
    }
    // Files by path; pipes, sockets and anonymous inodes have a path per
    // object, which would make a group of each.
    let path = (p.resource == Resource::File).then(|| p.path.clone()).flatten();
    (Kind::Fd, p.resource, None, None, path)
}

/// Groups `entries`, largest first, and keeps at most [`MAX_PER_GROUP`]
/// entries of each (the first by pid and fd).
pub(crate) fn group(entries: Vec<Preexisting>) -> (Vec<Preexisting>, Vec<Group>) {
    let mut groups: HashMap<Key, (Group, Vec<Preexisting>)> = HashMap::new();
    for p in entries {
        let k = key(&p);
        let (g, kept) = groups.entry(k.clone()).or_insert_with(|| {
            let (kind, resource, state, peer, path) = k;
            (Group { kind, resource, state, peer, path, count: 0, open_at_end: 0 }, Vec::new())
        });
        g.count += 1;
        g.open_at_end += u64::from(p.open_at_end);
        if kept.len() < MAX_PER_GROUP {
            kept.push(p);
        }
    }
    let mut kept: Vec<Preexisting> = Vec::new();
    let mut out: Vec<Group> = Vec::new();
    for (g, entries) in groups.into_values() {
        kept.extend(entries);
        out.push(g);
    }
    kept.sort_by_key(|p| (p.pid, p.fd));
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.resource.name().cmp(b.resource.name()))
            .then(a.state.cmp(&b.state))
            .then(a.peer.cmp(&b.peer))
            .then(a.path.cmp(&b.path))
    });
    (kept, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> HashMap<u64, Connection> {
        (100..150)
            .map(|inode| {
                let c = Connection {
                    state: "CLOSE_WAIT",
                    local: format!("127.0.0.1:{}", 40000 + inode),
                    remote: "127.0.0.1:8080".into(),
                };
                (inode, c)
            })
            .collect()
    }

    #[test]
    fn sockets_left_in_close_wait_are_one_group_with_their_peer() {
        let tcp = tcp();
        let mut entries: Vec<Preexisting> =
            (0..50).map(|i| describe(7, 10 + i, format!("socket:[{}]", 100 + i), true, &tcp)).collect();
        entries.push(describe(7, 3, "/var/log/app.log".into(), true, &tcp));
        entries.push(describe(7, 4, "/var/log/app.log".into(), false, &tcp));
        entries.push(describe(7, 5, "pipe:[9]".into(), true, &tcp));
        entries.push(describe(7, 6, "socket:[999]".into(), true, &tcp));
        assert_eq!(entries[0].state.as_deref(), Some("CLOSE_WAIT"));
        assert_eq!(entries[0].remote.as_deref(), Some("127.0.0.1:8080"));
        let (kept, groups) = group(entries);
        assert_eq!(kept.len(), MAX_PER_GROUP + 4, "capped per group");
        let first = &groups[0];
        assert_eq!(
            (first.kind, first.state.as_deref(), first.peer.as_deref()),
            (Kind::Tcp, Some("CLOSE_WAIT"), Some("127.0.0.1:8080"))
        );
        assert_eq!((first.count, first.open_at_end), (50, 50));
        let log = groups.iter().find(|g| g.path.as_deref() == Some("/var/log/app.log")).expect("the log");
        assert_eq!((log.count, log.open_at_end), (2, 1));
        // A socket that is not a TCP connection (a unix one): by kind.
        let other = groups.iter().filter(|g| g.kind == Kind::Fd && g.resource == Resource::Socket).count();
        assert_eq!(other, 1);
        assert_eq!(groups.len(), 4);
    }
}
