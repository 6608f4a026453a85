//! End-to-end tests of the diff on crafted reports: exact changes, totals,
//! order, the JSON contract, the text, and every way an input can be wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use super::compare::{compare, Change, Comparison};
use super::input::{self, DiffError};
use super::render::{self, Named};
use super::{diff, render_diff, DiffFormat};
use crate::report::Report;

const APP: &str = "/srv/app";
const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";

fn libc_open(address: &str) -> Value {
    json!({"address": address, "symbol": "__libc_open64", "module": LIBC, "file": "open64.c", "line": 41, "offset": 0x51})
}

fn app(address: &str, symbol: &str, line: u32, offset: u64) -> Value {
    json!({"address": address, "symbol": symbol, "module": APP, "file": "app.c", "line": line, "offset": offset})
}

fn outside(address: &str) -> Value {
    json!({"address": address, "symbol": null, "module": null, "file": null, "line": null,
           "reason": "address outside every code mapping"})
}

/// A stack entry as the report writes it; `verdict: None` leaves the key
/// out, as reports written before verdicts did.
fn entry(
    kind: &str,
    resource: &str,
    count: u64,
    bytes: u64,
    verdict: Option<&str>,
    site: &str,
    stack: Vec<Value>,
) -> Value {
    let mut e = json!({
        "growth_per_minute": null, "first_seen": null,
        "history": {"seconds": [], "count": [], "oldest_age_seconds": []},
        "kind": kind, "resource": resource, "count": count, "bytes": bytes, "pids": [42],
        "oldest_age_seconds": 1.0, "stack": stack, "examples": [], "site": site,
    });
    if let (Some(verdict), Value::Object(map)) = (verdict, &mut e) {
        map.insert("verdict".into(), json!(verdict));
        map.insert("verdict_reason".into(), json!("because"));
    }
    e
}

fn report(start: &str, seconds: f64, kinds: &[&str], stacks: Vec<Value>) -> String {
    json!({
        "schema": "leaktrace.report/1", "mode": "run", "kinds": kinds,
        "targets": [{"pid": 42, "comm": "app", "exe": APP, "exit_code": 0}],
        "window": {"start": start, "end": "later", "seconds": seconds},
        "totals": {"acquired": 0, "released": 0, "outstanding": 0, "dropped": 0},
        "preexisting": [], "stacks": stacks, "complete": true, "losses": {}, "kernel_maps": {},
        "a_key_from_the_future": {"nested": [1, 2]},
    })
    .to_string()
}

/// The run before: no verdicts yet, its own addresses.
fn base_json() -> String {
    report(
        "2026-11-23T10:00:00Z",
        60.0,
        &["fd", "tcp", "mmap"],
        vec![
            entry(
                "fd",
                "file",
                10,
                0,
                None,
                "load_config",
                vec![
                    libc_open("0x7f1000001000"),
                    app("0x555500001136", "load_config", 16, 0x16),
                    app("0x555500001200", "main", 40, 0x10),
                    outside("0x22286e65706f006c"),
                ],
            ),
            entry("fd", "pipe", 30, 0, None, "old_path", vec![app("0x555500002000", "old_path", 70, 0x8)]),
            entry("tcp", "socket", 8, 0, None, "handle_conn", vec![app("0x555500003000", "handle_conn", 90, 0x4)]),
            entry("fd", "socket", 4, 0, None, "read_loop", vec![app("0x555500004000", "read_loop", 110, 0x4)]),
            entry("mmap", "anon", 2, 8192, None, "cache_alloc", vec![app("0x555500005000", "cache_alloc", 130, 0x4)]),
            entry("mmap", "anon", 3, 20480, None, "arena_grow", vec![app("0x555500006000", "arena_grow", 150, 0x4)]),
        ],
    )
}

