//! `leaktrace report FILE`: what a recording says was held at a moment.

use crate::cli::ReportArgs;
use crate::output::Output;
use crate::record::reader::Recording;
use crate::record::schema::RecordingError;
use crate::report::text;

use super::Failure;

pub(super) fn report(args: &ReportArgs) -> Result<u8, Failure> {
    let recording = Recording::open(&args.file)?;
    let moment = |text: &str| recording.moment(text).map_err(|detail| RecordingError::Moment { detail });
    let at_ns = match &args.at {
        Some(text) => moment(text)?,
        None => recording.last_checkpoint_ns.unwrap_or(recording.started_ns),
    };
    let from_ns = match &args.from {
        Some(text) => moment(text)?,
        None => recording.started_ns,
    };
    let report = recording.report_window(from_ns, at_ns, args.pid)?;
    let view = text::View { top: crate::config::Config::default().top, all_mappings: false };
    Output::to(args.format, args.output.as_deref(), view)?.write(&report)?;
    Ok(0)
}
