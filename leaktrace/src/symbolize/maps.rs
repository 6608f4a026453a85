//! Snapshots of a process's code mappings, taken while it is alive, so that
//! addresses can be turned into (file, offset) after it exited or exec'd.

use std::path::Path;
use std::sync::Arc;

use procfs::process::{MMPermissions, MMapPath};

/// One executable mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub module: Module,
    /// The mapped file's identity, for files.
    pub file: Option<FileId>,
}

/// A file by device and inode: the same module whatever path or namespace
/// it is seen through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    /// Major and minor as in /proc/PID/maps.
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    /// The device number as `stat` reports it (glibc's makedev).
    pub(crate) fn dev_t(&self) -> u64 {
        let (major, minor) = (u64::from(self.major), u64::from(self.minor));
        ((major & 0xfffff000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    /// A file, by the path the process sees (in its own mount namespace)
    /// and its identity, which is what lets the file be opened again.
    File { path: Arc<Path>, id: Option<FileId> },
    /// \[vdso\] and other kernel-provided code, or anonymous (JIT) code.
    Special(Arc<str>),
}

impl Module {
    pub(crate) fn display(&self) -> String {
        match self {
            Module::File { path, .. } => path.display().to_string(),
            Module::Special(s) => s.to_string(),
        }
    }

    pub(crate) fn path(&self) -> Option<&Arc<Path>> {
        match self {
            Module::File { path, .. } => Some(path),
            Module::Special(_) => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapsSnapshot {
    /// Sorted by `start`.
    pub mappings: Vec<Mapping>,
}

/// Where an address lies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Location {
    InModule {
        module: Module,
        file_offset: u64,
    },
    /// Generated code named by the process's perf map.
    Jit {
        map: Arc<str>,
        symbol: Arc<str>,
        offset: u64,
    },
    /// Not inside any executable mapping: the frame-pointer walk read a value
    /// that is not a return address.
    Unmapped,
}

impl MapsSnapshot {
    /// The mappings as thread `tid` of `tgid` sees them. /proc/PID/maps
    /// shows the leader thread's view, which is empty once the leader has
    /// exited, even while other threads of the process still run.
    pub(crate) fn read(tgid: u32, tid: u32) -> std::io::Result<MapsSnapshot> {
        use procfs::FromRead;
        let path = format!("/proc/{tgid}/task/{tid}/maps");
        let maps = procfs::process::MemoryMaps::from_file(&path).map_err(to_io)?;
        let mut mappings = Vec::new();
        for map in maps {
            if !map.perms.contains(MMPermissions::EXECUTE) {
                continue;
            }
            let id = (map.inode != 0).then_some(FileId {
                major: map.dev.0 as u32,
                minor: map.dev.1 as u32,
                inode: map.inode,
            });
            let module = match map.pathname {
                MMapPath::Path(p) => Module::File { path: Arc::from(p.as_path()), id },
                MMapPath::Vdso => Module::Special(Arc::from("[vdso]")),
                MMapPath::Vsyscall => Module::Special(Arc::from("[vsyscall]")),
                MMapPath::Anonymous => Module::Special(Arc::from("[anon]")),
                other => Module::Special(Arc::from(format!("{other:?}").as_str())),
            };
            let file = match module {
                Module::File { id, .. } => id,
                Module::Special(_) => None,
            };
            mappings.push(Mapping { start: map.address.0, end: map.address.1, offset: map.offset, module, file });
        }
        mappings.sort_by_key(|m| m.start);
        Ok(MapsSnapshot { mappings })
    }

    pub(crate) fn locate(&self, addr: u64) -> Location {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        match i.checked_sub(1).map(|i| &self.mappings[i]) {
            Some(m) if addr < m.end => {
                Location::InModule { module: m.module.clone(), file_offset: addr - m.start + m.offset }
            }
            _ => Location::Unmapped,
        }
    }
}

fn to_io(e: procfs::ProcError) -> std::io::Error {
    match e {
        procfs::ProcError::NotFound(_) => std::io::Error::from(std::io::ErrorKind::NotFound),
        procfs::ProcError::PermissionDenied(_) => std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        other => std::io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Module {
        Module::File { path: Arc::from(Path::new(p)), id: None }
    }

    #[test]
    fn addresses_become_file_offsets() {
        let snap = MapsSnapshot {
            mappings: vec![
                Mapping { start: 0x400000, end: 0x401000, offset: 0, module: file("/a"), file: None },
                Mapping {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0001_0000,
                    offset: 0x28000,
                    module: file("/libc"),
                    file: None,
                },
            ],
        };
        assert_eq!(snap.locate(0x400136), Location::InModule { module: file("/a"), file_offset: 0x136 });
        assert_eq!(snap.locate(0x7f00_0000_0010), Location::InModule { module: file("/libc"), file_offset: 0x28010 });
        assert_eq!(snap.locate(0x401000), Location::Unmapped);
        assert_eq!(snap.locate(0x10), Location::Unmapped);
        assert_eq!(snap.locate(0x22286e65706f006c), Location::Unmapped);
    }

    #[test]
    fn reads_our_own_code_mappings() {
        let me = std::process::id();
        let snap = MapsSnapshot::read(me, me).expect("own maps");
        let here = addresses_become_file_offsets as *const () as u64;
        assert!(matches!(snap.locate(here), Location::InModule { module: Module::File { .. }, .. }));
        // The identity is the file's, as stat sees it.
        let m = snap.mappings.iter().find(|m| m.start <= here && here < m.end).expect("mapping");
        let id = m.file.expect("file id");
        let md = std::fs::metadata(m.module.path().expect("path")).expect("stat");
        use std::os::unix::fs::MetadataExt;
        assert_eq!((id.dev_t(), id.inode), (md.dev(), md.ino()));
    }
}
