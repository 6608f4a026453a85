//! TCP sockets: the record the programs keep per traced TCP socket, keyed by
//! the kernel's `struct sock` address, and TCP state numbers.

/// Value of the TCP socket map. `tgid`, `gen`, `fd` and `acquired_ns` name
/// the outstanding-fd entry the socket was acquired as (the same
/// acquisition), so userspace can join the two exactly even after the fd
/// number was reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSock {
    pub tgid: u32,
    pub fd: u32,
    pub gen: u64,
    pub acquired_ns: u64,
    /// When the socket entered `state` (CLOCK_MONOTONIC ns).
    pub state_ns: u64,
    /// One of the `TCP_*` states (include/net/tcp_states.h).
    pub state: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Local and remote ports, host byte order.
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    pub _pad2: u32,
    /// Local and remote addresses, network byte order; IPv4 in the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<TcpSock>() == 80);

crate::user_pod!(TcpSock);

pub use crate::socket::{AF_INET, AF_INET6, SOCK_STREAM};

pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_TIME_WAIT: u32 = 6;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_CLOSING: u32 = 11;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub const STATE_NAMES: [&str; 13] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

pub fn state_name(state: u32) -> &'static str {
    STATE_NAMES.get(state as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_states_match_their_numbers() {
        for (n, name) in [
            (TCP_FIN_WAIT1, "FIN_WAIT1"),
            (TCP_FIN_WAIT2, "FIN_WAIT2"),
            (TCP_TIME_WAIT, "TIME_WAIT"),
            (TCP_CLOSE_WAIT, "CLOSE_WAIT"),
            (TCP_LAST_ACK, "LAST_ACK"),
            (TCP_CLOSING, "CLOSING"),
        ] {
            assert_eq!(state_name(n), name);
        }
        assert_eq!(state_name(99), "UNKNOWN");
    }
}
