//! Image garbage collection, as the kubelet's image GC does it: above a
//! disk-usage threshold, unused images go oldest first until usage is below
//! the low threshold. Imported (pinned) images and images in use stay.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::content::{blob_path, lock};
use super::digest::Digest;
use super::reference::Reference;
use super::unpack::layer_dir;
use super::{ImageError, ImageRecord, ImageStore, io_err, records};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Names removed because the disk was full.
    pub images_removed: Vec<String>,
    pub blobs_removed: usize,
    pub layers_removed: usize,
    /// Abandoned partial downloads and unpack directories.
    pub stale_tmp_removed: usize,
    /// Disk usage (percent) before and after.
    pub usage_before: u8,
    pub usage_after: u8,
}

/// Names to remove when space is needed, first to go first: neither pinned
/// nor in use (by name, index digest or manifest digest), oldest stored first.
pub fn eviction_order(images: &[ImageRecord], in_use: &HashSet<String>) -> Vec<String> {
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| !i.pinned && !used(i, in_use))
        .collect();
    candidates.sort_by_key(|i| (i.stored_at, i.reference.clone()));
    candidates
        .into_iter()
        .map(|i| i.reference.clone())
        .collect()
}

fn used(img: &ImageRecord, in_use: &HashSet<String>) -> bool {
    [
        img.reference.clone(),
        img.digest.to_string(),
        img.manifest_digest.to_string(),
    ]
    .iter()
    .any(|k| in_use.contains(k))
}

/// References as the kubelet has them (`busybox`) match stored names.
fn normalise(in_use: &HashSet<String>) -> HashSet<String> {
    in_use
        .iter()
        .flat_map(|s| {
            let normalised = Reference::parse(s).map(|r| r.to_string()).ok();
            [Some(s.clone()), normalised].into_iter().flatten()
        })
        .collect()
}

pub fn gc(
    store: &ImageStore,
    in_use: &HashSet<String>,
    high: u8,
    low: u8,
) -> Result<GcReport, ImageError> {
    // Excludes pulls and imports, whose blobs are on disk before their record.
    let _store_lock = lock(&store.root, super::STORE_LOCK)?;
    let in_use = normalise(in_use);
    let mut report = GcReport {
        usage_before: usage(&store.root)?,
        ..GcReport::default()
    };
    report.stale_tmp_removed = remove_stale_tmp(&store.root.join("tmp"))?;
    sweep(store, &in_use, &mut report)?;
    if report.usage_before >= high {
        for name in eviction_order(&store.list()?, &in_use) {
            if usage(&store.root)? < low {
                break;
            }
            records::remove_name(&store.lock_db(), &name)?;
            report.images_removed.push(name);
            sweep(store, &in_use, &mut report)?;
        }
    }
    report.usage_after = usage(&store.root)?;
    Ok(report)
}

/// Drops content no name points at (unless in use), then every blob and
/// layer directory no content needs.
fn sweep(
    store: &ImageStore,
    in_use: &HashSet<String>,
    report: &mut GcReport,
) -> Result<(), ImageError> {
    let (blobs, layers) = {
        let db = store.lock_db();
        records::remove_unnamed(&db, &|d| in_use.contains(d))?;
        records::referenced(&db)?
    };
    let blobs: HashSet<String> = blobs.into_iter().collect();
    let layers: HashSet<String> = layers.into_iter().collect();
    for d in unreferenced(&store.root.join("blobs/sha256"), &blobs)? {
        let path = blob_path(&store.root, &d);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        report.blobs_removed += 1;
    }
    for d in unreferenced(&store.root.join("layers"), &layers)? {
        let path = layer_dir(&store.root, &d);
        fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        report.layers_removed += 1;
    }
    Ok(())
}

/// Partial downloads are kept for resuming, but not for ever: one untouched
/// for a day belongs to a pull nobody retried. Lock files stay (removing one
/// while another process waits on it would split the lock).
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

fn remove_stale_tmp(tmp: &Path) -> Result<usize, ImageError> {
    let mut removed = 0;
    for entry in fs::read_dir(tmp).map_err(io_err("read", tmp))? {
        let entry = entry.map_err(io_err("read", tmp))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err("read", &path))?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if path.extension().is_some_and(|e| e == "lock") || age < STALE_TMP {
            continue;
        }
        match meta.is_dir() {
            true => fs::remove_dir_all(&path),
            false => fs::remove_file(&path),
        }
        .map_err(io_err("remove", &path))?;
        removed += 1;
    }
    Ok(removed)
}

fn unreferenced(dir: &Path, keep: &HashSet<String>) -> Result<Vec<Digest>, ImageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        let Ok(d) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy()))
        else {
            continue;
        };
        if !keep.contains(&d.to_string()) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Percent of the filesystem in use, as `df` counts it.
fn usage(path: &Path) -> Result<u8, ImageError> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| io_err("measure", path)(e.into()))?;
    let used = (s.blocks() - s.blocks_free()) as u128;
    let total = used + s.blocks_available() as u128;
    Ok(if total == 0 {
        0
    } else {
        (used * 100).div_ceil(total) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::super::Platform;
    use super::*;

    fn rec(name: &str, stored_at: i64, pinned: bool, hex: char) -> ImageRecord {
        let d = Digest::parse(&format!("sha256:{}", hex.to_string().repeat(64))).unwrap();
        ImageRecord {
            reference: name.into(),
            digest: d.clone(),
            manifest_digest: d.clone(),
            config_digest: d,
            platform: Platform::parse("linux/amd64").unwrap(),
            size: 1,
            layers: vec![],
            pinned,
            stored_at,
        }
    }

    #[test]
    fn evicts_oldest_unused_unpinned_first() {
        let images = [
            rec("new", 30, false, 'a'),
            rec("old", 10, false, 'b'),
            rec("pinned", 1, true, 'c'),
            rec("running", 5, false, 'd'),
        ];
        let in_use = HashSet::from([format!("sha256:{}", "d".repeat(64))]);
        assert_eq!(eviction_order(&images, &in_use), ["old", "new"]);
    }

    #[test]
    fn in_use_references_are_normalised() {
        let images = [rec("docker.io/library/busybox:latest", 1, false, 'a')];
        let in_use = normalise(&HashSet::from(["busybox".to_string()]));
        assert!(eviction_order(&images, &in_use).is_empty());
    }
}