/// The run after: other addresses, verdicts, and `load_config`'s stack in two
/// entries that differ only in an offset within the same source line.
fn new_json() -> String {
    report(
        "2026-11-23T11:00:00Z",
        120.0,
        &["fd", "tcp", "mmap"],
        vec![
            entry(
                "fd",
                "file",
                20,
                0,
                Some("leak"),
                "load_config",
                vec![
                    libc_open("0x7f2000001000"),
                    app("0x560000001136", "load_config", 16, 0x16),
                    app("0x560000001200", "main", 40, 0x10),
                    outside("0x1"),
                ],
            ),
            entry(
                "fd",
                "file",
                5,
                0,
                Some("suspect"),
                "load_config",
                vec![
                    libc_open("0x7f2000001000"),
                    app("0x56000000113a", "load_config", 16, 0x1a),
                    app("0x560000001200", "main", 40, 0x10),
                    outside("0x2"),
                ],
            ),
            entry(
                "fd",
                "file",
                5,
                0,
                Some("suspect"),
                "open_cache",
                vec![app("0x560000007000", "open_cache", 200, 0x4)],
            ),
            entry(
                "tcp",
                "socket",
                3,
                0,
                Some("steady"),
                "handle_conn",
                vec![app("0x560000003000", "handle_conn", 90, 0x4)],
            ),
            entry(
                "fd",
                "socket",
                4,
                0,
                Some("steady"),
                "read_loop",
                vec![app("0x560000004000", "read_loop", 110, 0x4)],
            ),
            entry(
                "mmap",
                "anon",
                1,
                20480,
                Some("leak"),
                "cache_alloc",
                vec![app("0x560000005000", "cache_alloc", 130, 0x4)],
            ),
            entry(
                "mmap",
                "anon",
                3,
                12288,
                Some("steady"),
                "arena_grow",
                vec![app("0x560000006000", "arena_grow", 150, 0x4)],
            ),
        ],
    )
}

fn parse(name: &str, json: &str) -> Report {
    input::parse(Path::new(name), json.as_bytes()).expect("a valid report")
}

fn both() -> (Report, Report) {
    (parse("base.json", &base_json()), parse("new.json", &new_json()))
}

fn render(base: &Report, new: &Report, format: DiffFormat) -> String {
    render_diff(
        Named { path: Path::new("base.json"), report: base },
        Named { path: Path::new("new.json"), report: new },
        format,
    )
}

/// (change, site, base count, new count, delta count, delta bytes), in order.
fn summary(c: &Comparison) -> Vec<(Change, &str, u64, u64, i64, i64)> {
    c.stacks
        .iter()
        .map(|s| (s.change, s.site.as_deref().unwrap_or("-"), s.base.count, s.new.count, s.delta.count, s.delta.bytes))
        .collect()
}

#[test]
fn diff_classifies_and_orders_every_stack() {
    let (base, new) = both();
    let c = compare(&base, &new);
    assert_eq!(
        summary(&c),
        vec![
            (Change::Gone, "old_path", 30, 0, -30, 0),
            (Change::Grown, "load_config", 10, 25, 15, 0),
            // Equal changes: by site.
            (Change::Shrunk, "handle_conn", 8, 3, -5, 0),
            (Change::New, "open_cache", 0, 5, 5, 0),
            (Change::Same, "read_loop", 4, 4, 0, 0),
            // Mappings last, by bytes: fewer mappings holding more bytes grew.
            (Change::Grown, "cache_alloc", 2, 1, -1, 12288),
            (Change::Shrunk, "arena_grow", 3, 3, 0, -8192),
        ]
    );
    let counts = &c.totals.stacks;
    assert_eq!((counts.new, counts.grown, counts.shrunk, counts.gone, counts.same), (1, 2, 2, 1, 1));
    let fd = &c.totals.outstanding["fd"];
    assert_eq!((fd.base.count, fd.new.count, fd.delta.count), (44, 34, -10));
    let tcp = &c.totals.outstanding["tcp"];
    assert_eq!((tcp.base.count, tcp.new.count, tcp.delta.count), (8, 3, -5));
    let mmap = &c.totals.outstanding["mmap"];
    assert_eq!((mmap.base.count, mmap.new.count, mmap.delta.count), (5, 4, -1));
    assert_eq!((mmap.base.bytes, mmap.new.bytes, mmap.delta.bytes), (28672, 32768, 4096));
}

#[test]
fn diff_matches_a_stack_across_addresses_and_merges_same_keys() {
    let (base, new) = both();
    let c = compare(&base, &new);
    let grown = c.stacks.iter().find(|s| s.site.as_deref() == Some("load_config")).expect("load_config");
    // Two entries of the new report (20 + 5, other offsets on the same line)
    // against one of the base at other addresses.
    assert_eq!((grown.base.count, grown.new.count), (10, 25));
    // The most severe verdict of the merged entries, frames of the first.
    assert_eq!(grown.verdict.map(|v| v.name()), Some("leak"));
    assert_eq!(grown.stack.len(), 4);
    assert_eq!(grown.stack[1].offset, Some(0x16));
    // Gone stacks have the base's frames and no verdict.
    let gone = c.stacks.iter().find(|s| s.change == Change::Gone).expect("gone");
    assert_eq!(gone.stack[0].symbol.as_deref(), Some("old_path"));
    assert_eq!(gone.verdict, None);
}

