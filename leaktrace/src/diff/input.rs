//! Reading one report for a diff: the file (or a recording at a moment), its
//! JSON and its schema, into the report model (`crate::report`), which
//! reads what any `leaktrace.report/1` holds: keys it does not know are
//! ignored, so keys added to the contract later do not break a diff, and
//! keys added since the first reports (`verdict`, `bytes`, …) may be
//! missing.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::report::{Report, SCHEMA};

/// The schema name without its version: `leaktrace.report/`.
const SCHEMA_FAMILY: &str = "leaktrace.report/";
/// The version of [`SCHEMA`] this leaktrace writes and reads.
const VERSION: u32 = 1;
/// Longest part of an unexpected schema value quoted back in a message.
const QUOTED_CHARS: usize = 60;

#[derive(Debug, Error)]
pub(crate) enum DiffError {
    #[error("cannot read the report {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {message} (give a report written by leaktrace --format json)")]
    NotJson { path: PathBuf, message: String },
    #[error("{path} is cut short: {message} (was it copied before leaktrace finished writing it?)")]
    Truncated { path: PathBuf, message: String },
    #[error(
        "{path} is not a leaktrace report: {found}, expected \"schema\": \"{schema}\" \
         (give a report written by leaktrace --format json)",
        schema = SCHEMA
    )]
    NotAReport { path: PathBuf, found: String },
    #[error(
        "{path} was written by a newer leaktrace (schema \"{found}\", this one reads \"{schema}\"): \
         diff it with that leaktrace or a newer one",
        schema = SCHEMA
    )]
    NewerSchema { path: PathBuf, found: String },
    #[error(
        "{path} is not a valid {schema} report: {message} (write it again with leaktrace --format json)",
        schema = SCHEMA
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Recording(#[from] crate::record::schema::RecordingError),
}

/// Reads and checks the report at `path`.
/// A JSON report, or a recording (`FILE` at its last checkpoint,
/// `FILE@TIME` at a moment: RFC 3339 or an offset like `1m30s`).
pub(super) fn read(path: &Path) -> Result<Report, DiffError> {
    if let Some((file, at)) = recording_moment(path) {
        let recording = crate::record::reader::Recording::open(&file)?;
        let at_ns = match &at {
            Some(text) => {
                recording.moment(text).map_err(|detail| crate::record::schema::RecordingError::Moment { detail })?
            }
            None => recording.last_checkpoint_ns.unwrap_or(recording.started_ns),
        };
        let json = recording.report_at(at_ns, None)?.to_json();
        return parse(path, json.as_bytes());
    }
    let bytes = std::fs::read(path).map_err(|source| DiffError::Unreadable { path: path.to_path_buf(), source })?;
    parse(path, &bytes)
}

/// `FILE@TIME` of a recording, or a recording `FILE` itself.
fn recording_moment(path: &Path) -> Option<(PathBuf, Option<String>)> {
    let is_recording = |p: &Path| {
        use std::io::Read;
        let mut header = [0u8; 16];
        std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut header)).is_ok() && &header == b"SQLite format 3\0"
    };
    if is_recording(path) {
        return Some((path.to_path_buf(), None));
    }
    let text = path.to_str()?;
    let (file, at) = text.rsplit_once('@')?;
    is_recording(Path::new(file)).then(|| (PathBuf::from(file), Some(at.to_string())))
}

/// Checks and reads a report's bytes; `path` only names it in errors.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Report, DiffError> {
    let path = path.to_path_buf();
    // Parsed twice: first as any JSON, so that a file of another kind or
    // version is named as such instead of failing on its first unexpected
    // key, then as a report, which gives the line and column of what is
    // wrong in it.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        if e.is_eof() {
            DiffError::Truncated { path: path.clone(), message }
        } else {
            DiffError::NotJson { path: path.clone(), message }
        }
    })?;
    check_schema(&path, &value)?;
    serde_json::from_slice(bytes).map_err(|e| DiffError::Corrupt { path, message: e.to_string() })
}

fn check_schema(path: &Path, value: &Value) -> Result<(), DiffError> {
    let not_a_report = |found: String| Err(DiffError::NotAReport { path: path.to_path_buf(), found });
    let Value::Object(object) = value else {
        return not_a_report(format!("it holds {}", json_type(value)));
    };
    let schema = match object.get("schema") {
        None => return not_a_report("it has no \"schema\" key".to_string()),
        Some(Value::String(schema)) => schema,
        Some(other) => return not_a_report(format!("its \"schema\" is {}", json_type(other))),
    };
    if schema == SCHEMA {
        return Ok(());
    }
    let version = schema
        .strip_prefix(SCHEMA_FAMILY)
        .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok());
    match version {
        Some(version) if version > VERSION => {
            // Only digits follow the family name here: nothing to escape.
            Err(DiffError::NewerSchema { path: path.to_path_buf(), found: schema.clone() })
        }
        _ => not_a_report(format!("its schema is {}", quote(schema))),
    }
}

/// A value from the file, escaped and shortened so the message stays one line.
fn quote(s: &str) -> String {
    let shown: String = s.chars().take(QUOTED_CHARS).collect();
    if shown.len() < s.len() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "an object",
    }
}
