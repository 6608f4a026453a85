//! pprof output: the report as a gzip-compressed profile.proto, for
//! `go tool pprof` and the tools that read its format (Pyroscope, Parca,
//! speedscope, …). One sample per stack, with the outstanding count and
//! bytes as its values and the verdict as labels. The stacks arrive
//! symbolized; this module only lays them out.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::{frame, Frame, Report, StackEntry};

/// The gzip-compressed profile.proto of `report`.
pub(crate) fn encode(report: &Report) -> Vec<u8> {
    let mut b = Builder::default();
    let sample_type = vec![b.value_type("outstanding", "count"), b.value_type("outstanding_space", "bytes")];
    let default_sample_type = sample_type[0].r#type;
    // pprof takes the first mapping for the main binary ("File:" in its
    // header): the traced program's, even when no stack passes through it.
    for exe in report.targets.iter().filter_map(|t| t.exe.as_deref()) {
        b.mapping(exe, &[]);
    }
    let sample = report.stacks.iter().map(|entry| b.sample(entry)).collect();
    let profile = Profile {
        sample_type,
        sample,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        string_table: b.strings.strings,
        time_nanos: unix_nanos(&report.window.start).unwrap_or(0),
        duration_nanos: (report.window.seconds * 1e9) as i64,
        default_sample_type,
        ..Profile::default()
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Compressing into memory cannot fail.
    gz.write_all(&profile.encode_to_vec()).and_then(|()| gz.finish()).unwrap_or_default()
}

/// The profile's tables, each entry added once and referred to by id.
#[derive(Default)]
struct Builder {
    strings: Strings,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64), u64>,
    mappings: Vec<Mapping>,
    mapping_ids: HashMap<String, u64>,
    locations: Vec<Location>,
    location_ids: HashMap<LocationKey, u64>,
}

/// What makes two Locations one: mapping, address, and the function and
/// line of each of its Lines.
type LocationKey = (u64, u64, Vec<(u64, i64)>);

impl Builder {
    fn value_type(&mut self, r#type: &str, unit: &str) -> ValueType {
        ValueType { r#type: self.strings.id(r#type), unit: self.strings.id(unit) }
    }

    fn sample(&mut self, entry: &StackEntry) -> Sample {
        // The report lists an inlined call as a frame of its own before the
        // frame it was inlined into; pprof puts them in one Location, as
        // Lines innermost first, since they share one address. A stack cut
        // off inside an inlined chain ends with a group of inlined frames only.
        let location_id = entry
            .stack
            .split_inclusive(|f| !f.inlined)
            .filter_map(<[Frame]>::split_last)
            .map(|(call, inlined)| self.location(call, inlined))
            .collect();
        let mut label = vec![
            self.label("kind", entry.kind.name()),
            self.label("resource", entry.resource.name()),
            self.label("verdict", entry.verdict.map_or("", |v| v.name())),
        ];
        if let [pid] = entry.pids[..] {
            label.push(Label { key: self.strings.id("pid"), num: i64::from(pid), ..Label::default() });
        }
        if let Some(site) = &entry.site {
            label.push(self.label("site", site));
        }
        Sample { location_id, value: vec![saturating(entry.count), saturating(entry.bytes)], label }
    }

    fn label(&mut self, key: &str, value: &str) -> Label {
        Label { key: self.strings.id(key), str: self.strings.id(value), ..Label::default() }
    }

    /// `call` and the calls inlined into it, innermost first.
    fn location(&mut self, call: &Frame, inlined: &[Frame]) -> u64 {
        let frames: Vec<&Frame> = inlined.iter().chain([call]).collect();
        let mapping_id = call.module.as_deref().map_or(0, |module| self.mapping(module, &frames));
        let address = u64::from_str_radix(call.address.trim_start_matches("0x"), 16).unwrap_or(0);
        let line: Vec<Line> = frames
            .iter()
            .map(|f| Line { function_id: self.function(f), line: f.line.map_or(0, i64::from), ..Line::default() })
            .collect();
        let key = (mapping_id, address, line.iter().map(|l| (l.function_id, l.line)).collect());
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location { id, mapping_id, address, line, is_folded: false });
        self.location_ids.insert(key, id);
        id
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let name = self.strings.id(&frame::function(frame));
        let filename = self.strings.id(frame.file.as_deref().unwrap_or(""));
        *self.function_ids.entry((name, filename)).or_insert_with(|| {
            let id = self.functions.len() as u64 + 1;
            self.functions.push(Function { id, name, system_name: 0, filename, start_line: 0 });
            id
        })
    }

