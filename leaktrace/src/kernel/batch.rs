//! Whole-map reads and multi-key deletes with BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_DELETE_BATCH (Linux 5.6+).
//!
//! aya 0.14 only iterates maps key by key (two syscalls per entry: seconds for
//! a million entries); the batch commands copy thousands of entries per call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialized bpf_attr prefix of the size passed;
    // the buffers it points to outlive the call and are large enough for `count`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr as *mut libc::c_void,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An all-zero value: valid for every `Pod` type (integers only).
fn zeroed<T: Pod>() -> T {
    // SAFETY: Pod types are plain integers and arrays of them.
    unsafe { std::mem::zeroed() }
}

/// Reads every entry of a hash map.
pub(super) fn lookup_all<K: Pod, V: Pod>(map: BorrowedFd<'_>, capacity: usize) -> io::Result<Vec<(K, V)>> {
    let mut chunk = 4096usize.min(capacity.max(1));
    // Chunk-sized buffers, copied out after each call: the result is the
    // only full-size allocation (a million entries are 56 MB).
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    let mut out: Vec<(K, V)> = Vec::new();
    // Hash-map batch tokens are bucket indices; a u64 slot fits any map type.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    loop {
        keys.resize(chunk, zeroed());
        values.resize(chunk, zeroed());
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &mut token_in as *mut u64 as u64 },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(chunk);
        out.extend(keys[..got].iter().copied().zip(values[..got].iter().copied()));
        match result {
            Ok(()) => {}
            // ENOENT: the walk is over (with the last entries already copied).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            // ENOSPC: one bucket holds more entries than `chunk`.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                chunk *= 2;
                continue;
            }
            Err(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
    Ok(out)
}

pub(super) fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        let done = attr.count as usize;
        deleted += done;
        match result {
            Ok(()) => break,
            // The key at `done` is gone already (released meanwhile): skip it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[(done + 1).min(rest.len())..],
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
