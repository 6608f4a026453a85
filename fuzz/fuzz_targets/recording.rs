//! A recording file of arbitrary bytes: opening it and reporting from it
//! must give a report or an error, never a panic (or a sanitizer finding).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // SQLite reads files, not buffers: one scratch file per fuzzing process.
    let path = std::env::temp_dir().join(format!("leaktrace-fuzz-{}.db", std::process::id()));
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    leaktrace::fuzzing::recording(&path);
});
