//! The image subsystem: an OCI content store on the board's disk, fed by
//! registry pulls and offline archives, read by the kubelet.
//!
//! Layout under `DATA_DIR/images`:
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers by digest;
//! - `layers/<diff_id hex>/`: each layer unpacked once, used as an overlayfs lowerdir by
//!   every container of every image that has it;
//! - `tmp/`: partial downloads (kept for resuming), layers being unpacked, lock files;
//! - `import/`: archives dropped here are imported by [`ImageStore::import_folder`];
//! - `images.db`: names and image records (SQLite, WAL, shared with the CLI).
//!
//! Everything here blocks; the daemon calls it through `smol::unblock`.

mod auth;
pub mod cli;
mod content;
mod digest;
mod export;
mod gc;
mod import;
mod oci;
mod platform;
pub mod policy;
mod records;
mod reference;
mod registries;
mod registry;
mod unpack;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use auth::Credentials;
pub use digest::Digest;
pub use gc::GcReport;
pub use platform::Platform;
pub use records::{ImageRecord, LayerRecord};
pub use reference::Reference;
pub use registries::Registries;

use oci::{AnyManifest, ConfigFile, Descriptor};

/// What a container needs from its image's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// `80/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
}

/// Pull progress, for pod events and the CLI's progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is resolved: this many bytes of layers are needed in all
    /// (`present` of them are already on disk).
    Resolved {
        reference: String,
        total: u64,
        present: u64,
    },
    /// `done` of `total` bytes of one blob are on disk.
    Download {
        digest: Digest,
        done: u64,
        total: u64,
    },
    /// One layer is unpacked.
    Unpacked { diff_id: Digest },
}

