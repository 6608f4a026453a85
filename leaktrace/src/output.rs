//! Where the report goes. The destination is opened before tracing starts,
//! so an unwritable path fails in a second, not after a long trace.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use thiserror::Error;

use crate::cli::{Common, Format};
use crate::report::{text, Report};

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
}

pub struct Output {
    file: Option<(PathBuf, File)>,
    format: Format,
    view: text::View,
}

impl Output {
    pub fn open(common: &Common, top: usize) -> Result<Output, OutputError> {
        let file = match &common.output {
            Some(path) => {
                let file = File::create(path).map_err(|source| OutputError::Open { path: path.clone(), source })?;
                Some((path.clone(), file))
            }
            None => None,
        };
        Ok(Output { file, format: common.format, view: text::View { top, all_mappings: common.all_mappings } })
    }

    pub fn write(self, report: &Report) -> Result<(), OutputError> {
        let body = match self.format {
            Format::Text => text::render(report, &self.view),
            Format::Json => report.to_json() + "\n",
        };
        if report.losses.any() && (self.format != Format::Text || self.file.is_some()) {
            // The warning is in the text itself; other outputs get it on stderr.
            eprintln!("leaktrace: {}", text::losses_warning(report));
        }
        match self.file {
            Some((_, mut file)) => file.write_all(body.as_bytes()).map_err(OutputError::Write),
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(body.as_bytes()).and_then(|_| stdout.flush()).map_err(OutputError::Write)
            }
        }
    }
}
