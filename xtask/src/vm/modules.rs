//! Which kernel modules the guest's initramfs loads, in which order.
//!
//! Distribution kernels build the drivers the guest needs to reach its root
//! filesystem (virtio PCI, 9p over virtio, overlayfs) as modules; the
//! initramfs loads them with busybox `insmod`, which knows nothing of
//! dependencies, so the order comes from `modules.dep` (written by depmod),
//! and what `modules.builtin` lists is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// What the guest needs, by module name: the PCI transport for virtio, 9p
/// over it for the host's root, overlayfs to make that root writable.
pub(super) const NEEDED: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// A module's name from its path: `kernel/drivers/char/hw_random/virtio-rng.ko.xz`
/// -> `virtio_rng` (module names use underscores where file names may not).
pub(super) fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The parsed `modules.dep` (`path: dependency paths...`, dependencies
/// transitively complete) and `modules.builtin` (one path per line).
#[derive(Debug, Default)]
pub(super) struct ModuleIndex {
    /// name -> (path, dependency paths)
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    pub(super) fn parse(modules_dep: &str, modules_builtin: &str) -> ModuleIndex {
        let deps = modules_dep
            .lines()
            .filter_map(|line| {
                let (path, rest) = line.split_once(':')?;
                let deps = rest.split_whitespace().map(str::to_string).collect();
                Some((module_name(path), (path.trim().to_string(), deps)))
            })
            .collect();
        let builtin = modules_builtin.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect();
        ModuleIndex { deps, builtin }
    }

    pub(super) fn read(dir: &Path) -> Result<ModuleIndex> {
        let dep = std::fs::read_to_string(dir.join("modules.dep"))
            .with_context(|| format!("cannot read {}/modules.dep", dir.display()))?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Ok(ModuleIndex::parse(&dep, &builtin))
    }

    /// The paths to load, dependencies first, each once, for `wanted`
    /// names; built-in ones are left out.
    pub(super) fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            let name = name.replace('-', "_");
            if self.builtin.contains(&name) {
                continue;
            }
            if !self.deps.contains_key(&name) {
                bail!("the kernel has no module {name} and does not have it built in");
            }
            self.visit(&name, &mut seen, &mut order);
        }
        Ok(order)
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some((path, deps)) = self.deps.get(name) else { return };
        // modprobe loads the list from its end: the last entries are the
        // ones the others build on.
        for dep in deps.iter().rev() {
            self.visit(&module_name(dep), seen, order);
        }
        order.push(path.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Debian 6.1's modules.dep, the lines that matter.
    const DEP_6_1: &str = "\
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/net/9p/9pnet.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
";

    #[test]
    fn names_from_paths() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz"), "virtio_rng");
        assert_eq!(module_name("kernel/net/9p/9pnet_virtio.ko.zst"), "9pnet_virtio");
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let index = ModuleIndex::parse(DEP_6_1, "kernel/drivers/block/loop.ko\n");
        let order = index.load_order(NEEDED).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p",
                "overlay"
            ]
        );
        for (i, path) in order.iter().enumerate() {
            let (_, deps) = &index.deps[&module_name(path)];
            for dep in deps {
                assert!(order[..i].contains(dep), "{dep} before {path}");
            }
        }
    }

    #[test]
    fn built_in_drivers_are_not_loaded() {
        // Debian 6.12 builds virtio_pci into the kernel and compresses modules.
        let dep = "kernel/net/9p/9pnet.ko.xz:\nkernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n\
                   kernel/fs/netfs/netfs.ko.xz:\nkernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n\
                   kernel/fs/overlayfs/overlay.ko.xz:\n";
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n";
        let order = ModuleIndex::parse(dep, builtin).load_order(NEEDED).unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz",
                "kernel/fs/netfs/netfs.ko.xz",
                "kernel/fs/9p/9p.ko.xz",
                "kernel/fs/overlayfs/overlay.ko.xz"
            ]
        );
    }

    #[test]
    fn a_missing_module_is_named() {
        let err = ModuleIndex::parse("kernel/fs/9p/9p.ko:\n", "").load_order(&["9p", "overlay"]).unwrap_err();
        assert_eq!(err.to_string(), "the kernel has no module overlay and does not have it built in");
    }
}
