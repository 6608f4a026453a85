//! The recording file: an SQLite database (queryable with `sqlite3`), its
//! versioned schema, and the checks that refuse what is not a recording
//! this leaktrace can read.
//!
//! SQLite was chosen over a framed binary format by measurement (README,
//! "Recordings"; its cost in `record` is in BENCHMARKS.md, "recording"):
//! one transaction per checkpoint, one fsync a second, and a transaction is
//! all or nothing, so a recorder killed or a host losing power leaves every
//! checkpoint before the last one whole.
//!
//! Times are wall-clock nanoseconds since the Unix epoch, so a recording is
//! read on another machine, after a reboot, as it was written.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

/// `PRAGMA application_id`: "LTRK".
pub(crate) const APPLICATION_ID: i32 = 0x4c54_524b;
/// `PRAGMA user_version`: the schema's version; readers refuse newer ones.
pub(crate) const VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per process instance (a pid reused is a new row).
CREATE TABLE processes (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    comm TEXT, exe TEXT, cmdline TEXT,
    container TEXT, pod_uid TEXT,
    first_seen_ns INTEGER NOT NULL,
    exited_ns INTEGER,
    crc INTEGER NOT NULL
);
-- A symbolized stack, innermost frame first, as the report's frames (JSON).
CREATE TABLE stacks (
    id INTEGER PRIMARY KEY,
    frames TEXT NOT NULL,
    site TEXT,
    truncated TEXT,
    crc INTEGER NOT NULL
);
-- What a checkpoint saw held, written once, at the first checkpoint that saw it.
CREATE TABLE acquisitions (
    id INTEGER PRIMARY KEY,
    process INTEGER NOT NULL REFERENCES processes(id),
    stack INTEGER NOT NULL REFERENCES stacks(id),
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    slot INTEGER NOT NULL,
    acquired_ns INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    tcp_state TEXT, local TEXT, remote TEXT,
    crc INTEGER NOT NULL
);
-- The first checkpoint that no longer saw an acquisition held (append-only:
-- acquisitions are never updated).
CREATE TABLE releases (
    acquisition INTEGER PRIMARY KEY REFERENCES acquisitions(id),
    released_ns INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY,
    at_ns INTEGER NOT NULL,
    outstanding INTEGER NOT NULL,
    acquired_total INTEGER NOT NULL,
    released_total INTEGER NOT NULL,
    losses TEXT NOT NULL,
    crc INTEGER NOT NULL
);
CREATE INDEX acquisitions_by_time ON acquisitions(acquired_ns);
CREATE INDEX releases_by_time ON releases(released_ns);
CREATE INDEX checkpoints_by_time ON checkpoints(at_ns);
";

/// Every table's columns that a row's `crc` covers, in order. SQLite keeps
/// no page checksums: a byte changed inside a record would be read back as
/// a wrong answer, so each row carries a CRC-32 of its values, checked when
/// a recording is opened.
pub(crate) const CHECKED: &[(&str, &str)] = &[
    ("processes", "id, pid, comm, exe, cmdline, container, pod_uid, first_seen_ns, exited_ns"),
    ("stacks", "id, frames, site, truncated"),
    ("acquisitions", "id, process, stack, kind, resource, slot, acquired_ns, bytes, path, tcp_state, local, remote"),
    ("releases", "acquisition, released_ns"),
    ("checkpoints", "id, at_ns, outstanding, acquired_total, released_total, losses"),
];

