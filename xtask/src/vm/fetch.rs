//! Getting a kernel to boot: a Debian kernel package fetched with apt from
//! the suites that carry it and unpacked under `target/vm/kernels/NAME`
//! (never installed: the host's /boot and /lib/modules are not touched), or
//! an image on disk; either way with a `modules.dep` for its modules.
//!
//! apt runs with a private configuration per kernel (its own sources.list,
//! lists and cache under `target/vm/apt/NAME`), so the host's sources stay
//! as they are and older suites need not be added to them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::spec::{self, Debian, KernelSpec};
use crate::util;

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub(super) struct Kernel {
    pub label: String,
    pub image: PathBuf,
    /// `.../lib/modules/RELEASE`, with a modules.dep; `None` when the
    /// kernel has what the guest needs built in.
    pub modules: Option<PathBuf>,
    pub release: String,
    /// The Debian package it came from, if any (`linux-image-6.1.0-56-amd64 6.1.192-2`).
    pub package: Option<String>,
}

pub(super) fn resolve(root: &Path, spec: &KernelSpec) -> Result<Kernel> {
    match spec {
        KernelSpec::Debian(debian) => fetch_debian(root, debian),
        KernelSpec::Image { image, modules } => from_image(spec.label(), image, modules.as_deref()),
    }
}

fn from_image(label: String, image: &Path, modules: Option<&Path>) -> Result<Kernel> {
    let release = spec::image_release(image)?;
    let modules = match modules {
        Some(dir) => Some(dir.to_path_buf()),
        None => spec::modules_beside(image, &release),
    };
    match &modules {
        Some(dir) => ensure_modules_dep(dir, &release)?,
        None => eprintln!(
            "xtask: no modules found for {} ({release}); booting it as if virtio-pci, 9p and overlayfs \
             were built in (give them with --kernel {},modules=DIR)",
            image.display(),
            image.display()
        ),
    }
    Ok(Kernel { label, image: image.to_path_buf(), modules, release, package: None })
}

/// sources.list of a private apt configuration for `debian`'s suites.
pub(super) fn sources_list(debian: &Debian) -> String {
    debian
        .suites
        .iter()
        .map(|(archive, suite)| {
            format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {archive} {suite} main\n")
        })
        .collect()
}

/// apt options that confine it to the configuration under `dir`: sources,
/// lists and cache there, and no dpkg status (nothing is installed).
pub(super) fn apt_options(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        "-o".into(),
        format!("Dir::Etc={d}/etc"),
        "-o".into(),
        format!("Dir::State={d}/state"),
        "-o".into(),
        format!("Dir::Cache={d}/cache"),
        "-o".into(),
        "Dir::State::status=/dev/null".into(),
        // The download lands in a directory the _apt user cannot write.
        "-o".into(),
        "APT::Sandbox::User=root".into(),
        "-o".into(),
        "Acquire::Retries=3".into(),
    ]
}

/// The package `linux-image-amd64` depends on, from `apt-cache depends`:
/// ```text
/// linux-image-amd64
///   Depends: linux-image-6.1.0-56-amd64
/// ```
pub(super) fn image_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let line = line.trim().trim_start_matches('|');
        let package = line.strip_prefix("Depends: ")?.trim();
        package.starts_with("linux-image-").then(|| package.to_string())
    })
}

/// Where the fetched kernel is, once unpacked: written last, so a fetch cut
/// short is done again.
const READY: &str = "kernel.txt";

