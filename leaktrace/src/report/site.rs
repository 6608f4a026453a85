//! Which frame of a stack is "the code that leaked": the innermost frame that
//! belongs to the program itself rather than to libc, the dynamic loader or
//! a language runtime and standard library.

use super::program::{self, LoaderPath};
use crate::symbolize::SymFrame;

/// First path element of Go standard-library import paths.
const GO_STD_ROOTS: &[&str] = &[
    "archive",
    "bufio",
    "bytes",
    "compress",
    "container",
    "context",
    "crypto",
    "database",
    "debug",
    "embed",
    "encoding",
    "errors",
    "expvar",
    "flag",
    "fmt",
    "go",
    "hash",
    "html",
    "image",
    "index",
    "internal",
    "io",
    "log",
    "math",
    "mime",
    "net",
    "os",
    "path",
    "plugin",
    "reflect",
    "regexp",
    "runtime",
    "sort",
    "strconv",
    "strings",
    "sync",
    "syscall",
    "testing",
    "text",
    "time",
    "unicode",
    "unsafe",
    "vendor",
];

const RUST_STD_PREFIXES: &[&str] = &["std::", "core::", "alloc::", "<std::", "<core::", "<alloc::"];

/// The C half of Go's runtime/cgo, linked into cgo binaries (thread
/// creation, calls between Go and C).
const CGO_RUNTIME_PREFIXES: &[&str] = &["_cgo_", "x_cgo_", "crosscall", "_rt0_"];

/// True for a Go symbol of the standard library, e.g. `os.OpenFile` or
/// `net/http.(*Client).Get`; false for `main.leak` or `github.com/x/y.F`.
pub(crate) fn is_go_std(symbol: &str) -> bool {
    if symbol.contains("::") || symbol.contains(' ') {
        return false;
    }
    let after_slash = symbol.rfind('/').map_or(0, |i| i + 1);
    let Some(dot) = symbol[after_slash..].find('.') else {
        return false;
    };
    let package = &symbol[..after_slash + dot];
    let root = package.split('/').next().unwrap_or(package);
    GO_STD_ROOTS.contains(&root)
}

fn is_library(frame: &SymFrame, loader: &LoaderPath) -> bool {
    let system = frame.module.as_deref().is_some_and(|m| program::is_system(m, loader));
    let std_symbol = frame.symbol.as_deref().is_some_and(|s| {
        is_go_std(s)
            || RUST_STD_PREFIXES.iter().any(|p| s.starts_with(p))
            || CGO_RUNTIME_PREFIXES.iter().any(|p| s.starts_with(p))
    });
    system || std_symbol
}

/// Index of the leak site in `frames` (innermost first), if any frame is the
/// program's own code (`program.rs` says which modules are).
pub(crate) fn leak_site(frames: &[SymFrame]) -> Option<usize> {
    leak_site_with(frames, LoaderPath::system())
}

fn leak_site_with(frames: &[SymFrame], loader: &LoaderPath) -> Option<usize> {
    frames.iter().position(|f| f.symbol.is_some() && !is_library(f, loader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(symbol: &str, module: &str) -> SymFrame {
        SymFrame {
            addr: 0,
            symbol: Some(symbol.into()),
            symbol_offset: None,
            module: Some(module.into()),
            file_offset: None,
            file: None,
            line: None,
            inlined: false,
            reason: None,
        }
    }

    #[test]
    fn go_standard_library_is_recognised() {
        assert!(is_go_std("os.OpenFile"));
        assert!(is_go_std("net/http.(*Client).Get"));
        assert!(is_go_std("runtime/internal/syscall.Syscall6"));
        assert!(is_go_std("internal/poll.(*FD).Init"));
        assert!(!is_go_std("main.leakFiles"));
        assert!(!is_go_std("github.com/acme/app/store.Open"));
        assert!(!is_go_std("load_config"));
        assert!(!is_go_std("load_config.cold"));
        assert!(!is_go_std("std::fs::File::open"));
    }

    #[test]
    fn cgo_runtime_frames_are_not_the_program() {
        let cgo = [
            frame("__GI___mmap64", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("pthread_create", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("_cgo_try_pthread_create", "/tmp/leaky-go"),
            frame("x_cgo_thread_start", "/tmp/leaky-go"),
        ];
        assert_eq!(leak_site(&cgo), None);
    }

    #[test]
    fn the_site_skips_libc_and_runtimes() {
        let c = [
            frame("__libc_open64", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("load_config", "/tmp/leaky"),
            frame("main", "/tmp/leaky"),
        ];
        assert_eq!(leak_site(&c), Some(1));
        let go = [
            frame("syscall.Syscall6", "/tmp/leaky-go"),
            frame("os.OpenFile", "/tmp/leaky-go"),
            frame("main.leakFiles", "/tmp/leaky-go"),
            frame("main.main", "/tmp/leaky-go"),
        ];
        assert_eq!(leak_site(&go), Some(2));
        let rust = [
            frame("std::sys::fs::unix::File::open", "/tmp/leaky-rs"),
            frame("<std::fs::File>::open", "/tmp/leaky-rs"),
            frame("leaky_rs::leak_pipes", "/tmp/leaky-rs"),
        ];
        assert_eq!(leak_site(&rust), Some(2));
        assert_eq!(leak_site(&[frame("__libc_open64", "/lib/libc.so.6")]), None);
        let plugin = [
            frame("__libc_open64", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("plugin_leak", "/opt/app/plugins/cache.so"),
            frame("main", "/opt/app/bin/app"),
        ];
        assert_eq!(leak_site(&plugin), Some(1), "the program's own libraries are its code");
    }

    #[test]
    fn a_program_installed_under_usr_lib_is_the_program() {
        let postgres = [
            frame("__libc_open64", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("BasicOpenFilePerm", "/usr/lib/postgresql/15/bin/postgres"),
            frame("PathNameOpenFilePerm", "/usr/lib/postgresql/15/bin/postgres"),
            frame("main", "/usr/lib/postgresql/15/bin/postgres"),
        ];
        assert_eq!(leak_site(&postgres), Some(1));
        let python = [
            frame("__libc_open64", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("_io_FileIO___init__", "/usr/bin/python3.11"),
            frame("_PyEval_EvalFrameDefault", "/usr/bin/python3.11"),
        ];
        assert_eq!(leak_site(&python), None, "the interpreter is not the program it runs");
    }
}
