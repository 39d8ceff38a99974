//! Test images built once per machine from busybox-static with umoci and
//! skopeo (no Docker), cached under target/. Every builder returns `None`
//! (after printing why) when a tool is missing, and panics instead when
//! CI=true, so CI cannot pass by skipping.
//!
//! ```ignore
//! let Some(fx) = fixtures::busybox_image() else { return };
//! store.import(&fx.oci_archive)?;          // named fx.reference
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bramble::image::{Digest, Platform};

use super::missing;

/// One test image in every form the tests need.
#[derive(Debug)]
pub struct Fixture {
    /// The reference the archives carry, e.g. `bramble.test/busybox:1`.
    pub reference: String,
    /// An OCI layout directory holding the image as `layout_ref`
    /// (`skopeo copy oci:LAYOUT:REF ...`).
    pub layout: PathBuf,
    pub layout_ref: String,
    pub oci_archive: PathBuf,
    /// `None` for a multi-arch image: docker-archive cannot hold one.
    pub docker_archive: Option<PathBuf>,
    /// `linux/amd64`, ...
    pub platforms: Vec<String>,
    /// An index: push with `skopeo copy --all`.
    pub multi_arch: bool,
}

/// busybox-static for this machine's architecture, one layer; entrypoint
/// `/bin/sh -c 'echo hi'`, `PATH=/bin`; applets sh ls cat echo sleep httpd nc
/// wget hostname.
pub fn busybox_image() -> Option<&'static Fixture> {
    native().map(|n| &n.busybox)
}

/// `busybox_image` plus a layer with `/etc/app.txt` ("app"): the two share
/// their base layer.
pub fn app_image() -> Option<&'static Fixture> {
    native().map(|n| &n.app)
}

/// `busybox_image` with zstd-compressed layers.
pub fn busybox_zstd_image() -> Option<&'static Fixture> {
    native().map(|n| &n.zstd)
}

/// Where scripts/install-deps.sh keeps Debian's busybox-static:arm64 package.
const ARM64_DEB_CACHE: &str = "/var/cache/bramble/busybox-static-arm64.deb";

/// busybox-static for linux/arm64 (Debian's busybox-static:arm64).
pub fn busybox_arm64_image() -> Option<&'static Fixture> {
    foreign().map(|f| &f.arm64)
}

/// An OCI index of `busybox_image` (linux/amd64) and `busybox_arm64_image`.
pub fn multi_arch_image() -> Option<&'static Fixture> {
    foreign().map(|f| &f.multi)
}

/// Prints why a test is skipped, or fails it when CI=true.
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and a test prerequisite is missing: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// `None` when one of `tools` is missing (see [`missing`]: CI fails instead).
pub fn require(tools: &[&str]) -> Option<()> {
    match tools.iter().any(|t| missing(t)) {
        true => None,
        false => Some(()),
    }
}

/// The architecture name images use for this machine.
pub fn native_arch() -> String {
    Platform::host().architecture
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "httpd", "nc", "wget", "hostname",
];
const CACHE_VERSION: &str = "v1";

struct Native {
    busybox: Fixture,
    app: Fixture,
    zstd: Fixture,
}

struct Foreign {
    arm64: Fixture,
    multi: Fixture,
}

fn cache_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("image-fixtures-{CACHE_VERSION}"))
        .join(name)
}

/// Builds `dir` with `build` unless a finished build is there. A file lock
/// keeps concurrent test processes from building the same thing twice.
fn cached(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let dir = cache_dir(name);
    fs::create_dir_all(dir.parent().expect("cache has a parent")).expect("create fixture cache");
    let lock = fs::File::create(dir.with_extension("lock")).expect("create fixture lock");
    lock.lock().expect("lock fixture cache");
    if !dir.join("complete").exists() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create fixture dir");
        build(&dir);
        fs::write(dir.join("complete"), "").expect("mark fixture complete");
    }
    dir
}

