//! The symbolization service: one long-lived resolver with explicit caches.
//!
//! Addresses only mean something in the address space they were taken in,
//! which disappears when the process exits or execs. So the resolver keeps a
//! snapshot of each image's code mappings, taken while it was alive, and
//! turns stacks into (module, file offset) frames with it: that form is what
//! stacks are grouped by, and stays valid after the process is gone. Names,
//! files and lines are looked up from the modules on disk when a report is
//! written, once per distinct frame.

pub(crate) mod debuginfo;
pub(crate) mod maps;
pub(crate) mod modules;
pub(crate) mod perfmap;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use blazesym::symbolize::{self, source::Elf, source::Source, Input, Symbolized, Symbolizer};
use leaktrace_common::stack::{StackTrace, FRAME_POINTERS, MAX_FRAMES, TRUNCATED_DEPTH, TRUNCATED_UNWIND};

use crate::proc_id::{ImageId, ProcId};
use debuginfo::{symbol_source, SymbolSource};
use maps::{FileId, Location, Mapping, MapsSnapshot, Module};
use modules::ModuleFiles;
use perfmap::PerfMap;

/// Why a stack or frame could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Unresolved {
    /// The kernel could not store a stack for the acquisition.
    NoStack(&'static str),
    /// The process was gone before its mappings were read.
    NoMappings,
}

/// A stack as (module, offset) frames: independent of the process and of
/// address-space randomization, so equal stacks from different processes or
/// runs of one binary compare equal.
#[derive(Clone, Debug)]
pub(crate) struct NormStack {
    pub frames: Vec<NormFrame>,
    /// Cut short: deeper than the kernel keeps, or the frame-pointer walk
    /// left the code mappings (a caller without frame pointers).
    pub truncated: Option<&'static str>,
    pub unresolved: Option<Unresolved>,
    /// Walked by the kernel's frame-pointer walk, which does not say whether
    /// it reached the outermost frame (not part of the identity).
    pub frame_pointers: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct NormFrame {
    /// The address in the process that took the stack (one of them, for
    /// stacks seen in several processes).
    pub addr: u64,
    pub location: Location,
}

// Identity ignores absolute addresses of frames that were located in a
// module: the same code at another load address is the same frame.
impl PartialEq for NormStack {
    fn eq(&self, other: &Self) -> bool {
        self.truncated == other.truncated
            && self.unresolved == other.unresolved
            && self.frames.len() == other.frames.len()
            && self.frames.iter().zip(&other.frames).all(|(a, b)| a.identity() == b.identity())
    }
}
impl Eq for NormStack {}
impl Hash for NormStack {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.truncated.hash(state);
        self.unresolved.hash(state);
        for f in &self.frames {
            f.identity().hash(state);
        }
    }
}

impl NormFrame {
    fn identity(&self) -> (&Location, u64) {
        match self.location {
            Location::InModule { .. } | Location::Jit { .. } => (&self.location, 0),
            Location::Unmapped => (&self.location, self.addr),
        }
    }
}

/// One symbolized frame of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SymFrame {
    pub addr: u64,
    pub symbol: Option<String>,
    /// Offset of the address from the symbol's start.
    pub symbol_offset: Option<u64>,
    pub module: Option<String>,
    pub file_offset: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// An inlined call: no frame of its own at run time.
    pub inlined: bool,
    /// Why `symbol` is missing.
    pub reason: Option<String>,
}

pub(crate) struct Resolver {
    snapshots: HashMap<ImageId, Arc<MapsSnapshot>>,
    normalized: HashMap<(ImageId, u64), Arc<NormStack>>,
    files: ModuleFiles,
    sources: HashMap<Module, SymbolSource>,
    perf_maps: HashMap<ProcId, Option<Arc<PerfMap>>>,
    symbolizer: Symbolizer,
    symbols: HashMap<(Module, u64, bool), Arc<Vec<SymFrame>>>,
    /// Modules forgotten since the symbolizer (and its caches) was made.
    forgotten: usize,
}

