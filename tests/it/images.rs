//! The image store against Debian's real docker-registry and real archives
//! built by umoci/skopeo (see support/fixtures.rs). Named after what a user does.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bramble::image::{
    Credentials, Digest, ImageError, ImageRecord, ImageStore, Platform, Progress, Registries,
};

use crate::support::TempDir;
use crate::support::fixtures::{self, Compression, Entry};
use crate::support::registry::{self, Auth, Fault, Proxy, Registry};

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn native() -> Platform {
    Platform::parse(&format!("linux/{}", fixtures::native_arch())).unwrap()
}

fn pull(
    store: &ImageStore,
    reference: &str,
    platform: &Platform,
) -> Result<ImageRecord, ImageError> {
    store.pull(reference, platform, &Credentials::none(), &mut |_| {})
}

/// (regular files, their bytes) under `dir`, hard links counted once.
fn usage(dir: &Path) -> (usize, u64) {
    let mut seen = HashSet::new();
    let mut out = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert(m.ino()) {
                out.0 += 1;
                out.1 += m.len();
            }
        }
    }
    out
}

fn layer_dirs(data: &Path) -> usize {
    fs::read_dir(data.join("images/layers")).unwrap().count()
}

/// ELF e_machine of the busybox in an image's layers: 62 amd64, 183 arm64.
fn busybox_machine(store: &ImageStore, img: &ImageRecord) -> u16 {
    let layers = store.layers(img).unwrap();
    let bin = layers
        .iter()
        .rev()
        .map(|l| l.join("bin/busybox"))
        .find(|p| p.exists())
        .expect("busybox in a layer");
    let bytes = fs::read(bin).unwrap();
    u16::from_le_bytes([bytes[18], bytes[19]])
}

fn sha256_file(path: &Path) -> Digest {
    Digest::of(&fs::read(path).unwrap())
}

#[test]
fn pull_single_arch_image_anonymously() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let data = TempDir::new("pull-single");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let mut events = Vec::new();
    let img = store
        .pull(&reference, &native(), &Credentials::none(), &mut |p| {
            events.push(p)
        })
        .unwrap();

    assert_eq!(img.reference, reference);
    assert_eq!(img.platform, native());
    assert!(!img.pinned, "pulled images are not pinned");
    let layers = store.layers(&img).unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(layers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let config = store.config(&img).unwrap();
    assert_eq!(config.entrypoint, ["/bin/sh"]);
    assert_eq!(config.cmd, ["-c", "echo hi"]);
    assert_eq!(config.env, ["PATH=/bin"]);
    // Found again by name (as a pod names it) and by digest.
    assert_eq!(store.get(&reference).unwrap().as_ref(), Some(&img));
    assert_eq!(
        store
            .get(&img.digest.to_string())
            .unwrap()
            .map(|i| i.reference),
        Some(reference)
    );
    assert_eq!(store.list().unwrap(), std::slice::from_ref(&img));
    // Progress reached the full size of the layer.
    let total = img.layers[0].size;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::Download { done, .. } if *done == total)),
        "{events:?}"
    );
}

#[test]
fn pull_sends_oci_accept_headers() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "busybox:1");
    let proxy = Proxy::start(&reg.host, Fault::None);
    let data = TempDir::new("accept");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    pull(&store, &format!("{}/busybox:1", proxy.host), &native()).unwrap();
    let manifest_get = proxy
        .seen()
        .into_iter()
        .find(|s| s.path.contains("/manifests/"))
        .expect("a manifest request");
    let accept = manifest_get.accept.unwrap_or_default();
    assert!(
        accept.contains("application/vnd.oci.image.manifest.v1+json"),
        "{accept}"
    );
    assert!(
        accept.contains("application/vnd.oci.image.index.v1+json"),
        "{accept}"
    );
    assert!(
        accept.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{accept}"
    );
}

