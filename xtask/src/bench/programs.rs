//! The benchmark programs: small C files in xtask/bench/, compiled with
//! `gcc -O2` (as people build C, without forcing frame pointers) into
//! target/bench/ on every run, which takes a fraction of a second.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::util;

pub(crate) struct Programs {
    /// Rounds of open("/dev/null")+close pairs.
    pub open_close: PathBuf,
    /// Rounds of loopback socket+connect+close, a thread accepting.
    pub connect_close: PathBuf,
    /// Rounds of 4-page mmap+munmap pairs.
    pub mmap_munmap: PathBuf,
    /// 1,000,000 dup()s from 10,000 distinct stacks.
    pub stacks: PathBuf,
    /// Two threads opening and closing, a bounded ring kept.
    pub soak: PathBuf,
    /// N processes holding 13 fds each, one rotated every second.
    pub hold: PathBuf,
    /// Copies opening fds at a set rate, each fd held for a set time.
    pub churn: PathBuf,
    /// The test fixture leaking fds at a steady rate (tests/fixtures/c).
    pub growth: PathBuf,
}

pub(super) fn build(root: &Path, out: &Path) -> Result<Programs> {
    let compile_from = |dir: &str, name: &str| -> Result<PathBuf> {
        let binary = out.join(name);
        util::run(
            Command::new("gcc")
                .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
                .arg(&binary)
                .arg(root.join(dir).join(format!("{name}.c"))),
        )?;
        Ok(binary)
    };
    let compile = |name: &str| compile_from("xtask/bench", name);
    Ok(Programs {
        open_close: compile("open_close")?,
        connect_close: compile("connect_close")?,
        mmap_munmap: compile("mmap_munmap")?,
        stacks: compile("stacks")?,
        soak: compile("soak")?,
        hold: compile("hold")?,
        churn: compile("churn")?,
        growth: compile_from("tests/fixtures/c", "growth")?,
    })
}
