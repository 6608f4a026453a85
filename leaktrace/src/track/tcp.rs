//! TCP connections as userspace sees them: the kernel's per-socket record
//! decoded into addresses and a state, matched to the outstanding fd it was
//! acquired as.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use leaktrace_common::tcp::{state_name, TcpSock, AF_INET6};

/// Identifies one acquisition: the join key between outstanding fds and TCP
/// sockets (an fd number alone may have been reused).
pub type AcquisitionKey = (u32, u64, u32, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// When the connection entered `state` (CLOCK_MONOTONIC ns).
    pub state_ns: u64,
}

impl TcpInfo {
    pub fn state_name(&self) -> &'static str {
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

/// Indexes the kernel's TCP sockets by the acquisition they belong to.
pub fn index(socks: &[(u64, TcpSock)]) -> HashMap<AcquisitionKey, TcpInfo> {
    socks.iter().map(|(_, s)| ((s.tgid, s.gen, s.fd, s.acquired_ns), TcpInfo::from(s))).collect()
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
        let index = index(&[(0xffff_8880_0000_1000, s)]);
        assert!(index.contains_key(&(10, 7, 5, 100)));
        assert!(!index.contains_key(&(10, 7, 5, 99)), "same fd number, other acquisition");
        assert_eq!(index[&(10, 7, 5, 100)].remote.to_string(), "0.0.0.0:0", "a socket that never connected");
    }
}