/// blazesym keeps what it parsed of every file it symbolized, with no way
/// to forget one: the symbolizer is made anew once this many modules were
/// forgotten.
const FORGOTTEN_BEFORE_RENEW: usize = 64;

fn symbolizer() -> Symbolizer {
    Symbolizer::builder().enable_code_info(true).enable_inlined_fns(true).enable_demangling(true).build()
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub(crate) fn new() -> Self {
        Resolver {
            snapshots: HashMap::new(),
            normalized: HashMap::new(),
            files: ModuleFiles::default(),
            sources: HashMap::new(),
            perf_maps: HashMap::new(),
            symbolizer: symbolizer(),
            symbols: HashMap::new(),
            forgotten: 0,
        }
    }

    /// Forgets what was kept for modules that no process the resolver still
    /// knows maps (the daemon, after each sample): its caches then follow
    /// the code that runs now, not every binary a host ran in days.
    pub(crate) fn trim(&mut self) {
        let live: std::collections::HashSet<&Module> =
            self.snapshots.values().flat_map(|s| s.mappings.iter().map(|m| &m.module)).collect();
        let ids: std::collections::HashSet<FileId> =
            self.snapshots.values().flat_map(|s| s.mappings.iter().filter_map(|m| m.file)).collect();
        let before = self.sources.len();
        self.sources.retain(|m, _| live.contains(m));
        self.symbols.retain(|(m, _, _), _| live.contains(m));
        self.files.retain(|id| ids.contains(id));
        self.forgotten += before - self.sources.len();
        if self.forgotten >= FORGOTTEN_BEFORE_RENEW {
            self.symbolizer = symbolizer();
            self.forgotten = 0;
        }
    }

    /// Opens (once) the file behind a code mapping of a live process, so it
    /// can be read after the process is gone.
    pub(crate) fn open_module(&mut self, tgid: u32, mapping: &Mapping) -> Option<Arc<std::fs::File>> {
        self.files.open(tgid, mapping)
    }

    pub(crate) fn has_snapshot(&self, image: ImageId) -> bool {
        self.snapshots.contains_key(&image)
    }

    /// Keeps `snapshot` as the mappings of `image`.
    pub(crate) fn insert(&mut self, image: ImageId, snapshot: Arc<MapsSnapshot>) {
        self.snapshots.insert(image, snapshot);
    }

    /// A forked child starts with its parent's mappings.
    pub(crate) fn inherit(&mut self, parent: ImageId, child: ImageId) {
        if let Some(snap) = self.snapshots.get(&parent).cloned() {
            self.snapshots.entry(child).or_insert(snap);
        }
    }

    /// The latest image of `tgid` whose mappings were read, for a fork read
    /// after its parent exited (the kernel no longer knows the parent then).
    /// Among several processes given the pid, the newest.
    pub(crate) fn latest_image(&self, tgid: u32) -> Option<ImageId> {
        self.snapshots.keys().filter(|i| i.proc.tgid == tgid).max_by_key(|i| (i.proc.gen, i.exec_seq)).copied()
    }

    /// Drops everything kept for a process that is gone and fully reported.
    pub(crate) fn forget(&mut self, proc: ProcId) {
        self.snapshots.retain(|image, _| image.proc != proc);
        self.normalized.retain(|(image, _), _| image.proc != proc);
        self.perf_maps.remove(&proc);
    }

    pub(crate) fn cached_stack(&self, image: ImageId, stack_id: u64) -> Option<Arc<NormStack>> {
        self.normalized.get(&(image, stack_id)).cloned()
    }

    /// Normalizes a stack taken in `image`. `trace` is the kernel's copy
    /// (`None` when it was not stored).
    pub(crate) fn normalize(&mut self, image: ImageId, stack_id: u64, trace: Option<&StackTrace>) -> Arc<NormStack> {
        if let Some(done) = self.normalized.get(&(image, stack_id)) {
            return done.clone();
        }
        let stack = match trace {
            None => NormStack {
                frames: vec![],
                truncated: None,
                unresolved: Some(Unresolved::NoStack("stack map full or stack unreadable")),
                frame_pointers: false,
            },
            Some(trace) => match self.snapshots.get(&image) {
                None => NormStack {
                    frames: raw_frames(trace),
                    truncated: None,
                    unresolved: Some(Unresolved::NoMappings),
                    frame_pointers: trace.flags & FRAME_POINTERS != 0,
                },
                Some(snap) => {
                    let mut stack = normalize_with(snap, trace);
                    self.name_jit_frames(image.proc, &mut stack);
                    stack
                }
            },
        };
        let stack = Arc::new(stack);
        // Stacks without mappings may resolve later, once a snapshot exists.
        if stack.unresolved != Some(Unresolved::NoMappings) {
            self.normalized.insert((image, stack_id), stack.clone());
        }
        stack
    }

    /// Frames in anonymous code are named from the process's perf map, if it
    /// writes one (read once per process, when first needed).
    fn name_jit_frames(&mut self, proc: ProcId, stack: &mut NormStack) {
        let anonymous =
            |l: &Location| matches!(l, Location::InModule { module: Module::Special(s), .. } if &**s == "[anon]");
        if !stack.frames.iter().any(|f| anonymous(&f.location)) {
            return;
        }
        let map = self
            .perf_maps
            .entry(proc)
            .or_insert_with(|| {
                let nspid = crate::procfs::namespace_pid(proc.tgid).unwrap_or(proc.tgid);
                PerfMap::read(proc.tgid, nspid).map(Arc::new)
            })
            .clone();
        let Some(map) = map else { return };
        for frame in stack.frames.iter_mut().filter(|f| anonymous(&f.location)) {
            if let Some((symbol, offset)) = map.lookup(frame.addr) {
                frame.location = Location::Jit { map: map.name.clone(), symbol, offset };
            }
        }
    }

    /// Names, files and lines of a stack's frames, innermost first; inlined
    /// calls appear as frames of their own.
    pub(crate) fn symbolize(&mut self, stack: &NormStack) -> Vec<SymFrame> {
        let mut out = Vec::with_capacity(stack.frames.len());
        for (i, frame) in stack.frames.iter().enumerate() {
            match &frame.location {
                Location::InModule { module, file_offset } => {
                    // Return addresses point after the call; look up the call itself.
                    let is_return = i > 0;
                    let frames = self.lookup(module, *file_offset, is_return);
                    out.extend(frames.iter().map(|f| SymFrame { addr: frame.addr, ..f.clone() }));
                }
                Location::Jit { map, symbol, offset } => out.push(SymFrame {
                    addr: frame.addr,
                    symbol: Some(symbol.to_string()),
                    symbol_offset: Some(*offset),
                    module: Some(map.to_string()),
                    file_offset: None,
                    file: None,
                    line: None,
                    inlined: false,
                    reason: None,
                }),
                Location::Unmapped => out.push(SymFrame {
                    addr: frame.addr,
                    symbol: None,
                    symbol_offset: None,
                    module: None,
                    file_offset: None,
                    file: None,
                    line: None,
                    inlined: false,
                    reason: Some("address outside every code mapping".into()),
                }),
            }
        }
        if let Some(Unresolved::NoMappings) = stack.unresolved {
            for f in &mut out {
                f.reason = Some("process exited or exec'd before its mappings were read".into());
            }
        }
        out
    }

    fn lookup(&mut self, module: &Module, file_offset: u64, is_return: bool) -> Arc<Vec<SymFrame>> {
        let key = (module.clone(), file_offset, is_return);
        if let Some(hit) = self.symbols.get(&key) {
            return hit.clone();
        }
        let source = match module {
            Module::File { path, id } => {
                let files = &self.files;
                let source = self.sources.entry(module.clone()).or_insert_with(|| {
                    let path = match id {
                        Some(id) => files.source_path(*id, path),
                        None => path.to_path_buf(),
                    };
                    symbol_source(&path)
                });
                Some(source.clone())
            }
            Module::Special(_) => None,
        };
        let frames = Arc::new(lookup_uncached(&self.symbolizer, source.as_ref(), module, file_offset, is_return));
        self.symbols.insert(key, frames.clone());
        frames
    }
}

