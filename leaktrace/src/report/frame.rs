//! How a frame reads for people, in every text output (the report, a diff,
//! `top`'s detail pane, folded stacks): its name, where it is, and why it
//! has no name when it has none.

use super::Frame;

/// The function: `load_config`, or `[unknown: why]` without a symbol. An
/// inlined frame is named like any other: the caller it was inlined into
/// follows it in the stack (flame graphs, pprof functions).
pub(crate) fn function(f: &Frame) -> String {
    match &f.symbol {
        Some(symbol) => symbol.clone(),
        None => unknown(f),
    }
}

/// [`function`], saying when the call was inlined: `load_config (inlined)`.
pub(crate) fn symbol(f: &Frame) -> String {
    match &f.symbol {
        Some(symbol) if f.inlined => format!("{symbol} (inlined)"),
        _ => function(f),
    }
}

/// [`symbol`] with the offset into the symbol: `load_config+0x16`.
pub(crate) fn name(f: &Frame) -> String {
    match &f.symbol {
        Some(symbol) => {
            let offset = f.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
            let inlined = if f.inlined { " (inlined)" } else { "" };
            format!("{symbol}{offset}{inlined}")
        }
        None => unknown(f),
    }
}

fn unknown(f: &Frame) -> String {
    format!("[unknown: {}]", f.reason.as_deref().unwrap_or("no symbol"))
}

/// The source position: `x.c:16`, or the file alone.
pub(crate) fn source(f: &Frame) -> Option<String> {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => Some(format!("{file}:{line}")),
        (Some(file), None) => Some(file.clone()),
        _ => None,
    }
}

/// The module's file name, without its directory.
pub(crate) fn module(f: &Frame) -> Option<&str> {
    f.module.as_deref().map(|m| m.rsplit('/').next().unwrap_or(m))
}

/// Where the frame is: its source position, else its module (with the
/// offset in the module's file for a frame without a symbol, which stays
/// the same from run to run); empty when nothing is known.
pub(crate) fn place(f: &Frame) -> String {
    if let Some(source) = source(f) {
        return source;
    }
    match (module(f), f.symbol.is_none().then_some(f.offset).flatten()) {
        (Some(module), Some(offset)) => format!("{module}+{offset:#x}"),
        (Some(module), None) => module.to_string(),
        (None, _) => String::new(),
    }
}

/// One line: `load_config+0x16  x.c:16`.
pub(crate) fn line(f: &Frame) -> String {
    let place = place(f);
    if place.is_empty() {
        name(f)
    } else {
        format!("{}  {place}", name(f))
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
    fn symbolized_frames_read_name_offset_and_source() {
        let f = frame(Some("load_config"), Some("/path/x"), Some(16), Some(0x16));
        assert_eq!(line(&f), "load_config+0x16  x.c:16");
        assert_eq!(symbol(&f), "load_config");
        let inlined = Frame { inlined: true, ..f.clone() };
        assert_eq!(line(&inlined), "load_config+0x16 (inlined)  x.c:16");
        assert_eq!(symbol(&inlined), "load_config (inlined)");
        assert_eq!(function(&inlined), "load_config");
        let no_lines = frame(Some("__libc_open64"), Some("/usr/lib/x86_64-linux-gnu/libc.so.6"), None, Some(0x51));
        assert_eq!(line(&no_lines), "__libc_open64+0x51  libc.so.6");
    }

    #[test]
    fn frames_without_symbols_say_why_and_where() {
        let mut f = frame(None, Some("/lib/libz.so"), None, Some(0x100));
        f.reason = Some("no symbols in /lib/libz.so".into());
        assert_eq!(line(&f), "[unknown: no symbols in /lib/libz.so]  libz.so+0x100");
        assert_eq!(line(&frame(None, Some("/lib/libz.so"), None, None)), "[unknown: no symbol]  libz.so");
        let mut outside = frame(None, None, None, None);
        outside.reason = Some("address outside every code mapping".into());
        assert_eq!(line(&outside), "[unknown: address outside every code mapping]");
        assert_eq!(place(&outside), "");
    }
}
