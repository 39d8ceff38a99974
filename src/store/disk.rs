//! The SQLite side of the store: opening and checking the database, loading
//! every row at start, the writer thread that commits batches, and the
//! snapshot start-up falls back on when the database is corrupt.
//!
//! Only this file touches SQLite for cluster objects. One row per object; the
//! body is the object's JSON so that an operator can read it with `sqlite3`.

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

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

/// The last good copy of the database, which the writer keeps.
pub fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.db.snapshot")
}

/// The writer copies the database to the snapshot at most this often, and
/// only when something was committed since the last copy: under steady
/// writes one whole-database write per ten minutes, while idle none.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(10 * 60);

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
    // Until the checks pass: a database that fails them goes aside as it
    // is, so closing it must not checkpoint its WAL into it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
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
    if let Some(problems) = quick_check(&conn).map_err(ctx)? {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: problems,
        });
    }
    conn.execute_batch(SCHEMA).map_err(ctx)?;
    Ok(conn)
}

/// SQLite's `quick_check`: None when the database is sound, else its
/// problems on one line (for the one line start-up logs).
fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(check_summary(&rows.join("\n")))
}

/// `quick_check`'s answer ("ok", or problems one per line under a
/// "*** in database main ***" heading) as the first problem and a count.
fn check_summary(answer: &str) -> Option<String> {
    let problems: Vec<&str> = answer
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    match problems.as_slice() {
        [] | ["ok"] => None,
        [one] => Some(one.to_string()),
        [first, rest @ ..] => Some(format!("{first} (and {} more problems)", rest.len())),
    }
}

/// Opens (creating if needed) the database, reads every object, and starts
/// the writer thread. A database that fails its integrity check is moved
/// aside and replaced by the last good snapshot, or else by an empty one, so
/// that a board never boot-loops on a torn write; one error line says what
/// was lost.
pub fn start(data_dir: &Path, wal_autocheckpoint: u32) -> Result<(Loaded, Writer), StoreError> {
    let path = db_path(data_dir);
    // The snapshot first; should the restored copy not load either, empty.
    let mut fallbacks = [Fallback::Snapshot, Fallback::Empty].into_iter();
    let mut floor = 0;
    let (conn, mut loaded) = loop {
        match load(&path, wal_autocheckpoint) {
            Ok(done) => break done,
            Err(e) if is_corruption(&e) => {
                let Some(fallback) = fallbacks.next() else {
                    return Err(e);
                };
                let (line, salvaged) = recover(data_dir, &e, fallback)?;
                log::error!("{line}");
                // One past the last resourceVersion handed out: every watch
                // from before the restore gets 410 Gone and lists again
                // (its client's cache may hold objects that are now lost).
                floor = floor.max(salvaged.map_or(0, |rv| rv + 1));
            }
            Err(e) => return Err(e),
        }
    };
    if loaded.last_rv < floor {
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?1)",
            params![floor as i64],
        )
        .map_err(|e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        })?;
        loaded.last_rv = floor;
    }
    let snapshots = Snapshots::read(data_dir, loaded.last_rv);
    let writer = Writer::spawn(conn, path, snapshots)?;
    Ok((loaded, writer))
}

fn load(path: &Path, wal_autocheckpoint: u32) -> Result<(Connection, Loaded), StoreError> {
    let conn = open(path, wal_autocheckpoint)?;
    let ctx = |e| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    let last_rv = stored_rv(&conn).map_err(ctx)?;
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
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(ctx)?;
    Ok((conn, Loaded { rows, last_rv }))
}

/// The resourceVersion of the last commit (0 for a new database).
fn stored_rv(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'rv'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v as u64)
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(0),
        e => Err(e),
    })
}

/// Whether `e` says the database file itself is damaged (rather than, say,
/// unreadable for permissions or a failing disk, which moving files aside
/// would not mend).
fn is_corruption(e: &StoreError) -> bool {
    match e {
        StoreError::Corrupt { .. } => true,
        StoreError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        ),
        _ => false,
    }
}

/// What replaces a corrupt database.
#[derive(Clone, Copy)]
enum Fallback {
    Snapshot,
    Empty,
}

/// What start-up put in place of the corrupt database.
#[derive(Debug, PartialEq)]
enum Restored {
    Snapshot { taken: SystemTime, rv: u64 },
    Empty { why: String },
}