/// The CRC-32 of a row's values, each tagged with its type.
pub(crate) fn row_crc<'a>(values: impl IntoIterator<Item = rusqlite::types::ValueRef<'a>>) -> i64 {
    use rusqlite::types::ValueRef;
    let mut h = crc32fast::Hasher::new();
    for v in values {
        match v {
            ValueRef::Null => h.update(&[0]),
            ValueRef::Integer(i) => {
                h.update(&[1]);
                h.update(&i.to_le_bytes());
            }
            ValueRef::Real(f) => {
                h.update(&[2]);
                h.update(&f.to_le_bytes());
            }
            ValueRef::Text(t) => {
                h.update(&[3]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t);
            }
            ValueRef::Blob(b) => {
                h.update(&[4]);
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
    i64::from(h.finalize())
}

/// Checks every row against its CRC.
fn verify(conn: &Connection, path: &Path) -> Result<(), RecordingError> {
    let corrupt = |detail: String| RecordingError::Corrupt { path: path.into(), detail };
    for (table, columns) in CHECKED {
        let n = columns.split(',').count();
        let mut statement =
            conn.prepare(&format!("SELECT {columns}, crc FROM {table}")).map_err(|e| corrupt(e.to_string()))?;
        let mut rows = statement.query([]).map_err(|e| corrupt(e.to_string()))?;
        while let Some(row) = rows.next().map_err(|e| corrupt(e.to_string()))? {
            let values: Vec<rusqlite::types::ValueRef> =
                (0..n).map(|i| row.get_ref(i)).collect::<Result<_, _>>().map_err(|e| corrupt(e.to_string()))?;
            let stored: i64 = row.get(n).map_err(|e| corrupt(e.to_string()))?;
            if row_crc(values) != stored {
                let id = row.get_ref(0).ok().and_then(|v| v.as_i64().ok()).unwrap_or(-1);
                return Err(corrupt(format!("row {id} of {table} does not match its checksum")));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Error)]
pub(crate) enum RecordingError {
    #[error("cannot create the recording {path}: {source} (it must not exist yet)")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot read the recording {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a leaktrace recording (not an SQLite database)")]
    NotSqlite { path: PathBuf },
    #[error("{path} is an SQLite database but not a leaktrace recording")]
    Foreign { path: PathBuf },
    #[error(
        "{path} is a recording of format {found}, newer than this leaktrace reads ({VERSION}); use a newer leaktrace"
    )]
    Newer { path: PathBuf, found: i32 },
    #[error("{path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{detail}")]
    Moment { detail: String },
    #[error("recording {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

/// Creates a new recording at `path`: never over an existing file or
/// through a symlink, readable by its owner only (it names files, peers
/// and command lines).
pub(crate) fn create(path: &Path) -> Result<Connection, RecordingError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| RecordingError::Create { path: path.into(), source })?;
    let sqlite = |source| RecordingError::Sqlite { path: path.into(), source };
    let conn = Connection::open(path).map_err(sqlite)?;
    // FULL: the write-ahead log is synced at every commit (one a
    // checkpoint), so a power loss costs at most the checkpoint under way.
    // A 32 MiB page cache (SQLite's default is 2 MiB) keeps the indexes'
    // pages in memory instead of reading them back for every insert.
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         PRAGMA cache_size = -32768;
         PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {VERSION}; {SCHEMA}"
    ))
    .map_err(sqlite)?;
    Ok(conn)
}

