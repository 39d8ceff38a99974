//! Offline import: oci-archive, OCI layout directories and docker-archive.
//! Archives are read in place (member offsets from one scan of the tar), so
//! an import costs one copy of each blob, never an extracted tree.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::content::{ensure_blob, ingest};
use super::digest::Digest;
use super::oci::{self, Descriptor, DockerArchiveEntry};
use super::reference::Reference;
use super::{
    BlobSource, ImageError, ImageRecord, ImageStore, MAX_DOCUMENT, Progress, io_err, parse_json,
    records,
};

/// An OCI layout directory or a tar file, read member by member.
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, Member>,
    },
}

enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

impl Source {
    fn open(path: &Path) -> Result<Source, ImageError> {
        let meta = fs::metadata(path).map_err(io_err("read", path))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let bad = |e: std::io::Error| ImageError::BadArchive {
            path: path.to_path_buf(),
            reason: format!("not a tar archive: {e}"),
        };
        let file = File::open(path).map_err(io_err("open", path))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = normalise(&entry.path().map_err(bad)?);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(
                        name,
                        Member::File {
                            offset: entry.raw_file_position(),
                            size: entry.size(),
                        },
                    );
                }
                // Old `docker save` links duplicate layers to the first copy.
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                    let target = match entry.header().entry_type() {
                        tar::EntryType::Symlink => Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target),
                        _ => target.into_owned(),
                    };
                    members.insert(name, Member::Link(normalise(&target)));
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    fn path(&self) -> &Path {
        match self {
            Source::Dir(p) | Source::Tar { path: p, .. } => p,
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(dir) => dir.join(name).is_file(),
            Source::Tar { members, .. } => members.contains_key(name),
        }
    }

    fn open_member(&self, name: &str) -> Result<(Box<dyn Read>, u64), ImageError> {
        let missing = || ImageError::BadArchive {
            path: self.path().to_path_buf(),
            reason: format!("{name} is missing"),
        };
        match self {
            Source::Dir(dir) => {
                let path = dir.join(name);
                let file = File::open(&path).map_err(|_| missing())?;
                let size = file.metadata().map_err(io_err("read", &path))?.len();
                Ok((Box::new(file), size))
            }
            Source::Tar { path, members } => {
                let mut current = name.to_string();
                for _ in 0..8 {
                    match members.get(&current).ok_or_else(missing)? {
                        Member::Link(target) => current = target.clone(),
                        Member::File { offset, size } => {
                            let mut file = File::open(path).map_err(io_err("open", path))?;
                            file.seek(SeekFrom::Start(*offset))
                                .map_err(io_err("read", path))?;
                            return Ok((Box::new(file.take(*size)), *size));
                        }
                    }
                }
                Err(missing())
            }
        }
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open_member(name)?;
        if size > MAX_DOCUMENT {
            return Err(ImageError::BadArchive {
                path: self.path().to_path_buf(),
                reason: format!("{name} is {size} bytes, too large"),
            });
        }
        let mut bytes = Vec::new();
        reader
            .take(MAX_DOCUMENT)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", self.path()))?;
        Ok(bytes)
    }
}

/// `./a/b` and `a/b` are the same member.
fn normalise(p: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Blobs come from the archive: `blobs/sha256/<hex>` for OCI, or the member a
/// docker-archive names for each digest.
struct ArchiveBlobs<'a> {
    source: &'a Source,
    docker_names: HashMap<Digest, String>,
}

impl ArchiveBlobs<'_> {
    fn member(&self, digest: &Digest) -> String {
        self.docker_names
            .get(digest)
            .cloned()
            .unwrap_or_else(|| format!("blobs/sha256/{}", digest.hex()))
    }
}

impl BlobSource for ArchiveBlobs<'_> {
    fn small(&mut self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        self.source
            .read_small(&self.member(&Digest::parse(&desc.digest)?))
    }

    fn blob(
        &mut self,
        store: &ImageStore,
        desc: &Descriptor,
        _: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError> {
        let digest = Digest::parse(&desc.digest)?;
        ensure_blob(&store.root, &digest, || {
            let (reader, _) = self.source.open_member(&self.member(&digest))?;
            ingest(&store.root, Some(&digest), reader).map(drop)
        })
    }
}

pub fn import(store: &ImageStore, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
    let source = Source::open(path)?;
    let imported = if source.has("index.json") {
        import_oci(store, &source)?
    } else if source.has("manifest.json") {
        import_docker(store, &source)?
    } else {
        return Err(ImageError::BadArchive {
            path: path.to_path_buf(),
            reason: "neither an OCI layout (index.json) nor a docker-archive (manifest.json)"
                .into(),
        });
    };
    let mut out = Vec::new();
    for name in imported {
        out.push(
            store
                .get(&name)?
                .ok_or(ImageError::NotFound { reference: name })?,
        );
    }
    Ok(out)
}