#[test]
fn pull_multi_arch_picks_board_platform() {
    let Some(fx) = fixtures::multi_arch_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox-multi:1");
    for (platform, machine) in [
        ("linux/amd64", 62),
        ("linux/arm64", 183),
        ("linux/arm64/v8", 183),
    ] {
        let data = TempDir::new("pull-multi");
        let store = ImageStore::open(data.0.as_path()).unwrap();
        let img = pull(&store, &reference, &Platform::parse(platform).unwrap()).unwrap();
        assert_eq!(img.platform, Platform::parse(platform).unwrap());
        assert_ne!(
            img.digest, img.manifest_digest,
            "the name resolves to the index"
        );
        assert_eq!(busybox_machine(&store, &img), machine, "{platform}");
    }
}

#[test]
fn pull_of_a_platform_the_image_lacks_says_what_it_offers() {
    let Some(multi) = fixtures::multi_arch_image() else {
        return;
    };
    let Some(arm64) = fixtures::busybox_arm64_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let multi_ref = reg.push(multi, "busybox-multi:1");
    let arm_ref = reg.push(arm64, "busybox-arm64:1");
    let data = TempDir::new("pull-lacking");
    let store = ImageStore::open(data.0.as_path()).unwrap();

    let err = pull(
        &store,
        &multi_ref,
        &Platform::parse("linux/arm/v7").unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!("image {multi_ref} offers linux/amd64, linux/arm64; this board is linux/arm/v7")
    );
    let err = pull(&store, &arm_ref, &amd64()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("image {arm_ref} offers linux/arm64 only; this board is linux/amd64")
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        layer_dirs(data.0.as_path()),
        0,
        "nothing unpacked for an image that cannot run"
    );
}

#[test]
fn pull_unknown_tag_shows_the_registry_message() {
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let data = TempDir::new("pull-unknown");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let err = pull(&store, &format!("{}/nothing/here:1", reg.host), &native()).unwrap_err();
    assert!(
        matches!(err, ImageError::Registry { status: 404, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN") || err.to_string().contains("NAME_UNKNOWN"),
        "{err}"
    );
}

#[test]
fn pull_with_basic_auth_from_registries_yaml_and_pull_secret() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Basic) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let data = TempDir::new("pull-basic");
    let store = ImageStore::open(data.0.as_path()).unwrap();

    let err = pull(&store, &reference, &native()).unwrap_err();
    assert!(matches!(err, ImageError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("username and password"), "{err}");

    let yaml = format!(
        "configs:\n  \"{}\":\n    auth: {{username: {}, password: {}}}\n",
        reg.host,
        registry::USER,
        registry::PASSWORD
    );
    let creds = Credentials::from_registries(&Registries::parse(&yaml).unwrap()).unwrap();
    store
        .pull(&reference, &native(), &creds, &mut |_| {})
        .unwrap();

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = b64.encode(format!("{}:{}", registry::USER, registry::PASSWORD));
    let secret = b64.encode(format!(
        r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
        reg.host
    ));
    let creds = Credentials::none().with_pull_secret(&secret).unwrap();
    let other = TempDir::new("pull-basic-secret");
    ImageStore::open(other.0.as_path())
        .unwrap()
        .pull(&reference, &native(), &creds, &mut |_| {})
        .unwrap();

    let wrong = Credentials::none()
        .with_pull_secret(&b64.encode(format!(
            r#"{{"auths":{{"{}":{{"username":"x","password":"y"}}}}}}"#,
            reg.host
        )))
        .unwrap();
    let err = ImageStore::open(TempDir::new("pull-basic-wrong").0.as_path())
        .unwrap()
        .pull(&reference, &native(), &wrong, &mut |_| {});
    assert!(
        matches!(err, Err(ImageError::Registry { status: 401, .. })),
        "{err:?}"
    );
}

#[test]
fn pull_with_bearer_token_auth() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Token) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let data = TempDir::new("pull-token");
    let store = ImageStore::open(data.0.as_path()).unwrap();

    let err = pull(&store, &reference, &native()).unwrap_err();
    assert!(err.to_string().contains("token server refused"), "{err}");

    let yaml = format!(
        "configs:\n  \"{}\":\n    auth: {{username: {}, password: {}}}\n",
        reg.host,
        registry::USER,
        registry::PASSWORD
    );
    let creds = Credentials::from_registries(&Registries::parse(&yaml).unwrap()).unwrap();
    let img = store
        .pull(&reference, &native(), &creds, &mut |_| {})
        .unwrap();
    assert_eq!(store.layers(&img).unwrap().len(), 1);
    assert!(
        reg.token_scopes()
            .contains(&"repository:busybox:pull".to_string()),
        "{:?}",
        reg.token_scopes()
    );
}

