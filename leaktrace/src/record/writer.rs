//! Writes checkpoints into a recording: one transaction each, so a
//! checkpoint is in the file whole or not at all. Processes and stacks are
//! written once, at their first acquisition seen; acquisitions once, at the
//! first checkpoint that sees them held; releases at the first that does
//! not.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::report::Frame;
use crate::symbolize::NormStack;
use crate::track::ProcId;

use super::delta::AcqId;
use super::schema;

/// What a process is, as written once.
#[derive(Clone, Debug, Default)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub container: Option<String>,
    pub pod_uid: Option<String>,
}

/// One acquisition as written.
#[derive(Clone, Debug)]
pub struct AcquisitionRow {
    pub id: AcqId,
    pub kind: &'static str,
    pub resource: &'static str,
    /// Wall-clock ns.
    pub acquired_ns: i64,
    pub bytes: u64,
    pub path: Option<String>,
    pub tcp: Option<(String, String, String)>,
}

/// What a checkpoint says of the whole set.
#[derive(Clone, Debug, Default)]
pub struct CheckpointRow {
    pub at_ns: i64,
    pub outstanding: u64,
    pub acquired_total: u64,
    pub released_total: u64,
    pub losses: String,
}

pub struct Writer {
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
    pub fn new(conn: Connection) -> Writer {
        Writer { conn, next: [1; 4], processes: HashMap::new(), stacks: HashMap::new() }
    }

    pub fn meta(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", [key, value]).map(|_| ())
    }

    /// Writes one checkpoint: `new` acquisitions (each with its process and
    /// stack, described by the callbacks the first time), `gone` rows
    /// released at the checkpoint's time. Returns the new rows' ids.
    pub fn checkpoint(
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
            let insert = |table: &str, values: Vec<Value>| -> rusqlite::Result<()> {
                let columns = schema::CHECKED.iter().find(|(t, _)| *t == table).map_or("", |(_, c)| *c);
                let crc = schema::row_crc(values.iter().map(rusqlite::types::ValueRef::from));
                let marks = vec!["?"; values.len() + 1].join(", ");
                let mut statement =
                    tx.prepare_cached(&format!("INSERT INTO {table}({columns}, crc) VALUES ({marks})"))?;
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
                        Value::Text(acq.kind.into()),
                        Value::Text(acq.resource.into()),
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
            id: AcqId { tgid: 42, gen: 7, slot: fd, acquired_ns: at as u64 },
            kind: "fd",
            resource: "file",
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
}
