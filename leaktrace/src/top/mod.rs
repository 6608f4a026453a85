//! `leaktrace top`: a live view for working an incident, the stacks holding
//! the most resources and growing fastest, redrawn at every refresh.
//! [`view`] draws a report (pure, tested against a `TestBackend`); [`screen`]
//! owns the terminal and reads the keys; `cmd/top.rs` is the mode that
//! traces, refreshes the report and calls them.

mod screen;
mod view;

pub(crate) use screen::{Action, Screen};
pub(crate) use view::Status;