/// Stores one image and names it; returns the names.
fn store_named(
    store: &ImageStore,
    blobs: &mut ArchiveBlobs<'_>,
    top: &[u8],
    media_type: &str,
    names: Vec<String>,
) -> Result<Vec<String>, ImageError> {
    let label = names
        .first()
        .cloned()
        .unwrap_or_else(|| Digest::of(top).to_string());
    let content =
        store.store_content(&label, top, media_type, &store.platform, blobs, &mut |_| {})?;
    let names = match names.is_empty() {
        true => vec![content.manifest_digest.to_string()],
        false => names,
    };
    records::put(&store.lock_db(), &names, &content, true)?;
    Ok(names)
}

fn import_oci(store: &ImageStore, source: &Source) -> Result<Vec<String>, ImageError> {
    let index: oci::Index = parse_json(
        &source.read_small("index.json")?,
        &format!("{}: index.json", source.path().display()),
    )?;
    let mut blobs = ArchiveBlobs {
        source,
        docker_names: HashMap::new(),
    };
    let mut names = Vec::new();
    for desc in &index.manifests {
        let top = store.small_verified(&mut blobs, desc, &source.path().display().to_string())?;
        let name = archive_name(desc)?;
        names.extend(store_named(
            store,
            &mut blobs,
            &top,
            &desc.media_type,
            name.into_iter().collect(),
        )?);
    }
    Ok(names)
}

/// containerd's full name if present, else the OCI ref.name when it is a
/// whole reference (a bare tag like `1.0` names nothing on its own).
fn archive_name(desc: &Descriptor) -> Result<Option<String>, ImageError> {
    let name = desc.annotations.get(oci::CONTAINERD_NAME).or_else(|| {
        desc.annotations
            .get(oci::REF_NAME)
            .filter(|n| n.contains(['/', ':']))
    });
    name.map(|n| Reference::parse(n).map(|r| r.to_string()))
        .transpose()
}

fn import_docker(store: &ImageStore, source: &Source) -> Result<Vec<String>, ImageError> {
    let entries: Vec<DockerArchiveEntry> = parse_json(
        &source.read_small("manifest.json")?,
        "docker-archive manifest.json",
    )?;
    let mut names = Vec::new();
    for entry in entries {
        // docker-archive has no manifest: make the OCI one a registry would
        // serve for these (uncompressed) layers, so the image has a digest.
        let config_bytes = source.read_small(&normalise(Path::new(&entry.config)))?;
        let config_digest = Digest::of(&config_bytes);
        let config: oci::ConfigFile = parse_json(&config_bytes, "docker-archive image config")?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::BadArchive {
                path: source.path().to_path_buf(),
                reason: "layers and diff_ids differ in number".into(),
            });
        }
        let mut docker_names =
            HashMap::from([(config_digest.clone(), normalise(Path::new(&entry.config)))]);
        let mut layers = Vec::new();
        for (member, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let member = normalise(Path::new(member));
            let (_, size) = source.open_member(&member)?;
            let digest = Digest::parse(diff_id)?;
            layers.push(descriptor(oci::OCI_LAYER_TAR, &digest, size));
            docker_names.insert(digest, member);
        }
        let manifest = oci::Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: descriptor(oci::OCI_CONFIG, &config_digest, config_bytes.len() as u64),
            layers,
        };
        let top = serde_json::to_vec(&manifest).map_err(|e| ImageError::BadDocument {
            what: "manifest".into(),
            reason: e.to_string(),
        })?;
        let tags = entry.repo_tags.unwrap_or_default();
        let tags = tags
            .iter()
            .map(|t| Reference::parse(t).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut blobs = ArchiveBlobs {
            source,
            docker_names,
        };
        names.extend(store_named(
            store,
            &mut blobs,
            &top,
            oci::OCI_MANIFEST,
            tags,
        )?);
    }
    Ok(names)
}

pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: digest.to_string(),
        size,
        platform: None,
        annotations: Default::default(),
    }
}

pub fn import_folder(store: &ImageStore) -> Result<Vec<ImageRecord>, ImageError> {
    let dir = store.root.join("import");
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("read", &dir))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Hidden names are files still being copied in (`cp` to .x, then mv).
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(io_err("read", &path))?;
        let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        if records::seen_file(&store.lock_db(), &name, meta.len(), mtime_ns)? {
            continue;
        }
        match store.import(&path) {
            Ok(images) => {
                records::mark_file(&store.lock_db(), &name, meta.len(), mtime_ns)?;
                out.extend(images);
            }
            Err(e) => log::warn!("import folder: {e}"),
        }
    }
    Ok(out)
}
