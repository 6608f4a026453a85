//! The JSON each mode writes, byte for byte, from the same tracked state:
//! the contract other tools read (`leaktrace.report/1`). The snapshots under
//! `snapshots/` were taken before the engine was typed and split, so any
//! change to a key, a value's spelling or the order of keys fails here.
//!
//! Wall-clock times depend on when the test runs and are masked; everything
//! else (monotonic stamps, ages, histories, verdicts) is fixed by the input.

use std::net::SocketAddr;
use std::sync::Arc;

use leaktrace_common::mmap::{MAP_ANONYMOUS, MAP_PRIVATE};
use leaktrace_common::socket::{AF_UNIX, SOCK_STREAM};
use leaktrace_common::tcp::TCP_CLOSE_WAIT;

/// include/net/tcp_states.h
const TCP_ESTABLISHED: u32 = 1;

use crate::proc_id::ProcId;
use crate::symbolize::maps::Location;
use crate::symbolize::{NormFrame, NormStack, Resolver, Unresolved};
use crate::track::aggregate::{Aggregator, GroupKey, Held, HeldFd, HeldMapping, What};
use crate::track::history::History;
use crate::track::tcp::TcpInfo;

use super::build::{self, Context};
use super::{KernelMaps, Kind, Losses, MapUse, Mode, Preexisting, Process, Report, Resource, Target};

const S: u64 = 1_000_000_000;
/// CLOCK_MONOTONIC at the start of the window.
const START: u64 = 1_000 * S;
/// Pids above the kernel's PID_MAX_LIMIT (4,194,304): no live process can have
/// them, so nothing read from /proc can leak into a snapshot.
const PID: u32 = 4_200_001;
const OTHER_PID: u32 = 4_200_002;

fn jit(addr: u64, symbol: &str) -> NormFrame {
    NormFrame {
        addr,
        location: Location::Jit { map: Arc::from("/tmp/perf-42.map"), symbol: Arc::from(symbol), offset: addr & 0xff },
    }
}

fn stack(frames: Vec<NormFrame>) -> Arc<NormStack> {
    Arc::new(NormStack { frames, truncated: None, unresolved: None, frame_pointers: false })
}

struct Stacks {
    config: Arc<NormStack>,
    client: Arc<NormStack>,
    unix: Arc<NormStack>,
    cache: Arc<NormStack>,
    lost: Arc<NormStack>,
}

fn stacks() -> Stacks {
    let outside = NormFrame { addr: 0x2228_6e65_706f_006c, location: Location::Unmapped };
    Stacks {
        config: stack(vec![jit(0x7f00_0000_1051, "open64"), jit(0x40_1136, "load_config"), outside]),
        client: stack(vec![jit(0x7f00_0000_2010, "connect"), jit(0x40_2200, "check_fraud"), jit(0x40_2300, "main")]),
        unix: stack(vec![jit(0x7f00_0000_3020, "socket"), jit(0x40_3300, "log_to_syslog")]),
        cache: stack(vec![jit(0x7f00_0000_4030, "mmap64"), jit(0x40_4400, "grow_cache")]),
        lost: Arc::new(NormStack {
            frames: vec![],
            truncated: None,
            unresolved: Some(Unresolved::NoStack("stack map full or stack unreadable")),
            frame_pointers: false,
        }),
    }
}

fn proc(tgid: u32) -> ProcId {
    ProcId { tgid, gen: 7 }
}

fn fd(proc: ProcId, stack: &Arc<NormStack>, fd: u32, acquired_ns: u64, until: u64, what: HeldFd) -> Held {
    Held {
        proc,
        ns_pid: None,
        acquired_ns,
        held_until_ns: until,
        stack_since_ns: START + S / 10,
        stack: stack.clone(),
        what: What::Fd(HeldFd { fd, ..what }),
    }
}

fn file(link: &str) -> HeldFd {
    HeldFd { fd: 0, resource: Some(Resource::File), link: Some(link.into()), socket: (0, 0), tcp: None }
}

