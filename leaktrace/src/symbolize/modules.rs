//! Open handles on the files processes map as code, one per file.
//!
//! A path in /proc/PID/maps names the file in the process's mount namespace,
//! and the file may be deleted or replaced later; the process itself may be
//! gone by report time. A handle opened through /proc/PID/map_files while the
//! process lives keeps the very file that was mapped readable until the end.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::maps::{FileId, Mapping};

#[derive(Default)]
pub(crate) struct ModuleFiles {
    files: HashMap<FileId, Arc<File>>,
}

impl ModuleFiles {
    /// The mapped file behind `m` in process `tgid`, opened once per file.
    pub(crate) fn open(&mut self, tgid: u32, m: &Mapping) -> Option<Arc<File>> {
        let id = m.file?;
        if let Some(open) = self.files.get(&id) {
            return Some(open.clone());
        }
        let path = m.module.path()?;
        let by_map = format!("/proc/{tgid}/map_files/{:x}-{:x}", m.start, m.end);
        let in_root = Path::new(&format!("/proc/{tgid}/root")).join(path.strip_prefix("/").unwrap_or(path));
        let open = Arc::new(File::open(by_map).or_else(|_| File::open(in_root)).ok()?);
        self.files.insert(id, open.clone());
        Some(open)
    }

    /// Closes the files `keep` says no longer matter.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&FileId) -> bool) {
        self.files.retain(|id, _| keep(id));
    }

    /// A path blazesym can open for the file: its own path when that still
    /// names the same file here (so a `.gnu_debuglink` file beside it is
    /// found), otherwise our handle on it.
    pub(crate) fn source_path(&self, id: FileId, path: &Path) -> PathBuf {
        let same = std::fs::metadata(path).is_ok_and(|md| md.dev() == id.dev_t() && md.ino() == id.inode);
        match self.files.get(&id) {
            Some(open) if !same => PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd())),
            _ => path.to_path_buf(),
        }
    }
}
