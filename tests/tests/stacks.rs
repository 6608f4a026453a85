//! Complete, symbolized stacks for code without frame pointers: glibc, `gcc
//! -O2` and `cargo build --release` binaries, inlined functions, libraries
//! loaded with dlopen, generated code, C++ names, separate debug info and
//! other mount namespaces.

use std::process::Command;

use leaktrace_tests::*;
use serde_json::Value;

fn run_ok(program: &std::path::Path, args: &[&str]) -> Value {
    let run = run_json(&[], program, args);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run.report
}

/// The entry is not cut short and ends in the outermost frame of a process
/// or thread.
fn assert_complete(entry: &Value) {
    assert_eq!(entry.get("truncated"), None, "{entry}");
    let symbols = symbols(entry);
    let last = symbols.last().copied().unwrap_or_default();
    assert!(["_start", "clone3", "__clone3", "start_thread"].contains(&last), "ends in {last}: {symbols:?}");
}

#[test]
fn through_several_glibc_frames_to_start() {
    let r = run_ok(&c_fixture("fd_leaks"), &["fopen"]);
    let leaked = with_site(&r, "fopen_without_fclose");
    assert_eq!(count(&leaked), 25);
    let symbols = symbols(leaked[0]);
    let site = symbols.iter().position(|s| *s == "fopen_without_fclose").expect("site");
    assert!(site >= 3, "the glibc frames between open and the caller are there: {symbols:?}");
    assert!(symbols[..site].iter().any(|s| s.contains("fopen")), "{symbols:?}");
    assert_eq!(symbols[site + 1], "main");
    assert_complete(leaked[0]);
    let frame = &leaked[0]["stack"][site];
    assert_eq!(frame["file"], "fd_leaks.c");
    assert!(frame["line"].as_u64().expect("line") > 0);
    assert!(frame["module"].as_str().expect("module").ends_with("/c-fd_leaks"));
}

#[test]
fn an_inlined_helper_is_a_frame_of_its_own() {
    let r = run_ok(&c_fixture("fd_leaks"), &["inlined"]);
    let leaked = with_symbol(&r, "leak_via_inline_helper");
    assert_eq!(count(&leaked), 9);
    let frames = leaked[0]["stack"].as_array().expect("frames");
    let helper = frames.iter().position(|f| f["symbol"] == "open_cached").expect("inlined frame");
    assert_eq!(frames[helper]["inlined"], true);
    assert_eq!(frames[helper]["file"], "fd_leaks.c");
    assert_eq!(frames[helper + 1]["symbol"], "leak_via_inline_helper");
    assert_eq!(frames[helper]["address"], frames[helper + 1]["address"], "one machine frame");
    assert_ne!(frames[helper]["line"], frames[helper + 1]["line"]);
    assert_complete(leaked[0]);
}

#[test]
fn threads_unwind_to_their_start() {
    let r = run_ok(&c_fixture("fd_leaks"), &["threads"]);
    let leaked = with_site(&r, "thread_body");
    assert_eq!(count(&leaked), 40);
    for entry in &leaked {
        assert_complete(entry);
    }
}

#[test]
fn a_library_loaded_with_dlopen() {
    let plugin = c_library("plugin");
    let r = run_ok(&c_fixture("fd_leaks"), &["plugin", plugin.to_str().expect("path")]);
    let leaked = with_site(&r, "plugin_leak");
    assert_eq!(count(&leaked), 11);
    let frame =
        leaked[0]["stack"].as_array().expect("frames").iter().find(|f| f["symbol"] == "plugin_leak").expect("frame");
    assert_eq!(frame["module"], plugin.to_str().expect("path"));
    assert_eq!(frame["file"], "plugin.c");
    assert!(symbols(leaked[0]).contains(&"leak_from_plugin") || symbols(leaked[0]).contains(&"main"));
    assert_complete(leaked[0]);
}

#[test]
fn generated_code_is_named_by_its_perf_map() {
    let r = run_ok(&c_fixture("fd_leaks"), &["jit"]);
    let pid = r["targets"][0]["pid"].as_u64().expect("pid");
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let leaked = with_site(&r, "leak_called_from_jit");
    assert_eq!(count(&leaked), 5);
    let frames = leaked[0]["stack"].as_array().expect("frames");
    let jit = frames.iter().position(|f| f["symbol"] == "jit_trampoline").expect("JIT frame");
    assert_eq!(frames[jit]["module"], format!("perf-{pid}.map"));
    assert_eq!(frames[jit - 1]["symbol"], "leak_called_from_jit");
    assert_eq!(frames[jit + 1]["symbol"], "run_generated_code", "unwound through the generated frame");
    assert_complete(leaked[0]);
}