    fn mapping(&mut self, module: &str, frames: &[&Frame]) -> u64 {
        let id = match self.mapping_ids.get(module) {
            Some(&id) => id,
            None => {
                let id = self.mappings.len() as u64 + 1;
                // The names are resolved already: pprof must not try again,
                // it would need the load addresses, which the report lacks.
                self.mappings.push(Mapping {
                    id,
                    filename: self.strings.id(module),
                    has_functions: true,
                    has_inline_frames: true,
                    ..Mapping::default()
                });
                self.mapping_ids.insert(module.to_string(), id);
                id
            }
        };
        if let Some(mapping) = self.mappings.get_mut(id as usize - 1) {
            mapping.has_filenames |= frames.iter().any(|f| f.file.is_some());
            mapping.has_line_numbers |= frames.iter().any(|f| f.line.is_some());
        }
        id
    }
}

/// The string table; index 0 is "" as the format requires.
struct Strings {
    strings: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { strings: vec![String::new()], ids: HashMap::from([(String::new(), 0)]) }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Nanoseconds since the epoch of an RFC 3339 time, as the report writes
/// its window (`2026-11-23T10:00:01.5Z`).
fn unix_nanos(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

// The messages of profile.proto
// (https://github.com/google/pprof/blob/main/proto/profile.proto), field for
// field. Declared by hand rather than generated: generating needs protoc at
// build time, and the schema is stable (fields are only ever added).

#[derive(Clone, PartialEq, Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    drop_frames: i64,
    #[prost(int64, tag = "8")]
    keep_frames: i64,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
    #[prost(int64, repeated, tag = "13")]
    comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
    #[prost(int64, tag = "15")]
    doc_url: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
    #[prost(int64, tag = "4")]
    num_unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    memory_start: u64,
    #[prost(uint64, tag = "3")]
    memory_limit: u64,
    #[prost(uint64, tag = "4")]
    file_offset: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(int64, tag = "6")]
    build_id: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
    #[prost(bool, tag = "8")]
    has_filenames: bool,
    #[prost(bool, tag = "9")]
    has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
    #[prost(bool, tag = "5")]
    is_folded: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
    #[prost(int64, tag = "3")]
    column: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
    #[prost(int64, tag = "5")]
    start_line: i64,
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::report::tests::sample;
    use crate::report::{Kind, Resource};

    fn frame(address: &str, symbol: &str, module: &str, line: u32, inlined: bool) -> Frame {
        Frame {
            address: address.into(),
            symbol: Some(symbol.into()),
            module: Some(module.into()),
            file: Some("x.c".into()),
            line: Some(line),
            offset: None,
            inlined,
            reason: None,
        }
    }

    /// The sample's stack (open from load_config, outermost frame unknown);
    /// 5 more files opened through load_cache, into which read_cache was
    /// inlined, by two processes; and 2 mappings of 8192 bytes in all.
    fn report() -> Report {
        let mut r = sample();
        let fd = r.stacks[0].clone();
        let mut cache = fd.clone();
        cache.count = 5;
        cache.pids = vec![123, 124];
        cache.site = None;
        cache.stack = vec![
            fd.stack[0].clone(),
            frame("0x401180", "read_cache", "/path/x", 30, true),
            frame("0x401180", "load_cache", "/path/x", 25, false),
            fd.stack[2].clone(),
        ];
        let mut mmap = fd.clone();
        mmap.kind = Kind::Mmap;
        mmap.resource = Resource::Anon;
        mmap.count = 2;
        mmap.bytes = 8192;
        mmap.site = Some("load_cache".into());
        mmap.stack = vec![
            frame("0x7f0000002000", "mmap64", "/usr/lib/x86_64-linux-gnu/libc.so.6", 50, false),
            frame("0x4011a0", "load_cache", "/path/x", 27, false),
            frame("0x401300", "main", "/path/x", 40, false),
        ];
        r.stacks.extend([cache, mmap]);
        r
    }