/// Moves the corrupt database aside (never deleted: an operator may want
/// it), puts the snapshot or an empty database in its place, and returns
/// the line to log and the highest resourceVersion the bad files still
/// tell, if any.
fn recover(
    data_dir: &Path,
    why: &StoreError,
    fallback: Fallback,
) -> Result<(String, Option<u64>), StoreError> {
    let db = db_path(data_dir);
    let now = SystemTime::now();
    let aside = move_aside(&db, now)?;
    // The files keep SQLite's naming (`X`, `X-wal`), so the moved database
    // still opens with its WAL, for this and for `sqlite3`.
    let salvaged = salvage_rv(&aside);
    let snapshot = snapshot_path(data_dir);
    let restored = match fallback {
        Fallback::Empty => Restored::Empty {
            why: "the restored snapshot did not load either".into(),
        },
        Fallback::Snapshot if !snapshot.exists() => Restored::Empty {
            why: format!("there is no snapshot ({} is missing)", snapshot.display()),
        },
        Fallback::Snapshot => match restore(&snapshot, &db) {
            Ok((taken, rv)) => Restored::Snapshot { taken, rv },
            Err(e) => {
                let moved = move_aside(&snapshot, now)?;
                Restored::Empty {
                    why: format!(
                        "the snapshot is unusable too ({e}; moved to {})",
                        moved.display()
                    ),
                }
            }
        },
    };
    Ok((recovery_line(why, &aside, &restored, salvaged), salvaged))
}

/// The one line start-up logs after a recovery: what failed, where the
/// files went, what replaced them and what is lost.
fn recovery_line(
    why: &StoreError,
    aside: &Path,
    restored: &Restored,
    salvaged: Option<u64>,
) -> String {
    let replaced = match restored {
        Restored::Snapshot { taken, rv } => format!(
            "restored the snapshot of {} (resourceVersion {rv}): changes after it are lost",
            humantime::format_rfc3339_seconds(*taken)
        ),
        Restored::Empty { why } => {
            format!("{why}: starting with an empty store, every object is lost")
        }
    };
    let next = match salvaged {
        Some(rv) => format!("; new resourceVersions start after {rv}, the last one handed out"),
        None => String::new(),
    };
    format!(
        "{why}; moved it (and its -wal and -shm, if any) to {}; {replaced}{next}",
        aside.display()
    )
}

/// `state.db` -> `state.db.corrupt-<unix seconds>` (`.1`, `.2`... when taken),
/// with its `-wal` and `-shm` files; returns the new path of the database.
fn move_aside(path: &Path, now: SystemTime) -> Result<PathBuf, StoreError> {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = aside_path(path, secs, |p| {
        WAL_FILES
            .iter()
            .any(|suffix| with_suffix(p, suffix).exists())
    });
    for suffix in WAL_FILES {
        let from = with_suffix(path, suffix);
        if from.exists() {
            let to = with_suffix(&aside, suffix);
            std::fs::rename(&from, &to).map_err(|e| StoreError::Io {
                what: format!("moving {} aside to {}", from.display(), to.display()),
                source: e,
            })?;
        }
    }
    sync_dir(path);
    Ok(aside)
}