fn fetch_debian(root: &Path, debian: &Debian) -> Result<Kernel> {
    let dir = root.join("target/vm/kernels").join(debian.name);
    if let Some(kernel) = read_ready(&dir, debian.name) {
        return Ok(kernel);
    }
    let apt = root.join("target/vm/apt").join(debian.name);
    for sub in
        ["etc/sources.list.d", "etc/preferences.d", "etc/apt.conf.d", "state/lists/partial", "cache/archives/partial"]
    {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    std::fs::write(apt.join("etc/sources.list"), sources_list(debian))?;
    let options = apt_options(&apt);
    eprintln!("xtask: fetching the package lists for {}", debian.name);
    util::run(Command::new("apt-get").args(&options).args(["update", "-q"]))?;
    let depends = util::output(Command::new("apt-cache").args(&options).args(["depends", "linux-image-amd64"]))
        .context("apt-cache depends linux-image-amd64 failed")?;
    let package =
        image_package(&depends).with_context(|| format!("linux-image-amd64 depends on no image: {depends}"))?;

    let debs = dir.join("debs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&debs)?;
    eprintln!("xtask: downloading {package}");
    util::run(Command::new("apt-get").current_dir(&debs).args(&options).args(["download", "-q", &package]))?;
    let deb = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", debs.display()))?;
    let unpacked = dir.join("root");
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;

    // Debian 13 ships modules under /usr/lib (merged /usr), older ones under /lib.
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| unpacked.join(d))
        .find(|d| d.is_dir())
        .with_context(|| format!("{package} has no lib/modules"))?;
    let release = std::fs::read_dir(&modules_root)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .with_context(|| format!("{} is empty", modules_root.display()))?;
    let image = unpacked.join("boot").join(format!("vmlinuz-{release}"));
    anyhow::ensure!(image.exists(), "{package} has no {}", image.display());
    let modules = modules_root.join(&release);
    ensure_modules_dep(&modules, &release)?;

    let version = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unpacked, the package and the lists (about 170 MB) are of no more use.
    let _ = std::fs::remove_dir_all(&debs);
    let _ = std::fs::remove_dir_all(&apt);
    let kernel =
        Kernel { label: debian.name.to_string(), image, modules: Some(modules), release, package: Some(version) };
    write_ready(&dir, &kernel)?;
    Ok(kernel)
}

fn write_ready(dir: &Path, k: &Kernel) -> Result<()> {
    let modules = k.modules.as_ref().map(|m| m.display().to_string()).unwrap_or_default();
    let text = format!(
        "image={}\nmodules={modules}\nrelease={}\npackage={}\n",
        k.image.display(),
        k.release,
        k.package.as_deref().unwrap_or("")
    );
    std::fs::write(dir.join(READY), text).context("cannot write the kernel's stamp")
}

fn read_ready(dir: &Path, label: &str) -> Option<Kernel> {
    let text = std::fs::read_to_string(dir.join(READY)).ok()?;
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string);
    let image = PathBuf::from(field("image")?);
    let modules = field("modules").filter(|m| !m.is_empty()).map(PathBuf::from);
    if !image.exists() || modules.as_ref().is_some_and(|m| !m.join("modules.dep").exists()) {
        return None;
    }
    let package = field("package").filter(|p| !p.is_empty());
    Some(Kernel { label: label.to_string(), image, modules, release: field("release")?, package })
}

/// Packages ship modules without the index depmod writes at install time.
fn ensure_modules_dep(modules: &Path, release: &str) -> Result<()> {
    if modules.join("modules.dep").exists() {
        return Ok(());
    }
    // depmod -b BASE RELEASE reads BASE/lib/modules/RELEASE.
    let base =
        modules.parent().filter(|p| p.ends_with("lib/modules")).and_then(|p| p.parent()?.parent()).with_context(
            || format!("{} has no modules.dep and is not a lib/modules/RELEASE directory", modules.display()),
        )?;
    util::run(Command::new("depmod").arg("-b").arg(base).arg(release))?;
    if !modules.join("modules.dep").exists() {
        bail!("depmod wrote no modules.dep in {}", modules.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_apt_configuration() {
        let debian = spec::KNOWN.iter().find(|k| k.name == "debian-6.1").unwrap();
        assert_eq!(
            sources_list(debian),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main\n"
        );
        let options = apt_options(Path::new("/w/target/vm/apt/debian-6.1")).join(" ");
        assert!(options.contains("-o Dir::Etc=/w/target/vm/apt/debian-6.1/etc"));
        assert!(options.contains("-o Dir::State::status=/dev/null"));
    }

    #[test]
    fn the_image_package_of_the_meta_package() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.12.117+deb13-amd64\n";
        assert_eq!(image_package(out).as_deref(), Some("linux-image-6.12.117+deb13-amd64"));
        let out = "linux-image-amd64\n |Depends: linux-image-5.10.0-46-amd64\n  Depends: linux-image-5.10.0-45-amd64\n";
        assert_eq!(image_package(out).as_deref(), Some("linux-image-5.10.0-46-amd64"));
        assert_eq!(image_package("linux-image-amd64\n  Depends: initramfs-tools\n"), None);
    }
}