fn connection(local: &str, state: u32, state_ns: u64) -> HeldFd {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
    HeldFd {
        fd: 0,
        resource: Some(Resource::Socket),
        link: Some("socket:[5150]".into()),
        socket: (leaktrace_common::socket::AF_INET, SOCK_STREAM),
        tcp: Some(TcpInfo { state, local: addr(local), remote: addr("10.0.0.9:8080"), state_ns }),
    }
}

/// Everything held at `at`: a loop leaking one config file a second, two
/// client connections (one left in CLOSE_WAIT), a unix socket held all
/// along, two anonymous mappings of a cache, and a pipe without a stack.
fn held_at(s: &Stacks, at: u64, owner: ProcId) -> Vec<Held> {
    let mut held = Vec::new();
    for i in 0..6u64 {
        let acquired = START + S / 2 + i * S;
        if acquired <= at {
            held.push(fd(owner, &s.config, 3 + i as u32, acquired, at, file("/etc/leaky.conf")));
        }
    }
    held.push(fd(owner, &s.client, 10, START + S / 4, at, connection("10.0.0.1:40000", TCP_CLOSE_WAIT, START + 2 * S)));
    held.push(fd(owner, &s.client, 11, START + S / 4, at, connection("10.0.0.1:40001", TCP_ESTABLISHED, START)));
    held.push(fd(
        owner,
        &s.unix,
        12,
        START,
        at,
        HeldFd {
            fd: 0,
            resource: Some(Resource::Socket),
            link: Some("socket:[777]".into()),
            socket: (AF_UNIX, SOCK_STREAM),
            tcp: None,
        },
    ));
    held.push(fd(
        owner,
        &s.lost,
        13,
        START + S / 3,
        at,
        HeldFd { fd: 0, resource: Some(Resource::Pipe), link: None, socket: (0, 0), tcp: None },
    ));
    for (i, address) in [0x7f10_0000_0000u64, 0x7f10_0001_0000].into_iter().enumerate() {
        held.push(Held {
            proc: owner,
            ns_pid: None,
            acquired_ns: START + S / 5 + i as u64 * S,
            held_until_ns: at,
            stack_since_ns: START + S / 5,
            stack: s.cache.clone(),
            what: What::Mapping(HeldMapping {
                address,
                bytes: 8192 * (i as u64 + 1),
                regions: 1 + i as u32,
                prot: 3,
                flags: (MAP_PRIVATE | MAP_ANONYMOUS) as u32,
                resource: Resource::Anon,
                path: None,
            }),
        });
    }
    held
}

/// Six samples a second apart of what `owners` hold, then what each holds
/// at the end of the window, at 6.5 s.
fn tracked(per_process: bool, owners: &[ProcId]) -> (Vec<Aggregator>, History<GroupKey>) {
    let s = stacks();
    let mut history = History::new(16_384);
    for second in 1..=6u64 {
        let at = START + second * S;
        let mut sample = Aggregator::new(5).per_process(per_process);
        for owner in owners {
            for h in held_at(&s, at, *owner) {
                sample.add(h);
            }
        }
        history.record(at, &sample.observed());
    }
    let ends = owners
        .iter()
        .map(|owner| {
            let mut end = Aggregator::new(5).per_process(per_process);
            for h in held_at(&s, START + 6 * S + S / 2, *owner) {
                end.add(h);
            }
            end
        })
        .collect();
    (ends, history)
}

fn one(per_process: bool) -> (Aggregator, History<GroupKey>) {
    let (mut aggs, history) = tracked(per_process, &[proc(PID)]);
    (aggs.remove(0), history)
}

