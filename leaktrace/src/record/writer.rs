//! Writes checkpoints into a recording: one transaction each, so a
//! checkpoint is in the file whole or not at all. Processes and stacks are
//! written once, at their first acquisition seen; acquisitions once, at the
//! first checkpoint that sees them held; releases at the first that does
//! not.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::proc_id::ProcId;
use crate::report::Frame;
use crate::resource::{Kind, Resource};
use crate::symbolize::NormStack;

use super::delta::AcqId;
use super::schema;

/// What a process is, as written once.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcessRow {
    pub pid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub container: Option<String>,
    pub pod_uid: Option<String>,
}

/// One acquisition as written.
#[derive(Clone, Debug)]
pub(crate) struct AcquisitionRow {
    pub id: AcqId,
    pub kind: Kind,
    pub resource: Resource,
    /// Wall-clock ns.
    pub acquired_ns: i64,
    pub bytes: u64,
    pub path: Option<String>,
    pub tcp: Option<(String, String, String)>,
}

/// What a checkpoint says of the whole set.
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckpointRow {
    pub at_ns: i64,
    pub outstanding: u64,
    pub acquired_total: u64,
    pub released_total: u64,
    pub losses: String,
}

pub(crate) struct Writer {
    conn: Connection,
    /// The next row id of each table: ids are chosen here, as each row's
    /// CRC covers its id.
    next: [i64; 4],
    processes: HashMap<ProcId, i64>,
    /// By the stack's `Arc` address (the resolver hands out one per stack
    /// of an image), the `Arc` kept so the address is not reused.
    stacks: HashMap<usize, (Arc<NormStack>, i64)>,
}

impl Writer {
    pub(crate) fn new(conn: Connection) -> Writer {
        Writer { conn, next: [1; 4], processes: HashMap::new(), stacks: HashMap::new() }
    }

    pub(crate) fn meta(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", [key, value]).map(|_| ())
    }

    /// Writes one checkpoint: `new` acquisitions (each with its process and
    /// stack, described by the callbacks the first time), `gone` rows
    /// released at the checkpoint's time. Returns the new rows' ids.
    pub(crate) fn checkpoint(
        &mut self,
        new: &[(ProcId, Arc<NormStack>, AcquisitionRow)],
        gone: &[i64],
        checkpoint: &CheckpointRow,
        mut describe_process: impl FnMut(ProcId) -> ProcessRow,
        mut describe_stack: impl FnMut(&NormStack) -> (Vec<Frame>, Option<String>, Option<String>),
    ) -> rusqlite::Result<Vec<i64>> {
        let tx = self.conn.transaction()?;
        let mut rows = Vec::with_capacity(new.len());
        {
            // One prepared statement per table for the whole checkpoint.
            let mut statements: Vec<(&str, rusqlite::Statement)> = Vec::with_capacity(schema::CHECKED.len());
            for (table, columns) in schema::CHECKED {
                let marks = vec!["?"; columns.split(',').count() + 1].join(", ");
                statements.push((table, tx.prepare(&format!("INSERT INTO {table}({columns}, crc) VALUES ({marks})"))?));
            }
            let mut insert = |table: &str, values: Vec<Value>| -> rusqlite::Result<()> {
                let crc = schema::row_crc(values.iter().map(rusqlite::types::ValueRef::from));
                let Some((_, statement)) = statements.iter_mut().find(|(t, _)| *t == table) else {
                    return Err(rusqlite::Error::InvalidQuery);
                };
                statement.execute(params_from_iter(values.into_iter().chain([Value::Integer(crc)])))?;
                Ok(())
            };
            let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::Text);
            for (proc, stack, acq) in new {
                let process = match self.processes.get(proc) {
                    Some(row) => *row,
                    None => {
                        let p = describe_process(*proc);
                        let row = self.next[0];
                        insert(
                            "processes",
                            vec![
                                Value::Integer(row),
                                Value::Integer(p.pid.into()),
                                text(&p.comm),
                                text(&p.exe),
                                text(&p.cmdline),
                                text(&p.container),
                                text(&p.pod_uid),
                                Value::Integer(checkpoint.at_ns),
                                Value::Null,
                            ],
                        )?;
                        self.next[0] += 1;
                        self.processes.insert(*proc, row);
                        row
                    }
                };
                let address = Arc::as_ptr(stack) as usize;
                let stack_row = match self.stacks.get(&address) {
                    Some((_, row)) => *row,
                    None => {
                        let (frames, site, truncated) = describe_stack(stack);
                        let json = serde_json::to_string(&frames).unwrap_or_else(|_| "[]".into());
                        let row = self.next[1];
                        insert("stacks", vec![Value::Integer(row), Value::Text(json), text(&site), text(&truncated)])?;
                        self.next[1] += 1;
                        self.stacks.insert(address, (stack.clone(), row));
                        row
                    }
                };
                let (state, local, remote) = match &acq.tcp {
                    Some((s, l, r)) => (Some(s.clone()), Some(l.clone()), Some(r.clone())),
                    None => (None, None, None),
                };
                let row = self.next[2];
                insert(
                    "acquisitions",
                    vec![
                        Value::Integer(row),
                        Value::Integer(process),
                        Value::Integer(stack_row),
                        Value::Text(acq.kind.name().into()),
                        Value::Text(acq.resource.name().into()),
                        Value::Integer(acq.id.slot as i64),
                        Value::Integer(acq.acquired_ns),
                        Value::Integer(acq.bytes as i64),
                        text(&acq.path),
                        text(&state),
                        text(&local),
                        text(&remote),
                    ],
                )?;
                self.next[2] += 1;
                rows.push(row);
            }
            for row in gone {
                insert("releases", vec![Value::Integer(*row), Value::Integer(checkpoint.at_ns)])?;
            }
            let row = self.next[3];
            insert(
                "checkpoints",
                vec![
                    Value::Integer(row),
                    Value::Integer(checkpoint.at_ns),
                    Value::Integer(checkpoint.outstanding as i64),
                    Value::Integer(checkpoint.acquired_total as i64),
                    Value::Integer(checkpoint.released_total as i64),
                    Value::Text(checkpoint.losses.clone()),
                ],
            )?;
            self.next[3] += 1;
        }
        tx.commit()?;
        Ok(rows)
    }
}

