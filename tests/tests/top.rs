//! `leaktrace top`: the live view, on a real pseudo-terminal (util-linux
//! `script`), and its refusal to draw anywhere else.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use leaktrace_tests::*;

/// The screen's text without its escape sequences (cursor moves become spaces).
fn screen_text(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn top_shows_the_leaking_stack_live_and_quits_on_q() {
    let leaking = Background::spawn(&c_fixture("growth"), &["60", "5"]);
    let dir = scratch_dir("top");
    let typescript = dir.join("screen");
    let shell = format!("stty cols 140 rows 40; {} top --pid {} --interval 1s", leaktrace().display(), leaking.pid());
    let mut script = Command::new("script")
        .args(["-qfc", &shell])
        .arg(&typescript)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    // Enough samples for a verdict (six), then the quit key.
    std::thread::sleep(Duration::from_secs(9));
    script.stdin.as_mut().expect("stdin").write_all(b"q").expect("type q");
    let status = script.wait().expect("wait for script");
    assert!(status.success());
    let raw = std::fs::read_to_string(&typescript).expect("typescript");
    assert!(raw.contains("COMMAND_EXIT_CODE=\"0\""), "top exits 0 on q: {raw}");
    let text = screen_text(&raw);
    assert!(text.contains("leak_steadily") && text.contains("rotate_ring"), "{text}");
    assert!(text.contains("1 stack judged leak"), "{text}");
    // The terminal is given back: the alternate screen is left last.
    assert!(raw.rfind("\x1b[?1049l") > raw.rfind("\x1b[?1049h"), "{raw}");
}

#[test]
fn top_needs_a_terminal() {
    let out = leaktrace_output(&["top", "--pid", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "leaktrace: cannot show the live view: standard output is not a terminal (for a report, use attach --format json)"
    );
}
