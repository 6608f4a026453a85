//! Perf maps (`/tmp/perf-PID.map`): the symbol tables JIT compilers (V8,
//! the JVM with perf-map-agent, LuaJIT, .NET) write for code they generate,
//! one `START SIZE NAME` line per function, addresses in hex.

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct PerfMap {
    /// The map's file name, shown as the frames' module.
    pub name: Arc<str>,
    /// (start, size, symbol), sorted by start.
    entries: Vec<(u64, u64, Arc<str>)>,
}

impl PerfMap {
    pub(crate) fn parse(name: &str, text: &str) -> PerfMap {
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        let mut entries: Vec<(u64, u64, Arc<str>)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?)?;
                let symbol = parts.next()?.trim();
                (!symbol.is_empty()).then(|| (start, size, Arc::from(symbol)))
            })
            .collect();
        entries.sort_by_key(|e| e.0);
        PerfMap { name: Arc::from(name), entries }
    }

    /// The perf map of process `tgid` (as `nspid` inside its pid namespace):
    /// in /tmp, or in the process's own /tmp while it lives.
    pub(crate) fn read(tgid: u32, nspid: u32) -> Option<PerfMap> {
        let name = format!("perf-{nspid}.map");
        let candidates = [
            Path::new("/tmp").join(format!("perf-{tgid}.map")),
            Path::new(&format!("/proc/{tgid}/root/tmp")).join(&name),
        ];
        let text = candidates.iter().find_map(|p| std::fs::read_to_string(p).ok())?;
        Some(PerfMap::parse(&name, &text))
    }

    /// The symbol containing `addr` and the offset into it.
    pub(crate) fn lookup(&self, addr: u64) -> Option<(Arc<str>, u64)> {
        let i = self.entries.partition_point(|e| e.0 <= addr).checked_sub(1)?;
        let (start, size, symbol) = &self.entries[i];
        (addr < start + size).then(|| (symbol.clone(), addr - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_jit_symbols() {
        let map = PerfMap::parse(
            "perf-42.map",
            "7f0000001000 40 LazyCompile:~handle /srv/app.js:10\n0x7f0000002000 0x20 Builtin:Call\nnot a line\n",
        );
        assert_eq!(map.lookup(0x7f00_0000_1010), Some((Arc::from("LazyCompile:~handle /srv/app.js:10"), 0x10)));
        assert_eq!(map.lookup(0x7f00_0000_2000), Some((Arc::from("Builtin:Call"), 0)));
        assert_eq!(map.lookup(0x7f00_0000_1040), None, "past the end of the function");
        assert_eq!(map.lookup(0x10), None);
    }
}
