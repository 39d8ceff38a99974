//! `bramble image export`: an oci-archive of one image (its board platform's
//! manifest), named by its reference, importable here or by skopeo/containerd.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::content::{blob_path, read_blob};
use super::digest::{Digest, HashingReader};
use super::import::descriptor;
use super::oci::{self, Index};
use super::{ImageError, ImageRecord, ImageStore, MAX_DOCUMENT, io_err};

pub fn export(store: &ImageStore, img: &ImageRecord, out: &Path) -> Result<(), ImageError> {
    let partial = out.with_extension("partial");
    let result = write_archive(store, img, &partial);
    match result {
        Ok(()) => fs::rename(&partial, out).map_err(io_err("rename into place", out)),
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn write_archive(store: &ImageStore, img: &ImageRecord, path: &Path) -> Result<(), ImageError> {
    let file = File::create(path).map_err(io_err("create", path))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let manifest = read_blob(&store.root, &img.manifest_digest, MAX_DOCUMENT)?;
    let mut top = descriptor(
        oci::OCI_MANIFEST,
        &img.manifest_digest,
        manifest.len() as u64,
    );
    top.annotations = BTreeMap::from([
        (oci::REF_NAME.to_string(), img.reference.clone()),
        (oci::CONTAINERD_NAME.to_string(), img.reference.clone()),
    ]);
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: vec![top],
    };
    let index = serde_json::to_vec(&index).map_err(|e| ImageError::BadDocument {
        what: "index".into(),
        reason: e.to_string(),
    })?;
    append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err("write", path))?;
    append(&mut tar, "index.json", &index).map_err(io_err("write", path))?;
    let blobs = [img.manifest_digest.clone(), img.config_digest.clone()]
        .into_iter()
        .chain(img.layers.iter().map(|l| l.blob.clone()));
    for d in blobs {
        append_blob(&mut tar, &store.root, &d, path)?;
    }
    let mut inner = tar.into_inner().map_err(io_err("write", path))?;
    inner.flush().map_err(io_err("write", path))
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> io::Result<()> {
    tar.append_data(&mut header(bytes.len() as u64), name, bytes)
}

/// Copies a blob into the archive, verifying it on the way.
fn append_blob(
    tar: &mut tar::Builder<impl Write>,
    root: &Path,
    d: &Digest,
    out: &Path,
) -> Result<(), ImageError> {
    let path = blob_path(root, d);
    let file = File::open(&path).map_err(io_err("open blob", &path))?;
    let size = file.metadata().map_err(io_err("read", &path))?.len();
    let mut reader = HashingReader::new(file);
    tar.append_data(
        &mut header(size),
        format!("blobs/sha256/{}", d.hex()),
        &mut reader,
    )
    .map_err(io_err("write", out))?;
    let (actual, _) = reader.finish().map_err(io_err("read", &path))?;
    match actual == *d {
        true => Ok(()),
        false => Err(ImageError::Corrupt {
            what: format!("blob {}", path.display()),
            expected: d.clone(),
            actual,
        }),
    }
}