fn outcome(agg: Aggregator) -> crate::session::Outcome {
    crate::session::Outcome {
        groups: agg.into_groups(),
        acquired: 1_010,
        released: 1_000,
        losses: Losses { stack_errors: 1, ..Losses::default() },
        kernel_maps: KernelMaps {
            outstanding: MapUse { used: 10, capacity: 65_536 },
            tcp: MapUse { used: 2, capacity: 65_536 },
            stacks: MapUse { used: 4, capacity: 16_384 },
            mapping_regions: MapUse { used: 3, capacity: 65_536 },
        },
        mappings: crate::track::mappings::Totals {
            acquired: 5,
            released: 3,
            bytes_mapped: 40_960,
            bytes_unmapped: 16_384,
            dropped: 0,
        },
        sampled_out: 0,
        dropped_held: None,
    }
}

fn context(mode: Mode, kinds: Vec<Kind>) -> Context {
    Context {
        mode,
        targets: vec![],
        start_ns: START,
        end_ns: START + 6 * S + S / 2,
        preexisting: vec![],
        max_examples: 5,
        kinds,
        min_bytes: 0,
        sample: 1,
        per_process: false,
        interval_ns: S,
    }
}

fn target(exit_code: Option<i32>) -> Target {
    Target { pid: PID, ns_pid: None, comm: Some("leaky".into()), exe: Some("/opt/leaky/bin/leaky".into()), exit_code }
}

fn report(ctx: Context, agg: Aggregator, history: &History<GroupKey>) -> Report {
    build::build(ctx, outcome(agg), history, &mut Resolver::new())
}