#[derive(Debug)]
pub enum ImageError {
    TooLarge {
        reference: String,
        size: u64,
        limit: u64,
    },
    BadReference {
        input: String,
        reason: String,
    },
    BadDigest {
        input: String,
        reason: String,
    },
    BadPlatform {
        input: String,
    },
    /// An index or a single-platform image without a platform this board runs.
    PlatformNotOffered {
        reference: String,
        offered: Vec<Platform>,
        wanted: Platform,
    },
    NotFound {
        reference: String,
    },
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Db {
        source: rusqlite::Error,
    },
    /// Content whose digest is not the one that named it.
    Corrupt {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// A manifest, index or config that cannot be used.
    BadDocument {
        what: String,
        reason: String,
    },
    /// An archive or layout that is not one bramble can import.
    BadArchive {
        path: PathBuf,
        reason: String,
    },
    /// A layer tar entry refused or failed while unpacking.
    Unpack {
        layer: Digest,
        entry: String,
        reason: String,
    },
    /// The registry answered with an error status.
    Registry {
        url: String,
        status: u16,
        message: String,
    },
    /// The registry could not be reached or the transfer broke.
    Transfer {
        url: String,
        source: Box<ureq::Error>,
    },
    Auth {
        registry: String,
        reason: String,
    },
    Registries {
        path: PathBuf,
        reason: String,
    },
    PullSecret {
        reason: String,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ImageError::*;
        match self {
            TooLarge {
                reference,
                size,
                limit,
            } => write!(
                f,
                "image {reference} is {size} bytes compressed, over this board's limit of {limit} bytes ([limits] max_image_size in the board config)"
            ),
            BadReference { input, reason } => {
                write!(f, "invalid image reference {input:?}: {reason}")
            }
            BadDigest { input, reason } => write!(f, "invalid digest {input:?}: {reason}"),
            BadPlatform { input } => write!(
                f,
                "invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm/v7"
            ),
            PlatformNotOffered {
                reference,
                offered,
                wanted,
            } => {
                write!(
                    f,
                    "image {reference} {}; this board is {wanted}",
                    platform::describe_offer(offered)
                )
            }
            NotFound { reference } => write!(
                f,
                "image {reference} is not in the store; pull or import it first"
            ),
            Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Db { source } => write!(f, "image database: {source}"),
            Corrupt {
                what,
                expected,
                actual,
            } => {
                write!(f, "{what} is corrupt: expected {expected}, got {actual}")
            }
            BadDocument { what, reason } => write!(f, "{what}: {reason}"),
            BadArchive { path, reason } => write!(f, "cannot import {}: {reason}", path.display()),
            Unpack {
                layer,
                entry,
                reason,
            } => write!(f, "layer {layer}: entry {entry:?}: {reason}"),
            Registry {
                url,
                status,
                message,
            } => write!(f, "{url}: registry answered {status}: {message}"),
            Transfer { url, source } => write!(f, "{url}: {source}"),
            Auth { registry, reason } => {
                write!(f, "authentication with {registry} failed: {reason}")
            }
            Registries { path, reason } => {
                write!(f, "registries file {}: {reason}", path.display())
            }
            PullSecret { reason } => write!(f, "image pull secret: {reason}"),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageError::Io { source, .. } => Some(source),
            ImageError::Db { source } => Some(source),
            ImageError::Transfer { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for ImageError {
    fn from(source: rusqlite::Error) -> Self {
        ImageError::Db { source }
    }
}

/// `action` for `path` failed: the shape of every filesystem error here.
fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError + use<> {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

/// The image store of one board. Cheap to share: wrap it in an `Arc`.
pub struct ImageStore {
    root: PathBuf,
    db: Mutex<rusqlite::Connection>,
    registries: Registries,
    platform: Platform,
    /// Images whose compressed layers add up to more are refused.
    max_image_bytes: u64,
    /// Pulls started and pulls failed, for /metrics.
    pulls: AtomicU64,
    failed_pulls: AtomicU64,
}

/// Where the layers of an image come from while it is stored: a registry or
/// an archive. Both hand out verified small documents and put blobs into the store.
trait BlobSource {
    /// The bytes of a manifest, index or config (not yet verified).
    fn small(&mut self, desc: &Descriptor) -> Result<Vec<u8>, ImageError>;
    /// Puts the blob into the store, verified; a no-op when it is there.
    fn blob(
        &mut self,
        store: &ImageStore,
        desc: &Descriptor,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError>;
}

/// The image's content once its blobs and layers are on disk.
struct Content {
    /// What the name resolved to: an index or a manifest.
    digest: Digest,
    manifest_digest: Digest,
    config_digest: Digest,
    platform: Platform,
    size: u64,
    layers: Vec<LayerRecord>,
}

const MAX_DOCUMENT: u64 = 4 << 20;

/// Held shared by pulls and imports, exclusively by GC: blobs and layers are
/// on disk before the record that references them, and GC must not sweep them.
const STORE_LOCK: &str = "store";

impl ImageStore {
    /// Opens (creating if needed) the store under `data_dir/images`.
    pub fn open(data_dir: &Path) -> Result<ImageStore, ImageError> {
        let root = data_dir.join("images");
        for dir in [
            root.join("blobs/sha256"),
            root.join("layers"),
            root.join("tmp"),
            root.join("import"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        let db = records::open(&root.join("images.db"))?;
        Ok(ImageStore {
            root,
            db: Mutex::new(db),
            registries: Registries::default(),
            platform: Platform::host(),
            max_image_bytes: u64::MAX,
            pulls: AtomicU64::new(0),
            failed_pulls: AtomicU64::new(0),
        })
    }

    /// Refuses images whose compressed layers add up to more than `bytes`.
    pub fn with_max_image_size(mut self, bytes: u64) -> ImageStore {
        self.max_image_bytes = bytes;
        self
    }

    /// Mirrors and per-registry TLS and credentials (k3s `registries.yaml`).
    pub fn with_registries(mut self, registries: Registries) -> ImageStore {
        self.registries = registries;
        self
    }

    /// The platform imports pick from multi-arch archives (the board's by default).
    /// The platform this store pulls and imports for (the board's).
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    pub fn with_platform(mut self, platform: Platform) -> ImageStore {
        self.platform = platform;
        self
    }

    /// Imports an oci-archive, an OCI layout directory or a docker-archive.
    /// Images keep the archive's own names, normalised; they are pinned.
    pub fn import(&self, file_or_dir: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let _no_gc = content::lock_shared(&self.root, STORE_LOCK)?;
        import::import(self, file_or_dir)
    }

    /// Imports every archive in `DATA_DIR/images/import` not imported before
    /// (same name, size and mtime). An archive that fails is logged and left
    /// for the next scan, so one bad file does not block the others.
    pub fn import_folder(&self) -> Result<Vec<ImageRecord>, ImageError> {
        import::import_folder(self)
    }

    /// (pulls started, pulls failed) since the store was opened.
    pub fn pull_counts(&self) -> (u64, u64) {
        (
            self.pulls.load(Ordering::Relaxed),
            self.failed_pulls.load(Ordering::Relaxed),
        )
    }

    /// Pulls `reference` for `platform` from its registry (or a mirror).
    pub fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        creds: &Credentials,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageRecord, ImageError> {
        self.pulls.fetch_add(1, Ordering::Relaxed);
        let pulled = self.pull_from_registry(reference, platform, creds, progress);
        if pulled.is_err() {
            self.failed_pulls.fetch_add(1, Ordering::Relaxed);
        }
        pulled
    }

    fn pull_from_registry(
        &self,
        reference: &str,
        platform: &Platform,
        creds: &Credentials,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(reference)?;
        let _no_gc = content::lock_shared(&self.root, STORE_LOCK)?;
        let mut client = registry::Client::new(&self.registries, creds, &reference)?;
        let (top, media_type) = client.manifest(&reference.manifest_key())?;
        let top_digest = Digest::of(&top);
        if let Some(pinned) = &reference.digest
            && *pinned != top_digest
        {
            return Err(ImageError::Corrupt {
                what: format!("manifest of {reference}"),
                expected: pinned.clone(),
                actual: top_digest,
            });
        }
        let name = reference.to_string();
        let content =
            self.store_content(&name, &top, &media_type, platform, &mut client, progress)?;
        records::put(
            &self.lock_db(),
            std::slice::from_ref(&name),
            &content,
            false,
        )?;
        self.get(&name)?
            .ok_or(ImageError::NotFound { reference: name })
    }

    /// The image a name (normalised like a pull) or a digest refers to.
    pub fn get(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let key = match Digest::parse(reference) {
            Ok(d) => d.to_string(),
            Err(_) => Reference::parse(reference)?.to_string(),
        };
        records::get(&self.lock_db(), &key)
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        records::list(&self.lock_db())
    }

    /// Removes a name, pinned or not (the user asked). Its blobs and layers
    /// are freed by the next [`ImageStore::gc`], which knows what containers use.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let img = self.get(reference)?.ok_or_else(|| ImageError::NotFound {
            reference: reference.to_string(),
        })?;
        records::remove_name(&self.lock_db(), &img.reference)
    }

    /// Writes the image as an oci-archive named by its reference.
    pub fn export(&self, reference: &str, out: &Path) -> Result<(), ImageError> {
        let img = self.get(reference)?.ok_or_else(|| ImageError::NotFound {
            reference: reference.to_string(),
        })?;
        export::export(self, &img, out)
    }

    /// The image's unpacked layer directories, bottom first (reverse them for
    /// overlayfs `lowerdir=`, which lists the top first).
    pub fn layers(&self, img: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        img.layers
            .iter()
            .map(|l| {
                let dir = unpack::layer_dir(&self.root, &l.diff_id);
                match dir.is_dir() {
                    true => Ok(dir),
                    false => Err(ImageError::Io {
                        action: "find layer (pull or import the image again)",
                        path: dir,
                        source: io::ErrorKind::NotFound.into(),
                    }),
                }
            })
            .collect()
    }

    pub fn config(&self, img: &ImageRecord) -> Result<ImageConfig, ImageError> {
        let bytes = content::read_blob(&self.root, &img.config_digest, MAX_DOCUMENT)?;
        let file: ConfigFile = parse_json(&bytes, &format!("config of {}", img.reference))?;
        let c = file.config.unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        })
    }

    /// Frees disk: always drops unnamed images and unreferenced blobs and layers;
    /// when the disk is fuller than `high_percent`, also removes unpinned images
    /// not in use, oldest first, until it is below `low_percent`.
    /// `in_use` holds the references or digests of images containers use.
    pub fn gc(
        &self,
        in_use: &HashSet<String>,
        high_percent: u8,
        low_percent: u8,
    ) -> Result<GcReport, ImageError> {
        gc::gc(self, in_use, high_percent, low_percent)
    }

    fn lock_db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite
        // rolls back the open transaction when the statement is dropped.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores an image from its top-level document: picks the platform from an
    /// index, fetches config and layers through `source`, unpacks each layer
    /// once. Shared by pull and import so both verify the same way.
    fn store_content(
        &self,
        name: &str,
        top: &[u8],
        media_type: &str,
        platform: &Platform,
        source: &mut dyn BlobSource,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Content, ImageError> {
        let top_digest = Digest::of(top);
        let doc: AnyManifest = parse_json(top, &format!("manifest of {name}"))?;
        if doc.schema_version == 1 {
            return Err(ImageError::BadDocument {
                what: format!("manifest of {name}"),
                reason: "Docker schema 1 manifests are not supported; push the image again with a current tool".into(),
            });
        }
        let (manifest_bytes, from_index) = match doc.manifests {
            Some(list) => {
                let offered: Vec<(Platform, &Descriptor)> = list
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| (p.platform(), d)))
                    .collect();
                let platforms: Vec<Platform> = offered.iter().map(|(p, _)| p.clone()).collect();
                let Some(best) = platform.best_match(&platforms) else {
                    return Err(ImageError::PlatformNotOffered {
                        reference: name.to_string(),
                        offered: platforms,
                        wanted: platform.clone(),
                    });
                };
                let desc = offered[best].1;
                let bytes = self.small_verified(source, desc, name)?;
                content::write_blob(&self.root, top)?;
                (bytes, true)
            }
            None => (top.to_vec(), false),
        };
        let manifest: oci::Manifest = parse_json(
            &manifest_bytes,
            &format!("manifest of {name} ({media_type})"),
        )?;
        let config_bytes = self.small_verified(source, &manifest.config, name)?;
        let config: ConfigFile = parse_json(&config_bytes, &format!("config of {name}"))?;
        let image_platform = config.platform();
        if !from_index
            && platform
                .best_match(std::slice::from_ref(&image_platform))
                .is_none()
        {
            return Err(ImageError::PlatformNotOffered {
                reference: name.to_string(),
                offered: vec![image_platform],
                wanted: platform.clone(),
            });
        }
        let size: u64 = manifest.layers.iter().map(|l| l.size).sum();
        if size > self.max_image_bytes {
            return Err(ImageError::TooLarge {
                reference: name.to_string(),
                size,
                limit: self.max_image_bytes,
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::BadDocument {
                what: format!("image {name}"),
                reason: format!(
                    "the manifest lists {} layers but the config {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let manifest_digest = content::write_blob(&self.root, &manifest_bytes)?;
        let config_digest = content::write_blob(&self.root, &config_bytes)?;

        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            layers.push(LayerRecord {
                blob: Digest::parse(&desc.digest)?,
                diff_id: Digest::parse(diff_id)?,
                size: desc.size,
            });
        }
        let total = layers.iter().map(|l| l.size).sum();
        let present = layers
            .iter()
            .filter(|l| content::has_blob(&self.root, &l.blob))
            .map(|l| l.size)
            .sum();
        progress(Progress::Resolved {
            reference: name.to_string(),
            total,
            present,
        });
        for (desc, layer) in manifest.layers.iter().zip(&layers) {
            source.blob(self, desc, progress)?;
            match unpack::ensure_layer(&self.root, &layer.blob, &layer.diff_id) {
                // A blob that rotted on disk (or was left by a broken writer) is
                // fetched again once; a second failure is real.
                Err(ImageError::Corrupt { .. }) => {
                    content::remove_blob(&self.root, &layer.blob)?;
                    source.blob(self, desc, progress)?;
                    unpack::ensure_layer(&self.root, &layer.blob, &layer.diff_id)?;
                }
                other => other?,
            }
            progress(Progress::Unpacked {
                diff_id: layer.diff_id.clone(),
            });
        }
        Ok(Content {
            digest: top_digest,
            manifest_digest,
            config_digest,
            platform: image_platform,
            size: manifest.config.size + total,
            layers,
        })
    }

    fn small_verified(
        &self,
        source: &mut dyn BlobSource,
        desc: &Descriptor,
        name: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let expected = Digest::parse(&desc.digest)?;
        if desc.size > MAX_DOCUMENT {
            return Err(ImageError::BadDocument {
                what: format!("{} of {name}", desc.media_type),
                reason: format!("{} bytes is too large for a manifest or config", desc.size),
            });
        }
        let bytes = source.small(desc)?;
        let actual = Digest::of(&bytes);
        match actual == expected {
            true => Ok(bytes),
            false => Err(ImageError::Corrupt {
                what: format!("{} of {name}", desc.media_type),
                expected,
                actual,
            }),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::BadDocument {
        what: what.to_string(),
        reason: e.to_string(),
    })
}
