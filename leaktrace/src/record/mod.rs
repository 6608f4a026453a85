//! Recordings for post-incident work (`leaktrace record`, `leaktrace
//! report FILE`): what was held, by which code, at any moment, readable
//! later on another machine. `record` writes checkpoints (writer.rs) of
//! what changed since the last one (delta.rs); reader.rs answers reports
//! from them.

pub mod delta;
pub mod reader;
pub mod schema;
pub mod writer;

use foldhash::{HashSet, HashSetExt};
use std::time::Duration;

use crate::cli::{kind_names, RecordArgs};
use crate::config::Config;
use crate::failure::Failure;
use crate::kernel::KernelError;
use crate::procfs;
use crate::run::EVENT_LATENCY;
use crate::session::Session;
use crate::track::aggregate::{Held, What};

use self::delta::{AcqId, Tracker};
use self::writer::{AcquisitionRow, CheckpointRow, ProcessRow, Writer};

pub async fn record(args: &RecordArgs) -> Result<u8, Failure> {
    let config = args.config();
    let started = crate::host::check(&config)?;
    let conn = schema::create(&args.output)?;
    let mut writer = Writer::new(conn);
    let (mut session, events) = crate::host::start(&config, &started, false)?;
    let started = wall_ns(procfs::monotonic_ns());
    let sqlite = |source| crate::record::schema::RecordingError::Sqlite { path: args.output.clone(), source };
    writer.meta("started_ns", &started.to_string()).map_err(sqlite)?;
    writer.meta("leaktrace", env!("CARGO_PKG_VERSION")).map_err(sqlite)?;
    writer.meta("kinds", &kind_names(&config.kinds).join(",")).map_err(sqlite)?;
    writer.meta("interval", &humantime::format_duration(args.interval).to_string()).map_err(sqlite)?;
    eprintln!(
        "leaktrace: recording into {} ({}); Ctrl-C ends it",
        args.output.display(),
        crate::host::who(&config.filter)
    );

    let mut tracker = Tracker::default();
    let mut stop = crate::session::StopSignals::new()?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut checkpoint = tokio::time::interval(args.interval);
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = events.ready() => session.drain_events(),
            _ = tick.tick() => session.tick()?,
            _ = checkpoint.tick() => {
                write_checkpoint(&mut session, &mut writer, &mut tracker, args.redact_args).map_err(|e| e.into_failure(&args.output))?;
                if let Some(max) = args.max_size {
                    writer.trim(&args.output, max).map_err(sqlite)?;
                }
            }
            _ = &mut deadline => break,
            _ = stop.recv() => break,
        }
    }
    write_checkpoint(&mut session, &mut writer, &mut tracker, args.redact_args)
        .map_err(|e| e.into_failure(&args.output))?;
    session.untrace_all();
    eprintln!("leaktrace: recording {} complete", args.output.display());
    Ok(0)
}

enum CheckpointError {
    Kernel(KernelError),
    Sqlite(rusqlite::Error),
}

impl CheckpointError {
    fn into_failure(self, path: &std::path::Path) -> Failure {
        match self {
            CheckpointError::Kernel(e) => e.into(),
            CheckpointError::Sqlite(source) => schema::RecordingError::Sqlite { path: path.into(), source }.into(),
        }
    }
}

