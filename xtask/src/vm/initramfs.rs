//! The guest's initramfs: a static busybox, the modules that reach the
//! host's root filesystem, and an `/init` that loads them, mounts that root
//! read-only over 9p under a tmpfs overlay (so the suite can write where it
//! writes on the host, and nothing reaches the host), mounts the results
//! directory read-write, and hands over to the guest script.
//!
//! The archive is the kernel's "newc" cpio format
//! (Documentation/driver-api/early-userspace/buffer-format.rst), written
//! here rather than with cpio(1): a few headers, and testable.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where busybox-static installs its binary.
pub(super) const BUSYBOX: &str = "/bin/busybox";

/// 9p mount tags shared with qemu (see `qemu.rs`).
pub(super) const ROOT_TAG: &str = "hostroot";
pub(super) const RESULTS_TAG: &str = "results";

/// A newc cpio archive being written.
#[derive(Default)]
pub(super) struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub(super) fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    pub(super) fn file(&mut self, name: &str, mode: u32, content: &[u8]) {
        self.entry(name, S_IFREG | mode, (0, 0), content);
    }

    pub(super) fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), content: &[u8]) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            content.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(content);
        self.pad();
    }

    /// Header plus name, and data, each end on a 4-byte boundary.
    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }
}

/// What `/init` needs to know.
pub(super) struct InitPlan<'a> {
    /// Module file names under /modules, in load order.
    pub modules: &'a [String],
    /// The host directory the results share is mounted on in the guest.
    pub results: &'a Path,
    /// The script on the host's filesystem the guest runs as PID 1.
    pub guest_script: &'a Path,
}

/// `/init`, run by busybox's shell as PID 1.
pub(super) fn init_script(plan: &InitPlan) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         # Written by cargo xtask test --kernel: reach the host's root, then run the guest script.\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev 2>/dev/null\n\
         fail() { echo \"leaktrace-vm: init: $*\"; echo o > /proc/sysrq-trigger; sleep 10; }\n",
    );
    for module in plan.modules {
        s.push_str(&format!("insmod /modules/{module} || fail \"insmod {module} failed\"\n"));
    }
    s.push_str(&format!(
        "# The 9p devices appear once virtio-pci has probed them.\n\
         for i in $(seq 50); do\n\
         \tmount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose {ROOT_TAG} /lower 2>/dev/null && break\n\
         \tsleep 0.1\n\
         done\n\
         grep -q ' /lower ' /proc/mounts || fail \"cannot mount the host's root over 9p\"\n\
         mount -t tmpfs -o size=75% tmpfs /upper\n\
         mkdir -p /upper/data /upper/work\n\
         mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot \\\n\
         \t|| fail \"cannot mount the overlay on the host's root\"\n\
         mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {RESULTS_TAG} /newroot{results} \\\n\
         \t|| fail \"cannot mount the results directory\"\n\
         umount /proc /sys\n\
         umount /dev 2>/dev/null\n\
         exec switch_root /newroot /bin/bash {script}\n",
        results = plan.results.display(),
        script = plan.guest_script.display(),
    ));
    s
}

/// The command that decompresses a module file, for the compressed kinds
/// distributions ship (busybox insmod takes plain ELF only).
pub(super) fn decompressor(path: &str) -> Option<&'static str> {
    match path.rsplit('.').next() {
        Some("xz") => Some("xz"),
        Some("zst") => Some("zstd"),
        Some("gz") => Some("gzip"),
        _ => None,
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    match decompressor(&name) {
        None => std::fs::read(path).with_context(|| format!("cannot read {name}")),
        Some(tool) => {
            let out = Command::new(tool)
                .args(["-d", "-c"])
                .arg(path)
                .output()
                .with_context(|| format!("cannot run {tool} to decompress {name}"))?;
            if !out.status.success() {
                bail!("{tool} -d {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(out.stdout)
        }
    }
}

/// Writes the initramfs to `out`.
pub(super) fn build(
    out: &Path,
    modules_dir: Option<&Path>,
    module_paths: &[String],
    results: &Path,
    guest_script: &Path,
) -> Result<()> {
    let busybox = std::fs::read(BUSYBOX).with_context(|| format!("cannot read {BUSYBOX} (busybox-static)"))?;
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "modules", "lower", "upper", "newroot"] {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    let mut names = Vec::new();
    for (i, path) in module_paths.iter().enumerate() {
        let dir = modules_dir.context("modules to load but no modules directory")?;
        let content = read_module(&dir.join(path))?;
        // Numbered, so that a listing shows the load order.
        let name = format!("{i:02}-{}.ko", super::modules::module_name(path));
        cpio.file(&format!("modules/{name}"), 0o644, &content);
        names.push(name);
    }
    let init = init_script(&InitPlan { modules: &names, results, guest_script });
    cpio.file("init", 0o755, init.as_bytes());
    std::fs::write(out, cpio.finish()).with_context(|| format!("cannot write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(header: &[u8], i: usize) -> u32 {
        let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    }

    #[test]
    fn newc_entries_are_aligned_and_end_with_the_trailer() {
        let mut cpio = Cpio::default();
        cpio.dir("bin");
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        cpio.char_device("dev/console", 5, 1);
        let data = cpio.finish();
        assert_eq!(&data[..6], b"070701");
        assert_eq!(field(&data, 1), S_IFDIR | 0o755);
        assert_eq!(field(&data, 11), 4, "name size counts the NUL");
        // 110-byte header + "bin\0" = 114, padded to 116.
        let second = &data[116..];
        assert_eq!(&second[..6], b"070701");
        assert_eq!(field(second, 1), S_IFREG | 0o755);
        assert_eq!(field(second, 6), 10);
        assert_eq!(&second[110..115], b"init\0");
        // header + "init\0" = 115 -> 116, then 10 bytes -> 12.
        let third = &second[116 + 12..];
        assert_eq!(field(third, 1), S_IFCHR | 0o600);
        assert_eq!((field(third, 9), field(third, 10)), (5, 1));
        assert!(data.len() % 4 == 0);
        let trailer = b"TRAILER!!!\0";
        assert!(data.windows(trailer.len()).any(|w| w == trailer));
    }

    #[test]
    fn init_loads_modules_in_order_then_switches_root() {
        let modules = vec!["00-virtio.ko".to_string(), "01-9p.ko".to_string()];
        let script = init_script(&InitPlan {
            modules: &modules,
            results: Path::new("/w/target/vm/run/debian-6.1"),
            guest_script: Path::new("/w/target/vm/run/debian-6.1/guest.sh"),
        });
        let virtio = script.find("insmod /modules/00-virtio.ko").unwrap();
        let ninep = script.find("insmod /modules/01-9p.ko").unwrap();
        let mount = script.find("-t 9p").unwrap();
        assert!(virtio < ninep && ninep < mount);
        assert!(script.contains(",ro,"), "the host's root is read-only");
        assert!(script.contains("results /newroot/w/target/vm/run/debian-6.1"));
        assert!(script.ends_with("exec switch_root /newroot /bin/bash /w/target/vm/run/debian-6.1/guest.sh\n"));
    }

    #[test]
    fn compressed_modules() {
        assert_eq!(decompressor("kernel/fs/9p/9p.ko.xz"), Some("xz"));
        assert_eq!(decompressor("kernel/fs/9p/9p.ko.zst"), Some("zstd"));
        assert_eq!(decompressor("kernel/fs/9p/9p.ko"), None);
    }
}
