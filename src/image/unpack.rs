//! Unpacks a layer blob into its own directory, once, in the form overlayfs
//! reads as a lowerdir: OCI whiteouts become 0:0 character devices and
//! opaque directories get `trusted.overlay.opaque=y` (this needs root).
//!
//! Nothing is ever written through a symlink: entries with `..` or absolute
//! paths, entries under a symlink, and hard links to anything outside the
//! layer are refused, and files are created with O_NOFOLLOW|O_EXCL.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::content::{blob_path, lock};
use super::digest::{Digest, HashingReader};
use super::{ImageError, io_err};

const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

pub fn layer_dir(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(diff_id.hex())
}

/// Makes `layers/<diff_id>` exist, unpacking the blob if needed. The blob and
/// the uncompressed stream are both hashed while unpacking; a mismatch
/// discards the work. The directory appears only complete (rename from tmp/).
pub fn ensure_layer(root: &Path, blob: &Digest, diff_id: &Digest) -> Result<(), ImageError> {
    let dest = layer_dir(root, diff_id);
    if dest.is_dir() {
        return Ok(());
    }
    let _lock = lock(root, &format!("layer-{}", diff_id.hex()))?;
    if dest.is_dir() {
        return Ok(());
    }
    let work = root.join("tmp").join(format!("layer-{}", diff_id.hex()));
    remove_all(&work)?; // left by a crash mid-unpack
    fs::create_dir(&work).map_err(io_err("create", &work))?;
    let result = unpack_verified(&blob_path(root, blob), blob, diff_id, &work);
    if let Err(e) = result {
        remove_all(&work)?;
        return Err(e);
    }
    // Written data must reach the card before the directory becomes visible.
    let dir = fs::File::open(&work).map_err(io_err("open", &work))?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
        .map_err(|e| io_err("sync", &work)(e.into()))?;
    fs::rename(&work, &dest).map_err(io_err("rename into place", &dest))
}

fn remove_all(path: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

fn unpack_verified(
    blob: &Path,
    blob_digest: &Digest,
    diff_id: &Digest,
    dest: &Path,
) -> Result<(), ImageError> {
    let file = fs::File::open(blob).map_err(io_err("open layer blob", blob))?;
    let mut compressed = HashingReader::new(file);
    let unpack_err = |reason: String| ImageError::Unpack {
        layer: blob_digest.clone(),
        entry: String::new(),
        reason,
    };
    let (applied, drained) = {
        let mut buffered = BufReader::with_capacity(64 * 1024, &mut compressed);
        let magic = buffered
            .fill_buf()
            .map_err(io_err("read layer blob", blob))?
            .to_vec();
        // The magic bytes decide, not the media type: docker-archives and
        // some registries label layers loosely.
        let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(
                ruzstd::decoding::StreamingDecoder::new(buffered)
                    .map_err(|e| unpack_err(format!("bad zstd stream: {e}")))?,
            )
        } else {
            Box::new(buffered)
        };
        let mut uncompressed = HashingReader::new(decoded);
        let applied = apply_tar(&mut uncompressed, dest, blob_digest);
        (applied, uncompressed.finish())
    };
    // Hashes the rest of the file too, so a blob that broke the tar stream is
    // reported as corrupt (fetch it again) rather than by its symptom.
    let (actual, _) = compressed
        .finish()
        .map_err(io_err("read layer blob", blob))?;
    if actual != *blob_digest {
        return Err(ImageError::Corrupt {
            what: format!("layer blob {}", blob.display()),
            expected: blob_digest.clone(),
            actual,
        });
    }
    applied?;
    let (actual, _) = drained.map_err(|e| unpack_err(e.to_string()))?;
    match actual == *diff_id {
        true => Ok(()),
        false => Err(ImageError::Corrupt {
            what: format!("uncompressed layer {blob_digest}"),
            expected: diff_id.clone(),
            actual,
        }),
    }
}

/// Where an entry may go, relative to the layer root: no absolute paths, no `..`.
pub fn safe_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("a `..` component would leave the layer"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute path would leave the layer");
            }
        }
    }
    Ok(out)
}

/// What a tar entry means for overlayfs.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout.
    None,
    /// `.wh..wh..opq`: hide everything below in the directory.
    Opaque,
    /// `.wh.NAME`: hide NAME.
    Remove(&'a OsStr),
    /// Other `.wh..wh.*` names are aufs bookkeeping, dropped.
    Ignore,
}

pub fn classify(name: &OsStr) -> Whiteout<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        Whiteout::Opaque
    } else if bytes.starts_with(b".wh..wh.") {
        Whiteout::Ignore
    } else if let Some(rest) = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        Whiteout::Remove(OsStr::from_bytes(rest))
    } else {
        Whiteout::None
    }
}