#[test]
fn pull_through_mirror_from_registries_yaml() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "mirrored/busybox:1");
    // The named registry is a closed loopback port; only the mirror answers.
    let yaml = format!(
        "mirrors:\n  \"127.0.0.1:9\":\n    endpoint: [\"http://{}\"]\n    rewrite:\n      \"^(.*)$\": \"mirrored/$1\"\n",
        reg.host
    );
    let data = TempDir::new("pull-mirror");
    let store = ImageStore::open(data.0.as_path())
        .unwrap()
        .with_registries(Registries::parse(&yaml).unwrap());
    let img = pull(&store, "127.0.0.1:9/busybox:1", &native()).unwrap();
    assert_eq!(img.reference, "127.0.0.1:9/busybox:1");
}

#[test]
fn pull_by_digest_verifies_the_manifest() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let data = TempDir::new("pull-digest");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let by_tag = pull(&store, &reference, &native()).unwrap();
    let pinned = format!("{}/busybox@{}", reg.host, by_tag.digest);
    let img = pull(&store, &pinned, &native()).unwrap();
    assert_eq!(img.reference, pinned);
    assert_eq!(img.manifest_digest, by_tag.manifest_digest);

    // A manifest altered in transit does not match the pinned digest.
    let proxy = Proxy::start(
        &reg.host,
        Fault::Corrupt {
            target: "/manifests/".into(),
        },
    );
    let tampered = format!("{}/busybox@{}", proxy.host, by_tag.digest);
    let err = pull(
        &ImageStore::open(TempDir::new("pull-digest-bad").0.as_path()).unwrap(),
        &tampered,
        &native(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");
}

#[test]
fn two_images_share_a_base_layer_on_disk() {
    let Some(busybox) = fixtures::busybox_image() else {
        return;
    };
    let Some(app) = fixtures::app_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let b = reg.push(busybox, "busybox:1");
    let a = reg.push(app, "app:1");
    let data = TempDir::new("share");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let bi = pull(&store, &b, &native()).unwrap();
    let base = usage(data.0.as_path().join("images/layers").as_path());
    let ai = pull(&store, &a, &native()).unwrap();

    let (bl, al) = (store.layers(&bi).unwrap(), store.layers(&ai).unwrap());
    assert_eq!(al.len(), 2);
    assert_eq!(al[0], bl[0], "the app's base layer is busybox's directory");
    assert_eq!(
        layer_dirs(data.0.as_path()),
        2,
        "base + the app's own layer"
    );
    let app_only = usage(&al[1]);
    let both = usage(data.0.as_path().join("images/layers").as_path());
    assert_eq!(
        both,
        (base.0 + app_only.0, base.1 + app_only.1),
        "the base is stored once"
    );
    assert!(
        base.1 > 500_000,
        "busybox is in the base layer ({} bytes)",
        base.1
    );
    assert_eq!(
        fs::read_to_string(al[1].join("etc/app.txt")).unwrap(),
        "app\n"
    );
    assert_eq!(
        fs::read_dir(data.0.as_path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        3 + 3,
        "2 manifests, 2 configs, 2 layer blobs"
    );
}

#[test]
fn cut_download_resumes_and_verifies() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "busybox:1");
    let layer = layer_digest(fx);
    let proxy = Proxy::start(
        &reg.host,
        Fault::CutAfter {
            target: format!("/blobs/{layer}"),
            bytes: 300_000,
        },
    );
    let data = TempDir::new("resume");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = pull(&store, &format!("{}/busybox:1", proxy.host), &native()).unwrap();

    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{layer}")))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("a Range request");
    assert!(from > 100_000 && from <= 300_000, "resumed from {from}");
    let blob = data
        .0
        .as_path()
        .join("images/blobs/sha256")
        .join(img.layers[0].blob.hex());
    assert_eq!(sha256_file(&blob), img.layers[0].blob);
    assert!(store.layers(&img).unwrap()[0].join("bin/busybox").is_file());
}