fn native() -> Option<&'static Native> {
    static NATIVE: OnceLock<Option<Native>> = OnceLock::new();
    NATIVE
        .get_or_init(|| {
            require(&["umoci", "skopeo"])?;
            let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
                .into_iter()
                .map(Path::new)
                .find(|p| p.exists())
            else {
                skip("busybox-static is not installed");
                return None;
            };
            let arch = native_arch();
            let dir = cached("native", |dir| {
                let layout = dir.join("layout");
                let l = layout.display().to_string();
                run(Command::new("umoci").args(["init", "--layout", &l]));
                new_busybox_image(&layout, "busybox", busybox, &arch, dir);
                run(Command::new("umoci").args(["tag", "--image", &format!("{l}:busybox"), "app"]));
                let bundle = dir.join("bundle-app");
                run(Command::new("umoci")
                    .args(["unpack", "--image", &format!("{l}:app")])
                    .arg(&bundle));
                fs::create_dir_all(bundle.join("rootfs/etc")).expect("mkdir etc");
                fs::write(bundle.join("rootfs/etc/app.txt"), "app\n").expect("write app.txt");
                run(Command::new("umoci")
                    .args(["repack", "--image", &format!("{l}:app")])
                    .arg(&bundle));
                fs::remove_dir_all(&bundle).expect("remove bundle");
                let z = dir.join("layout-zstd").display().to_string();
                run(Command::new("skopeo").args([
                    "copy",
                    "-q",
                    "--dest-compress-format",
                    "zstd",
                    &format!("oci:{l}:busybox"),
                    &format!("oci:{z}:busybox"),
                ]));
                archives(
                    &format!("oci:{l}:busybox"),
                    dir,
                    "busybox",
                    "bramble.test/busybox:1",
                    true,
                    false,
                );
                archives(
                    &format!("oci:{l}:app"),
                    dir,
                    "app",
                    "bramble.test/app:1",
                    true,
                    false,
                );
                archives(
                    &format!("oci:{z}:busybox"),
                    dir,
                    "busybox-zstd",
                    "bramble.test/busybox-zstd:1",
                    false,
                    false,
                );
            });
            let fx = |layout: &str, r: &str, file: &str, reference: &str, docker: bool| Fixture {
                reference: reference.into(),
                layout: dir.join(layout),
                layout_ref: r.into(),
                oci_archive: dir.join(format!("{file}-oci.tar")),
                docker_archive: docker.then(|| dir.join(format!("{file}-docker.tar"))),
                platforms: vec![format!("linux/{arch}")],
                multi_arch: false,
            };
            Some(Native {
                busybox: fx(
                    "layout",
                    "busybox",
                    "busybox",
                    "bramble.test/busybox:1",
                    true,
                ),
                app: fx("layout", "app", "app", "bramble.test/app:1", true),
                zstd: fx(
                    "layout-zstd",
                    "busybox",
                    "busybox-zstd",
                    "bramble.test/busybox-zstd:1",
                    false,
                ),
            })
        })
        .as_ref()
}

