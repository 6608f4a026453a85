//! Loading, attaching and owning the eBPF programs and their maps.
//!
//! Programs are attached through file-descriptor-based links that nothing
//! pins: when leaktrace exits, however it exits, the kernel detaches them.

use std::os::fd::AsFd;

use aya::maps::{HashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use leaktrace_common::{
    config::globals,
    counters,
    fd::{FdEntry, FdKey},
    process::ProcState,
    stack::StackTrace,
    tcp::TcpSock,
    unwind::ProcMappings,
};

use super::{
    batch,
    mmap::{PidBitmap, RowsArray},
    tracefs, Capacities, KernelError, Seam,
};
use crate::unwind::RowSink;

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leaktrace-ebpf.o"));

/// Sizes and modes chosen by the user.
#[derive(Clone, Debug)]
pub(crate) struct LoadOptions {
    /// Capacity of the outstanding-fd map.
    pub max_entries: u32,
    /// Capacity of the stack map (distinct stacks).
    pub max_stacks: u32,
    /// Capacity of the process map (traced processes and their threads).
    pub max_procs: u32,
    /// Trace every process on the host instead of the pid bitmap.
    pub trace_all: bool,
    /// Make threads that map new code stop for the ptrace tracer (`run`).
    pub stop_on_code_map: bool,
    /// Capacity of the unwinding rows array (all modules' CFI rows).
    pub max_unwind_rows: u32,
    /// Link TCP sockets to their fds and follow their states.
    pub tcp: bool,
    /// Send memory mapping operations as events.
    pub mmap: bool,
    /// Record one fd acquisition in this many (1: every one).
    pub sample: u32,
}

/// The event ring buffer: process events only, or also every mapping
/// operation (about 64 bytes each, read by userspace every
/// `run::EVENT_LATENCY` or when a quarter full).
const EVENTS_BYTES: u32 = 256 * 1024;
const EVENTS_BYTES_MMAP: u32 = 8 * 1024 * 1024;

pub(crate) struct Kernel {
    /// Owns the programs and their links; dropping it detaches everything.
    _ebpf: Ebpf,
    outstanding: Map,
    stacks: Map,
    procs: Map,
    counters: Map,
    proc_unwind: Map,
    tcp_socks: Map,
    events: RingBuf<MapData>,
    pids: PidBitmap,
    rows: RowsArray,
    /// The array maps behind `pids` and `rows` (their mappings also keep
    /// them alive; holding them says so).
    _mapped: [Map; 3],
    options: LoadOptions,
}

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> KernelError {
    move |e| KernelError::Map { name, detail: e.to_string() }
}

/// The largest pid the kernel hands out, which sizes the pid bitmap.
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(4_194_304)
}

impl Kernel {
    pub(crate) fn load(options: &LoadOptions) -> Result<Kernel, KernelError> {
        if EBPF_OBJECT.is_empty() {
            return Err(KernelError::NoEbpfObject);
        }
        check_kernel()?;
        let tracefs = tracefs::ensure_mounted()?;
        let offsets = tracefs::read_offsets(&tracefs, options.tcp)?;
        // TCP tracking needs the kernel's layout; without it, fd sockets are
        // reported without their family and type (offsets of zero say so).
        let kernel_offsets = match super::btf::kernel_offsets() {
            Ok(offsets) => offsets,
            Err(e) if options.tcp => return Err(e.into()),
            Err(e) => {
                eprintln!("leaktrace: note: socket families and types will not be shown: {e}");
                super::btf::exit_only()
            }
        };
        // Kernels since 5.11 charge BPF memory to the cgroup; raising the
        // memlock limit only matters before that, and may be refused.
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: setrlimit reads a valid struct; failure is harmless.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };

        let pid_words = pid_max().div_ceil(64);
        let trace_all = u32::from(options.trace_all);
        let stop = u32::from(options.stop_on_code_map);
        let tcp = u32::from(options.tcp);
        let mmap = u32::from(options.mmap);
        let sample = options.sample;
        let tracer = std::process::id();
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::TRACE_ALL, &trace_all, true)
            .override_global(globals::STOP_ON_CODE_MAP, &stop, true)
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::TCP, &tcp, true)
            .override_global(globals::MMAP, &mmap, true)
            .override_global(globals::SAMPLE, &sample, true)
            .override_global(globals::TRACER_TGID, &tracer, true)
            .override_global(globals::KERNEL_OFFSETS, &kernel_offsets, true)
            .map_max_entries("OUTSTANDING", options.max_entries)
            .map_max_entries("STACKS", options.max_stacks)
            .map_max_entries("PROCS", options.max_procs)
            .map_max_entries("TRACED_PIDS", pid_words)
            .map_max_entries("UNWIND_ROWS", options.max_unwind_rows)
            .map_max_entries("UNWIND_BUCKETS", options.max_unwind_rows)
            // Every traced TCP socket is also an outstanding fd.
            .map_max_entries("TCP_SOCKS", options.max_entries)
            .map_max_entries("EVENTS", if options.mmap { EVENTS_BYTES_MMAP } else { EVENTS_BYTES })
            .load(EBPF_OBJECT)
            .map_err(|source| KernelError::Load { source })?;

        for (name, category) in
            [("sched_process_fork", "sched"), ("sched_process_exec", "sched"), ("sched_process_exit", "sched")]
        {
            attach_tracepoint(&mut ebpf, name, category)?;
        }
        if options.tcp {
            // Raw: they fire for every TCP socket on the host, and a raw
            // tracepoint does not build a record the program mostly ignores.
            attach_raw_tracepoint(&mut ebpf, "inet_sock_set_state", "sock")?;
            attach_raw_tracepoint(&mut ebpf, "tcp_destroy_sock", "tcp")?;
        }
        // Releases by close and close_range are applied at entry.
        attach_raw_tracepoint(&mut ebpf, "sys_enter", "raw_syscalls")?;
        attach_raw_tracepoint(&mut ebpf, "sys_exit", "raw_syscalls")?;

        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(KernelError::Map { name, detail: "missing from the eBPF object".into() })
        };
        let outstanding = take("OUTSTANDING")?;
        let stacks = take("STACKS")?;
        let procs = take("PROCS")?;
        let counters = take("COUNTERS")?;
        let events = RingBuf::try_from(take("EVENTS")?).map_err(map_error("EVENTS"))?;
        let pid_map = take("TRACED_PIDS")?;
        let pid_fd = match &pid_map {
            Map::Array(data) => data.fd().as_fd(),
            _ => return Err(KernelError::Map { name: "TRACED_PIDS", detail: "not an array".into() }),
        };
        let pids = PidBitmap::map(pid_fd, pid_words as usize)
            .map_err(|source| KernelError::MapIo { name: "TRACED_PIDS", source })?;
        let rows_map = take("UNWIND_ROWS")?;
        let buckets_map = take("UNWIND_BUCKETS")?;
        let rows = RowsArray::map(
            array_fd(&rows_map, "UNWIND_ROWS")?,
            array_fd(&buckets_map, "UNWIND_BUCKETS")?,
            options.max_unwind_rows as usize,
        )
        .map_err(|source| KernelError::MapIo { name: "UNWIND_ROWS", source })?;
        let proc_unwind = take("PROC_UNWIND")?;
        let tcp_socks = take("TCP_SOCKS")?;
        Ok(Kernel {
            _ebpf: ebpf,
            outstanding,
            stacks,
            procs,
            counters,
            proc_unwind,
            tcp_socks,
            events,
            pids,
            rows,
            _mapped: [pid_map, rows_map, buckets_map],
            options: options.clone(),
        })
    }
}

impl Seam for Kernel {
    fn capacities(&self) -> Capacities {
        let o = &self.options;
        Capacities { entries: o.max_entries, stacks: o.max_stacks, unwind_rows: o.max_unwind_rows, tcp: o.tcp }
    }

    fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }

    fn read_events(&mut self, each: &mut dyn FnMut(&[u8])) {
        while let Some(item) = self.events.next() {
            each(&item);
        }
    }

    fn unwind_rows(&mut self) -> &mut dyn RowSink {
        &mut self.rows
    }

    /// Publishes a process image's code mappings to the unwinder, or
    /// withdraws them (`None`: the kernel's frame-pointer walk is used).
    fn set_proc_mappings(&mut self, tgid: u32, mappings: Option<&ProcMappings>) -> Result<(), KernelError> {
        let mut map: HashMap<&mut MapData, u32, ProcMappings> =
            HashMap::try_from(&mut self.proc_unwind).map_err(map_error("PROC_UNWIND"))?;
        match mappings {
            Some(m) => map.insert(tgid, m, 0).map_err(map_error("PROC_UNWIND")),
            // Absent already is fine.
            None => {
                let _ = map.remove(&tgid);
                Ok(())
            }
        }
    }

    /// Starts tracing a process the user named (or launched).
    fn trace_process(&mut self, tgid: u32, state: ProcState) -> Result<(), KernelError> {
        let mut procs: HashMap<&mut MapData, u32, ProcState> =
            HashMap::try_from(&mut self.procs).map_err(map_error("PROCS"))?;
        procs.insert(tgid, state, 0).map_err(map_error("PROCS"))?;
        if !self.pids.set(tgid) {
            return Err(KernelError::Map { name: "TRACED_PIDS", detail: format!("pid {tgid} exceeds pid_max") });
        }
        Ok(())
    }

    fn untrace_all(&self) {
        // With every process traced, a set bit leaves a process out.
        if self.options.trace_all {
            self.pids.set_all();
        } else {
            self.pids.clear_all();
        }
    }

    /// Leaves out a process (and the children it forks until one execs)
    /// while every process is traced; its entries are the caller's to drop.
    fn filter_out(&self, tgid: u32) {
        if self.options.trace_all {
            self.pids.set(tgid);
        }
    }

    fn is_traced(&self, tgid: u32) -> bool {
        if self.options.trace_all {
            !self.pids.contains(tgid)
        } else {
            self.pids.contains(tgid)
        }
    }

    /// The kernel's state for a traced process, if it still has one.
    fn proc_state(&self, tgid: u32) -> Option<ProcState> {
        let procs: HashMap<&MapData, u32, ProcState> = HashMap::try_from(&self.procs).ok()?;
        procs.get(&tgid, 0).ok()
    }

    /// Every outstanding entry.
    fn outstanding(&self) -> Result<Vec<(FdKey, FdEntry)>, KernelError> {
        let fd = hash_fd(&self.outstanding);
        batch::lookup_all(fd, self.options.max_entries as usize)
            .map_err(|source| KernelError::MapIo { name: "OUTSTANDING", source })
    }

    /// The keys of `planned` whose entry is still the acquisition made at
    /// the given time (a key whose fd number was handed out again holds the
    /// new acquisition, or none once that is released too). What is left
    /// between this lookup and the delete that follows is microseconds.
    fn unchanged_outstanding(&self, planned: &[(FdKey, u64)]) -> Vec<FdKey> {
        let Ok(map) = HashMap::<&MapData, FdKey, FdEntry>::try_from(&self.outstanding) else {
            return planned.iter().map(|(k, _)| *k).collect();
        };
        planned.iter().filter(|(k, at)| map.get(k, 0).is_ok_and(|e| e.acquired_ns == *at)).map(|(k, _)| *k).collect()
    }

    /// Removes entries userspace has taken over; returns how many were still there.
    fn remove_outstanding(&self, keys: &[FdKey]) -> Result<usize, KernelError> {
        batch::delete(hash_fd(&self.outstanding), keys)
            .map_err(|source| KernelError::MapIo { name: "OUTSTANDING", source })
    }

    /// Every traced TCP socket, by `struct sock` address.
    fn tcp_socks(&self) -> Result<Vec<(u64, TcpSock)>, KernelError> {
        if !self.options.tcp {
            return Ok(Vec::new());
        }
        let fd = match &self.tcp_socks {
            Map::LruHashMap(data) => data.fd().as_fd(),
            _ => return Err(KernelError::Map { name: "TCP_SOCKS", detail: "not an LRU hash".into() }),
        };
        batch::lookup_all(fd, self.options.max_entries as usize)
            .map_err(|source| KernelError::MapIo { name: "TCP_SOCKS", source })
    }

    /// Removes TCP sockets userspace has taken over.
    fn remove_tcp_socks(&self, socks: &[u64]) -> Result<usize, KernelError> {
        let Map::LruHashMap(data) = &self.tcp_socks else {
            return Err(KernelError::Map { name: "TCP_SOCKS", detail: "not an LRU hash".into() });
        };
        batch::delete(data.fd().as_fd(), socks).map_err(|source| KernelError::MapIo { name: "TCP_SOCKS", source })
    }

    fn stack(&self, id: u64) -> Option<StackTrace> {
        let stacks: HashMap<&MapData, u64, StackTrace> = HashMap::try_from(&self.stacks).ok()?;
        stacks.get(&id, 0).ok()
    }

    fn stack_ids(&self) -> Result<Vec<u64>, KernelError> {
        let entries: Vec<(u64, StackTrace)> =
            batch::lookup_all(hash_fd(&self.stacks), self.options.max_stacks as usize)
                .map_err(|source| KernelError::MapIo { name: "STACKS", source })?;
        Ok(entries.into_iter().map(|(id, _)| id).collect())
    }

    fn remove_stacks(&self, ids: &[u64]) -> Result<usize, KernelError> {
        batch::delete(hash_fd(&self.stacks), ids).map_err(|source| KernelError::MapIo { name: "STACKS", source })
    }

    /// Sums of the per-CPU counters, indexed like `leaktrace_common::counters`.
    fn counters(&self) -> Result<[u64; counters::COUNT as usize], KernelError> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(&self.counters).map_err(map_error("COUNTERS"))?;
        let mut sums = [0u64; counters::COUNT as usize];
        for (i, sum) in sums.iter_mut().enumerate() {
            let values = map.get(&(i as u32), 0).map_err(map_error("COUNTERS"))?;
            *sum = values.iter().sum();
        }
        Ok(sums)
    }
}