/// A database file and the files SQLite keeps beside it.
const WAL_FILES: [&str; 3] = ["", "-wal", "-shm"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The first of `<path>.corrupt-<secs>`, `<path>.corrupt-<secs>.1`, ... not `taken`.
fn aside_path(path: &Path, secs: u64, taken: impl Fn(&Path) -> bool) -> PathBuf {
    let base = with_suffix(path, &format!(".corrupt-{secs}"));
    (0..)
        .map(|n| match n {
            0 => base.clone(),
            n => with_suffix(&base, &format!(".{n}")),
        })
        .find(|p| !taken(p))
        .expect("some name is free")
}

/// The highest resourceVersion a damaged database still tells, if any.
fn salvage_rv(path: &Path) -> Option<u64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let meta = stored_rv(&conn).ok();
    let rows = conn
        .query_row("SELECT max(rv) FROM objects", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten()
        .map(|v| v as u64);
    meta.max(rows).filter(|rv| *rv > 0)
}

/// Checks the snapshot and copies it into place as the database; returns
/// when it was taken and its resourceVersion.
fn restore(snapshot: &Path, db: &Path) -> Result<(SystemTime, u64), String> {
    let (taken, rv) = check_snapshot(snapshot)?;
    let part = with_suffix(db, ".restoring");
    let copied = std::fs::copy(snapshot, &part)
        .and_then(|_| std::fs::File::open(&part)?.sync_all())
        .and_then(|()| std::fs::rename(&part, db));
    copied.map_err(|e| format!("copying it to {}: {e}", db.display()))?;
    sync_dir(db);
    Ok((taken, rv))
}

fn check_snapshot(snapshot: &Path) -> Result<(SystemTime, u64), String> {
    let conn = Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    if let Some(problems) = quick_check(&conn).map_err(|e| e.to_string())? {
        return Err(format!("integrity check: {problems}"));
    }
    let rv = stored_rv(&conn).map_err(|e| e.to_string())?;
    let taken = std::fs::metadata(snapshot)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    Ok((taken, rv))
}

/// Makes renames in `file`'s directory durable. Best effort: a failure
/// here leaves the rename to the next journal commit of the filesystem.
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// When the writer last copied the database to the snapshot, and whether
/// anything was committed since.
struct Snapshots {
    data_dir: PathBuf,
    changed: bool,
    /// None: no snapshot, or one older than this boot's clock can tell.
    last: Option<Instant>,
}

impl Snapshots {
    /// From the snapshot on disk: its age (mtime) and whether it holds the
    /// database's last commit.
    fn read(data_dir: &Path, db_rv: u64) -> Snapshots {
        let path = snapshot_path(data_dir);
        let snapshot_rv = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|c| stored_rv(&c).ok())
            .unwrap_or(0);
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| t.elapsed().unwrap_or_default());
        Snapshots {
            data_dir: data_dir.to_path_buf(),
            changed: snapshot_rv != db_rv,
            last: age.and_then(|a| Instant::now().checked_sub(a)),
        }
    }

    fn wait(&self) -> Option<Duration> {
        snapshot_wait(self.changed, self.last.map(|t| t.elapsed()))
    }

    fn take(&mut self, conn: &Connection) {
        let started = Instant::now();
        match write_snapshot(conn, &self.data_dir) {
            Ok(()) => {
                self.changed = false;
                log::debug!(
                    "snapshot {} written in {:?}",
                    snapshot_path(&self.data_dir).display(),
                    started.elapsed()
                );
            }
            Err(e) => log::warn!(
                "writing the snapshot {} failed (the last good one stays; next try in {}): {e}",
                snapshot_path(&self.data_dir).display(),
                humantime::format_duration(SNAPSHOT_EVERY)
            ),
        }
        self.last = Some(Instant::now());
    }
}

/// How long the writer may wait before the next snapshot is due; None
/// while nothing changed since the last one (then none is ever due, so an
/// idle board writes nothing).
fn snapshot_wait(changed: bool, since_last: Option<Duration>) -> Option<Duration> {
    changed.then(|| since_last.map_or(Duration::ZERO, |d| SNAPSHOT_EVERY.saturating_sub(d)))
}

/// A consistent copy of the database (`VACUUM INTO`: compact, no WAL),
/// written aside, synced, then renamed over the last one: a crash leaves
/// either the old snapshot or the new one.
fn write_snapshot(conn: &Connection, data_dir: &Path) -> Result<(), String> {
    let path = snapshot_path(data_dir);
    let part = with_suffix(&path, ".part");
    // What a crash during the last snapshot left (VACUUM INTO wants no file).
    let _ = std::fs::remove_file(&part);
    let target = part
        .to_str()
        .ok_or("the data directory's path is not UTF-8")?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| e.to_string())?;
    std::fs::File::open(&part)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&part, &path))
        .map_err(|e| e.to_string())?;
    sync_dir(&path);
    Ok(())
}