    fn decode(gz: &[u8]) -> Profile {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut bytes).expect("gzip");
        Profile::decode(bytes.as_slice()).expect("profile.proto")
    }

    fn string(p: &Profile, id: i64) -> &str {
        &p.string_table[id as usize]
    }

    fn location(p: &Profile, id: u64) -> &Location {
        p.location.iter().find(|l| l.id == id).expect("location")
    }

    /// Per location of the sample, its functions' names, innermost first.
    fn names(p: &Profile, sample: &Sample) -> Vec<Vec<String>> {
        let name = |id: u64| {
            let f = p.function.iter().find(|f| f.id == id).expect("function");
            string(p, f.name).to_string()
        };
        sample.location_id.iter().map(|&l| location(p, l).line.iter().map(|l| name(l.function_id)).collect()).collect()
    }

    fn labels(p: &Profile, sample: &Sample) -> Vec<(String, String)> {
        let value = |l: &Label| if l.str != 0 { string(p, l.str).to_string() } else { l.num.to_string() };
        sample.label.iter().map(|l| (string(p, l.key).to_string(), value(l))).collect()
    }

    #[test]
    fn samples_carry_values_and_stacks_leaf_first() {
        let p = decode(&encode(&report()));
        assert_eq!(p.string_table[0], "");
        let types: Vec<(&str, &str)> =
            p.sample_type.iter().map(|t| (string(&p, t.r#type), string(&p, t.unit))).collect();
        assert_eq!(types, [("outstanding", "count"), ("outstanding_space", "bytes")]);
        assert_eq!(string(&p, p.default_sample_type), "outstanding");
        let values: Vec<&[i64]> = p.sample.iter().map(|s| s.value.as_slice()).collect();
        assert_eq!(values, [[100, 0], [5, 0], [2, 8192]]);
        let unknown = "[unknown: address outside every code mapping]";
        assert_eq!(names(&p, &p.sample[0]), [vec!["__libc_open64"], vec!["load_config"], vec![unknown]]);
        assert_eq!(names(&p, &p.sample[1]), [vec!["__libc_open64"], vec!["read_cache", "load_cache"], vec![unknown]]);
        assert_eq!(names(&p, &p.sample[2]), [vec!["mmap64"], vec!["load_cache"], vec!["main"]]);
        assert_eq!(p.duration_nanos, 1_500_000_000);
        assert_eq!(p.time_nanos, 1_795_428_000_000_000_000);
    }

    #[test]
    fn labels_say_kind_verdict_and_the_single_pid() {
        let p = decode(&encode(&report()));
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            labels(&p, &p.sample[0]),
            pairs(&[
                ("kind", "fd"),
                ("resource", "file"),
                ("verdict", "leak"),
                ("pid", "123"),
                ("site", "load_config")
            ])
        );
        // Two processes: no pid label.
        assert_eq!(labels(&p, &p.sample[1]), pairs(&[("kind", "fd"), ("resource", "file"), ("verdict", "leak")]));
    }

    #[test]
    fn shared_frames_are_one_location_and_one_function() {
        let p = decode(&encode(&report()));
        let (fd, cache, mmap) = (&p.sample[0], &p.sample[1], &p.sample[2]);
        assert_eq!(fd.location_id[0], cache.location_id[0]);
        assert_eq!(fd.location_id[2], cache.location_id[2]);
        // load_cache at two addresses: two locations of one function.
        assert_ne!(cache.location_id[1], mmap.location_id[1]);
        let load_cache = |l: u64| location(&p, l).line.last().expect("line").function_id;
        assert_eq!(load_cache(cache.location_id[1]), load_cache(mmap.location_id[1]));
        assert_eq!(p.location.len(), 7);
        assert_eq!(p.function.len(), 7);
        let mappings: Vec<&str> = p.mapping.iter().map(|m| string(&p, m.filename)).collect();
        // The traced program's first: pprof takes it for the main binary.
        assert_eq!(mappings, ["/path/x", "/usr/lib/x86_64-linux-gnu/libc.so.6"]);
        // The unknown frame is in no module.
        assert_eq!(location(&p, fd.location_id[2]).mapping_id, 0);
    }

    #[test]
    fn inlined_frames_are_lines_of_their_caller_location() {
        let p = decode(&encode(&report()));
        let inlined = location(&p, p.sample[1].location_id[1]);
        assert_eq!(inlined.address, 0x401180);
        assert_eq!(inlined.line.iter().map(|l| l.line).collect::<Vec<_>>(), [30, 25]);
        assert_eq!(string(&p, p.mapping[inlined.mapping_id as usize - 1].filename), "/path/x");
        // A stack cut off inside an inlined chain still has a location.
        let mut r = report();
        r.stacks[1].stack.truncate(2);
        let p = decode(&encode(&r));
        assert_eq!(names(&p, &p.sample[1]), [vec!["__libc_open64"], vec!["read_cache"]]);
    }

    #[test]
    fn an_empty_report_is_a_valid_profile() {
        let mut r = sample();
        r.stacks.clear();
        let p = decode(&encode(&r));
        assert!(p.sample.is_empty());
        assert_eq!(p.string_table[0], "");
    }

    #[test]
    fn window_times_parse_as_the_report_writes_them() {
        assert_eq!(unix_nanos("2026-11-23T10:00:01.5Z"), Some(1_795_428_001_500_000_000));
        assert_eq!(unix_nanos("1970-01-01T00:00:00.000000001Z"), Some(1));
        assert_eq!(unix_nanos("2026-11-23T11:00:01.5+01:00"), Some(1_795_428_001_500_000_000));
        assert_eq!(unix_nanos("yesterday"), None);
        assert_eq!(unix_nanos(""), None);
    }
}