/// Opens a recording to read, after checking it is one this leaktrace reads.
pub(crate) fn open(path: &Path) -> Result<Connection, RecordingError> {
    let mut header = [0u8; 16];
    {
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).map_err(|source| RecordingError::Read { path: path.into(), source })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            let source = std::io::Error::other("it is a directory");
            return Err(RecordingError::Read { path: path.into(), source });
        }
        if file.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
            return Err(RecordingError::NotSqlite { path: path.into() });
        }
    }
    let sqlite = |source| RecordingError::Sqlite { path: path.into(), source };
    let corrupt = |e: rusqlite::Error| RecordingError::Corrupt { path: path.into(), detail: e.to_string() };
    // Read-write so a write-ahead log left by a killed recorder is replayed
    // (SQLite does it at open); the reader itself writes nothing.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY))
        .map_err(sqlite)?;
    let id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(corrupt)?;
    if id != APPLICATION_ID {
        return Err(RecordingError::Foreign { path: path.into() });
    }
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
    if version > VERSION {
        return Err(RecordingError::Newer { path: path.into(), found: version });
    }
    // integrity_check, not quick_check: it also matches every index entry
    // against its table row, and the reader finds rows through the indexes,
    // which no row CRC covers (about 0.1 s more per million rows).
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(corrupt)?;
    if check != "ok" {
        return Err(RecordingError::Corrupt { path: path.into(), detail: check });
    }
    verify(&conn, path)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leaktrace-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn a_new_recording_is_private_and_never_replaces_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("create");
        let path = d.join("rec.db");
        drop(create(&path).expect("created"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(create(&path), Err(RecordingError::Create { .. })), "exists already");
        let link = d.join("link.db");
        std::os::unix::fs::symlink(d.join("elsewhere.db"), &link).expect("symlink");
        assert!(matches!(create(&link), Err(RecordingError::Create { .. })), "through a symlink");
        assert!(!d.join("elsewhere.db").exists());
        open(&path).expect("reads back");
    }

    #[test]
    fn what_is_not_a_recording_is_named_as_such() {
        let d = dir("foreign");
        let garbage = d.join("garbage");
        std::fs::write(&garbage, b"hello, this is not a database at all").expect("write");
        assert!(matches!(open(&garbage), Err(RecordingError::NotSqlite { .. })));
        let empty = d.join("empty");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(open(&empty), Err(RecordingError::NotSqlite { .. })));
        let other = d.join("other.db");
        Connection::open(&other).and_then(|c| c.execute_batch("CREATE TABLE t(x)")).expect("other db");
        assert!(matches!(open(&other), Err(RecordingError::Foreign { .. })));
        let newer = d.join("newer.db");
        drop(create(&newer).expect("created"));
        Connection::open(&newer)
            .and_then(|c| c.execute_batch(&format!("PRAGMA user_version = {}", VERSION + 1)))
            .expect("bump");
        let err = open(&newer).expect_err("newer");
        assert!(err.to_string().contains("newer than this leaktrace reads"), "{err}");
        assert!(matches!(open(&d.join("missing.db")), Err(RecordingError::Read { .. })));
    }

    #[test]
    fn a_damaged_recording_is_refused() {
        let d = dir("damaged");
        let path = d.join("rec.db");
        {
            let conn = create(&path).expect("created");
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
        }
        // Overwrite the b-tree header of the second page (a table's root).
        // (Damage inside a record's bytes is not caught by SQLite, which
        // keeps no page checksums: see the checkpoint digests.)
        let mut bytes = std::fs::read(&path).expect("read");
        for b in &mut bytes[4096..4096 + 64] {
            *b = 0xa5;
        }
        std::fs::write(&path, &bytes).expect("write");
        let err = open(&path).expect_err("damaged");
        assert!(matches!(err, RecordingError::Corrupt { .. } | RecordingError::Sqlite { .. }), "{err}");
    }
    /// The CRCs cover the tables' rows, but the reader finds rows through
    /// the indexes, whose copies of the values no CRC covers: an index that
    /// disagrees with its table is refused too (the fuzzer's find: one bit
    /// flipped in an index entry gave a time of -7.4e18 ns, and the age
    /// computed from it overflowed).
    #[test]
    fn an_index_that_disagrees_with_its_table_is_refused() {
        let d = dir("index");
        let path = d.join("rec.db");
        {
            let conn = create(&path).expect("created");
            let values = [
                rusqlite::types::Value::Integer(1),
                rusqlite::types::Value::Integer(1_000),
                rusqlite::types::Value::Integer(7),
                rusqlite::types::Value::Integer(7),
                rusqlite::types::Value::Integer(0),
                rusqlite::types::Value::Text("{}".into()),
            ];
            let crc = row_crc(values.iter().map(rusqlite::types::ValueRef::from));
            conn.execute(
                "INSERT INTO checkpoints(id, at_ns, outstanding, acquired_total, released_total, losses, crc) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params_from_iter(values.into_iter().chain([rusqlite::types::Value::Integer(crc)])),
            )
            .expect("a checkpoint");
            // The index keeps at_ns (1000); the schema now says it indexes
            // `outstanding` (7): the table's row is missing from the index.
            conn.execute_batch(
                "PRAGMA writable_schema = ON; \
                 UPDATE sqlite_schema SET sql = 'CREATE INDEX checkpoints_by_time ON checkpoints(outstanding)' \
                 WHERE name = 'checkpoints_by_time'; \
                 PRAGMA writable_schema = OFF; PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .expect("rewrite the index's definition");
        }
        let err = open(&path).expect_err("an index that disagrees");
        assert!(
            matches!(&err, RecordingError::Corrupt { detail, .. } if detail.contains("missing from index checkpoints_by_time")),
            "{err}"
        );
    }
}
