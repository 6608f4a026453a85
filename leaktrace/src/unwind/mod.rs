//! Unwinding tables for the kernel side: loads each module's CFI rows once
//! into the shared rows array, and gives each process the list of its code
//! mappings with their rows, so the eBPF unwinder can walk stacks of code
//! built without frame pointers.

pub(crate) mod table;

use std::collections::HashMap;
use std::sync::Arc;

use leaktrace_common::unwind::{buckets, ModuleMapping, ProcMappings, UnwindRow, MAX_MAPPINGS};

use crate::symbolize::maps::{FileId, MapsSnapshot, Module};
use table::ModuleTable;

/// How user stacks are walked (`--unwind`, `unwind = "..."`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Unwind {
    /// With each module's CFI (.eh_frame): complete stacks for code built
    /// without frame pointers; frame pointers where a module has no CFI.
    Cfi,
    /// Frame pointers only: cheaper, but stacks through code without them
    /// (glibc, -O2 builds) end early.
    FramePointers,
}

/// Where tables go: the kernel's rows and buckets arrays (or buffers in tests).
pub(crate) trait RowSink {
    fn write(&mut self, start: u32, rows: &[UnwindRow]) -> std::io::Result<()>;
    fn write_buckets(&mut self, start: u32, buckets: &[u64]) -> std::io::Result<()>;
}

/// A module whose rows are loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub table: ModuleTable,
    pub rows_start: u32,
    pub rows_len: u32,
    pub buckets_start: u32,
    pub buckets_len: u32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnwindStats {
    pub modules: u64,
    pub rows: u64,
    /// Modules that did not fit the rows array (unwound with frame pointers).
    pub modules_dropped: u64,
    /// Executable mappings beyond the per-process limit.
    pub mappings_dropped: u64,
}

pub(crate) struct Unwinder {
    modules: HashMap<FileId, Arc<Loaded>>,
    next_row: u32,
    next_bucket: u32,
    /// Capacity of the rows array, and of the buckets array.
    capacity: u32,
    stats: UnwindStats,
}

impl Unwinder {
    pub(crate) fn new(capacity: u32) -> Self {
        Unwinder { modules: HashMap::new(), next_row: 0, next_bucket: 0, capacity, stats: UnwindStats::default() }
    }

    pub(crate) fn stats(&self) -> UnwindStats {
        self.stats
    }

    fn load(&mut self, file: FileId, data: &[u8], sink: &mut dyn RowSink) -> Arc<Loaded> {
        if let Some(done) = self.modules.get(&file) {
            return done.clone();
        }
        // A module that cannot be parsed is unwound with frame pointers.
        let table = table::build(data).unwrap_or_default();
        let index: Vec<u64> = buckets(&table.rows).map(u64::from).collect();
        let len = table.rows.len() as u32;
        let fits = |next: u32, n: usize| next.checked_add(n as u32).is_some_and(|end| end <= self.capacity);
        let stored = len > 0
            && fits(self.next_row, table.rows.len())
            && fits(self.next_bucket, index.len())
            && sink.write(self.next_row, &table.rows).is_ok()
            && sink.write_buckets(self.next_bucket, &index).is_ok();
        let loaded = if stored {
            let loaded = Loaded {
                table,
                rows_start: self.next_row,
                rows_len: len,
                buckets_start: self.next_bucket,
                buckets_len: index.len() as u32,
            };
            self.next_row += len;
            self.next_bucket += index.len() as u32;
            self.stats.rows += u64::from(len);
            loaded
        } else {
            if len > 0 {
                self.stats.modules_dropped += 1;
            }
            Loaded { table, rows_start: 0, rows_len: 0, buckets_start: 0, buckets_len: 0 }
        };
        self.stats.modules += 1;
        // The rows live in the kernel's array (or nowhere, when they did not
        // fit): only the layout is needed from here on. A daemon that meets
        // new binaries for days must not keep a copy of each one's rows.
        let mut loaded = loaded;
        loaded.table.rows = Vec::new();
        let loaded = Arc::new(loaded);
        self.modules.insert(file, loaded.clone());
        loaded
    }

