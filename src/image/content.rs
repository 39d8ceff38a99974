//! Blobs by digest. A blob file exists only complete and verified: content is
//! written to `tmp/`, hashed while written, synced, then renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Digest, Hasher};
use super::{ImageError, io_err};

pub fn blob_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("blobs/sha256").join(d.hex())
}

pub fn has_blob(root: &Path, d: &Digest) -> bool {
    blob_path(root, d).is_file()
}

pub fn remove_blob(root: &Path, d: &Digest) -> Result<(), ImageError> {
    let path = blob_path(root, d);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
        _ => Ok(()),
    }
}

/// Reads a small blob (manifest, config) and checks its digest.
pub fn read_blob(root: &Path, d: &Digest, limit: u64) -> Result<Vec<u8>, ImageError> {
    let path = blob_path(root, d);
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(io_err("read blob", &path))?;
    let actual = Digest::of(&bytes);
    match actual == *d {
        true => Ok(bytes),
        false => Err(ImageError::Corrupt {
            what: format!("blob {}", path.display()),
            expected: d.clone(),
            actual,
        }),
    }
}

/// Stores a small document held in memory; returns its digest.
pub fn write_blob(root: &Path, bytes: &[u8]) -> Result<Digest, ImageError> {
    let d = Digest::of(bytes);
    if !has_blob(root, &d) {
        let mut partial = Partial::create(root, &unique_tmp_name("doc"), false)?;
        partial.append(bytes)?;
        partial.commit(Some(&d))?;
    }
    Ok(d)
}

/// Copies a stream into the store. With `expected`, the content must match it;
/// without (docker-archive layers are named by what they hash to), the
/// computed digest names the blob.
pub fn ingest(
    root: &Path,
    expected: Option<&Digest>,
    mut reader: impl Read,
) -> Result<Digest, ImageError> {
    let mut partial = Partial::create(root, &unique_tmp_name("ingest"), false)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(io_err("read", &partial.path))?;
        if n == 0 {
            break;
        }
        partial.append(&buf[..n])?;
    }
    partial.commit(expected)
}

fn unique_tmp_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A blob being written in `tmp/`, hashed as it grows. A download's partial
/// file is named by its digest and kept across failures so it can resume.
pub struct Partial {
    root: PathBuf,
    path: PathBuf,
    file: File,
    hasher: Hasher,
    len: u64,
}

impl Partial {
    /// Opens `tmp/<name>.partial`; with `resume`, keeps what is there and
    /// hashes it, so the download continues after it.
    pub fn create(root: &Path, name: &str, resume: bool) -> Result<Partial, ImageError> {
        let path = root.join("tmp").join(format!("{name}.partial"));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let mut hasher = Hasher::new();
        let mut len = 0;
        if resume {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(io_err("read", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                len += n as u64;
            }
        }
        let mut partial = Partial {
            root: root.to_path_buf(),
            path,
            file,
            hasher,
            len,
        };
        if !resume {
            partial.reset()?;
        }
        Ok(partial)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.file
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Starts over (a server that ignored Range, or content that failed to verify).
    pub fn reset(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate", &self.path))?;
        self.hasher = Hasher::new();
        self.len = 0;
        Ok(())
    }

    /// Verifies and moves the blob into the store. On a mismatch the partial
    /// file is deleted: its bytes cannot be trusted to resume from.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest, ImageError> {
        let actual = self.hasher.clone().finish();
        if let Some(expected) = expected
            && *expected != actual
        {
            let _ = fs::remove_file(&self.path);
            return Err(ImageError::Corrupt {
                what: format!("blob {expected}"),
                expected: expected.clone(),
                actual,
            });
        }
        // Synced before the rename: after a power cut a blob is either whole or absent.
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        let dest = blob_path(&self.root, &actual);
        fs::rename(&self.path, &dest).map_err(io_err("rename into place", &dest))?;
        Ok(actual)
    }
}

/// An exclusive lock on `tmp/<name>.lock`, held until dropped. flock locks
/// belong to the open file, so this serialises threads of one process as
/// well as the daemon against a concurrent CLI.
pub struct Lock {
    _file: File,
}

pub fn lock(root: &Path, name: &str) -> Result<Lock, ImageError> {
    take_lock(root, name, false)
}

/// A shared lock: many holders at once, none while someone holds [`lock`].
pub fn lock_shared(root: &Path, name: &str) -> Result<Lock, ImageError> {
    take_lock(root, name, true)
}

fn take_lock(root: &Path, name: &str, shared: bool) -> Result<Lock, ImageError> {
    let path = root.join("tmp").join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("create lock", &path))?;
    match shared {
        true => file.lock_shared(),
        false => file.lock(),
    }
    .map_err(io_err("lock", &path))?;
    Ok(Lock { _file: file })
}

/// Puts one blob into the store through `fetch` unless it is there; one
/// writer per blob however many pulls want it.
pub fn ensure_blob(
    root: &Path,
    d: &Digest,
    fetch: impl FnOnce() -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    if has_blob(root, d) {
        return Ok(());
    }
    let _lock = lock(root, d.hex())?;
    match has_blob(root, d) {
        true => Ok(()),
        false => fetch(),
    }
}
