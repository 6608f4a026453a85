//! What `--kernel SPEC` names: a kernel xtask knows how to fetch from
//! Debian's archive (`debian-6.1`), or a kernel image on disk with its
//! modules beside it or given (`PATH[,modules=DIR]`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A Debian kernel, fetched from the suites that carry it: `linux-image-amd64`
/// of the newest of those suites decides the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Debian {
    pub name: &'static str,
    /// Lines for a sources.list: (archive, suite), component `main`.
    pub suites: &'static [(&'static str, &'static str)],
}

const DEBIAN: &str = "http://deb.debian.org/debian";
const DEBIAN_SECURITY: &str = "http://deb.debian.org/debian-security";

/// The kernels `--kernel NAME` can fetch. Debian 11's 5.10 is the oldest
/// deb.debian.org still serves (buster and bullseye-backports have moved to
/// archive.debian.org).
pub(super) const KNOWN: &[Debian] = &[
    Debian { name: "debian-5.10", suites: &[(DEBIAN, "bullseye"), (DEBIAN_SECURITY, "bullseye-security")] },
    Debian {
        name: "debian-6.1",
        suites: &[(DEBIAN, "bookworm"), (DEBIAN, "bookworm-updates"), (DEBIAN_SECURITY, "bookworm-security")],
    },
    Debian { name: "debian-6.12", suites: &[(DEBIAN, "trixie"), (DEBIAN_SECURITY, "trixie-security")] },
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum KernelSpec {
    Debian(Debian),
    Image { image: PathBuf, modules: Option<PathBuf> },
}

impl KernelSpec {
    pub(super) fn parse(spec: &str) -> Result<KernelSpec> {
        if let Some(known) = KNOWN.iter().find(|k| k.name == spec) {
            return Ok(KernelSpec::Debian(*known));
        }
        let mut parts = spec.split(',');
        let image = parts.next().unwrap_or_default();
        let mut modules = None;
        for option in parts {
            match option.split_once('=') {
                Some(("modules", dir)) if !dir.is_empty() => modules = Some(PathBuf::from(dir)),
                _ => bail!("unknown option {option:?} in --kernel {spec:?} (the only one is modules=DIR)"),
            }
        }
        if !image.contains('/') && !Path::new(image).exists() {
            let names: Vec<&str> = KNOWN.iter().map(|k| k.name).collect();
            bail!("--kernel {spec:?} is neither a kernel image nor one of {}", names.join(", "));
        }
        Ok(KernelSpec::Image { image: PathBuf::from(image), modules })
    }

    /// A short name for directories and messages.
    pub(super) fn label(&self) -> String {
        match self {
            KernelSpec::Debian(d) => d.name.to_string(),
            KernelSpec::Image { image, .. } => {
                image.file_name().map_or_else(|| "kernel".into(), |n| n.to_string_lossy().into_owned())
            }
        }
    }
}

/// The release string (`uname -r`) a bzImage carries: the setup header
/// (Documentation/arch/x86/boot.rst) has the magic "HdrS" at 0x202 and, at
/// 0x20e, the offset of the version string minus 0x200.
pub(super) fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let pointer = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    let start = pointer + 0x200;
    let rest = image.get(start..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    // "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ..."
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// Where an image's modules are, for an image at `DIR/boot/vmlinuz-R`
/// (an unpacked package or a root filesystem): `DIR/lib/modules/R` or
/// `DIR/usr/lib/modules/R`, then the running system's.
pub(super) fn modules_beside(image: &Path, release: &str) -> Option<PathBuf> {
    let base = image.parent()?.parent()?;
    [base.join("lib/modules"), base.join("usr/lib/modules"), PathBuf::from("/lib/modules")]
        .into_iter()
        .map(|d| d.join(release))
        .find(|d| d.join("modules.order").exists() || d.join("modules.dep").exists())
}

/// The release of an image: from its header, else from a `vmlinuz-R` name.
pub(super) fn image_release(image: &Path) -> Result<String> {
    let bytes = std::fs::read(image).with_context(|| format!("cannot read kernel image {}", image.display()))?;
    if let Some(release) = bzimage_release(&bytes) {
        return Ok(release);
    }
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_prefix("vmlinuz-") {
        Some(release) => Ok(release.to_string()),
        None => bail!("{} is not an x86 bzImage (no HdrS header)", image.display()),
    }
}

/// `major.minor` of a release string: "6.1.0-56-amd64" -> (6, 1).
pub(super) fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_and_paths() {
        assert_eq!(KernelSpec::parse("debian-6.1").unwrap().label(), "debian-6.1");
        let KernelSpec::Debian(d) = KernelSpec::parse("debian-5.10").unwrap() else { panic!("known") };
        assert_eq!(d.suites[0], (DEBIAN, "bullseye"));
        assert_eq!(
            KernelSpec::parse("/boot/vmlinuz-6.1.0-56-amd64").unwrap(),
            KernelSpec::Image { image: "/boot/vmlinuz-6.1.0-56-amd64".into(), modules: None }
        );
        assert_eq!(
            KernelSpec::parse("./bzImage,modules=/tmp/m").unwrap(),
            KernelSpec::Image { image: "./bzImage".into(), modules: Some("/tmp/m".into()) }
        );
        assert!(KernelSpec::parse("debian-4.19").unwrap_err().to_string().contains("debian-6.1"));
        assert!(KernelSpec::parse("./bzImage,initrd=x").is_err());
        assert_eq!(KernelSpec::parse("/x/boot/vmlinuz-6.1.0-56-amd64").unwrap().label(), "vmlinuz-6.1.0-56-amd64");
    }

    #[test]
    fn release_from_the_setup_header() {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x0800u16.to_le_bytes());
        let version = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0xa00..0xa00 + version.len()].copy_from_slice(version);
        assert_eq!(bzimage_release(&image).as_deref(), Some("6.1.0-56-amd64"));
        image[0x202] = b'X';
        assert_eq!(bzimage_release(&image), None);
        assert_eq!(bzimage_release(&[0u8; 16]), None);
    }

    #[test]
    fn versions() {
        assert_eq!(major_minor("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(major_minor("5.10.0-46-amd64"), Some((5, 10)));
        assert_eq!(major_minor("6.12.117+deb13-amd64"), Some((6, 12)));
        assert_eq!(major_minor("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(major_minor("x"), None);
    }
}
