//! `leaktrace top`: a live view for working an incident, the stacks holding
//! the most resources and growing fastest, redrawn at every refresh.
//! [`view`] draws a report (pure, tested against a `TestBackend`); [`screen`]
//! owns the terminal and reads the keys; [`live`] is the loop that traces,
//! refreshes the report and calls them.

pub mod live;
mod screen;
mod view;

pub use screen::{Action, Screen};
pub use view::Status;