#[test]
fn corrupted_download_is_rejected_and_fetched_again() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(fx, "busybox:1");
    let layer = layer_digest(fx);
    let proxy = Proxy::start(
        &reg.host,
        Fault::Corrupt {
            target: format!("/blobs/{layer}"),
        },
    );
    let data = TempDir::new("corrupt-dl");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = pull(&store, &format!("{}/busybox:1", proxy.host), &native()).unwrap();
    let gets = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{layer}")))
        .count();
    assert_eq!(gets, 2, "the corrupt copy was dropped and downloaded again");
    let blob = data
        .0
        .as_path()
        .join("images/blobs/sha256")
        .join(img.layers[0].blob.hex());
    assert_eq!(sha256_file(&blob), img.layers[0].blob);
}

#[test]
fn corrupt_blob_on_disk_is_fetched_again_before_use() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let layer = layer_digest(fx);
    let data = TempDir::new("corrupt-disk");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let blob = data
        .0
        .as_path()
        .join("images/blobs/sha256")
        .join(layer.hex());
    fs::write(&blob, b"rotten bits").unwrap();
    let img = pull(&store, &reference, &native()).unwrap();
    assert_eq!(sha256_file(&blob), layer);
    assert!(store.layers(&img).unwrap()[0].join("bin/busybox").is_file());
}

#[test]
fn concurrent_pulls_download_a_shared_blob_once() {
    let Some(busybox) = fixtures::busybox_image() else {
        return;
    };
    let Some(app) = fixtures::app_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    reg.push(busybox, "busybox:1");
    reg.push(app, "app:1");
    let layer = layer_digest(busybox);
    let proxy = Proxy::start(&reg.host, Fault::None);
    let data = TempDir::new("concurrent");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    std::thread::scope(|s| {
        let pulls: Vec<_> = ["busybox:1", "app:1", "busybox:1"]
            .into_iter()
            .map(|r| {
                let (store, r) = (&store, format!("{}/{r}", proxy.host));
                s.spawn(move || pull(store, &r, &native()).unwrap())
            })
            .collect();
        for p in pulls {
            p.join().unwrap();
        }
    });
    let gets = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{layer}")))
        .count();
    assert_eq!(gets, 1);
    assert_eq!(layer_dirs(data.0.as_path()), 2);
}

/// The busybox fixture's (only) layer blob.
fn layer_digest(fx: &fixtures::Fixture) -> Digest {
    let data = TempDir::new("probe");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = store.import(&fx.oci_archive).unwrap().remove(0);
    img.layers[0].blob.clone()
}

#[test]
fn import_oci_archive_offline() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let data = TempDir::new("import-oci");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let imgs = store.import(&fx.oci_archive).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].reference, fx.reference);
    assert!(imgs[0].pinned);
    // A pod names it the short way.
    let found = store
        .get("bramble.test/busybox:1")
        .unwrap()
        .expect("found by name");
    assert!(
        store.layers(&found).unwrap()[0]
            .join("bin/busybox")
            .is_file()
    );
    assert_eq!(store.config(&found).unwrap().cmd, ["-c", "echo hi"]);
}

