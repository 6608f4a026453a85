//! The terminal `leaktrace top` draws on: raw mode and the alternate screen
//! for as long as a [`Screen`] lives, and keys read as [`Action`]s. What is
//! drawn is [`super::view`]'s; refreshing the report is the caller's.

use std::io::{self, Stdout};
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

use super::view::{self, Status, ViewState};
use crate::report::Report;

/// What a key (or the terminal) asks for. Up, Down and Sort are applied to
/// the view by [`Screen::poll_key`] already; Quit and Pause are the caller's.
/// Every action but Quit calls for a redraw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// q, Esc or Ctrl-C: raw mode turns Ctrl-C into a key instead of SIGINT.
    Quit,
    Up,
    Down,
    /// Switch to the next order (growth, count, age, verdict).
    Sort,
    /// Stop or resume refreshing.
    Pause,
    /// The terminal changed size: the screen is blank until redrawn.
    Resize,
}

/// The terminal in raw mode on the alternate screen; dropping it restores
/// the terminal, also when a panic unwinds through its owner.
pub(crate) struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    view: ViewState,
}

impl Screen {
    pub(crate) fn new() -> io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut stdout = io::stdout();
        let terminal = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(stdout)));
        match terminal {
            Ok(terminal) => Ok(Screen { terminal, view: ViewState::default() }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    pub(crate) fn draw(&mut self, report: &Report, status: &Status) -> io::Result<()> {
        let state = &mut self.view;
        self.terminal.draw(|frame| view::draw(frame, report, status, state))?;
        Ok(())
    }

    /// Waits at most `timeout` for a key that means something; other events
    /// are consumed and ignored.
    pub(crate) fn poll_key(&mut self, timeout: Duration) -> io::Result<Option<Action>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            if !event::poll(left)? {
                return Ok(None);
            }
            let action = match event::read()? {
                Event::Key(key) => action(key),
                Event::Resize(..) => Some(Action::Resize),
                _ => None,
            };
            if let Some(action) = action {
                match action {
                    Action::Up => self.view.up(),
                    Action::Down => self.view.down(),
                    Action::Sort => self.view.cycle_sort(),
                    Action::Quit | Action::Pause | Action::Resize => {}
                }
                return Ok(Some(action));
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Best effort: when this fails, stdout is gone and there is no terminal
/// left to repair.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

fn action(key: KeyEvent) -> Option<Action> {
    // Terminals with the kitty protocol (and Windows) report releases too.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
        KeyCode::Char('s' | 'S') => Some(Action::Sort),
        KeyCode::Char('p' | 'P' | ' ') => Some(Action::Pause),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyEventState;

    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers, kind: KeyEventKind) -> KeyEvent {
        KeyEvent { code, modifiers, kind, state: KeyEventState::NONE }
    }

    fn press(code: KeyCode) -> KeyEvent {
        key(code, KeyModifiers::NONE, KeyEventKind::Press)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(key(KeyCode::Char('c'), KeyModifiers::CONTROL, KeyEventKind::Press)), Some(Action::Quit));
        assert_eq!(action(press(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action(press(KeyCode::Esc)), Some(Action::Quit));
        assert_eq!(action(press(KeyCode::Up)), Some(Action::Up));
        assert_eq!(action(key(KeyCode::Down, KeyModifiers::NONE, KeyEventKind::Repeat)), Some(Action::Down));
        assert_eq!(action(press(KeyCode::Char('s'))), Some(Action::Sort));
        assert_eq!(action(press(KeyCode::Char('p'))), Some(Action::Pause));
        assert_eq!(action(press(KeyCode::Char('c'))), None);
        assert_eq!(action(key(KeyCode::Char('q'), KeyModifiers::NONE, KeyEventKind::Release)), None);
    }
}