#[test]
fn diff_of_a_report_with_itself_is_all_same() {
    let (base, _) = both();
    let c = compare(&base, &base);
    assert!(c.stacks.iter().all(|s| s.change == Change::Same));
    assert_eq!(c.totals.stacks.same, 6);
    let text = render(&base, &base, DiffFormat::Text);
    assert!(text.ends_with("\nnothing changed: the 6 stacks hold the same in both reports\n"), "{text}");
    let json: Value = serde_json::from_str(&render(&base, &base, DiffFormat::Json)).expect("json");
    assert_eq!(json["stacks"], json!([]));
}

#[test]
fn diff_reads_what_the_report_module_writes() {
    let written = crate::report::tests::sample().to_json();
    let report = parse("sample.json", &written);
    assert_eq!(report.stacks.len(), 1);
    assert_eq!(report.stacks[0].count, 100);
    assert_eq!(report.stacks[0].verdict.map(|v| v.name()), Some("leak"));
    let c = compare(&report, &report);
    assert_eq!(c.totals.stacks.same, 1);
}

#[test]
fn diff_text_lines() {
    let (base, new) = both();
    let text = render(&base, &new, DiffFormat::Text);
    let expected = "\
leaktrace diff: base.json (run, 1m00s from 2026-11-23T10:00:00Z) → new.json (run, 2m00s from 2026-11-23T11:00:00Z)
fds: 44 → 34 (-10), TCP connections: 8 → 3 (-5), mappings: 28.0 KiB in 5 → 32.0 KiB in 4 (+4.0 KiB); \
1 new stack, 2 grown, 2 shrunk, 1 gone, 1 unchanged

-30 pipe ends  (30 → 0) gone  from old_path
    #0  old_path+0x8  app.c:70

+15 files  (10 → 25) grown  from load_config  [leak]
    #0  __libc_open64+0x51  open64.c:41
    #1  load_config+0x16  app.c:16
    #2  main+0x10  app.c:40
    #3  [unknown: address outside every code mapping]

-5 TCP connections  (8 → 3) shrunk  from handle_conn  [steady]
    #0  handle_conn+0x4  app.c:90

+5 files  (0 → 5) new  from open_cache  [suspect]
    #0  open_cache+0x4  app.c:200

+12.0 KiB in anonymous mappings  (8.0 KiB in 2 → 20.0 KiB in 1) grown  from cache_alloc  [leak]
    #0  cache_alloc+0x4  app.c:130

-8.0 KiB in anonymous mappings  (20.0 KiB in 3 → 12.0 KiB in 3) shrunk  from arena_grow  [steady]
    #0  arena_grow+0x4  app.c:150
";
    assert_eq!(text, expected);
}

#[test]
fn diff_text_shows_frames_down_to_the_site_and_counts_the_rest() {
    let deep: Vec<Value> =
        (0..9).map(|i| app(&format!("0x{i}"), &format!("f{i}"), i, 0)).chain([outside("0x9")]).collect();
    let base = parse("base.json", &report("", 1.0, &["fd"], vec![]));
    let new = parse("new.json", &report("", 1.0, &["fd"], vec![entry("fd", "file", 1, 0, None, "f6", deep)]));
    let text = render(&base, &new, DiffFormat::Text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "leaktrace diff: base.json (run, 1.00s) → new.json (run, 1.00s)");
    assert_eq!(lines[3], "+1 file  (0 → 1) new  from f6");
    assert_eq!(lines[11], "    #7  f7+0x0  app.c:7");
    assert_eq!(lines[12], "    ... 2 more frames (--format json lists them)");
    assert_eq!(lines.len(), 13);
}