fn wall_ns(mono_ns: u64) -> i64 {
    i64::try_from(procfs::wall_time(mono_ns).unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// One checkpoint: what is held now compared with the last one.
fn write_checkpoint(
    session: &mut Session,
    writer: &mut Writer,
    tracker: &mut Tracker,
    redact_args: bool,
) -> Result<(), CheckpointError> {
    let now = procfs::monotonic_ns();
    let entries = session.live_entries().map_err(CheckpointError::Kernel)?;
    let fd_id = |k: &leaktrace_common::fd::FdKey, e: &leaktrace_common::fd::FdEntry| AcqId {
        tgid: k.tgid,
        gen: k.gen,
        slot: u64::from(k.fd),
        acquired_ns: e.acquired_ns,
        bytes: 0,
    };
    // Mappings are few and change shape (partial unmaps): all of them are
    // compared whole at every checkpoint.
    let mappings = session.live_mappings();
    let mapping_id = |h: &Held| match &h.what {
        What::Mapping(m) => {
            AcqId { tgid: h.proc.tgid, gen: h.proc.gen, slot: m.address, acquired_ns: h.acquired_ns, bytes: m.bytes }
        }
        What::Fd(fd) => {
            AcqId { tgid: h.proc.tgid, gen: h.proc.gen, slot: u64::from(fd.fd), acquired_ns: h.acquired_ns, bytes: 0 }
        }
    };
    let ids: Vec<AcqId> = entries.iter().map(|(k, e)| fd_id(k, e)).chain(mappings.iter().map(mapping_id)).collect();
    let delta = tracker.step(&ids);
    let mut new: HashSet<AcqId> = HashSet::with_capacity(delta.new.len());
    new.extend(delta.new.iter().copied());
    let fresh: Vec<_> = entries.iter().filter(|(k, e)| new.contains(&fd_id(k, e))).copied().collect();
    let mut held = session.held_entries(&fresh).map_err(CheckpointError::Kernel)?;
    held.extend(mappings.into_iter().filter(|h| new.contains(&mapping_id(h))));
    let mut rows: Vec<_> = held
        .into_iter()
        .map(|h| {
            let (kind, resource) = h.what.kind_and_resource();
            let id = mapping_id(&h);
            let (path, tcp) = match &h.what {
                What::Fd(fd) => (
                    fd.link.clone(),
                    fd.tcp.map(|t| (t.state_name().to_string(), t.local.to_string(), t.remote.to_string())),
                ),
                What::Mapping(m) => (m.path.clone(), None),
            };
            let row =
                AcquisitionRow { id, kind, resource, acquired_ns: wall_ns(h.acquired_ns), bytes: id.bytes, path, tcp };
            (h.proc, h.stack, row)
        })
        .collect();
    // In the order of their keys (time, row id), so that rows and index
    // entries are appended to the b-trees rather than inserted between
    // others: half the recorder's CPU at 100,000 acquisitions/s.
    rows.sort_by_key(|(_, _, row)| row.acquired_ns);
    let mut gone: Vec<i64> = delta.gone.iter().map(|(_, row)| *row).collect();
    gone.sort_unstable();
    let (acquired_total, released_total, losses) = session.totals().map_err(CheckpointError::Kernel)?;
    let checkpoint = CheckpointRow {
        at_ns: wall_ns(now),
        outstanding: ids.len() as u64,
        acquired_total,
        released_total,
        losses: serde_json::to_string(&losses).unwrap_or_else(|_| "{}".into()),
    };
    let written = writer
        .checkpoint(
            &rows,
            &gone,
            &checkpoint,
            |p| {
                let container = procfs::cgroup(p.tgid).as_deref().and_then(crate::daemon::container::from_proc_cgroup);
                ProcessRow {
                    pid: p.tgid,
                    comm: procfs::comm(p.tgid),
                    exe: procfs::exe(p.tgid),
                    cmdline: procfs::cmdline(p.tgid, redact_args),
                    pod_uid: container.as_ref().and_then(|c| c.pod_uid.clone()),
                    container: container.map(|c| c.id),
                }
            },
            |stack| {
                let frames = session.symbolize(stack);
                let site = crate::report::site::leak_site(&frames).and_then(|i| frames[i].symbol.clone());
                (frames.iter().map(crate::report::build::frame).collect(), site, stack.truncated.map(String::from))
            },
        )
        .map_err(CheckpointError::Sqlite)?;
    for ((_, _, row), written) in rows.iter().zip(written) {
        tracker.written(row.id, written);
    }
    Ok(())
}

/// `leaktrace report FILE`.
pub fn report(
    file: &std::path::Path,
    at: Option<&str>,
    from: Option<&str>,
    pid: Option<u32>,
    format: crate::cli::Format,
    output: Option<&std::path::Path>,
) -> Result<u8, Failure> {
    let recording = reader::Recording::open(file)?;
    let moment = |text: &str| recording.moment(text).map_err(|detail| schema::RecordingError::Moment { detail });
    let at_ns = match at {
        Some(text) => moment(text)?,
        None => recording.last_checkpoint_ns.unwrap_or(recording.started_ns),
    };
    let from_ns = match from {
        Some(text) => moment(text)?,
        None => recording.started_ns,
    };
    let report = recording.report_window(from_ns, at_ns, pid)?;
    let view = crate::report::text::View { top: Config::default().top, all_mappings: false };
    crate::output::Output::to(format, output, view)?.write(&report)?;
    Ok(0)
}
