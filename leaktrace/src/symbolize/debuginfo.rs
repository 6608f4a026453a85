//! Where a module's symbols come from: the module itself (with what blazesym
//! finds through its `.gnu_debuglink`), or a separate debug file found by
//! build id, as distributions' debug packages install them
//! (`/usr/lib/debug/.build-id/ab/cdef….debug`). blazesym only follows build
//! ids from a debuglink, so binaries stripped without one are handled here.

use std::path::{Path, PathBuf};

use object::Object;

use crate::elf::{self, Layout};

pub(crate) const DEBUG_DIRS: &[&str] = &["/usr/lib/debug", "/lib/debug"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SymbolSource {
    /// Symbolize the module by file offset.
    Module(PathBuf),
    /// Symbolize this debug file by virtual address, computed with the
    /// module's layout (a debug-only file keeps addresses, not offsets).
    DebugFile { path: PathBuf, layout: Layout },
}

/// Decides, once per module, where its symbols come from.
pub(crate) fn symbol_source(module: &Path) -> SymbolSource {
    let fallback = SymbolSource::Module(module.to_path_buf());
    let Ok(file) = std::fs::File::open(module) else { return fallback };
    // SAFETY: a read-only private view of a file that is only read.
    let Ok(data) = (unsafe { memmap2::Mmap::map(&file) }) else { return fallback };
    let Ok(elf) = object::File::parse(&*data) else { return fallback };
    let has = |name: &str| elf.section_by_name(name).is_some();
    if has(".debug_info") || has(".gnu_debuglink") {
        return fallback;
    }
    let Some(id) = elf::build_id(&elf).filter(|id| id.len() > 2) else { return fallback };
    let found = DEBUG_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(".build-id").join(&id[..2]).join(format!("{}.debug", &id[2..])))
        .find(|p| p.exists());
    match found {
        Some(path) => SymbolSource::DebugFile { path, layout: Layout::of(&elf) },
        None => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_with_a_debuglink_are_left_to_blazesym() {
        // Debian's glibc has a .gnu_debuglink.
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(symbol_source(libc), SymbolSource::Module(libc.to_path_buf()));
    }

    #[test]
    fn unreadable_modules_fall_back_to_themselves() {
        let missing = Path::new("/no/such/module.so");
        assert_eq!(symbol_source(missing), SymbolSource::Module(missing.to_path_buf()));
    }
}