fn array_fd<'a>(map: &'a Map, name: &'static str) -> Result<std::os::fd::BorrowedFd<'a>, KernelError> {
    match map {
        Map::Array(data) => Ok(data.fd().as_fd()),
        _ => Err(KernelError::Map { name, detail: "not an array".into() }),
    }
}

fn hash_fd(map: &Map) -> std::os::fd::BorrowedFd<'_> {
    match map {
        Map::HashMap(data) => data.fd().as_fd(),
        _ => unreachable!("only hash maps are read in batches"),
    }
}

fn attach_tracepoint(ebpf: &mut Ebpf, name: &'static str, category: &str) -> Result<(), KernelError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(KernelError::Program { program: name, detail: "missing from the eBPF object".into() })?;
    let tp: &mut TracePoint = program
        .try_into()
        .map_err(|e: aya::programs::ProgramError| KernelError::Program { program: name, detail: e.to_string() })?;
    tp.load().map_err(|e| KernelError::Program { program: name, detail: verifier_detail(&e) })?;
    tp.attach(category, name)
        .map_err(|e| KernelError::Attach { tracepoint: format!("{category}:{name}"), detail: e.to_string() })?;
    Ok(())
}

fn attach_raw_tracepoint(ebpf: &mut Ebpf, name: &'static str, category: &str) -> Result<(), KernelError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(KernelError::Program { program: name, detail: "missing from the eBPF object".into() })?;
    let tp: &mut RawTracePoint = program
        .try_into()
        .map_err(|e: aya::programs::ProgramError| KernelError::Program { program: name, detail: e.to_string() })?;
    tp.load().map_err(|e| KernelError::Program { program: name, detail: verifier_detail(&e) })?;
    tp.attach(name)
        .map_err(|e| KernelError::Attach { tracepoint: format!("{category}:{name}"), detail: e.to_string() })?;
    Ok(())
}

