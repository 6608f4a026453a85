//! `leaktrace record`: writes checkpoints of what processes hold into a
//! recording (`record/`), read later with `leaktrace report FILE`.

use std::path::{Path, PathBuf};

use foldhash::{HashSet, HashSetExt};
use leaktrace_common::fd::{FdEntry, FdKey};

use crate::cli::RecordArgs;
use crate::config::Config;
use crate::host::container;
use crate::kernel::{Kernel, KernelError};
use crate::procfs;
use crate::record::delta::{AcqId, Tracker};
use crate::record::schema::{self, RecordingError};
use crate::record::writer::{AcquisitionRow, CheckpointRow, ProcessRow, Writer};
use crate::report::{build, site};
use crate::session::Session;
use crate::track::aggregate::{Held, What};

use super::drive::{drive, Flow, Mode, Timing};
use super::start::{check, start, who};
use super::Failure;

pub(super) async fn record(args: &RecordArgs) -> Result<u8, Failure> {
    let config = Config::record(args);
    let checked = check(&config)?;
    let conn = schema::create(&args.output)?;
    let writer = Writer::new(conn);
    let (mut session, _) = start(&config, &checked)?;
    let started = wall_ns(procfs::monotonic_ns());
    let sqlite = |source| RecordingError::Sqlite { path: args.output.clone(), source };
    writer.meta("started_ns", &started.to_string()).map_err(sqlite)?;
    writer.meta("leaktrace", env!("CARGO_PKG_VERSION")).map_err(sqlite)?;
    writer.meta("kinds", &config.kinds.joined()).map_err(sqlite)?;
    writer.meta("interval", &humantime::format_duration(config.interval).to_string()).map_err(sqlite)?;
    eprintln!("leaktrace: recording into {} ({}); Ctrl-C ends it", args.output.display(), who(&config.filter));

    let mut mode = Recording {
        path: args.output.clone(),
        max_size: args.max_size,
        redact_args: args.redact_args,
        writer,
        tracker: Tracker::default(),
    };
    drive(&mut session, &mut mode, Timing { interval: config.interval, deadline: args.duration }).await?;
    mode.checkpoint(&mut session)?;
    session.untrace_all();
    eprintln!("leaktrace: recording {} complete", args.output.display());
    Ok(0)
}

/// The loop's view of `record`: a checkpoint at every interval.
struct Recording {
    path: PathBuf,
    max_size: Option<u64>,
    redact_args: bool,
    writer: Writer,
    tracker: Tracker,
}

impl Mode<Kernel> for Recording {
    type Wake = ();

    fn sample(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        self.checkpoint(session)?;
        if let Some(max) = self.max_size {
            self.writer
                .trim(&self.path, max)
                .map_err(|source| RecordingError::Sqlite { path: self.path.clone(), source })?;
        }
        Ok(Flow::Continue)
    }
}

enum CheckpointError {
    Kernel(KernelError),
    Sqlite(rusqlite::Error),
}

impl CheckpointError {
    fn into_failure(self, path: &Path) -> Failure {
        match self {
            CheckpointError::Kernel(e) => e.into(),
            CheckpointError::Sqlite(source) => RecordingError::Sqlite { path: path.into(), source }.into(),
        }
    }
}

fn wall_ns(mono_ns: u64) -> i64 {
    i64::try_from(procfs::wall_time(mono_ns).unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// An fd acquisition as the recording knows it.
fn fd_id(k: &FdKey, e: &FdEntry) -> AcqId {
    AcqId { tgid: k.tgid, gen: k.gen, slot: u64::from(k.fd), acquired_ns: e.acquired_ns, bytes: 0 }
}

/// A held resource as the recording knows it.
fn held_id(h: &Held) -> AcqId {
    match &h.what {
        What::Mapping(m) => {
            AcqId { tgid: h.proc.tgid, gen: h.proc.gen, slot: m.address, acquired_ns: h.acquired_ns, bytes: m.bytes }
        }
        What::Fd(fd) => {
            AcqId { tgid: h.proc.tgid, gen: h.proc.gen, slot: u64::from(fd.fd), acquired_ns: h.acquired_ns, bytes: 0 }
        }
    }
}

impl Recording {
    /// One checkpoint: what is held now compared with the last one.
    fn checkpoint(&mut self, session: &mut Session) -> Result<(), Failure> {
        self.write_checkpoint(session).map_err(|e| e.into_failure(&self.path))
    }

    fn write_checkpoint(&mut self, session: &mut Session) -> Result<(), CheckpointError> {
        let now = procfs::monotonic_ns();
        let entries = session.live_entries().map_err(CheckpointError::Kernel)?;
        // Mappings are few and change shape (partial unmaps): all of them are
        // compared whole at every checkpoint.
        let mappings = session.live_mappings();
        let ids: Vec<AcqId> = entries.iter().map(|(k, e)| fd_id(k, e)).chain(mappings.iter().map(held_id)).collect();
        let delta = self.tracker.step(&ids);
        let mut new: HashSet<AcqId> = HashSet::with_capacity(delta.new.len());
        new.extend(delta.new.iter().copied());
        let fresh: Vec<_> = entries.iter().filter(|(k, e)| new.contains(&fd_id(k, e))).copied().collect();
        let mut held = session.held_entries(&fresh).map_err(CheckpointError::Kernel)?;
        held.extend(mappings.into_iter().filter(|h| new.contains(&held_id(h))));
        let mut rows: Vec<_> = held
            .into_iter()
            .map(|h| {
                let (kind, resource) = h.what.kind_and_resource();
                let id = held_id(&h);
                let (path, tcp) = match &h.what {
                    What::Fd(fd) => (
                        fd.link.clone(),
                        fd.tcp.map(|t| (t.state_name().to_string(), t.local.to_string(), t.remote.to_string())),
                    ),
                    What::Mapping(m) => (m.path.clone(), None),
                };
                let row = AcquisitionRow {
                    id,
                    kind,
                    resource,
                    acquired_ns: wall_ns(h.acquired_ns),
                    bytes: id.bytes,
                    path,
                    tcp,
                };
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
        let redact_args = self.redact_args;
        let written = self
            .writer
            .checkpoint(
                &rows,
                &gone,
                &checkpoint,
                |p| {
                    let container = procfs::cgroup(p.tgid).as_deref().and_then(container::from_proc_cgroup);
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
                    let site = site::leak_site(&frames).and_then(|i| frames[i].symbol.clone());
                    (frames.iter().map(build::frame).collect(), site, stack.truncated.map(String::from))
                },
            )
            .map_err(CheckpointError::Sqlite)?;
        for ((_, _, row), written) in rows.iter().zip(written) {
            self.tracker.written(row.id, written);
        }
        Ok(())
    }
}