#[test]
fn import_multi_arch_oci_archive_offline() {
    let Some(fx) = fixtures::multi_arch_image() else {
        return;
    };
    for (platform, machine) in [("linux/amd64", 62), ("linux/arm64", 183)] {
        let data = TempDir::new("import-multi");
        let store = ImageStore::open(data.0.as_path())
            .unwrap()
            .with_platform(Platform::parse(platform).unwrap());
        let img = store.import(&fx.oci_archive).unwrap().remove(0);
        assert_eq!(img.reference, fx.reference);
        assert!(fx.platforms.contains(&platform.to_string()));
        assert_eq!(img.platform.to_string(), platform);
        assert_eq!(busybox_machine(&store, &img), machine);
        assert_eq!(
            layer_dirs(data.0.as_path()),
            1,
            "only the board's platform is unpacked"
        );
    }
    let data = TempDir::new("import-multi-v7");
    let store = ImageStore::open(data.0.as_path())
        .unwrap()
        .with_platform(Platform::parse("linux/arm/v7").unwrap());
    let err = store.import(&fx.oci_archive).unwrap_err().to_string();
    assert!(
        err.ends_with("offers linux/amd64, linux/arm64; this board is linux/arm/v7"),
        "{err}"
    );
}

#[test]
fn import_docker_archive_offline() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let data = TempDir::new("import-docker");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let docker = store
        .import(fx.docker_archive.as_ref().unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(docker.reference, "bramble.test/busybox:1");
    assert!(docker.pinned);
    let layers = store.layers(&docker).unwrap();
    assert!(layers[0].join("bin/busybox").is_file());
    // The same layer from the oci-archive (gzip) lands in the same directory.
    let other = TempDir::new("import-docker-oci");
    let oci_store = ImageStore::open(other.0.as_path()).unwrap();
    let oci = oci_store.import(&fx.oci_archive).unwrap().remove(0);
    assert_eq!(oci.layers[0].diff_id, docker.layers[0].diff_id);
    assert_eq!(
        store.config(&docker).unwrap(),
        oci_store.config(&oci).unwrap()
    );
}

#[test]
fn import_oci_layout_directory_and_zstd_layers() {
    let Some(fx) = fixtures::busybox_zstd_image() else {
        return;
    };
    let Some(plain) = fixtures::busybox_image() else {
        return;
    };
    let data = TempDir::new("import-zstd");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = store.import(&fx.oci_archive).unwrap().remove(0);
    assert_eq!(img.reference, "bramble.test/busybox-zstd:1");
    let layer = &store.layers(&img).unwrap()[0];
    assert_eq!(
        fs::read(layer.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    // A layout directory imports too; the same layer, gzip this time, is not unpacked twice.
    let dir = TempDir::new("layout-copy");
    fixtures::run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci:{}:busybox", plain.layout.display()),
        &format!("oci:{}:bramble.test/dir:1", dir.0.as_path().display()),
    ]));
    let from_dir = store.import(dir.0.as_path()).unwrap().remove(0);
    assert_eq!(from_dir.reference, "bramble.test/dir:1");
    assert_eq!(layer_dirs(data.0.as_path()), 1);
}

#[test]
fn pull_zstd_image() {
    let Some(fx) = fixtures::busybox_zstd_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox-zstd:1");
    let data = TempDir::new("pull-zstd");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = pull(&store, &reference, &native()).unwrap();
    assert!(store.layers(&img).unwrap()[0].join("bin/busybox").is_file());
}

