//! `leaktrace diff BASE NEW`: what changed per stack between two JSON
//! reports, as `pprof -base` does for profiles: stacks that are new, grown,
//! shrunk or gone. Reading a report is `input`, knowing a stack again in
//! another run is `identity`, the comparison is `compare`, the output
//! `render`; the command line and printing are left to the CLI.

mod compare;
mod identity;
mod input;
mod render;

#[cfg(test)]
mod tests;

use std::path::Path;

pub(crate) use input::DiffError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DiffFormat {
    Text,
    /// `leaktrace.diff/1`, described at [`render::json`].
    Json,
}

/// Compares the reports at `base` and `new`; the output ends with a newline.
pub(crate) fn diff(base: &Path, new: &Path, format: DiffFormat) -> Result<String, DiffError> {
    let base_report = input::read(base)?;
    let new_report = input::read(new)?;
    Ok(render_diff(
        render::Named { path: base, report: &base_report },
        render::Named { path: new, report: &new_report },
        format,
    ))
}

fn render_diff(base: render::Named, new: render::Named, format: DiffFormat) -> String {
    let comparison = compare::compare(base.report, new.report);
    match format {
        DiffFormat::Text => render::text(base, new, &comparison),
        DiffFormat::Json => render::json(base, new, &comparison),
    }
}