/// The JSON with wall-clock times (which depend on when the test ran)
/// replaced; every other byte as written.
fn masked(report: &Report) -> String {
    let mut out = String::new();
    for line in report.to_json().lines() {
        let time_key = ["\"start\": \"", "\"end\": \"", "\"first_seen\": \""].iter().find(|k| line.contains(*k));
        match time_key {
            Some(key) => {
                let at = line.find(key).unwrap_or(0) + key.len();
                let rest = &line[at..];
                let close = rest.find('"').unwrap_or(rest.len());
                out.push_str(&line[..at]);
                out.push_str("<wall clock>");
                out.push_str(&rest[close..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn run_json() {
    let (agg, history) = one(false);
    let mut ctx = context(Mode::Run, vec![Kind::Fd, Kind::Tcp, Kind::Mmap]);
    ctx.targets = vec![target(Some(0))];
    insta::assert_snapshot!("run", masked(&report(ctx, agg, &history)));
}

#[test]
fn run_sampled_json() {
    let (agg, history) = one(false);
    let mut ctx = context(Mode::Run, vec![Kind::Fd, Kind::Tcp]);
    ctx.targets = vec![target(Some(3))];
    ctx.sample = 4;
    let mut out = outcome(agg);
    out.sampled_out = 30;
    let report = build::build(ctx, out, &history, &mut Resolver::new());
    insta::assert_snapshot!("run_sampled", masked(&report));
}

#[test]
fn attach_json() {
    let (agg, history) = one(false);
    let mut ctx = context(Mode::Attach, vec![Kind::Fd, Kind::Tcp]);
    ctx.targets = vec![target(None)];
    ctx.preexisting = vec![
        Preexisting {
            pid: PID,
            fd: 0,
            resource: Resource::Other,
            path: Some("/dev/pts/3".into()),
            open_at_end: true,
            state: None,
            local: None,
            remote: None,
        },
        Preexisting {
            pid: PID,
            fd: 5,
            resource: Resource::File,
            path: Some("/var/log/leaky.log".into()),
            open_at_end: false,
            state: None,
            local: None,
            remote: None,
        },
    ];
    insta::assert_snapshot!("attach", masked(&report(ctx, agg, &history)));
}

#[test]
fn attach_fd_only_json() {
    let (agg, history) = one(false);
    let mut ctx = context(Mode::Attach, vec![Kind::Fd]);
    ctx.targets = vec![target(None)];
    insta::assert_snapshot!("attach_fd_only", masked(&report(ctx, agg, &history)));
}

#[test]
fn top_json() {
    let (agg, history) = one(false);
    let mut ctx = context(Mode::Top, vec![Kind::Fd, Kind::Tcp]);
    ctx.targets = vec![target(None)];
    insta::assert_snapshot!("top", masked(&report(ctx, agg, &history)));
}

#[test]
fn daemon_json() {
    // Two processes: one live, one that exited since the last sample, whose
    // stacks are what it held at its exit.
    let (mut aggs, history) = tracked(true, &[proc(PID), proc(OTHER_PID)]);
    let live = aggs.remove(0);
    let mut gone = aggs.remove(0);
    gone.mark_exited();
    gone.merge(live);
    let mut ctx = context(Mode::Daemon, vec![Kind::Fd, Kind::Tcp, Kind::Mmap]);
    ctx.per_process = true;
    ctx.min_bytes = 10_000;
    let mut report = report(ctx, gone, &history);
    report.processes = Some(vec![
        Process {
            pid: PID,
            ns_pid: Some(1),
            comm: Some("leaky".into()),
            cmdline: Some("/opt/leaky/bin/leaky [2 arguments redacted]".into()),
            container: Some("0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef".into()),
            runtime: Some("containerd".into()),
            pod_uid: Some("6f1a2b3c-0000-4000-8000-000000000001".into()),
            pod: Some("leaky-7d9f".into()),
            namespace: Some("payments".into()),
            open_fds: Some(14),
            max_fds: Some(1024),
            exited: false,
        },
        Process { pid: OTHER_PID, comm: Some("worker".into()), exited: true, ..Process::default() },
    ]);
    insta::assert_snapshot!("daemon", masked(&report));
}

#[test]
fn recording_json() {
    use crate::record::delta::AcqId;
    use crate::record::writer::{AcquisitionRow, CheckpointRow, ProcessRow, Writer};
    let dir = std::env::temp_dir().join(format!("leaktrace-snapshot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("rec.db");
    let conn = crate::record::schema::create(&path).expect("created");
    let mut w = Writer::new(conn);
    // Wall-clock ns of 2026-12-04T10:00:00Z.
    let t0: i64 = 1_796_378_400 * 1_000_000_000;
    w.meta("started_ns", &t0.to_string()).expect("meta");
    w.meta("kinds", "fd,tcp,mmap").expect("meta");
    let s = stacks();
    let owner = proc(PID);
    let row = |slot: u64, at: i64, kind: Kind, resource: Resource, bytes: u64| AcquisitionRow {
        id: AcqId { tgid: PID, gen: 7, slot, acquired_ns: at as u64, bytes },
        kind,
        resource,
        acquired_ns: at,
        bytes,
        path: (kind == Kind::Fd).then(|| "/etc/leaky.conf".to_string()),
        tcp: (kind == Kind::Tcp)
            .then(|| ("CLOSE_WAIT".to_string(), "10.0.0.1:40000".to_string(), "10.0.0.9:8080".into())),
    };
    let frames = |stack: &NormStack| {
        let frames = Resolver::new().symbolize(stack);
        let site = super::site::leak_site(&frames).and_then(|i| frames[i].symbol.clone());
        (frames.iter().map(build::frame).collect(), site, stack.truncated.map(String::from))
    };
    let describe = |_p: ProcId| ProcessRow {
        pid: PID,
        comm: Some("leaky".into()),
        exe: Some("/opt/leaky/bin/leaky".into()),
        ..ProcessRow::default()
    };
    for second in 1..=6i64 {
        let mut rows = vec![(
            owner,
            s.config.clone(),
            row(second as u64, t0 + second * 1_000_000_000 - 500_000_000, Kind::Fd, Resource::File, 0),
        )];
        if second == 1 {
            rows.push((owner, s.client.clone(), row(100, t0 + 250_000_000, Kind::Tcp, Resource::Socket, 0)));
            rows.push((
                owner,
                s.cache.clone(),
                row(0x7f10_0000_0000, t0 + 200_000_000, Kind::Mmap, Resource::Anon, 8192),
            ));
        }
        let checkpoint = CheckpointRow {
            at_ns: t0 + second * 1_000_000_000,
            outstanding: 2 + second as u64,
            ..CheckpointRow::default()
        };
        w.checkpoint(&rows, &[], &checkpoint, describe, frames).expect("checkpoint");
    }
    drop(w);
    let recording = crate::record::reader::Recording::open(&path).expect("open");
    let at = recording.last_checkpoint_ns.expect("checkpoints");
    let report = recording.report_at(at, None).expect("report");
    let _ = std::fs::remove_dir_all(&dir);
    insta::assert_snapshot!("recording", masked(&report));
}

/// An interpreter that leaked 10 files a second and closed them all as it
/// shut down, and a pool of 4 it also closed then: both stay in the
/// report, each judged on what was seen while it ran.
#[test]
fn run_keeps_a_leak_released_at_exit() {
    let s = stacks();
    let owner = proc(PID);
    let mut history = History::new(16_384);
    let sample = |at: u64, leaked: u64, pool: u64| {
        let mut agg = Aggregator::new(5);
        for i in 0..leaked {
            agg.add(fd(owner, &s.config, 10 + i as u32, START + i * S / 10, at, file("/etc/hostname")));
        }
        for i in 0..pool {
            agg.add(fd(owner, &s.unix, 3 + i as u32, START, at, file("/var/db")));
        }
        agg
    };
    for second in 1..=6u64 {
        let at = START + second * S;
        history.record(at, &sample(at, 10 * second, 4).observed());
    }
    // The exit: nothing held any more.
    history.record_kept(START + 6 * S + S / 2, &sample(START + 6 * S + S / 2, 0, 0).observed());
    let r = report(context(Mode::Run, vec![Kind::Fd]), Aggregator::new(5), &history);
    assert_eq!(r.stacks.len(), 2, "{:#?}", r.stacks);
    let (leak, pool) = (&r.stacks[0], &r.stacks[1]);
    assert_eq!((pool.count, pool.released_at_exit, pool.verdict), (4, Some(4), Some(super::Verdict::Steady)));
    assert_eq!((leak.count, leak.released_at_exit), (60, Some(60)));
    assert_eq!(leak.site.as_deref(), Some("open64"), "as in run_json: JIT frames are all the program's");
    assert_eq!(leak.verdict, Some(super::Verdict::Leak), "{}", leak.verdict_reason);
    assert!(leak.verdict_reason.ends_with("; then all 60 released as the process exited"), "{}", leak.verdict_reason);
    assert_eq!(leak.history.count, vec![10, 20, 30, 40, 50, 60]);
    assert_eq!(r.totals.outstanding, 0, "held at exit: nothing");
    let text = super::text::render(&r, &super::text::View { top: 10, all_mappings: false });
    assert!(text.contains(", all released as the process exited\n"), "{text}");
    // Not under attach: a process that exits there is another matter.
    let r = report(context(Mode::Attach, vec![Kind::Fd]), Aggregator::new(5), &history);
    assert!(r.stacks.is_empty());
}

/// What a program opens and closes all along (a churn), or what an exec
/// closes as close-on-exec, may be caught by the last sample and gone at
/// the exit: young there, it was not held across samples, and a close
/// after the last sample is no interpreter's shutdown.
#[test]
fn run_keeps_no_passing_fds_as_released_at_exit() {
    let s = stacks();
    let owner = proc(PID);
    let mut history = History::new(16_384);
    for second in 1..=6u64 {
        let at = START + second * S;
        let mut agg = Aggregator::new(5);
        // Three in flight at each sample, each opened a millisecond before.
        for i in 0..3 {
            agg.add(fd(owner, &s.config, 10 + i, at - S / 1000, at, file("/etc/hostname")));
        }
        history.record(at, &agg.observed());
    }
    history.record_kept(START + 6 * S + S / 2, &Aggregator::new(5).observed());
    let r = report(context(Mode::Run, vec![Kind::Fd]), Aggregator::new(5), &history);
    assert!(r.stacks.is_empty(), "{:#?}", r.stacks);
}