#[test]
fn import_folder_imports_new_archives_once() {
    let Some(busybox) = fixtures::busybox_image() else {
        return;
    };
    let Some(app) = fixtures::app_image() else {
        return;
    };
    let data = TempDir::new("import-folder");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let folder = data.0.as_path().join("images/import");
    fs::copy(&busybox.oci_archive, folder.join("busybox.tar")).unwrap();
    fs::write(folder.join(".partial-copy.tar"), b"half").unwrap();
    let first = store.import_folder().unwrap();
    assert_eq!(
        first
            .iter()
            .map(|i| i.reference.as_str())
            .collect::<Vec<_>>(),
        ["bramble.test/busybox:1"]
    );
    assert!(
        store.import_folder().unwrap().is_empty(),
        "already imported"
    );
    fs::copy(app.docker_archive.as_ref().unwrap(), folder.join("app.tar")).unwrap();
    fs::write(folder.join("broken.tar"), b"not an archive").unwrap();
    let second = store.import_folder().unwrap();
    assert_eq!(
        second
            .iter()
            .map(|i| i.reference.as_str())
            .collect::<Vec<_>>(),
        ["bramble.test/app:1"]
    );
}

#[test]
fn export_then_import_round_trips() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let reference = reg.push(fx, "busybox:1");
    let data = TempDir::new("export");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    let img = pull(&store, &reference, &native()).unwrap();
    let out = data.0.as_path().join("out.tar");
    store.export(&reference, &out).unwrap();
    // skopeo reads it as an oci-archive.
    let inspect = fixtures::run(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", out.display())),
    );
    assert!(
        inspect.contains(&img.layers[0].blob.to_string()),
        "{inspect}"
    );
    let other = TempDir::new("export-import");
    let back = ImageStore::open(other.0.as_path())
        .unwrap()
        .import(&out)
        .unwrap()
        .remove(0);
    assert_eq!(back.reference, reference);
    assert_eq!(back.manifest_digest, img.manifest_digest);
}

#[test]
fn hostile_tar_writes_nothing_outside() {
    let outside = TempDir::new("outside");
    let canary = outside.0.as_path().join("canary");
    fs::write(&canary, "untouched").unwrap();
    let abs = outside.0.as_path().join("abs").display().to_string();
    // Every escape aims at `outside` (a sibling temp dir), never at a system
    // path: if the code under test regressed, the damage stays in the test's
    // own directories and the final check sees it. The layer is unpacked in
    // DATA/images/tmp/layer-<hex>, four levels below the temp root.
    let up = format!(
        "../../../../{}",
        outside.0.file_name().unwrap().to_str().unwrap()
    );
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("dot-dot", vec![Entry::file(&format!("{up}/dot-dot"), "x")]),
        (
            "dot-dot inside a path",
            vec![
                Entry::dir("a"),
                Entry::file(&format!("a/../{up}/dot-dot-2"), "x"),
            ],
        ),
        ("absolute", vec![Entry::file(&abs, "x")]),
        (
            "symlink escape",
            vec![
                Entry::symlink("link", &outside.0.display().to_string()),
                Entry::file("link/through-symlink", "x"),
            ],
        ),
        (
            "hard link outside",
            vec![Entry::hardlink("hl", &canary.display().to_string())],
        ),
        (
            "hard link dot-dot",
            vec![Entry::hardlink("hl", &format!("{up}/canary"))],
        ),
        ("whiteout dot-dot", vec![Entry::file("a/.wh...", "")]),
    ];
    for (what, entries) in cases {
        let data = TempDir::new("hostile");
        let layout = TempDir::new("hostile-layout");
        fixtures::layout_with_layers(
            layout.0.as_path(),
            "bramble.test/hostile:1",
            &[fixtures::layer_tar(&entries)],
            Compression::Gzip,
        );
        let store = ImageStore::open(data.0.as_path()).unwrap();
        let err = store.import(layout.0.as_path()).unwrap_err();
        assert!(matches!(err, ImageError::Unpack { .. }), "{what}: {err:?}");
        assert!(store.list().unwrap().is_empty(), "{what}");
        assert_eq!(layer_dirs(data.0.as_path()), 0, "{what}");
        let leftovers: Vec<_> = fs::read_dir(data.0.as_path().join("images/tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| {
                n.to_string_lossy().starts_with("layer-") && !n.to_string_lossy().ends_with(".lock")
            })
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    let mut found: Vec<_> = fs::read_dir(outside.0.as_path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, ["canary"]);
    assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched");
    assert_eq!(fs::metadata(&canary).unwrap().nlink(), 1);
    assert!(
        !Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("escape")
            .exists()
    );
}

