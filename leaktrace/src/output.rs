//! Where the report goes and in which format. The destination is opened
//! before tracing starts, so an unwritable path fails in a second, not after
//! a long trace.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use thiserror::Error;

use crate::report::{folded, pprof, text, Report};
use crate::track::verdict::Verdict;

/// The exit status of `--fail-on-leak` when a stack is judged `leak`.
pub(crate) const LEAK_STATUS: u8 = 3;

#[derive(Debug, Error)]
pub(crate) enum OutputError {
    #[error("cannot write the report to {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the report: {0}")]
    Write(#[source] std::io::Error),
    #[error("--format pprof is binary: write it with --output FILE or redirect standard output")]
    BinaryToTerminal,
    #[error(transparent)]
    Svg(#[from] folded::SvgError),
}

/// The formats a report is written in (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// For people: stacks with their verdicts, counts and frames.
    Text,
    /// The `leaktrace.report/1` contract.
    Json,
    /// A gzipped profile.proto (go tool pprof, Pyroscope, Parca).
    Pprof,
    /// Folded stacks for flamegraph.pl or inferno.
    Folded,
    /// A flame graph of what is outstanding, by stack.
    Svg,
}

pub(crate) struct Output {
    file: Option<(PathBuf, File)>,
    format: Format,
    view: text::View,
}

impl Output {
    /// Where and how a report is written.
    pub(crate) fn to(
        format: Format,
        output: Option<&std::path::Path>,
        view: text::View,
    ) -> Result<Output, OutputError> {
        let file = match output {
            Some(path) => {
                let file = create(path).map_err(|source| OutputError::Open { path: path.into(), source })?;
                Some((path.into(), file))
            }
            None if format == Format::Pprof && std::io::stdout().is_terminal() => {
                return Err(OutputError::BinaryToTerminal)
            }
            None => None,
        };
        Ok(Output { file, format, view })
    }

    pub(crate) fn write(self, report: &Report) -> Result<(), OutputError> {
        let body = match self.format {
            Format::Text => text::render(report, &self.view).into_bytes(),
            Format::Json => (report.to_json() + "\n").into_bytes(),
            Format::Pprof => pprof::encode(report),
            Format::Folded => folded::folded(report, folded::default_weight(report)).into_bytes(),
            Format::Svg => folded::svg(report, &title(report))?,
        };
        if report.losses.any() && (self.format != Format::Text || self.file.is_some()) {
            // The warning is in the text itself; other outputs get it on stderr.
            eprintln!("leaktrace: {}", text::losses_warning(report));
        }
        match self.file {
            Some((_, mut file)) => file.write_all(&body).map_err(OutputError::Write),
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&body).and_then(|_| stdout.flush()).map_err(OutputError::Write)
            }
        }
    }
}

/// Opens `path` for the report without following a symbolic link in its
/// last component: leaktrace runs as root, and a link planted where a report
/// is written (in /tmp, say) would otherwise have it overwrite the link's
/// target. Existing regular files are truncated; devices (/dev/null) and
/// pipes are written as they are. Not-blocking, so a FIFO nobody reads is
/// an error instead of a hang.
fn create(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("it is a symbolic link, which leaktrace does not follow"),
            Some(libc::ENXIO) => std::io::Error::other("it is a FIFO that nothing reads"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if meta.is_file() {
        file.set_len(0)?;
    }
    // Back to blocking writes for pipes and devices.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_SETFL, 0) };
    Ok(file)
}

/// The flame graph's title: what was traced.
fn title(report: &Report) -> String {
    let who: Vec<String> = report
        .targets
        .iter()
        .map(|t| match &t.comm {
            Some(comm) => format!("{comm} ({})", t.pid),
            None => t.pid.to_string(),
        })
        .collect();
    let kinds: Vec<&str> = report.kinds.iter().map(|k| k.name()).collect();
    format!("leaktrace {}: outstanding {} of {}", report.mode, kinds.join(", "), who.join(", "))
}

/// `status`, unless `--fail-on-leak` finds a stack judged `leak`.
pub(crate) fn exit_status(fail_on_leak: bool, report: &Report, status: u8) -> u8 {
    let leaks = report.stacks.iter().filter(|s| s.verdict == Some(Verdict::Leak)).count();
    if fail_on_leak && leaks > 0 {
        eprintln!("leaktrace: {leaks} stack{} judged leak (--fail-on-leak)", if leaks == 1 { "" } else { "s" });
        LEAK_STATUS
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbolic_link_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("leaktrace-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let target = dir.join("precious");
        std::fs::write(&target, b"keep me").expect("target");
        let link = dir.join("report.json");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        let e = create(&link).expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).expect("target"), b"keep me");
        // A regular file is truncated and rewritten.
        let plain = dir.join("plain.json");
        std::fs::write(&plain, b"old and longer").expect("plain");
        create(&plain).and_then(|mut f| f.write_all(b"new")).expect("rewrite");
        assert_eq!(std::fs::read(&plain).expect("plain"), b"new");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
