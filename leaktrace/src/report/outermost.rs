//! Whether a stack reaches the start of its thread. The CFI walker knows
//! (it stops at a frame with no caller); the kernel's frame-pointer walk does
//! not, and silently ends at the first caller built without frame pointers,
//! or anywhere when a process's unwinding tables were not loaded yet (a
//! process that exec'd an instant before, in attach mode). Such a stack looks
//! short but whole; it is judged by where it ends.

/// Functions a complete stack ends in: process and thread entry points of
/// glibc, musl and Go, and the libc frames that call `main` (a frame-pointer
/// walk of a program built with frame pointers stops there, past `main`).
const ENDS: &[&str] = &[
    "_start",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__libc_start_call_main",
    "__libc_start_main",
    "__libc_start_main_impl",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
    "runtime.mstart",
    "runtime.mstart.abi0",
];

/// True for a function a complete stack ends in.
pub(crate) fn is_end(symbol: &str) -> bool {
    ENDS.contains(&symbol)
}

/// Why a frame-pointer stack ending in `last` (its outermost frame's symbol,
/// `None` when unknown) is incomplete, or `None` when it is complete.
pub(crate) fn fp_truncation(last: Option<&str>) -> Option<String> {
    match last {
        Some(symbol) if is_end(symbol) => None,
        Some(symbol) => Some(format!(
            "the frame-pointer walk ended at {symbol}, short of the thread's start (a caller without frame \
             pointers, or unwinding tables not loaded yet)"
        )),
        None => Some("the frame-pointer walk ended at an unnamed frame, short of the thread's start".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_end_a_stack() {
        for end in ["_start", "start_thread", "clone3", "runtime.goexit", "__libc_start_call_main"] {
            assert_eq!(fp_truncation(Some(end)), None, "{end}");
        }
    }

    #[test]
    fn anything_else_is_a_cut() {
        let why = fp_truncation(Some("__libc_accept")).expect("cut");
        assert!(why.contains("__libc_accept"), "{why}");
        assert!(fp_truncation(None).is_some());
    }
}
