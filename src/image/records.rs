//! Image names and contents in SQLite (`images.db`), shared by the daemon and
//! the CLI: WAL so readers never block, short transactions, a busy timeout.
//!
//! A name points at content; content without a name stays until GC, so a
//! container whose image was removed keeps its layers while it runs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::platform::Platform;
use super::{Content, ImageError};

/// One named image on this board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// Normalised reference: `docker.io/library/busybox:latest`, or the
    /// manifest digest for an archive image without a name.
    pub reference: String,
    /// What the reference resolved to (an index for multi-arch images): the
    /// digest to pin with `name@digest`.
    pub digest: Digest,
    /// The platform's manifest that was stored.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Platform,
    /// Compressed bytes of config and layers, as a registry would count them.
    pub size: u64,
    /// Bottom first.
    pub layers: Vec<LayerRecord>,
    /// Imported images are pinned: GC never removes them.
    pub pinned: bool,
    /// Seconds since the epoch when this name was last pulled or imported.
    pub stored_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    pub blob: Digest,
    pub diff_id: Digest,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct LayerRow {
    blob: String,
    diff_id: String,
    size: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS contents(
  manifest_digest TEXT PRIMARY KEY,
  config_digest TEXT NOT NULL,
  platform TEXT NOT NULL,
  size INTEGER NOT NULL,
  layers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(
  name TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  manifest_digest TEXT NOT NULL REFERENCES contents(manifest_digest),
  pinned INTEGER NOT NULL,
  stored_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS imported_files(
  name TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL);
";

pub fn open(path: &Path) -> Result<Connection, ImageError> {
    let db = Connection::open(path)?;
    // The CLI and the daemon share the file; a writer waits rather than fails.
    db.busy_timeout(Duration::from_secs(10))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Records content and points `names` at it, in one transaction. Called only
/// once every blob and layer is on disk. A name keeps its pin when pulled again.
pub fn put(db: &Connection, names: &[String], c: &Content, pinned: bool) -> Result<(), ImageError> {
    let layers: Vec<LayerRow> = c
        .layers
        .iter()
        .map(|l| LayerRow {
            blob: l.blob.to_string(),
            diff_id: l.diff_id.to_string(),
            size: l.size,
        })
        .collect();
    let layers = serde_json::to_string(&layers).map_err(|e| ImageError::BadDocument {
        what: "layer list".into(),
        reason: e.to_string(),
    })?;
    let tx = db.unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO contents VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            c.manifest_digest.to_string(),
            c.config_digest.to_string(),
            c.platform.to_string(),
            c.size as i64,
            layers
        ],
    )?;
    for name in names {
        tx.execute(
            "INSERT INTO names VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET digest = ?2, manifest_digest = ?3,
               pinned = max(pinned, ?4), stored_at = ?5",
            params![
                name,
                c.digest.to_string(),
                c.manifest_digest.to_string(),
                pinned,
                now()
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

const SELECT: &str = "SELECT n.name, n.digest, n.manifest_digest, c.config_digest, c.platform, c.size, c.layers, n.pinned, n.stored_at
  FROM names n JOIN contents c ON c.manifest_digest = n.manifest_digest";

/// By name, or by digest (of the index or of the manifest).
pub fn get(db: &Connection, key: &str) -> Result<Option<ImageRecord>, ImageError> {
    let sql = format!(
        "{SELECT} WHERE n.name = ?1 OR n.digest = ?1 OR n.manifest_digest = ?1 ORDER BY n.name = ?1 DESC LIMIT 1"
    );
    let raw = db.query_row(&sql, [key], raw_row).optional()?;
    raw.map(decode).transpose()
}

pub fn list(db: &Connection) -> Result<Vec<ImageRecord>, ImageError> {
    let mut stmt = db.prepare(&format!("{SELECT} ORDER BY n.name"))?;
    let raws = stmt
        .query_map([], raw_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(decode).collect()
}

pub fn remove_name(db: &Connection, name: &str) -> Result<(), ImageError> {
    db.execute("DELETE FROM names WHERE name = ?1", [name])?;
    Ok(())
}

/// Drops content no name points at, except `keep` (digests in use).
pub fn remove_unnamed(db: &Connection, keep: &dyn Fn(&str) -> bool) -> Result<usize, ImageError> {
    let mut stmt = db.prepare("SELECT manifest_digest FROM contents WHERE manifest_digest NOT IN (SELECT manifest_digest FROM names)")?;
    let unnamed = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut removed = 0;
    for d in unnamed.iter().filter(|d| !keep(d)) {
        removed += db.execute("DELETE FROM contents WHERE manifest_digest = ?1", [d])?;
    }
    Ok(removed)
}

/// Every blob and layer digest some content still needs.
pub fn referenced(db: &Connection) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    let mut stmt = db.prepare("SELECT manifest_digest, config_digest, layers FROM contents")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (manifest, config, layer_json) = row?;
        blobs.push(manifest);
        blobs.push(config);
        for l in parse_layers(&layer_json)? {
            blobs.push(l.blob);
            layers.push(l.diff_id);
        }
    }
    // Index blobs of multi-arch images are referenced by name only.
    let mut stmt = db.prepare("SELECT digest FROM names")?;
    for d in stmt.query_map([], |r| r.get::<_, String>(0))? {
        blobs.push(d?);
    }
    Ok((blobs, layers))
}

/// Was this archive (name, size, mtime) imported already?
pub fn seen_file(
    db: &Connection,
    name: &str,
    size: u64,
    mtime_ns: i64,
) -> Result<bool, ImageError> {
    let found: Option<(i64, i64)> = db
        .query_row(
            "SELECT size, mtime_ns FROM imported_files WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(found == Some((size as i64, mtime_ns)))
}

pub fn mark_file(db: &Connection, name: &str, size: u64, mtime_ns: i64) -> Result<(), ImageError> {
    db.execute(
        "INSERT OR REPLACE INTO imported_files VALUES (?1, ?2, ?3)",
        params![name, size as i64, mtime_ns],
    )?;
    Ok(())
}

type RawRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    bool,
    i64,
);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn parse_layers(json: &str) -> Result<Vec<LayerRow>, ImageError> {
    serde_json::from_str(json).map_err(|e| ImageError::BadDocument {
        what: "stored layer list".into(),
        reason: e.to_string(),
    })
}

fn decode(raw: RawRow) -> Result<ImageRecord, ImageError> {
    let (
        reference,
        digest,
        manifest_digest,
        config_digest,
        platform,
        size,
        layers,
        pinned,
        stored_at,
    ) = raw;
    let layers = parse_layers(&layers)?
        .into_iter()
        .map(|l| {
            Ok(LayerRecord {
                blob: Digest::parse(&l.blob)?,
                diff_id: Digest::parse(&l.diff_id)?,
                size: l.size,
            })
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    Ok(ImageRecord {
        reference,
        digest: Digest::parse(&digest)?,
        manifest_digest: Digest::parse(&manifest_digest)?,
        config_digest: Digest::parse(&config_digest)?,
        platform: Platform::parse(&platform)?,
        size: size as u64,
        layers,
        pinned,
        stored_at,
    })
}