/// Where the verifier's whole log goes when a program is refused.
const VERIFIER_LOG_VAR: &str = "LEAKTRACE_VERIFIER_LOG";

/// One line on why the verifier refused a program; its whole log (thousands
/// of lines) goes to the file `LEAKTRACE_VERIFIER_LOG` names, if set.
fn verifier_detail(e: &aya::programs::ProgramError) -> String {
    let aya::programs::ProgramError::LoadError { io_error, verifier_log } = e else {
        return e.to_string();
    };
    let log = verifier_log.to_string();
    let written = std::env::var_os(VERIFIER_LOG_VAR).map(|path| (std::fs::write(&path, &log), path));
    let whereabouts = match written {
        Some((Ok(()), path)) => format!("its log is in {}", path.to_string_lossy()),
        Some((Err(e), path)) => format!("cannot write its log to {}: {e}", path.to_string_lossy()),
        None => format!("set {VERIFIER_LOG_VAR}=FILE for its log"),
    };
    match verifier_reason(&log) {
        Some(reason) => format!("the kernel's verifier refused it: {reason}; {whereabouts}"),
        None => format!("{io_error}; {whereabouts}"),
    }
}

/// The verifier's verdict: its last line before the statistics, with the
/// instruction it stopped at when the verdict is about one (not about the
/// whole program: its size, its stack, its complexity).
fn verifier_reason(log: &str) -> Option<String> {
    let statistics = ["verification time", "stack depth", "processed ", "max_states_per_insn"];
    let whole_program = ["combined stack size", "too large", "too complex"];
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let end = lines.iter().position(|l| statistics.iter().any(|s| l.starts_with(s))).unwrap_or(lines.len());
    let reason = lines[..end].last()?;
    let at = end
        .checked_sub(2)
        .map(|i| lines[i])
        .filter(|_| !whole_program.iter().any(|w| reason.contains(w)))
        .filter(|l| l.split(':').next().is_some_and(|n| n.parse::<u32>().is_ok()));
    Some(match at {
        Some(insn) => format!("{reason} (at {insn})"),
        None => reason.to_string(),
    })
}

/// The oldest kernel leaktrace loads on is the one that brought what it
/// needs last: `bpf_loop` (Linux 5.17), one verified loop iteration per
/// stack frame. What it needs before (the ring buffer, 5.8; eBPF ISA v3
/// atomics, 5.12) comes with it. The probe loads a two-instruction program
/// and reads the verifier's answer; a probe that cannot tell leaves it to
/// the load to say what is wrong.
fn check_kernel() -> Result<(), KernelError> {
    use aya::{programs::ProgramType, sys::BpfHelper};
    match aya::sys::is_helper_supported(ProgramType::RawTracePoint, BpfHelper::BPF_FUNC_loop) {
        Ok(false) => Err(KernelError::TooOld {
            release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            missing: "bpf_loop eBPF helper",
            since: "5.17",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::verifier_reason;

    #[test]
    fn the_verifiers_verdict_in_one_line() {
        // Linux 6.1 refusing a read of an unset register.
        let log = "0: R1=ctx(off=0,imm=0) R10=fp0\n1241: (b4) w2 = 8                     ; R2_w=8\n\
                   1242: (85) call bpf_probe_read_user#112\nR3 !read_ok\nverification time 596907 usec\n\
                   stack depth 400+112+32+8+24+0\nprocessed 34070 insns (limit 1000000) max_states_per_insn 19\n";
        assert_eq!(verifier_reason(log).as_deref(), Some("R3 !read_ok (at 1242: (85) call bpf_probe_read_user#112)"));
        // A verdict about the whole program has no instruction.
        let log = "12: (95) exit\ncombined stack size of 2 calls is 544. Too large\nverification time 2008791 usec\n";
        assert_eq!(verifier_reason(log).as_deref(), Some("combined stack size of 2 calls is 544. Too large"));
        assert_eq!(verifier_reason(""), None);
    }
}