#[test]
fn layers_work_as_overlay_lowerdirs() {
    let lower = vec![
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0\n"),
        Entry::file("etc/gone", "soon hidden"),
        Entry::dir("opaque"),
        Entry::file("opaque/old", "hidden by the opaque marker"),
    ];
    let mut setuid = Entry::file("bin-tool", "#!/bin/sh\n");
    setuid.mode = 0o4755;
    setuid.uid = 1000;
    setuid.gid = 1001;
    let mut tagged = Entry::file("tagged", "x");
    tagged.xattrs = vec![
        ("user.bramble".into(), b"yes".to_vec()),
        ("trusted.overlay.redirect".into(), b"/etc".to_vec()),
    ];
    let mut null = Entry::file("null", "");
    null.kind = tar::EntryType::Char;
    null.device = Some((1, 3));
    let mut fifo = Entry::file("fifo", "");
    fifo.kind = tar::EntryType::Fifo;
    let upper = vec![
        Entry::file("etc/.wh.gone", ""),
        Entry::dir("opaque"),
        Entry::file("opaque/.wh..wh..opq", ""),
        Entry::file("opaque/new", "visible"),
        setuid,
        Entry::hardlink("bin-tool-link", "bin-tool"),
        Entry::symlink("abs-link", "/etc/passwd"),
        tagged,
        null,
        fifo,
    ];
    for compression in [Compression::Gzip, Compression::None] {
        let layout = TempDir::new("overlay-layout");
        let data = TempDir::new("overlay");
        fixtures::layout_with_layers(
            layout.0.as_path(),
            "bramble.test/overlay:1",
            &[fixtures::layer_tar(&lower), fixtures::layer_tar(&upper)],
            compression,
        );
        let store = ImageStore::open(data.0.as_path()).unwrap();
        let img = store.import(layout.0.as_path()).unwrap().remove(0);
        let layers = store.layers(&img).unwrap();
        let top = &layers[1];

        let wh = fs::symlink_metadata(top.join("etc/gone")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "whiteout is a 0:0 char device"
        );
        assert_eq!(
            xattr::get(top.join("opaque"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        let tool = fs::metadata(top.join("bin-tool")).unwrap();
        assert_eq!(
            (tool.mode() & 0o7777, tool.uid(), tool.gid()),
            (0o4755, 1000, 1001)
        );
        assert_eq!(
            fs::metadata(top.join("bin-tool-link")).unwrap().ino(),
            tool.ino(),
            "hard link shares the inode"
        );
        assert_eq!(
            fs::read_link(top.join("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            xattr::get(top.join("tagged"), "user.bramble")
                .unwrap()
                .as_deref(),
            Some(&b"yes"[..])
        );
        assert_eq!(
            xattr::get(top.join("tagged"), "trusted.overlay.redirect").unwrap(),
            None,
            "overlay xattrs are never taken from an image"
        );
        let null = fs::symlink_metadata(top.join("null")).unwrap();
        assert!(null.file_type().is_char_device() && null.rdev() == nix::sys::stat::makedev(1, 3));
        assert!(
            fs::symlink_metadata(top.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );

        // What a container sees: overlayfs over the two lowerdirs (top first).
        let merged = data.0.as_path().join("merged");
        fs::create_dir(&merged).unwrap();
        let opts = format!("lowerdir={}:{}", layers[1].display(), layers[0].display());
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status();
        if !mounted.is_ok_and(|s| s.success()) {
            fixtures::skip("cannot mount overlayfs here (needs root and the overlay module)");
            continue;
        }
        let mut opaque: Vec<_> = fs::read_dir(merged.join("opaque"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        opaque.sort();
        let view = (
            merged.join("etc/gone").exists(),
            fs::read_to_string(merged.join("etc/passwd")).ok(),
            opaque,
        );
        let _ = Command::new("umount").arg(&merged).status();
        assert_eq!(
            view,
            (
                false,
                Some("root:x:0:0\n".to_string()),
                vec![std::ffi::OsString::from("new")]
            )
        );
    }
}

#[test]
fn gc_keeps_images_in_use_and_pinned_ones() {
    let Some(busybox) = fixtures::busybox_image() else {
        return;
    };
    let Some(app) = fixtures::app_image() else {
        return;
    };
    let Some(zstd) = fixtures::busybox_zstd_image() else {
        return;
    };
    let Some(reg) = Registry::start(Auth::Anonymous) else {
        return;
    };
    let app_ref = reg.push(app, "app:1");
    let zstd_ref = reg.push(zstd, "zstd:1");
    let data = TempDir::new("gc");
    let store = ImageStore::open(data.0.as_path()).unwrap();
    store
        .import(busybox.docker_archive.as_ref().unwrap())
        .unwrap(); // pinned
    let app_img = pull(&store, &app_ref, &native()).unwrap();
    let zstd_img = pull(&store, &zstd_ref, &native()).unwrap();

    // Plenty of space: nothing named goes.
    let report = store.gc(&HashSet::new(), 100, 100).unwrap();
    assert!(report.images_removed.is_empty());
    assert_eq!(store.list().unwrap().len(), 3);

    // Disk "full": the unused, unpinned zstd image goes; app (in use) and the pinned import stay.
    let in_use = HashSet::from([app_img.manifest_digest.to_string()]);
    let report = store.gc(&in_use, 0, 0).unwrap();
    assert_eq!(report.images_removed, std::slice::from_ref(&zstd_ref));
    let mut left: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [app_ref.clone(), "bramble.test/busybox:1".to_string()]
    );
    assert!(store.layers(&app_img).is_ok());
    // The zstd image's layer has busybox's diff_id: the directory stays, its own blobs go.
    assert_eq!(layer_dirs(data.0.as_path()), 2);
    let blob = |d: &Digest| data.0.as_path().join("images/blobs/sha256").join(d.hex());
    assert!(!blob(&zstd_img.manifest_digest).exists());
    assert!(!blob(&zstd_img.layers[0].blob).exists());
    assert!(
        blob(&zstd_img.config_digest).exists(),
        "the config is the pinned import's too"
    );
    assert_eq!(report.blobs_removed, 2);

    // An image removed by name while a container uses it keeps its layers until it is not in use.
    store.remove(&app_ref).unwrap();
    store.gc(&in_use, 100, 100).unwrap();
    assert!(store.layers(&app_img).is_ok());
    store.gc(&HashSet::new(), 100, 100).unwrap();
    assert!(store.layers(&app_img).is_err());
    assert_eq!(
        layer_dirs(data.0.as_path()),
        1,
        "busybox's base layer stays for the pinned import"
    );
}

#[test]
fn cli_imports_lists_and_removes() {
    let Some(fx) = fixtures::busybox_image() else {
        return;
    };
    let data = TempDir::new("cli");
    let run = |args: &[&str]| {
        let mut all: Vec<String> = vec!["image".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend([
            "--data-dir".to_string(),
            data.0.as_path().display().to_string(),
        ]);
        bramble::image::cli::main(lexopt::Parser::from_iter(all), Path::new("/nonexistent"))
    };
    run(&["import", fx.oci_archive.to_str().unwrap()]).unwrap();
    run(&["ls"]).unwrap();
    let store = ImageStore::open(data.0.as_path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    run(&[
        "export",
        "bramble.test/busybox:1",
        data.0.as_path().join("x.tar").to_str().unwrap(),
    ])
    .unwrap();
    assert!(data.0.as_path().join("x.tar").is_file());
    run(&["rm", "bramble.test/busybox:1"]).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(run(&["pull"]).is_err(), "usage error");
    let _: PathBuf = data.0.as_path().to_path_buf();
}