#[test]
fn cpp_names_are_demangled() {
    let r = run_ok(&cpp_fixture("leaky"), &[]);
    let leaked: Vec<&Value> = stacks(&r)
        .iter()
        .filter(|s| symbols(s).iter().any(|f| f.starts_with("cache::Store<int>::open_entries(")))
        .collect();
    assert_eq!(count(&leaked), 13);
    assert!(leaked[0]["site"].as_str().expect("site").starts_with("cache::Store<int>::open_entries("));
}

#[test]
fn rust_release_builds_unwind_through_std() {
    let r = run_ok(&rust_fixture(), &[]);
    assert_eq!(count(&with_site(&r, "leaky_rs::cache_files")), 17);
    let pairs = with_site(&r, "leaky_rs::leak_socket_pairs");
    assert_eq!(count(&pairs), 18);
    assert!(symbols(pairs[0]).contains(&"leaky_rs::main"));
    assert_complete(pairs[0]);
}

#[test]
fn stripped_binaries_use_their_debuglink() {
    let dir = scratch_dir("debuglink");
    let (stripped, debug) = stripped_copy(&c_fixture("fd_leaks"), &dir, true);
    let r = run_ok(&stripped, &["error-path"]);
    assert_eq!(count(&with_site(&r, "load_config_error_path")), 100);

    // Without the debug file the same binary has no names: the names above
    // came from it, and the frames say why they are missing.
    std::fs::remove_file(&debug).expect("remove debug file");
    let r = run_ok(&stripped, &["error-path"]);
    assert!(with_site(&r, "load_config_error_path").is_empty());
    let frames = stacks(&r)[0]["stack"].as_array().expect("frames");
    let nameless =
        frames.iter().find(|f| f["module"] == stripped.to_str().expect("path")).expect("a frame in the binary");
    assert!(nameless["symbol"].is_null() || nameless["symbol"] == "_start", "{nameless}");
}

/// Installs a debug file under /usr/lib/debug/.build-id for the test's duration.
struct InstalledDebugFile(std::path::PathBuf);

impl Drop for InstalledDebugFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn stripped_binaries_use_debug_files_by_build_id() {
    let dir = scratch_dir("build-id");
    let (stripped, debug) = stripped_copy(&c_fixture("fd_leaks"), &dir, false);
    let id = build_id(&stripped);
    let target = std::path::Path::new("/usr/lib/debug/.build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(target.parent().expect("dir")).expect("create build-id dir");
    std::fs::copy(&debug, &target).expect("install debug file");
    let _installed = InstalledDebugFile(target);
    std::fs::remove_file(&debug).expect("only the build-id copy remains");
    let r = run_ok(&stripped, &["error-path"]);
    assert_eq!(count(&with_site(&r, "load_config_error_path")), 100);
}

#[test]
fn binaries_only_another_mount_namespace_can_see() {
    // The fixture runs from a tmpfs mounted in a private mount namespace: the
    // path in its mappings does not exist here, and the namespace is gone
    // when the report is written.
    let dir = scratch_dir("mount-namespace");
    let inner = dir.join("app");
    let script = format!(
        "mount -t tmpfs tmpfs {d} && cp {fx} {d}/fx && exec {d}/fx error-path",
        d = inner.display(),
        fx = c_fixture("fd_leaks").display()
    );
    std::fs::create_dir_all(&inner).expect("mount point");
    let r =
        run_ok(std::path::Path::new("/usr/bin/unshare"), &["--mount", "--propagation", "private", "sh", "-c", &script]);
    let leaked = with_site(&r, "load_config_error_path");
    assert_eq!(count(&leaked), 100);
    let frame = leaked[0]["stack"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["symbol"] == "load_config_error_path")
        .expect("frame");
    assert_eq!(frame["module"], format!("{}/fx", inner.display()), "the path as the process saw it");
    assert!(!inner.join("fx").exists());
    let status = Command::new("true").status().expect("true");
    assert!(status.success());
}
