//! What socket an fd of the current process refers to, read from the kernel
//! with offsets from its BTF: current->files->fdt->fd[fd]->private_data (a
//! `struct socket`), its type, and its `struct sock` with the family.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use crate::config;

pub(crate) struct SocketInfo {
    /// The `struct sock`, the key of the kernel's TCP tracepoints.
    pub sk: u64,
    pub family: u16,
    pub kind: u16,
}

#[inline(always)]
pub(crate) fn read<T>(addr: u64) -> Result<T, ()> {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|_| ())
}

/// `Ok(None)` when the kernel's offsets are not known (no BTF).
#[inline(always)]
pub(crate) fn of_fd(fd: u32) -> Result<Option<SocketInfo>, ()> {
    let o = config::kernel_offsets();
    if o.task_files == 0 {
        return Ok(None);
    }
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task + o.task_files as u64)?;
    let fdt: u64 = read(files + o.files_fdt as u64)?;
    let fds: u64 = read(fdt + o.fdtable_fd as u64)?;
    let file: u64 = read(fds + fd as u64 * 8)?;
    let socket: u64 = read(file + o.file_private_data as u64)?;
    let kind: u16 = read(socket + o.socket_type as u64)?;
    let sk: u64 = read(socket + o.socket_sk as u64)?;
    if sk == 0 {
        return Ok(Some(SocketInfo { sk, family: 0, kind }));
    }
    let family: u16 = read(sk + o.skc_family as u64)?;
    Ok(Some(SocketInfo { sk, family, kind }))
}