/// The thread that owns the connection. fsync on an SD card can take tens of
/// milliseconds; it happens here, never on the executor. So do snapshots.
pub struct Writer {
    /// None only while dropping.
    tx: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Dropping the store ends the thread and closes the database (after the
/// snapshot it may be writing), so the files are complete once it returns.
impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The batch comes back on failure so that nothing is lost.
type Committed = Result<u64, (Batch, String)>;

enum Job {
    Commit(Batch, smol::channel::Sender<Committed>),
    /// Take the snapshot now if anything changed (at shutdown).
    Snapshot(smol::channel::Sender<()>),
}

impl Writer {
    fn spawn(conn: Connection, path: PathBuf, snapshots: Snapshots) -> Result<Writer, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(conn, &path, snapshots, &rx))
            .map_err(|e| StoreError::Io {
                what: "starting the store writer thread".into(),
                source: e,
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) {
        // The thread lives as long as `self`; it stops only by panicking.
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .expect("the store writer thread is running");
    }

    /// Commits `batch`; resolves once it is durable.
    pub async fn commit(&self, batch: Batch) -> Committed {
        let (done_tx, done_rx) = smol::channel::bounded(1);
        self.send(Job::Commit(batch, done_tx));
        done_rx
            .recv()
            .await
            .expect("the store writer thread answers every batch")
    }

    /// Takes the snapshot now if anything was committed since the last one.
    pub async fn snapshot(&self) {
        let (done_tx, done_rx) = smol::channel::bounded(1);
        self.send(Job::Snapshot(done_tx));
        let _ = done_rx.recv().await;
    }
}

fn write_loop(mut conn: Connection, path: &Path, mut snapshots: Snapshots, rx: &Receiver<Job>) {
    loop {
        let job = match snapshots.wait() {
            Some(d) if d.is_zero() => {
                snapshots.take(&conn);
                continue;
            }
            Some(d) => rx.recv_timeout(d),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match job {
            Ok(Job::Commit(batch, done)) => {
                let res = match commit(&mut conn, &batch) {
                    Ok(()) => {
                        snapshots.changed = true;
                        Ok(batch.last_rv)
                    }
                    Err(e) => Err((batch, format!("{}: {e}", path.display()))),
                };
                let _ = done.send_blocking(res);
            }
            Ok(Job::Snapshot(done)) => {
                if snapshots.changed {
                    snapshots.take(&conn);
                }
                let _ = done.send_blocking(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
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

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bramble-disk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn put(name: &str, rv: u64) -> Batch {
        Batch {
            ops: vec![Op::Put {
                resource: "configmaps".into(),
                namespace: "default".into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                rv,
                body: format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}").into(),
            }],
            last_rv: rv,
        }
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        loaded
            .rows
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// A database with `a` (rv 1) in its snapshot and `b` (rv 2) after it.
    fn database_with_snapshot(dir: &Path) {
        let (mut conn, _) = load(&db_path(dir), DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        commit(&mut conn, &put("a", 1)).unwrap();
        write_snapshot(&conn, dir).unwrap();
        commit(&mut conn, &put("b", 2)).unwrap();
    }

    #[test]
    fn a_corrupt_database_is_moved_aside_and_the_snapshot_restored() {
        let dir = temp_dir("restore");
        database_with_snapshot(&dir);
        let db = db_path(&dir);
        // Torn beyond repair: the header and every page.
        let garbage = vec![0xA5u8; std::fs::metadata(&db).unwrap().len() as usize];
        std::fs::write(&db, &garbage).unwrap();
        let (loaded, _writer) = start(&dir, DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        assert_eq!(
            names(&loaded),
            ["a"],
            "the snapshot's objects, not later ones"
        );
        assert_eq!(loaded.last_rv, 1);
        let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("state.db.corrupt-"))
            .collect();
        let kept = aside.iter().find(|p| {
            !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm")
        });
        assert_eq!(
            std::fs::read(kept.unwrap()).unwrap(),
            garbage,
            "kept, never deleted"
        );
        assert!(
            snapshot_path(&dir).exists(),
            "the snapshot stays for next time"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_usable_snapshot_the_store_starts_empty_rather_than_failing() {
        let dir = temp_dir("empty");
        database_with_snapshot(&dir);
        std::fs::write(db_path(&dir), b"not a database, not at all, truly not").unwrap();
        std::fs::write(snapshot_path(&dir), b"nor is this one").unwrap();
        let (loaded, _writer) = start(&dir, DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        assert!(loaded.rows.is_empty());
        let moved: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        assert_eq!(
            moved.len(),
            2,
            "database and snapshot kept aside: {moved:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resource_versions_continue_after_the_last_one_the_damaged_database_tells() {
        let dir = temp_dir("floor");
        database_with_snapshot(&dir);
        let db = db_path(&dir);
        let (mut conn, _) = load(&db, DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        commit(&mut conn, &put("c", 7)).unwrap();
        drop(conn);
        // A damaged page the integrity check finds but the meta table survives:
        // the objects table's root (page 2) overwritten.
        let mut bytes = std::fs::read(&db).unwrap();
        let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
        bytes[page..2 * page].fill(0x5A);
        std::fs::write(&db, &bytes).unwrap();
        let (loaded, _writer) = start(&dir, DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        assert_eq!(names(&loaded), ["a"]);
        assert_eq!(
            loaded.last_rv, 8,
            "no resourceVersion handed out is reused, and watches from them are gone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshots_are_due_only_after_a_change_and_at_most_every_ten_minutes() {
        assert_eq!(snapshot_wait(false, None), None, "idle: never");
        assert_eq!(snapshot_wait(false, Some(Duration::from_secs(3600))), None);
        assert_eq!(
            snapshot_wait(true, None),
            Some(Duration::ZERO),
            "none yet: now"
        );
        assert_eq!(
            snapshot_wait(true, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(540))
        );
        assert_eq!(
            snapshot_wait(true, Some(Duration::from_secs(601))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn start_knows_whether_the_snapshot_holds_the_last_commit() {
        let dir = temp_dir("clock");
        assert!(
            !Snapshots::read(&dir, 0).changed,
            "nothing stored, nothing to copy"
        );
        assert!(Snapshots::read(&dir, 3).changed, "no snapshot yet");
        database_with_snapshot(&dir);
        let s = Snapshots::read(&dir, 1);
        assert!(!s.changed);
        assert!(s.last.is_some_and(|t| t.elapsed() < SNAPSHOT_EVERY));
        assert!(Snapshots::read(&dir, 2).changed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_snapshots_the_first_commit_then_waits_or_is_asked() {
        let dir = temp_dir("writer");
        let (_, writer) = start(&dir, DEFAULT_WAL_AUTOCHECKPOINT).unwrap();
        let snapshot_rv = || check_snapshot(&snapshot_path(&dir)).ok().map(|(_, rv)| rv);
        assert_eq!(snapshot_rv(), None, "an empty store has nothing to keep");
        assert!(smol::block_on(writer.commit(put("a", 1))).is_ok());
        let deadline = Instant::now() + Duration::from_secs(10);
        while snapshot_rv() != Some(1) {
            assert!(
                Instant::now() < deadline,
                "no snapshot after the first commit"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // The next one is ten minutes away, unless asked for (shutdown).
        assert!(smol::block_on(writer.commit(put("b", 2))).is_ok());
        thread::sleep(Duration::from_millis(100));
        assert_eq!(snapshot_rv(), Some(1));
        smol::block_on(writer.snapshot());
        assert_eq!(snapshot_rv(), Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn integrity_problems_fit_on_one_line() {
        assert_eq!(check_summary("ok"), None);
        assert_eq!(
            check_summary(
                "*** in database main ***\nTree 2 page 81: btreeInitPage() returns error code 11\nPage 50: never used\nPage 52: never used"
            ),
            Some(
                "Tree 2 page 81: btreeInitPage() returns error code 11 (and 2 more problems)"
                    .into()
            )
        );
        assert_eq!(
            check_summary("Page 3: never used"),
            Some("Page 3: never used".into())
        );
    }

    #[test]
    fn files_moved_aside_never_overwrite_earlier_ones() {
        let db = Path::new("/d/state.db");
        assert_eq!(
            aside_path(db, 100, |_| false),
            Path::new("/d/state.db.corrupt-100")
        );
        assert_eq!(
            aside_path(db, 100, |p| !p.to_string_lossy().ends_with(".2")),
            Path::new("/d/state.db.corrupt-100.2")
        );
        assert_eq!(with_suffix(db, "-wal"), Path::new("/d/state.db-wal"));
    }

    #[test]
    fn the_recovery_line_says_what_failed_where_it_went_and_what_is_lost() {
        let why = StoreError::Corrupt {
            path: "/d/state.db".into(),
            detail: "Page 7: btreeInitPage() returns error code 11".into(),
        };
        let aside = Path::new("/d/state.db.corrupt-100");
        let taken = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            recovery_line(&why, aside, &Restored::Snapshot { taken, rv: 41 }, Some(57)),
            "state database /d/state.db failed its integrity check: Page 7: btreeInitPage() returns error code 11; \
             moved it (and its -wal and -shm, if any) to /d/state.db.corrupt-100; \
             restored the snapshot of 2023-11-14T22:13:20Z (resourceVersion 41): changes after it are lost; \
             new resourceVersions start after 57, the last one handed out"
        );
        let empty = Restored::Empty {
            why: "there is no snapshot (/d/state.db.snapshot is missing)".into(),
        };
        assert!(recovery_line(&why, aside, &empty, None).ends_with(
            "there is no snapshot (/d/state.db.snapshot is missing): starting with an empty store, every object is lost"
        ));
    }

    #[test]
    fn only_damage_to_the_file_counts_as_corruption() {
        let sqlite = |code| StoreError::Sqlite {
            path: "/d/state.db".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        };
        assert!(is_corruption(&sqlite(rusqlite::ffi::SQLITE_NOTADB)));
        assert!(is_corruption(&sqlite(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(
            !is_corruption(&sqlite(rusqlite::ffi::SQLITE_IOERR)),
            "a failing disk is not mended by moving files"
        );
        assert!(!is_corruption(&sqlite(rusqlite::ffi::SQLITE_CANTOPEN)));
    }
}