fn raw_frames(trace: &StackTrace) -> Vec<NormFrame> {
    let len = (trace.len as usize).min(MAX_FRAMES);
    trace.ips[..len].iter().map(|&addr| NormFrame { addr, location: Location::Unmapped }).collect()
}

/// The walk stopped at a frame it could not step over.
pub(crate) const UNWIND_STOPPED: &str = "no unwinding information for a frame, or its stack slot was unreadable";

/// Why a stack the kernel walked ends where it does, if not at the outermost frame.
fn walk_truncation(trace: &StackTrace) -> Option<&'static str> {
    if trace.flags & TRUNCATED_DEPTH != 0 {
        Some("deeper than the frames kept per stack")
    } else if trace.flags & TRUNCATED_UNWIND != 0 {
        Some(UNWIND_STOPPED)
    } else {
        None
    }
}

fn normalize_with(snap: &MapsSnapshot, trace: &StackTrace) -> NormStack {
    let len = (trace.len as usize).min(MAX_FRAMES);
    let mut frames = Vec::with_capacity(len);
    let frame_pointers = trace.flags & FRAME_POINTERS != 0;
    let mut truncated = if frame_pointers {
        (len == MAX_FRAMES).then_some("deeper than the frames kept per stack")
    } else {
        walk_truncation(trace)
    };
    for &addr in &trace.ips[..len] {
        let location = snap.locate(addr);
        if frame_pointers && location == Location::Unmapped {
            // Every frame past this one comes from the same bad frame pointer:
            // keeping them would split one call site into many stacks.
            truncated = Some("a caller without frame pointers ended the walk");
            break;
        }
        frames.push(NormFrame { addr, location });
    }
    NormStack { frames, truncated, unresolved: None, frame_pointers }
}

