//! Snapshots of a process's code mappings, taken while it is alive, so that
//! addresses can be turned into (file, offset) after it exited or exec'd.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use procfs::process::{MMPermissions, MMapPath, Process};

/// One executable mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub module: Module,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    /// A file, by the path the process sees (under /proc/PID/root when the
    /// process lives in another mount namespace).
    File(Arc<Path>),
    /// [vdso] and other kernel-provided code, or anonymous (JIT) code.
    Special(Arc<str>),
}

impl Module {
    pub fn display(&self) -> String {
        match self {
            Module::File(p) => p.display().to_string(),
            Module::Special(s) => s.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapsSnapshot {
    /// Sorted by `start`.
    pub mappings: Vec<Mapping>,
}

/// Where an address lies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    InModule {
        module: Module,
        file_offset: u64,
    },
    /// Not inside any executable mapping: the frame-pointer walk read a value
    /// that is not a return address.
    Unmapped,
}

impl MapsSnapshot {
    pub fn read(tgid: u32) -> std::io::Result<MapsSnapshot> {
        let process = Process::new(tgid as i32).map_err(to_io)?;
        let root = PathBuf::from(format!("/proc/{tgid}/root"));
        let mut mappings = Vec::new();
        for map in process.maps().map_err(to_io)? {
            if !map.perms.contains(MMPermissions::EXECUTE) {
                continue;
            }
            let module = match map.pathname {
                // Paths in /proc/PID/maps are in the process's mount namespace;
                // through /proc/PID/root they open the same file from ours.
                MMapPath::Path(p) => Module::File(Arc::from(in_root(&root, &p).as_path())),
                MMapPath::Vdso => Module::Special(Arc::from("[vdso]")),
                MMapPath::Vsyscall => Module::Special(Arc::from("[vsyscall]")),
                MMapPath::Anonymous => Module::Special(Arc::from("[anon]")),
                other => Module::Special(Arc::from(format!("{other:?}").as_str())),
            };
            mappings.push(Mapping { start: map.address.0, end: map.address.1, offset: map.offset, module });
        }
        mappings.sort_by_key(|m| m.start);
        Ok(MapsSnapshot { mappings })
    }

    pub fn locate(&self, addr: u64) -> Location {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        match i.checked_sub(1).map(|i| &self.mappings[i]) {
            Some(m) if addr < m.end => {
                Location::InModule { module: m.module.clone(), file_offset: addr - m.start + m.offset }
            }
            _ => Location::Unmapped,
        }
    }
}

/// Same file, seen from our mount namespace. When the process shares ours,
/// the plain path is kept so reports show familiar names.
fn in_root(root: &Path, path: &Path) -> PathBuf {
    let same_ns = std::fs::read_link(root).map(|r| r == Path::new("/")).unwrap_or(true);
    if same_ns {
        path.to_path_buf()
    } else {
        root.join(path.strip_prefix("/").unwrap_or(path))
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
        Module::File(Arc::from(Path::new(p)))
    }

    #[test]
    fn addresses_become_file_offsets() {
        let snap = MapsSnapshot {
            mappings: vec![
                Mapping { start: 0x400000, end: 0x401000, offset: 0, module: file("/a") },
                Mapping { start: 0x7f00_0000_0000, end: 0x7f00_0001_0000, offset: 0x28000, module: file("/libc") },
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
        let snap = MapsSnapshot::read(std::process::id()).expect("own maps");
        let here = addresses_become_file_offsets as *const () as u64;
        assert!(matches!(snap.locate(here), Location::InModule { module: Module::File(_), .. }));
    }
}
