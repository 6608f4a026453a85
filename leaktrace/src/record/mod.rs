//! Recordings for post-incident work (`leaktrace record`, `leaktrace
//! report FILE`): what was held, by which code, at any moment, readable
//! later on another machine. Work in progress: the file format and the
//! checkpoint deltas.

pub mod delta;
pub mod schema;
pub mod writer;