fn foreign() -> Option<&'static Foreign> {
    static FOREIGN: OnceLock<Option<Foreign>> = OnceLock::new();
    FOREIGN
        .get_or_init(|| {
            let native = native()?;
            require(&["apt-get", "dpkg-deb"])?;
            if native_arch() != "amd64" {
                skip("the multi-arch fixture pairs amd64 with arm64 and this machine is not amd64");
                return None;
            }
            // Fetched before the cache build, so a machine without arm64 apt
            // lists skips with the fix in the message rather than failing.
            let debs = cache_dir("arm64-deb");
            if !debs.join("bin/busybox").exists() {
                fs::create_dir_all(&debs).expect("mkdir");
                // scripts/install-deps.sh keeps a copy, so tests need no network.
                let got = match fs::copy(ARM64_DEB_CACHE, debs.join("busybox-static-arm64.deb")) {
                    Ok(_) => Ok(()),
                    Err(_) => Command::new("apt-get")
                        .args(["download", "busybox-static:arm64"])
                        .current_dir(&debs)
                        .output()
                        .map_err(drop)
                        .and_then(|o| if o.status.success() { Ok(()) } else { Err(()) }),
                };
                if got.is_err() {
                    skip("`apt-get download busybox-static:arm64` failed: run `dpkg --add-architecture arm64 && apt-get update`");
                    return None;
                }
                let deb = fs::read_dir(&debs)
                    .expect("read deb dir")
                    .filter_map(Result::ok)
                    .find(|e| e.file_name().to_string_lossy().ends_with(".deb"))
                    .expect("downloaded .deb")
                    .path();
                run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&debs));
            }
            let dir = cached("foreign", |dir| {
                let layout = dir.join("layout");
                let l = layout.display().to_string();
                run(Command::new("skopeo").args(["copy", "-q", &format!("oci:{}:busybox", native.busybox.layout.display()), &format!("oci:{l}:amd64")]));
                new_busybox_image(&layout, "arm64", &debs.join("bin/busybox"), "arm64", dir);
                write_index(&layout, &[("amd64", "amd64"), ("arm64", "arm64")], "multi");
                archives(&format!("oci:{l}:arm64"), dir, "arm64", "bramble.test/busybox-arm64:1", true, false);
                archives(&format!("oci:{l}:multi"), dir, "multi", "bramble.test/busybox-multi:1", false, true);
            });
            Some(Foreign {
                arm64: Fixture {
                    reference: "bramble.test/busybox-arm64:1".into(),
                    layout: dir.join("layout"),
                    layout_ref: "arm64".into(),
                    oci_archive: dir.join("arm64-oci.tar"),
                    docker_archive: Some(dir.join("arm64-docker.tar")),
                    platforms: vec!["linux/arm64".into()],
                    multi_arch: false,
                },
                multi: Fixture {
                    reference: "bramble.test/busybox-multi:1".into(),
                    layout: dir.join("layout"),
                    layout_ref: "multi".into(),
                    oci_archive: dir.join("multi-oci.tar"),
                    docker_archive: None,
                    platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
                    multi_arch: true,
                },
            })
        })
        .as_ref()
}

/// umoci new + unpack + copy busybox and its applet links + repack + config.
fn new_busybox_image(layout: &Path, tag: &str, busybox: &Path, arch: &str, work: &Path) {
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = work.join(format!("bundle-{tag}"));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let bin = bundle.join("rootfs/bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    fs::remove_dir_all(&bundle).expect("remove bundle");
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        arch,
        "--config.entrypoint",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo hi",
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/",
    ]));
}

/// Adds an OCI index over the manifests tagged `refs` (tag, arch) as `name`.
fn write_index(layout: &Path, refs: &[(&str, &str)], name: &str) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).expect("read index.json"))
            .expect("parse index.json");
    let manifests = index["manifests"].as_array().expect("manifests").clone();
    let entries: Vec<serde_json::Value> = refs
        .iter()
        .map(|(tag, arch)| {
            let d = manifests
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
                .unwrap_or_else(|| panic!("no {tag} in layout"));
            serde_json::json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                               "platform": {"os": "linux", "architecture": arch}})
        })
        .collect();
    let blob = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries
    }))
    .expect("serialise index");
    let digest = Digest::of(&blob);
    fs::write(layout.join("blobs/sha256").join(digest.hex()), &blob).expect("write index blob");
    index["manifests"].as_array_mut().expect("manifests").push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest.to_string(), "size": blob.len(),
        "annotations": {"org.opencontainers.image.ref.name": name}
    }));
    fs::write(&index_path, serde_json::to_vec(&index).expect("serialise"))
        .expect("write index.json");
}