impl Writer {
    /// Keeps the recording within `max_bytes` (the database and its log):
    /// past it, the oldest tenth of the checkpoints goes whole, with what
    /// was released by the first one kept and the stacks and processes
    /// nothing refers to any more. What is still held stays, whatever its
    /// age. Returns the new start of the recording when something went.
    pub(crate) fn trim(&mut self, path: &std::path::Path, max_bytes: u64) -> rusqlite::Result<Option<i64>> {
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal = path.with_extension(format!("{}-wal", path.extension().and_then(|e| e.to_str()).unwrap_or_default()));
        if size(path) + size(&wal) <= max_bytes {
            return Ok(None);
        }
        let total: i64 = self.conn.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))?;
        if total < 2 {
            return Ok(None);
        }
        let drop = (total / 10).max(1);
        let cutoff: i64 =
            self.conn
                .query_row("SELECT at_ns FROM checkpoints ORDER BY at_ns LIMIT 1 OFFSET ?1", [drop], |r| r.get(0))?;
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM checkpoints WHERE at_ns < ?1", [cutoff])?;
        // Releases first: they refer to their acquisitions.
        tx.execute("CREATE TEMP TABLE gone AS SELECT acquisition FROM releases WHERE released_ns <= ?1", [cutoff])?;
        tx.execute("DELETE FROM releases WHERE released_ns <= ?1", [cutoff])?;
        tx.execute("DELETE FROM acquisitions WHERE id IN (SELECT acquisition FROM temp.gone)", [])?;
        tx.execute("DROP TABLE temp.gone", [])?;
        tx.execute("DELETE FROM stacks WHERE id NOT IN (SELECT stack FROM acquisitions)", [])?;
        tx.execute("DELETE FROM processes WHERE id NOT IN (SELECT process FROM acquisitions)", [])?;
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('dropped_before_ns', ?1)", [cutoff.to_string()])?;
        tx.commit()?;
        // Forget what went, so it is written again if seen again.
        let ids = |table: &str| -> rusqlite::Result<std::collections::HashSet<i64>> {
            let mut s = self.conn.prepare(&format!("SELECT id FROM {table}"))?;
            let rows = s.query_map([], |r| r.get(0))?;
            rows.collect()
        };
        let stacks = ids("stacks")?;
        let processes = ids("processes")?;
        self.stacks.retain(|_, (_, row)| stacks.contains(row));
        self.processes.retain(|_, row| processes.contains(row));
        // The vacuum frees one page per step, and writes through the log:
        // the log is emptied after it.
        {
            let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut steps = vacuum.query([])?;
            while steps.next()?.is_some() {}
        }
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(Some(cutoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Arc<NormStack> {
        Arc::new(NormStack { frames: vec![], truncated: None, unresolved: None, frame_pointers: false })
    }

    #[test]
    fn a_checkpoint_writes_processes_and_stacks_once() {
        let dir = std::env::temp_dir().join(format!("leaktrace-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rec.db");
        let mut w = Writer::new(schema::create(&path).expect("created"));
        let proc = ProcId { tgid: 42, gen: 7 };
        let s = stack();
        let acq = |fd: u64, at: i64| AcquisitionRow {
            id: AcqId { tgid: 42, gen: 7, slot: fd, acquired_ns: at as u64, bytes: 0 },
            kind: Kind::Fd,
            resource: Resource::File,
            acquired_ns: at,
            bytes: 0,
            path: Some("/etc/passwd".into()),
            tcp: None,
        };
        let mut described = (0, 0);
        let mut describe_p = |_p: ProcId| {
            described.0 += 1;
            ProcessRow { pid: 42, comm: Some("leaky".into()), ..ProcessRow::default() }
        };
        let rows = w
            .checkpoint(
                &[(proc, s.clone(), acq(3, 100)), (proc, s.clone(), acq(4, 110))],
                &[],
                &CheckpointRow { at_ns: 1_000, outstanding: 2, ..CheckpointRow::default() },
                &mut describe_p,
                |_s| (vec![], Some("leak_config".into()), None),
            )
            .expect("checkpoint");
        assert_eq!(rows.len(), 2);
        let more = w
            .checkpoint(
                &[(proc, s.clone(), acq(5, 1_500))],
                &[rows[0]],
                &CheckpointRow { at_ns: 2_000, outstanding: 2, ..CheckpointRow::default() },
                &mut describe_p,
                |_s| {
                    described.1 += 1;
                    (vec![], None, None)
                },
            )
            .expect("checkpoint");
        assert_eq!(more.len(), 1);
        assert_eq!(described, (1, 0), "the process once, the stack not again");
        let conn = &w.conn;
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        assert_eq!(count("SELECT COUNT(*) FROM processes"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM stacks"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM acquisitions"), 3);
        assert_eq!(count("SELECT released_ns FROM releases"), 2_000);
        assert_eq!(count("SELECT COUNT(*) FROM checkpoints"), 2);
        schema::open(&path).expect("every row matches its checksum");
        // A value changed inside a record (which SQLite itself cannot see).
        conn.execute("UPDATE acquisitions SET slot = 99 WHERE id = 2", []).expect("update");
        let err = schema::open(&path).expect_err("a changed row");
        assert!(err.to_string().contains("row 2 of acquisitions does not match its checksum"), "{err}");
        // Held at 1,800: fd 4 and fd 5 (fd 3 was seen gone at 2,000, so it
        // was still held then as far as the recording knows).
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM acquisitions a LEFT JOIN releases r ON r.acquisition = a.id \
                 WHERE a.acquired_ns <= 1800 AND (r.released_ns IS NULL OR r.released_ns > 1800)"
            ),
            3
        );
    }

    #[test]
    fn trimming_drops_the_oldest_checkpoints_whole_and_keeps_what_is_held() {
        let dir = std::env::temp_dir().join(format!("leaktrace-trim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rec.db");
        let mut w = Writer::new(schema::create(&path).expect("created"));
        let proc = ProcId { tgid: 42, gen: 7 };
        let s = stack();
        let row = |fd: u64, at: i64| AcquisitionRow {
            id: AcqId { tgid: 42, gen: 7, slot: fd, acquired_ns: at as u64, bytes: 0 },
            kind: Kind::Fd,
            resource: Resource::File,
            acquired_ns: at,
            bytes: 0,
            path: Some("/var/log/app.log".repeat(8)),
            tcp: None,
        };
        // One acquisition held all along, then 100 checkpoints of 50 that
        // each live one checkpoint.
        let held = w
            .checkpoint(
                &[(proc, s.clone(), row(3, 1))],
                &[],
                &CheckpointRow { at_ns: 10, ..CheckpointRow::default() },
                |_| ProcessRow::default(),
                |_| (vec![], None, None),
            )
            .expect("first");
        let mut previous: Vec<i64> = Vec::new();
        for c in 1..=100i64 {
            let new: Vec<_> = (0..50).map(|i| (proc, s.clone(), row(100 + i, c * 1_000 + i as i64))).collect();
            let at = CheckpointRow { at_ns: c * 1_000 + 500, ..CheckpointRow::default() };
            previous = w
                .checkpoint(&new, &previous, &at, |_| ProcessRow::default(), |_| (vec![], None, None))
                .expect("checkpoint");
        }
        let wal = dir.join("rec.db-wal");
        let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let mut cutoffs = Vec::new();
        for _ in 0..30 {
            if let Some(c) = w.trim(&path, 256 * 1024).expect("trim") {
                cutoffs.push(c);
            }
        }
        assert!(!cutoffs.is_empty(), "{before} bytes were over the cap");
        let conn = schema::open(&path).expect("still a whole recording");
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        let first: i64 = count("SELECT MIN(at_ns) FROM checkpoints");
        assert_eq!(first, *cutoffs.last().expect("cutoff"));
        assert_eq!(count(&format!("SELECT COUNT(*) FROM acquisitions WHERE id = {}", held[0])), 1, "held all along");
        assert_eq!(
            count(&format!("SELECT COUNT(*) FROM acquisitions a JOIN releases r ON r.acquisition = a.id WHERE r.released_ns <= {first}")),
            0,
            "nothing released before the kept start"
        );
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 256 * 1024 && size < before, "{before} -> {size}");
        assert!(cutoffs.len() < 30, "{} trims to fit", cutoffs.len());
    }
}
