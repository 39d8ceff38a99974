//! The SQLite side of the store: opening and checking the database, loading
//! every row at start, and the writer thread that commits batches.
//!
//! Only this file touches SQLite for cluster objects. One row per object; the
//! body is the object's JSON so that an operator can read it with `sqlite3`.

use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};
use std::thread;

use super::StoreError;

/// One change, in the order the executor made it.
pub enum Op {
    Put {
        resource: String,
        namespace: String,
        name: String,
        uid: String,
        rv: u64,
        body: std::sync::Arc<str>,
    },
    Delete {
        resource: String,
        namespace: String,
        name: String,
    },
}

/// Every write made since the last commit, committed as one transaction.
pub struct Batch {
    pub ops: Vec<Op>,
    pub last_rv: u64,
}

pub struct Row {
    pub resource: String,
    pub body: String,
}

pub struct Loaded {
    pub rows: Vec<Row>,
    pub last_rv: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    resource  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    uid       TEXT NOT NULL,
    rv        INTEGER NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.db")
}

/// SQLite's own default: checkpoint the WAL into the database every 1000 pages.
pub const DEFAULT_WAL_AUTOCHECKPOINT: u32 = 1000;

fn open(path: &Path, wal_autocheckpoint: u32) -> Result<Connection, StoreError> {
    let ctx = |e| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .map_err(ctx)?;
    // WAL keeps readers off the writer's path; FULL makes each commit survive
    // power loss, which group commit makes affordable.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(ctx)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(ctx)?;
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(ctx)?;
    // Reads come from the store's memory, so SQLite's own page cache only
    // serves writes: 256 KiB instead of the default 2 MiB keeps the
    // daemon small.
    conn.pragma_update(None, "cache_size", -256).map_err(ctx)?;
    // Boards on SD cards checkpoint less often: fewer, larger writes.
    conn.pragma_update(None, "wal_autocheckpoint", wal_autocheckpoint)
        .map_err(ctx)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(ctx)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: check,
        });
    }
    conn.execute_batch(SCHEMA).map_err(ctx)?;
    Ok(conn)
}

/// Opens (creating if needed) the database, reads every object, and starts
/// the writer thread.
pub fn start(data_dir: &Path, wal_autocheckpoint: u32) -> Result<(Loaded, Writer), StoreError> {
    let path = db_path(data_dir);
    let conn = open(&path, wal_autocheckpoint)?;
    let ctx = |e| StoreError::Sqlite {
        path: path.clone(),
        source: e,
    };
    let last_rv: u64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'rv'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|v| v as u64)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(0),
            e => Err(e),
        })
        .map_err(ctx)?;
    let rows = {
        let mut stmt = conn
            .prepare("SELECT resource, body FROM objects ORDER BY rv")
            .map_err(ctx)?;
        stmt.query_map([], |r| {
            Ok(Row {
                resource: r.get(0)?,
                body: r.get(1)?,
            })
        })
        .map_err(ctx)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx)?
    };
    let writer = Writer::spawn(conn, path)?;
    Ok((Loaded { rows, last_rv }, writer))
}

/// The thread that owns the connection. fsync on an SD card can take tens of
/// milliseconds; it happens here, never on the executor.
pub struct Writer {
    tx: std::sync::mpsc::Sender<(Batch, smol::channel::Sender<Committed>)>,
}

/// The batch comes back on failure so that nothing is lost.
type Committed = Result<u64, (Batch, String)>;

impl Writer {
    fn spawn(mut conn: Connection, path: PathBuf) -> Result<Writer, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<(Batch, smol::channel::Sender<Committed>)>();
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                for (batch, done) in rx {
                    let res = match commit(&mut conn, &batch) {
                        Ok(()) => Ok(batch.last_rv),
                        Err(e) => Err((batch, format!("{}: {e}", path.display()))),
                    };
                    let _ = done.send_blocking(res);
                }
            })
            .map_err(|e| StoreError::Io {
                what: "starting the store writer thread".into(),
                source: e,
            })?;
        Ok(Writer { tx })
    }

    /// Commits `batch`; resolves once it is durable.
    pub async fn commit(&self, batch: Batch) -> Committed {
        let (done_tx, done_rx) = smol::channel::bounded(1);
        // The thread lives as long as `self`; it stops only by panicking.
        self.tx
            .send((batch, done_tx))
            .expect("the store writer thread is running");
        done_rx
            .recv()
            .await
            .expect("the store writer thread answers every batch")
    }
}

fn commit(conn: &mut Connection, batch: &Batch) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO objects (resource, namespace, name, uid, rv, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut del = tx.prepare_cached(
            "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
        )?;
        for op in &batch.ops {
            match op {
                Op::Put {
                    resource,
                    namespace,
                    name,
                    uid,
                    rv,
                    body,
                } => {
                    put.execute(params![resource, namespace, name, uid, *rv as i64, &**body])?;
                }
                Op::Delete {
                    resource,
                    namespace,
                    name,
                } => {
                    del.execute(params![resource, namespace, name])?;
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?1)",
            params![batch.last_rv as i64],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_connection_checkpoints_as_configured() {
        let dir = std::env::temp_dir().join(format!("bramble-disk-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conn = open(&db_path(&dir), 4000).unwrap();
        let pages: u32 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, 4000);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