fn lookup_uncached(
    symbolizer: &Symbolizer,
    source: Option<&SymbolSource>,
    module: &Module,
    file_offset: u64,
    is_return: bool,
) -> Vec<SymFrame> {
    let blank = |reason: String| SymFrame {
        addr: 0,
        symbol: None,
        symbol_offset: None,
        module: Some(module.display()),
        file_offset: Some(file_offset),
        file: None,
        line: None,
        inlined: false,
        reason: Some(reason),
    };
    let (Module::File { path, .. }, Some(source)) = (module, source) else {
        return vec![blank(format!("no symbols for {}", module.display()))];
    };
    let lookup_at = if is_return { file_offset.saturating_sub(1) } else { file_offset };
    let (source_path, input) = match source {
        SymbolSource::Module(p) => (p.clone(), Input::FileOffset(lookup_at)),
        SymbolSource::DebugFile { path, layout } => match layout.vaddr_of(lookup_at) {
            Some(vaddr) => (path.clone(), Input::VirtOffset(vaddr)),
            None => return vec![blank(format!("offset {lookup_at:#x} is outside {}'s segments", path.display()))],
        },
    };
    if !source_path.exists() {
        return vec![blank(format!("{} no longer exists", path.display()))];
    }
    let source = Source::Elf(Elf::new(source_path));
    let result = symbolizer.symbolize_single(&source, input);
    let sym = match result {
        Ok(Symbolized::Sym(sym)) => sym,
        Ok(Symbolized::Unknown(reason)) => return vec![blank(format!("{reason} in {}", path.display()))],
        Err(e) => return vec![blank(format!("cannot read symbols of {}: {e}", path.display()))],
    };
    // The nearest symbol below may end well before the address (code
    // without symbols of its own after it, as in node's 90 MB text): a
    // name with a huge offset misleads, no name does not.
    if let Some(why) = beyond_symbol(&sym.name, sym.offset, sym.size) {
        return vec![blank(format!("{why} in {}", path.display()))];
    }
    let module_name = Some(path.display().to_string());
    let loc = |ci: Option<&symbolize::CodeInfo<'_>>| match ci {
        Some(ci) => (Some(code_file(ci)), ci.line),
        None => (None, None),
    };
    // blazesym lists inlined calls outermost first; each function's code
    // info is the location inside that function (for the outermost, the
    // symbol's own), so every frame keeps its own location.
    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
    for inlined in sym.inlined.iter().rev() {
        let (file, line) = loc(inlined.code_info.as_ref());
        frames.push(SymFrame {
            addr: 0,
            symbol: Some(inlined.name.to_string()),
            symbol_offset: None,
            module: module_name.clone(),
            file_offset: Some(file_offset),
            file,
            line,
            inlined: true,
            reason: None,
        });
    }
    let (file, line) = loc(sym.code_info.as_deref());
    frames.push(SymFrame {
        addr: 0,
        symbol: Some(sym.name.to_string()),
        symbol_offset: Some(sym.offset as u64 + u64::from(is_return)),
        module: module_name,
        file_offset: Some(file_offset),
        file,
        line,
        inlined: false,
        reason: None,
    });
    frames
}