fn archives(source: &str, dir: &Path, file: &str, reference: &str, docker: bool, all: bool) {
    let oci = format!(
        "oci-archive:{}:{reference}",
        dir.join(format!("{file}-oci.tar")).display()
    );
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "-q"]);
    if all {
        copy.arg("--all");
    }
    run(copy.args([source, &oci]));
    if docker {
        let d = format!(
            "docker-archive:{}:{reference}",
            dir.join(format!("{file}-docker.tar")).display()
        );
        run(Command::new("skopeo").args(["copy", "-q", source, &d]));
    }
}

/// One entry of a hand-made layer; `name` is written as is, so tests can
/// make entries no well-behaved tool would (`../x`, `/abs`).
pub struct Entry {
    pub name: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Vec<u8>,
    pub link: Option<String>,
    pub device: Option<(u32, u32)>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn file(name: &str, data: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: tar::EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: data.as_bytes().to_vec(),
            link: None,
            device: None,
            xattrs: vec![],
        }
    }
    pub fn dir(name: &str) -> Entry {
        Entry {
            mode: 0o755,
            kind: tar::EntryType::Directory,
            ..Entry::file(name, "")
        }
    }
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry {
            kind: tar::EntryType::Symlink,
            link: Some(target.into()),
            mode: 0o777,
            ..Entry::file(name, "")
        }
    }
    pub fn hardlink(name: &str, target: &str) -> Entry {
        Entry {
            kind: tar::EntryType::Link,
            link: Some(target.into()),
            ..Entry::file(name, "")
        }
    }
}

/// A tar stream of `entries`, written header by header so hostile names survive.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if !e.xattrs.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &e.xattrs {
                let key = format!("SCHILY.xattr.{k}");
                // "LEN KEY=VALUE\n" where LEN counts its own digits too.
                let rest = key.len() + v.len() + 3;
                let mut len = rest + rest.to_string().len();
                while len != rest + len.to_string().len() {
                    len = rest + len.to_string().len();
                }
                records.extend(format!("{len} {key}=").into_bytes());
                records.extend(v);
                records.push(b'\n');
            }
            let mut h = tar::Header::new_ustar();
            set_name(&mut h, "pax");
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(records.len() as u64);
            h.set_cksum();
            out.extend(h.as_bytes());
            out.extend(&records);
            pad(&mut out);
        }
        let mut h = tar::Header::new_ustar();
        set_name(&mut h, &e.name);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(1_700_000_000);
        h.set_size(e.data.len() as u64);
        if let Some(link) = &e.link {
            let bytes = link.as_bytes();
            h.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
        }
        if let Some((major, minor)) = e.device {
            h.set_device_major(major).expect("major");
            h.set_device_minor(minor).expect("minor");
        }
        h.set_cksum();
        out.extend(h.as_bytes());
        out.extend(&e.data);
        pad(&mut out);
    }
    out.extend([0u8; 1024]);
    out
}

fn set_name(h: &mut tar::Header, name: &str) {
    let bytes = name.as_bytes();
    assert!(
        bytes.len() < 100,
        "test entry names must fit the ustar name field"
    );
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

/// How a hand-made layer is stored in a layout.
#[derive(Clone, Copy)]
pub enum Compression {
    None,
    Gzip,
}

/// Writes an OCI layout at `dir` with one image (this machine's platform)
/// of `layers` (tar streams, bottom first), named `reference`.
pub fn layout_with_layers(
    dir: &Path,
    reference: &str,
    layers: &[Vec<u8>],
    compression: Compression,
) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir blobs");
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(blobs.join(d.hex()), bytes).expect("write blob");
        (d, bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(Digest::of(tar).to_string());
        let (bytes, media_type) = match compression {
            Compression::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).expect("gzip");
                (
                    gz.finish().expect("gzip"),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
        };
        let (d, size) = put(&bytes);
        descs.push(
            serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": size}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": native_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .expect("config");
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
        "layers": descs
    }))
    .expect("manifest");
    let (md, msize) = put(&manifest);
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": reference}}]});
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index.json");
    dir.to_path_buf()
}
