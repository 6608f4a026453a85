//! `leaktrace diff BASE NEW`: the comparison is `diff/`'s; this prints it.

use std::io::Write;

use crate::cli::DiffArgs;
use crate::output::OutputError;

use super::Failure;

pub(super) fn diff(args: &DiffArgs) -> Result<u8, Failure> {
    let out = crate::diff::diff(&args.base, &args.new, args.format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).map_err(OutputError::Write)?;
    Ok(0)
}