#[test]
fn diff_text_says_what_makes_numbers_incomparable() {
    let base = parse("base.json", &report("", 1.0, &["fd"], vec![]));
    let mut new_value: Value = serde_json::from_str(&report("", 1.0, &["fd", "mmap"], vec![])).expect("json");
    new_value["complete"] = json!(false);
    let new = parse("new.json", &new_value.to_string());
    let text = render(&base, &new, DiffFormat::Text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "fds: 0 → 0 (±0), mappings: 0 B in 0 → 0 B in 0 (±0 B); 0 new stacks, 0 grown, 0 shrunk, 0 gone, 0 unchanged"
    );
    assert_eq!(lines[2], "note: mmap was traced in the new report only: all its stacks show as new");
    assert_eq!(
        lines[3],
        "warning: the new report is incomplete: its counts are lower bounds \
         (data was lost while tracing; see each report's losses)"
    );
    assert_eq!(lines[5], "nothing changed: neither report has stacks");
}

#[test]
fn diff_json_snapshot() {
    let stack = |address: &str| vec![app(address, "load_config", 16, 0x16), outside(address)];
    let base = parse(
        "base.json",
        &report(
            "2026-11-23T10:00:00Z",
            1.5,
            &["fd"],
            vec![entry("fd", "file", 10, 0, None, "load_config", stack("0x1"))],
        ),
    );
    let new = parse(
        "new.json",
        &report(
            "2026-11-23T11:00:00Z",
            3.0,
            &["fd"],
            vec![entry("fd", "file", 25, 0, Some("leak"), "load_config", stack("0x2"))],
        ),
    );
    let expected = r#"{
  "schema": "leaktrace.diff/1",
  "base": {
    "path": "base.json",
    "window": {
      "start": "2026-11-23T10:00:00Z",
      "end": "later",
      "seconds": 1.5
    },
    "mode": "run",
    "kinds": [
      "fd"
    ],
    "complete": true
  },
  "new": {
    "path": "new.json",
    "window": {
      "start": "2026-11-23T11:00:00Z",
      "end": "later",
      "seconds": 3.0
    },
    "mode": "run",
    "kinds": [
      "fd"
    ],
    "complete": true
  },
  "totals": {
    "outstanding": {
      "fd": {
        "base": {
          "count": 10,
          "bytes": 0
        },
        "new": {
          "count": 25,
          "bytes": 0
        },
        "delta": {
          "count": 15,
          "bytes": 0
        }
      }
    },
    "stacks": {
      "new": 0,
      "grown": 1,
      "shrunk": 0,
      "gone": 0,
      "same": 0
    }
  },
  "stacks": [
    {
      "change": "grown",
      "kind": "fd",
      "resource": "file",
      "site": "load_config",
      "base": {
        "count": 10,
        "bytes": 0
      },
      "new": {
        "count": 25,
        "bytes": 0
      },
      "delta": {
        "count": 15,
        "bytes": 0
      },
      "verdict": "leak",
      "stack": [
        {
          "symbol": "load_config",
          "module": "/srv/app",
          "file": "app.c",
          "line": 16,
          "offset": 22
        },
        {
          "symbol": null,
          "module": null,
          "file": null,
          "line": null,
          "reason": "address outside every code mapping"
        }
      ]
    }
  ]
}
"#;
    assert_eq!(render(&base, &new, DiffFormat::Json), expected);
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("leaktrace-diff-test-{}-{n}.json", std::process::id()));
        std::fs::write(&path, contents).expect("write a temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn diff_reads_both_files() {
    let base = TempFile::new(base_json().as_bytes());
    let new = TempFile::new(new_json().as_bytes());
    let json = diff(&base.0, &new.0, DiffFormat::Json).expect("diff");
    let value: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["schema"], render::SCHEMA);
    assert_eq!(value["base"]["path"], json!(base.0.to_string_lossy()));
    assert_eq!(value["stacks"].as_array().map(Vec::len), Some(6));
    let text = diff(&base.0, &new.0, DiffFormat::Text).expect("diff");
    assert!(text.starts_with(&format!("leaktrace diff: {} (run", base.0.display())), "{text}");
}

#[test]
fn diff_names_a_missing_file() {
    let new = TempFile::new(new_json().as_bytes());
    let missing = std::env::temp_dir().join(format!("leaktrace-diff-test-{}-missing.json", std::process::id()));
    let err = diff(&missing, &new.0, DiffFormat::Text).expect_err("missing base");
    assert!(matches!(err, DiffError::Unreadable { .. }));
    assert_eq!(
        err.to_string(),
        format!("cannot read the report {}: No such file or directory (os error 2)", missing.display())
    );
}

