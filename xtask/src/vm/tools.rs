//! What booting test VMs needs on the host beyond `Needs::vm()`: qemu.
//!
//! qemu comes from bookworm-backports (10.0), through a private apt sources
//! list that adds that suite for this one install. Debian 12's own qemu
//! (7.2) would do, but cannot be installed beside the backports qemu-utils
//! some images carry (qemu-utils 10 breaks qemu-system-common << 8.0), and
//! one source for every machine is simpler than two.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util;

const QEMU_PACKAGE: &str = "qemu-system-x86";
const BACKPORTS: &str = "bookworm-backports";

pub(super) fn sources_list() -> String {
    let key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
    [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security"),
        ("http://deb.debian.org/debian", BACKPORTS),
    ]
    .iter()
    .map(|(archive, suite)| format!("deb {key} {archive} {suite} main\n"))
    .collect()
}

fn installed(package: &str) -> bool {
    let status = util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
    matches!(status, Some(s) if s.trim() == "install ok installed")
}

pub(super) fn install_qemu(root: &Path) -> Result<()> {
    if installed(QEMU_PACKAGE) {
        return Ok(());
    }
    if !util::is_root() {
        bail!("{QEMU_PACKAGE} is missing; run `sudo cargo xtask test --kernel ...` once to install it");
    }
    let dir = root.join("target/vm/apt/qemu");
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    std::fs::write(dir.join("sources.list"), sources_list())?;
    let options = [
        "-o".to_string(),
        format!("Dir::Etc::sourcelist={}/sources.list", dir.display()),
        "-o".into(),
        "Dir::Etc::sourceparts=-".into(),
        "-o".into(),
        format!("Dir::State::lists={}/lists", dir.display()),
        "-o".into(),
        "APT::Sandbox::User=root".into(),
        "-o".into(),
        "Acquire::Retries=3".into(),
    ];
    eprintln!("xtask: installing {QEMU_PACKAGE} from {BACKPORTS}");
    util::run(Command::new("apt-get").args(&options).args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    // The GUI, firmware for other machines and block drivers qemu
    // recommends are not needed to boot a kernel on a serial console.
    util::run(
        Command::new("apt-get")
            .args(&options)
            .args(["install", "-y", "-q", "--no-install-recommends", "-t", BACKPORTS, QEMU_PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !installed(QEMU_PACKAGE) {
        bail!("apt-get did not install {QEMU_PACKAGE}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn backports_beside_the_release() {
        let list = super::sources_list();
        assert_eq!(list.lines().count(), 4);
        assert!(list.contains("http://deb.debian.org/debian bookworm-backports main"));
        assert!(list.contains("http://deb.debian.org/debian-security bookworm-security main"));
    }
}
