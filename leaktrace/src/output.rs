//! Where the report goes and in which format. The destination is opened
//! before tracing starts, so an unwritable path fails in a second, not after
//! a long trace.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use thiserror::Error;

use crate::cli::{Common, Format};
use crate::report::{folded, pprof, text, Report};

/// The exit status of `--fail-on-leak` when a stack is judged `leak`.
pub const LEAK_STATUS: u8 = 3;

#[derive(Debug, Error)]
pub enum OutputError {
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

pub struct Output {
    file: Option<(PathBuf, File)>,
    format: Format,
    view: text::View,
}

impl Output {
    pub fn open(common: &Common, top: usize) -> Result<Output, OutputError> {
        let view = text::View { top, all_mappings: common.all_mappings };
        Output::to(common.format, common.output.as_deref(), view)
    }

    /// Where and how a report is written.
    pub fn to(format: Format, output: Option<&std::path::Path>, view: text::View) -> Result<Output, OutputError> {
        let file = match output {
            Some(path) => {
                let file = File::create(path).map_err(|source| OutputError::Open { path: path.into(), source })?;
                Some((path.into(), file))
            }
            None if format == Format::Pprof && std::io::stdout().is_terminal() => {
                return Err(OutputError::BinaryToTerminal)
            }
            None => None,
        };
        Ok(Output { file, format, view })
    }

    pub fn write(self, report: &Report) -> Result<(), OutputError> {
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
    format!("leaktrace {}: outstanding {} of {}", report.mode, report.kinds.join(", "), who.join(", "))
}

/// `status`, unless `--fail-on-leak` finds a stack judged `leak`.
pub fn exit_status(common: &Common, report: &Report, status: u8) -> u8 {
    let leaks = report.stacks.iter().filter(|s| s.verdict == "leak").count();
    if common.fail_on_leak && leaks > 0 {
        eprintln!("leaktrace: {leaks} stack{} judged leak (--fail-on-leak)", if leaks == 1 { "" } else { "s" });
        LEAK_STATUS
    } else {
        status
    }
}
