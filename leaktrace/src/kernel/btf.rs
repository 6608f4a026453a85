//! Offsets of kernel struct members, from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux): the TCP tracker follows pointers from an fd to
//! its `struct sock`, and those layouts change between kernel versions and
//! configurations, so they cannot be compiled in.

use btf::btf::{Btf, Type};
use leaktrace_common::config::KernelOffsets;
use thiserror::Error;

pub(crate) const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub(crate) enum BtfError {
    #[error(
        "cannot read kernel BTF at {VMLINUX} ({detail}); it is needed to link TCP connections \
         to their fds (CONFIG_DEBUG_INFO_BTF); use --kinds fd to trace without TCP states"
    )]
    Unreadable { detail: String },
    #[error("kernel BTF has no {member} in struct {structure}; use --kinds fd to trace without TCP states")]
    Missing { structure: &'static str, member: &'static str },
}

/// Byte offset of `member` in struct `structure`, looking inside anonymous
/// unions and structs (`sock_common` keeps its addresses in those).
fn member_offset(btf: &Btf, structure: &'static str, member: &'static str) -> Result<u32, BtfError> {
    let missing = || BtfError::Missing { structure, member };
    let ty = btf.get_type_by_name(structure).map_err(|_| missing())?;
    find(btf, &ty.base_type, member, 0).map(|bits| bits / 8).ok_or_else(missing)
}

fn find(btf: &Btf, ty: &Type, member: &str, base_bits: u32) -> Option<u32> {
    let (Type::Struct(s) | Type::Union(s)) = ty else { return None };
    for m in &s.members {
        // Anonymous unions and structs have no name, or an empty one.
        match m.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) if name == member => return Some(base_bits + m.offset),
            None => {
                let inner = btf.get_type_by_id(m.type_id).ok()?;
                if let Some(found) = find(btf, &inner.base_type, member, base_bits + m.offset) {
                    return Some(found);
                }
            }
            Some(_) => {}
        }
    }
    None
}

fn open() -> Result<Btf, BtfError> {
    Btf::from_file(VMLINUX).map_err(|e| BtfError::Unreadable { detail: format!("{e:?}") })
}

/// Every offset the programs read; an error when a TCP one is missing.
pub(crate) fn kernel_offsets() -> Result<KernelOffsets, BtfError> {
    let btf = open()?;
    let (task_signal, signal_live) = exit_offsets(&btf).unwrap_or((0, 0));
    let o = |s, m| member_offset(&btf, s, m);
    Ok(KernelOffsets {
        task_files: o("task_struct", "files")?,
        files_fdt: o("files_struct", "fdt")?,
        fdtable_fd: o("fdtable", "fd")?,
        file_private_data: o("file", "private_data")?,
        socket_type: o("socket", "type")?,
        socket_sk: o("socket", "sk")?,
        // A socket's sock starts with its sock_common (struct sock, __sk_common).
        skc_family: o("sock_common", "skc_family")?,
        skc_state: o("sock_common", "skc_state")?,
        skc_daddr: o("sock_common", "skc_daddr")?,
        skc_rcv_saddr: o("sock_common", "skc_rcv_saddr")?,
        skc_dport: o("sock_common", "skc_dport")?,
        inet_sport: o("inet_sock", "inet_sport")?,
        skc_v6_daddr: o("sock_common", "skc_v6_daddr")?,
        skc_v6_rcv_saddr: o("sock_common", "skc_v6_rcv_saddr")?,
        task_signal,
        signal_live,
    })
}

/// Only the offsets that tell a process's last thread on its exit, for
/// when the TCP ones are missing and fds are traced without them (zeros
/// when there is no BTF: the leader's exit then stands for the process's).
pub(crate) fn exit_only() -> KernelOffsets {
    let Ok((task_signal, signal_live)) = open().and_then(|btf| exit_offsets(&btf)) else {
        return KernelOffsets::default();
    };
    KernelOffsets { task_signal, signal_live, ..KernelOffsets::default() }
}

/// `task_struct.signal` and `signal_struct.live`.
fn exit_offsets(btf: &Btf) -> Result<(u32, u32), BtfError> {
    Ok((member_offset(btf, "task_struct", "signal")?, member_offset(btf, "signal_struct", "live")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_every_offset() {
        let o = kernel_offsets().expect("offsets");
        // Layouts that have not changed in years.
        assert_eq!(o.skc_daddr, 0);
        assert_eq!(o.skc_rcv_saddr, 4);
        assert_eq!(o.skc_dport, 12);
        assert!(o.inet_sport > o.skc_v6_rcv_saddr, "inet_sock extends sock");
        assert_eq!(o.fdtable_fd, 8);
        assert!(o.task_files > 100);
        assert!(o.skc_v6_daddr > o.skc_state);
        // signal_struct begins with its refcount, then the live threads.
        assert_eq!(o.signal_live, 4);
        assert!(o.task_signal > 100);
        assert_eq!(exit_only().task_signal, o.task_signal);
    }

    #[test]
    fn sock_is_led_by_its_sock_common() {
        let btf = Btf::from_file(VMLINUX).expect("btf");
        assert_eq!(member_offset(&btf, "sock", "__sk_common").expect("member"), 0);
        assert!(matches!(member_offset(&btf, "sock", "no_such_member"), Err(BtfError::Missing { .. })));
    }
}
