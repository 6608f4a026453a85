//! TCP sockets of traced processes: linked to their fd when acquired, then
//! followed through their state changes until the kernel destroys them.

use aya_ebpf::{bindings::BPF_ANY, helpers::bpf_ktime_get_ns, programs::RawTracePointContext};
use leaktrace_common::{
    fd::FdKey,
    tcp::{
        TcpSock, AF_INET, AF_INET6, SOCK_STREAM, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
        TCP_LAST_ACK, TCP_TIME_WAIT,
    },
};

use crate::{
    config,
    maps::{PROCS, TCP_SOCKS},
    socket::{read, SocketInfo},
};

/// Whether a new socket is followed as a TCP connection: an inet stream
/// socket, with TCP tracing on.
#[inline(always)]
pub(crate) fn followed(socket: &SocketInfo) -> bool {
    config::tcp()
        && socket.kind == SOCK_STREAM
        && (socket.family == AF_INET || socket.family == AF_INET6)
        && socket.sk != 0
}

/// After a socket or accept in a traced process: remember the followed
/// socket `sk` under this acquisition.
#[inline(always)]
pub(crate) fn link(key: &FdKey, acquired_ns: u64, sk: u64, family: u16) -> Result<(), ()> {
    let state: u8 = read(sk + config::kernel_offsets().skc_state as u64)?;
    let mut conn = TcpSock {
        tgid: key.tgid,
        fd: key.fd,
        gen: key.gen,
        acquired_ns,
        state_ns: acquired_ns,
        state: state as u32,
        family,
        sport: 0,
        dport: 0,
        _pad: 0,
        _pad2: 0,
        saddr: [0; 16],
        daddr: [0; 16],
    };
    read_endpoints(sk, &mut conn)?;
    TCP_SOCKS.insert(sk, conn, BPF_ANY as u64).map_err(|_| ())?;
    // A state change on another CPU (a peer's FIN, in softirq) between the
    // read above and the insert found no entry to update: read it again now
    // that changes from here on land in the entry.
    let now: u8 = read(sk + config::kernel_offsets().skc_state as u64)?;
    if u32::from(now) != conn.state {
        if let Some(entry) = TCP_SOCKS.get_ptr_mut(sk) {
            unsafe {
                (*entry).state = now.into();
                (*entry).state_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
            }
        }
    }
    Ok(())
}

/// The socket's addresses and ports as they are now, into `conn`.
#[inline(always)]
fn read_endpoints(sk: u64, conn: &mut TcpSock) -> Result<(), ()> {
    let o = config::kernel_offsets();
    // Both in network order. inet_sport, not skc_num: the kernel clears
    // skc_num when it releases the port (a refused connect), not inet_sport.
    let dport: u16 = read(sk + o.skc_dport as u64)?;
    let sport: u16 = read(sk + o.inet_sport as u64)?;
    conn.dport = u16::from_be(dport);
    conn.sport = u16::from_be(sport);
    if conn.family == AF_INET {
        let s: [u8; 4] = read(sk + o.skc_rcv_saddr as u64)?;
        let d: [u8; 4] = read(sk + o.skc_daddr as u64)?;
        conn.saddr[..4].copy_from_slice(&s);
        conn.daddr[..4].copy_from_slice(&d);
    } else {
        conn.saddr = read(sk + o.skc_v6_rcv_saddr as u64)?;
        conn.daddr = read(sk + o.skc_v6_daddr as u64)?;
    }
    Ok(())
}

/// `sock:inet_sock_set_state(sk, oldstate, newstate)`, for every TCP state
/// change on the host (mostly in softirq context, so the filter is the
/// socket, not the pid). Called before the socket's state field changes.
pub(crate) fn try_set_state(ctx: &RawTracePointContext) -> Result<(), ()> {
    let sk: u64 = ctx.arg(0);
    let Some(conn) = TCP_SOCKS.get_ptr_mut(sk) else {
        return Ok(());
    };
    // Once its process is gone, a socket keeps the state the process left it
    // in: the exit itself closes the fds, which moves their states on.
    if !owner_alive(unsafe { &*conn }) {
        return Ok(());
    }
    let newstate: i32 = ctx.arg(2);
    // SAFETY: a map value, valid for this program's run; updated in place
    // (the verifier rejects copies of it onto the stack and back).
    let conn = unsafe { &mut *conn };
    conn.state = newstate as u32;
    conn.state_ns = unsafe { bpf_ktime_get_ns() };
    // Endpoints are set by bind, listen and connect (whose source port is
    // picked after the move to SYN_SENT); the closing states keep them.
    match newstate as u32 {
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING | TCP_TIME_WAIT => Ok(()),
        _ => read_endpoints(sk, conn),
    }
}

#[inline(always)]
fn owner_alive(conn: &TcpSock) -> bool {
    matches!(unsafe { PROCS.get(conn.tgid) }, Some(p) if p.gen == conn.gen)
}

/// The fd that held `sk` was released.
#[inline(always)]
pub(crate) fn forget(sk: u64) {
    let _ = TCP_SOCKS.remove(sk);
}

/// `tcp:tcp_destroy_sock(sk)`: the socket is freed, its fd closed. A socket
/// whose process exited holding it stays, frozen, until userspace has taken
/// it into the report (and deletes it).
pub(crate) fn destroy(ctx: &RawTracePointContext) {
    let sk: u64 = ctx.arg(0);
    match unsafe { TCP_SOCKS.get(sk) } {
        Some(conn) if !owner_alive(conn) => {}
        Some(_) => {
            let _ = TCP_SOCKS.remove(sk);
        }
        None => {}
    }
}