    /// The kernel's view of a process image: its code mappings with their
    /// rows. `read` opens a mapping's file. None when no module has rows
    /// (the kernel's frame-pointer walk is then used).
    pub(crate) fn mappings(
        &mut self,
        snapshot: &MapsSnapshot,
        exec_seq: u32,
        read: &mut dyn FnMut(&crate::symbolize::maps::Mapping) -> Option<memmap2::Mmap>,
        sink: &mut dyn RowSink,
    ) -> Option<ProcMappings> {
        let mut out = ProcMappings { exec_seq, ..Default::default() };
        let mut any_rows = false;
        for m in &snapshot.mappings {
            let (Module::File { .. }, Some(file)) = (&m.module, m.file) else {
                continue;
            };
            if out.count as usize == MAX_MAPPINGS {
                self.stats.mappings_dropped += 1;
                continue;
            }
            let loaded = match self.modules.get(&file) {
                Some(done) => done.clone(),
                None => match read(m) {
                    Some(data) => self.load(file, &data, sink),
                    None => continue,
                },
            };
            let Some(bias) = loaded.table.bias(m.start, m.offset) else {
                continue;
            };
            any_rows |= loaded.rows_len > 0;
            out.mappings[out.count as usize] = ModuleMapping {
                start: m.start,
                end: m.end,
                bias,
                rows_start: loaded.rows_start,
                rows_len: loaded.rows_len,
                buckets_start: loaded.buckets_start,
                buckets_len: loaded.buckets_len,
            };
            out.count += 1;
        }
        any_rows.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::unwind::{find_row, find_row_bucketed, CFA_RBP, END, NO_INFO, RBP_SAVED};

    #[derive(Default)]
    struct Buffer {
        rows: Vec<UnwindRow>,
        buckets: Vec<u64>,
    }

    fn put<T: Copy + Default>(into: &mut Vec<T>, start: u32, items: &[T]) {
        let start = start as usize;
        if into.len() < start + items.len() {
            into.resize(start + items.len(), T::default());
        }
        into[start..start + items.len()].copy_from_slice(items);
    }

    impl RowSink for Buffer {
        fn write(&mut self, start: u32, rows: &[UnwindRow]) -> std::io::Result<()> {
            put(&mut self.rows, start, rows);
            Ok(())
        }

        fn write_buckets(&mut self, start: u32, buckets: &[u64]) -> std::io::Result<()> {
            put(&mut self.buckets, start, buckets);
            Ok(())
        }
    }

    /// This thread's registers at the call site.
    #[inline(never)]
    fn registers() -> (u64, u64, u64) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, touches no memory.
        unsafe {
            std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp", ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp)
        };
        (ip, sp, bp)
    }

    /// The eBPF unwinder's algorithm, over this process's own memory: the
    /// reference the kernel implementation follows.
    fn walk_own_stack(maps: &ProcMappings, sink: &Buffer) -> (Vec<u64>, bool) {
        let (mut ip, mut sp, mut bp) = registers();
        let mut frames = Vec::new();
        let read = |addr: u64| -> u64 { unsafe { std::ptr::read(addr as *const u64) } };
        for n in 0..64 {
            frames.push(ip);
            let lookup = if n == 0 { ip } else { ip - 1 };
            let m = maps.mappings[..maps.count as usize].iter().find(|m| m.start <= ip && ip < m.end);
            let Some(m) = m.filter(|m| m.rows_len > 0) else { return (frames, false) };
            let module_rows = &sink.rows[m.rows_start as usize..(m.rows_start + m.rows_len) as usize];
            let module_buckets: Vec<u32> = sink.buckets
                [m.buckets_start as usize..(m.buckets_start + m.buckets_len) as usize]
                .iter()
                .map(|&b| b as u32)
                .collect();
            let pc = (lookup - m.bias) as u32;
            let Some(i) = find_row_bucketed(module_rows, &module_buckets, pc) else { return (frames, false) };
            assert_eq!(Some(i), find_row(module_rows, pc), "buckets and the plain search agree");
            let row = module_rows[i];
            if row.kind & NO_INFO != 0 {
                return (frames, false);
            }
            if row.kind & END != 0 {
                return (frames, true);
            }
            let cfa = (if row.kind & CFA_RBP != 0 { bp } else { sp }).wrapping_add(row.cfa_offset as i64 as u64);
            let ra = read(cfa - 8);
            if row.kind & RBP_SAVED != 0 {
                bp = read(cfa.wrapping_add(row.rbp_offset as i64 as u64));
            }
            sp = cfa;
            ip = ra;
            if ip == 0 {
                return (frames, true);
            }
        }
        (frames, false)
    }

    #[inline(never)]
    fn deep(n: u32, maps: &ProcMappings, sink: &Buffer) -> (Vec<u64>, bool) {
        if n == 0 {
            return walk_own_stack(maps, sink);
        }
        let r = deep(n - 1, maps, sink);
        std::hint::black_box(r)
    }

    #[test]
    fn tables_unwind_this_thread_to_its_start() {
        let me = std::process::id();
        let snap = MapsSnapshot::read(me, me).expect("own maps");
        let mut unwinder = Unwinder::new(1 << 20);
        let mut sink = Buffer::default();
        let mut read = |m: &crate::symbolize::maps::Mapping| match &m.module {
            Module::File { path, .. } => {
                std::fs::File::open(path).ok().and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok())
            }
            Module::Special(_) => None,
        };
        let maps = unwinder.mappings(&snap, 0, &mut read, &mut sink).expect("modules with CFI");
        let (frames, complete) = deep(5, &maps, &sink);
        assert!(complete, "walk ended early after {} frames", frames.len());
        // Every frame is in our code or a library: a real chain, up to the
        // thread start in libc.
        for ip in &frames {
            assert!(maps.mappings[..maps.count as usize].iter().any(|m| m.start <= *ip && *ip < m.end), "{ip:#x}");
        }
        let deep_fn = deep as *const () as u64;
        let in_deep = frames.iter().filter(|&&ip| ip > deep_fn && ip < deep_fn + 256).count();
        assert!(in_deep >= 5, "the recursion is in the stack: {in_deep} frames in deep()");
        assert!(unwinder.stats().rows > 10_000);
    }
}