/// The metadata applied after content (and, for directories, after all
/// children, since adding children changes a directory's mtime).
struct Meta {
    path: PathBuf,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    symlink: bool,
}

fn apply_tar(reader: impl Read, dest: &Path, layer: &Digest) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let mut dirs = Vec::new();
    let refuse = |entry: &Path, reason: &str| ImageError::Unpack {
        layer: layer.clone(),
        entry: entry.display().to_string(),
        reason: reason.to_string(),
    };
    let entries = archive
        .entries()
        .map_err(|e| refuse(Path::new(""), &e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(Path::new(""), &e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| refuse(Path::new(""), &e.to_string()))?
            .into_owned();
        let fail = |e: io::Error| refuse(&raw, &e.to_string());
        let rel = safe_relative(&raw).map_err(|r| refuse(&raw, r))?;
        let xattrs = pax_xattrs(&mut entry).map_err(|e| refuse(&raw, &e.to_string()))?;
        let header = entry.header();
        let kind = header.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let mode = header.mode().map_err(fail)?;
        let uid = header.uid().map_err(fail)?;
        let gid = header.gid().map_err(fail)?;
        let mtime = header.mtime().unwrap_or(0);
        let meta = |path: PathBuf, symlink: bool| Meta {
            path,
            mode,
            uid,
            gid,
            mtime,
            symlink,
        };

        if rel.as_os_str().is_empty() {
            dirs.push(meta(dest.to_path_buf(), false));
            continue;
        }
        make_parents(dest, &rel).map_err(|r| refuse(&raw, &r))?;
        let full = dest.join(&rel);
        let name = rel.file_name().unwrap_or_default();
        match classify(name) {
            Whiteout::Opaque => {
                let dir = full.parent().unwrap_or(dest);
                xattr::set(dir, OPAQUE_XATTR, b"y")
                    .map_err(|e| refuse(&raw, &needs_root(e, "set the overlay opaque xattr")))?;
                continue;
            }
            Whiteout::Ignore => continue,
            Whiteout::Remove(hidden) => {
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(refuse(
                        &raw,
                        "a whiteout must name an entry of its directory",
                    ));
                }
                let target = full.with_file_name(hidden);
                remove_existing(dest, &target).map_err(fail)?;
                mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
                    refuse(
                        &raw,
                        &needs_root(e.into(), "create an overlay whiteout device"),
                    )
                })?;
                continue;
            }
            Whiteout::None => {}
        }
        match kind {
            tar::EntryType::Directory => {
                if !fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) {
                    remove_existing(dest, &full).map_err(fail)?;
                    fs::create_dir(&full).map_err(fail)?;
                }
                set_xattrs(&full, &xattrs, layer);
                dirs.push(meta(full, false));
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(dest, &full).map_err(fail)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc_nofollow())
                    .mode(0o600)
                    .open(&full)
                    .map_err(fail)?;
                io::copy(&mut entry, &mut file).map_err(fail)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(fail)?
                    .ok_or_else(|| refuse(&raw, "symlink without a target"))?;
                remove_existing(dest, &full).map_err(fail)?;
                std::os::unix::fs::symlink(&target, &full).map_err(fail)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(fail)?
                    .ok_or_else(|| refuse(&raw, "hard link without a target"))?;
                let target_rel = safe_relative(&target)
                    .map_err(|r| refuse(&raw, &format!("hard link target: {r}")))?;
                check_parents(dest, &target_rel)
                    .map_err(|r| refuse(&raw, &format!("hard link target: {r}")))?;
                let source = dest.join(&target_rel);
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(refuse(
                            &raw,
                            "hard link target is not a file earlier in this layer",
                        ));
                    }
                }
                remove_existing(dest, &full).map_err(fail)?;
                // linkat without AT_SYMLINK_FOLLOW: links the entry itself, never what it points to.
                fs::hard_link(&source, &full).map_err(fail)?;
                continue; // shares the target's inode and metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(dest, &full).map_err(fail)?;
                mknod(
                    &full,
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    makedev(major.into(), minor.into()),
                )
                .map_err(|e| refuse(&raw, &needs_root(e.into(), "create a device node")))?;
            }
            other => {
                return Err(refuse(
                    &raw,
                    &format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        let is_symlink = kind == tar::EntryType::Symlink;
        if !is_symlink {
            set_xattrs(&full, &xattrs, layer);
        }
        apply_meta(&meta(full, is_symlink)).map_err(fail)?;
    }
    for d in dirs.iter().rev() {
        apply_meta(d).map_err(|e| refuse(&d.path, &e.to_string()))?;
    }
    Ok(())
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

fn needs_root(e: io::Error, what: &str) -> String {
    match e.raw_os_error() {
        Some(nix::libc::EPERM) => format!("cannot {what}: {e} (unpacking image layers needs root)"),
        _ => format!("cannot {what}: {e}"),
    }
}

/// Creates the missing parents of `rel` under `dest`; an existing parent must
/// be a real directory, never a symlink (which could point anywhere).
fn make_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "its parent {} is a symlink; refusing to write through it",
                    strip(dest, &cur)
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "its parent {} is not a directory",
                    strip(dest, &cur)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Like [`make_parents`] but creates nothing: for hard link targets.
fn check_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        cur.push(part);
        if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
            return Err(format!(
                "{} is not a directory of this layer",
                strip(dest, &cur)
            ));
        }
    }
    Ok(())
}

