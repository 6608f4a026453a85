//! Recordings for post-incident work: what was held, by which code, at any
//! moment, readable later on another machine. `cmd/record.rs` writes
//! checkpoints (writer.rs) of what changed since the last one (delta.rs);
//! reader.rs answers reports from them; schema.rs owns the file format.

pub(crate) mod delta;
pub(crate) mod reader;
pub(crate) mod schema;
pub(crate) mod writer;
