//! Which stacks of two runs are the same stack. Absolute addresses differ
//! between runs (ASLR, another heap layout), so a stack is known by what its
//! frames are in the program's files: source lines for symbolized frames, the
//! offset in the module for the others. Leaves to `compare` what to do with
//! stacks that share a key.

use crate::report::{Frame, Kind, Resource, StackEntry};

/// A stack across runs: what it holds and where each frame is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct StackKey {
    pub kind: Kind,
    pub resource: Resource,
    /// Innermost frame first, as in the report.
    pub frames: Vec<FrameKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum FrameKey {
    /// A symbolized frame, by source position. Without line information two
    /// call sites in one function share a key: a diff then compares them
    /// together, which is what a reader of that function expects.
    Symbol { module: Option<String>, symbol: String, file: Option<String>, line: Option<u32>, inlined: bool },
    /// A frame in a known module without a symbol: by its offset in the
    /// module's file (the same from run to run while the file is), else by
    /// why it could not be symbolized.
    Module { module: String, place: Place },
    /// An address outside every code mapping (a stack read through a
    /// corrupted frame pointer): nothing about it is stable across runs.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Place {
    Offset(u64),
    Reason(String),
    Unplaced,
}

pub(super) fn stack_key(stack: &StackEntry) -> StackKey {
    StackKey { kind: stack.kind, resource: stack.resource, frames: stack.stack.iter().map(frame_key).collect() }
}

pub(super) fn frame_key(frame: &Frame) -> FrameKey {
    match (&frame.symbol, &frame.module) {
        (Some(symbol), module) => FrameKey::Symbol {
            module: module.clone(),
            symbol: symbol.clone(),
            file: frame.file.clone(),
            line: frame.line,
            inlined: frame.inlined,
        },
        (None, Some(module)) => {
            let place = match (frame.offset, &frame.reason) {
                (Some(offset), _) => Place::Offset(offset),
                (None, Some(reason)) => Place::Reason(reason.clone()),
                (None, None) => Place::Unplaced,
            };
            FrameKey::Module { module: module.clone(), place }
        }
        (None, None) => FrameKey::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(symbol: Option<&str>, module: Option<&str>, line: Option<u32>, offset: Option<u64>) -> Frame {
        Frame {
            address: "0x401136".into(),
            symbol: symbol.map(str::to_string),
            module: module.map(str::to_string),
            file: line.map(|_| "x.c".to_string()),
            line,
            offset,
            inlined: false,
            reason: None,
        }
    }

    #[test]
    fn symbolized_frames_are_known_by_source_line_not_offset() {
        let a = frame(Some("load_config"), Some("/path/x"), Some(16), Some(0x16));
        let b = frame(Some("load_config"), Some("/path/x"), Some(16), Some(0x1a));
        assert_eq!(frame_key(&a), frame_key(&b));
        let c = frame(Some("load_config"), Some("/path/x"), Some(17), Some(0x16));
        assert_ne!(frame_key(&a), frame_key(&c));
        let mut inlined = a.clone();
        inlined.inlined = true;
        assert_ne!(frame_key(&a), frame_key(&inlined));
    }

    #[test]
    fn unsymbolized_frames_are_known_by_module_offset_or_reason() {
        let a = frame(None, Some("/lib/libz.so"), None, Some(0x100));
        assert_eq!(frame_key(&a), FrameKey::Module { module: "/lib/libz.so".into(), place: Place::Offset(0x100) });
        let mut b = frame(None, Some("/lib/libz.so"), None, None);
        b.reason = Some("no symbols in /lib/libz.so".into());
        assert_eq!(
            frame_key(&b),
            FrameKey::Module {
                module: "/lib/libz.so".into(),
                place: Place::Reason("no symbols in /lib/libz.so".into())
            }
        );
        let c = frame(None, Some("/lib/libz.so"), None, None);
        assert_eq!(frame_key(&c), FrameKey::Module { module: "/lib/libz.so".into(), place: Place::Unplaced });
    }

    #[test]
    fn frames_outside_every_mapping_are_all_alike() {
        let mut a = frame(None, None, None, None);
        a.reason = Some("address outside every code mapping".into());
        let b = frame(None, None, None, Some(7));
        assert_eq!(frame_key(&a), FrameKey::Unknown);
        assert_eq!(frame_key(&b), FrameKey::Unknown);
    }
}