fn strip(dest: &Path, p: &Path) -> String {
    p.strip_prefix(dest).unwrap_or(p).display().to_string()
}

/// A later entry replaces an earlier one at the same path (tar semantics).
/// The only deletion an archive can steer, and it runs as root: it checks
/// again, whatever its callers checked, that `path` is strictly inside `dest`.
fn remove_existing(dest: &Path, path: &Path) -> io::Result<()> {
    let inside = path.strip_prefix(dest).is_ok_and(|rel| {
        rel.components().next().is_some()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
    });
    if !inside {
        let msg = format!(
            "refusing to remove {}: not inside the layer",
            path.display()
        );
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, msg));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Best effort ("xattrs where possible"): a filesystem without user xattrs
/// must not make an image unusable. Overlay's own xattrs are never taken from
/// an image: a layer could otherwise redirect lookups outside itself.
fn set_xattrs(path: &Path, xattrs: &[(String, Vec<u8>)], layer: &Digest) {
    for (name, value) in xattrs {
        if name.starts_with("trusted.overlay.") {
            log::warn!("layer {layer}: ignoring {name} on {}", path.display());
            continue;
        }
        if let Err(e) = xattr::set(path, name, value) {
            log::warn!(
                "layer {layer}: cannot set xattr {name} on {}: {e}",
                path.display()
            );
        }
    }
}

fn apply_meta(m: &Meta) -> io::Result<()> {
    let id = |v: u64| {
        u32::try_from(v)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid/gid above 2^32"))
    };
    std::os::unix::fs::lchown(&m.path, Some(id(m.uid)?), Some(id(m.gid)?))?;
    if !m.symlink {
        // After chown, which clears setuid/setgid bits.
        fs::set_permissions(&m.path, fs::Permissions::from_mode(m.mode & 0o7777))?;
    }
    let secs = i64::try_from(m.mtime).unwrap_or(0);
    let t = TimeSpec::new(secs, 0);
    utimensat(None, &m.path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_paths_stay_inside_the_layer() {
        assert_eq!(
            safe_relative(Path::new("./usr/bin/sh")),
            Ok(PathBuf::from("usr/bin/sh"))
        );
        assert_eq!(safe_relative(Path::new("etc/")), Ok(PathBuf::from("etc")));
        assert_eq!(safe_relative(Path::new("./")), Ok(PathBuf::new()));
        assert!(safe_relative(Path::new("../etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn removal_never_leaves_the_layer() {
        let dest = Path::new("/nonexistent/layer");
        for outside in [
            "/nonexistent/layer",
            "/nonexistent/layer/..",
            "/nonexistent/layer/a/../..",
            "/etc",
        ] {
            let err = remove_existing(dest, Path::new(outside)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{outside}");
        }
        assert!(
            remove_existing(dest, Path::new("/nonexistent/layer/a/b")).is_ok(),
            "absent: nothing to do"
        );
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(
            classify(OsStr::new(".wh.passwd")),
            Whiteout::Remove(OsStr::new("passwd"))
        );
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Whiteout::Ignore);
        assert_eq!(classify(OsStr::new("passwd.wh.")), Whiteout::None);
    }

    #[test]
    fn mutated_entry_names_never_leave_the_layer() {
        let corpus: &[&[u8]] = &[
            b"usr/bin/busybox",
            b"./etc/.wh..wh..opq",
            b"var/lib/.wh.cache",
            b"a/../../b",
            b"/abs/path",
        ];
        crate::mutate::each_mutation(6, 20_000, corpus, |input| {
            let path = Path::new(OsStr::from_bytes(input));
            if let Ok(rel) = safe_relative(path) {
                assert!(
                    rel.components().all(|c| matches!(c, Component::Normal(_))),
                    "{rel:?}"
                );
            }
            if let Some(name) = path.file_name() {
                let _ = classify(name);
            }
        });
    }
}