/// Offsets from a symbol without a size are taken up to this far: the
/// largest functions are tens of KiB.
const MAX_UNSIZED_OFFSET: usize = 1 << 20;

/// Why the symbol found for an address does not contain it, if it does not.
fn beyond_symbol(name: &str, offset: usize, size: Option<usize>) -> Option<String> {
    match size {
        Some(size) if size > 0 && offset >= size => {
            Some(format!("no symbol covers it (the nearest below, {name}, ends {:#x} bytes before it)", offset - size))
        }
        None | Some(0) if offset > MAX_UNSIZED_OFFSET => {
            Some(format!("no symbol covers it (the nearest below, {name}, is {offset:#x} before)"))
        }
        _ => None,
    }
}

/// The source file as the debug info names it (relative to the build
/// directory for most C and Rust code).
fn code_file(ci: &symbolize::CodeInfo<'_>) -> String {
    Path::new(&*ci.file).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_the_nearest_symbol_has_no_name() {
        assert_eq!(beyond_symbol("main", 0x20, Some(0x40)), None);
        assert_eq!(beyond_symbol("asm_label", 0x200, None), None);
        assert_eq!(
            beyond_symbol("uv__fs_work", 0x18b_03cc, Some(0x400)).as_deref(),
            Some("no symbol covers it (the nearest below, uv__fs_work, ends 0x18affcc bytes before it)")
        );
        assert!(beyond_symbol("uv__fs_work", 0x18b_03cc, None).is_some());
    }

    #[test]
    fn trimming_forgets_the_modules_no_process_maps() {
        let exe: Arc<Path> = std::env::current_exe().expect("exe").into();
        let module = Module::File { path: exe, id: None };
        let mut resolver = Resolver::new();
        let image = ImageId { proc: ProcId { tgid: 1, gen: 1 }, exec_seq: 0 };
        let mapping = Mapping { start: 0x1000, end: 0x2000, offset: 0, module: module.clone(), file: None };
        resolver.insert(image, Arc::new(MapsSnapshot { mappings: vec![mapping] }));
        resolver.lookup(&module, 0x1000, false);
        resolver.trim();
        assert_eq!((resolver.sources.len(), resolver.symbols.len()), (1, 1), "a live process maps it");
        resolver.forget(image.proc);
        resolver.trim();
        assert!(resolver.sources.is_empty() && resolver.symbols.is_empty());
        assert_eq!(resolver.forgotten, 1);
    }
}
