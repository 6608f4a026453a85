//! TCP connections as userspace sees them: the kernel's per-socket record
//! decoded into addresses and a state, matched to the outstanding fd it was
//! acquired as.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use leaktrace_common::fd::{FdEntry, FdKey};
use leaktrace_common::tcp::{state_name, TcpSock, AF_INET6};

/// Identifies one acquisition: the join key between outstanding fds and TCP
/// sockets (an fd number alone may have been reused).
type AcquisitionKey = (u32, u64, u32, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpInfo {
    pub state: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// When the connection entered `state` (CLOCK_MONOTONIC ns).
    pub state_ns: u64,
}

impl TcpInfo {
    pub(crate) fn state_name(&self) -> &'static str {
        state_name(self.state)
    }
}

fn address(family: u16, bytes: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    };
    SocketAddr::new(ip, port)
}

impl From<&TcpSock> for TcpInfo {
    fn from(s: &TcpSock) -> Self {
        TcpInfo {
            state: s.state,
            local: address(s.family, &s.saddr, s.sport),
            remote: address(s.family, &s.daddr, s.dport),
            state_ns: s.state_ns,
        }
    }
}

/// The kernel's TCP sockets by the acquisition they belong to.
#[derive(Debug, Default)]
pub(crate) struct TcpIndex(HashMap<AcquisitionKey, TcpInfo>);

impl TcpIndex {
    pub(crate) fn new(socks: &[(u64, TcpSock)]) -> TcpIndex {
        TcpIndex(socks.iter().map(|(_, s)| ((s.tgid, s.gen, s.fd, s.acquired_ns), TcpInfo::from(s))).collect())
    }

    /// The connection the outstanding fd `key` acquired as `entry` is, if it
    /// is one.
    pub(crate) fn get(&self, key: &FdKey, entry: &FdEntry) -> Option<TcpInfo> {
        self.0.get(&(key.tgid, key.gen, key.fd, entry.acquired_ns)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::tcp::AF_INET;

    fn sock(family: u16, saddr: [u8; 16], daddr: [u8; 16]) -> TcpSock {
        TcpSock {
            tgid: 10,
            fd: 5,
            gen: 7,
            acquired_ns: 100,
            state_ns: 200,
            state: 8,
            family,
            sport: 41000,
            dport: 8080,
            _pad: 0,
            _pad2: 0,
            saddr,
            daddr,
        }
    }

    #[test]
    fn addresses_print_like_the_contract() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        let info = TcpInfo::from(&sock(AF_INET, v4, v4));
        assert_eq!(info.local.to_string(), "127.0.0.1:41000");
        assert_eq!(info.remote.to_string(), "127.0.0.1:8080");
        assert_eq!(info.state_name(), "CLOSE_WAIT");
        let v6 = Ipv6Addr::LOCALHOST.octets();
        let info = TcpInfo::from(&sock(AF_INET6, v6, v6));
        assert_eq!(info.remote.to_string(), "[::1]:8080");
    }

    #[test]
    fn sockets_join_their_exact_acquisition() {
        let mut s = sock(AF_INET, [0; 16], [0; 16]);
        s.dport = 0;
        let index = TcpIndex::new(&[(0xffff_8880_0000_1000, s)]);
        let key = FdKey { tgid: 10, fd: 5, gen: 7 };
        let entry = |acquired_ns| FdEntry {
            acquired_ns,
            stack_id: 0,
            tid: 10,
            exec_seq: 0,
            syscall: 0,
            resource: 2,
            flags: 0,
            sock_family: AF_INET,
            sock_type: 1,
            sk: 0xffff_8880_0000_1000,
        };
        assert!(index.get(&key, &entry(100)).is_some());
        assert!(index.get(&key, &entry(99)).is_none(), "same fd number, other acquisition");
        let remote = index.get(&key, &entry(100)).map(|t| t.remote.to_string());
        assert_eq!(remote.as_deref(), Some("0.0.0.0:0"), "a socket that never connected");
    }
}