fn error(json: &[u8]) -> String {
    match input::parse(Path::new("r.json"), json) {
        Ok(_) => panic!("{} parsed", String::from_utf8_lossy(json)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn diff_errors_say_what_is_wrong_with_the_input() {
    assert_eq!(
        error(b"hello"),
        "r.json is not JSON: expected value at line 1 column 1 (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"\xff\xfe{}"),
        "r.json is not JSON: expected value at line 1 column 1 (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.report/1\",\n \"stacks\": [{\"kind\": \"fd\""),
        "r.json is cut short: EOF while parsing an object at line 2 column 25 \
         (was it copied before leaktrace finished writing it?)"
    );
    assert_eq!(
        error(b""),
        "r.json is cut short: EOF while parsing a value at line 1 column 0 \
         (was it copied before leaktrace finished writing it?)"
    );
    assert_eq!(
        error(b"[1, 2]"),
        "r.json is not a leaktrace report: it holds a JSON array, expected \"schema\": \"leaktrace.report/1\" \
         (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"stacks\": []}"),
        "r.json is not a leaktrace report: it has no \"schema\" key, expected \"schema\": \"leaktrace.report/1\" \
         (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"schema\": 1}"),
        "r.json is not a leaktrace report: its \"schema\" is a number, expected \"schema\": \"leaktrace.report/1\" \
         (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.diff/1\"}"),
        "r.json is not a leaktrace report: its schema is \"leaktrace.diff/1\", expected \"schema\": \
         \"leaktrace.report/1\" (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.report/0\"}"),
        "r.json is not a leaktrace report: its schema is \"leaktrace.report/0\", expected \"schema\": \
         \"leaktrace.report/1\" (give a report written by leaktrace --format json)"
    );
    assert_eq!(
        error(format!("{{\"schema\": \"{}\\n{}\"}}", "x".repeat(70), "y").as_bytes()),
        format!(
            "r.json is not a leaktrace report: its schema is \"{}\"…, expected \"schema\": \"leaktrace.report/1\" \
             (give a report written by leaktrace --format json)",
            "x".repeat(60)
        )
    );
    // A newer version's keys are not checked: it may have changed any of them.
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.report/2\", \"stacks\": {}}"),
        "r.json was written by a newer leaktrace (schema \"leaktrace.report/2\", this one reads \
         \"leaktrace.report/1\"): diff it with that leaktrace or a newer one"
    );
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.report/1\",\n \"stacks\": [{\"kind\": \"fd\", \"count\": 1}]}"),
        "r.json is not a valid leaktrace.report/1 report: missing field `resource` at line 2 column 38 \
         (write it again with leaktrace --format json)"
    );
    assert_eq!(
        error(b"{\"schema\": \"leaktrace.report/1\", \"stacks\": [{\"kind\": \"fd\", \"resource\": \"file\", \"count\": -1}]}"),
        "r.json is not a valid leaktrace.report/1 report: invalid value: integer `-1`, expected u64 \
         at line 1 column 90 (write it again with leaktrace --format json)"
    );
}

#[test]
fn diff_survives_every_truncation_and_huge_counts() {
    let json = new_json();
    for end in 0..json.len() {
        // Every prefix is an error or a report (never a panic).
        let _ = input::parse(Path::new("r.json"), &json.as_bytes()[..end]);
    }
    let huge = |count: u64| report("", 1.0, &["fd"], vec![entry("fd", "file", count, u64::MAX, None, "f", vec![]); 2]);
    let base = parse("base.json", &huge(0));
    let new = parse("new.json", &huge(u64::MAX));
    let c = compare(&base, &new);
    assert_eq!(c.stacks[0].new.count, u64::MAX);
    assert_eq!(c.stacks[0].delta.count, i64::MAX);
    let _ = render(&base, &new, DiffFormat::Text);
    let _ = render(&new, &base, DiffFormat::Json);
}

#[test]
fn diff_reads_minimal_older_reports() {
    // Only what a diff needs: no verdicts, kinds, window, bytes or frames.
    let minimal = br#"{"schema": "leaktrace.report/1", "stacks": [{"kind": "fd", "resource": "file", "count": 3}]}"#;
    let report = input::parse(Path::new("old.json"), minimal).expect("report");
    assert_eq!(report.stacks[0].bytes, 0);
    assert!(report.complete);
    let c = compare(&report, &report);
    assert_eq!(c.totals.outstanding["fd"].base.count, 3);
    let text = render(&report, &report, DiffFormat::Text);
    assert!(text.starts_with("leaktrace diff: base.json (0.00s) → new.json (0.00s)\n"), "{text}");
}
