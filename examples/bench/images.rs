//! Images: pull + unpack of a ~5 MB image from a registry on loopback
//! beside `skopeo copy` + `umoci unpack` of the same image; the peak RSS of
//! `bramble image pull` over its idle RSS while pulling a 100 MB layer; the
//! import time of a 50 MB archive. The images are busybox-static plus a file
//! of random data (incompressible, so the layer really is that big), built
//! with umoci and skopeo as the test fixtures are. Everything lives under one
//! temporary directory, removed at the end.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, ms, percentile};

const RUNS: usize = 5;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion; panics with its output when it fails.
fn must(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn timed(cmd: &mut Command) -> Duration {
    let t0 = Instant::now();
    must(cmd);
    t0.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Adds image `tag` to the layout: busybox and its applet links, plus
/// `/data/random` of `random_bytes` bytes, in one layer.
fn build_image(layout: &Path, tag: &str, busybox: &Path, random_bytes: u64, work: &Path) {
    let image = format!("{}:{tag}", layout.display());
    must(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = work.join(format!("bundle-{tag}"));
    must(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("mkdir bin");
    fs::create_dir_all(rootfs.join("data")).expect("mkdir data");
    fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "hostname", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .expect("applet link");
    }
    let mut random = File::open("/dev/urandom").expect("open /dev/urandom");
    let mut out = File::create(rootfs.join("data/random")).expect("create random file");
    let copied = std::io::copy(
        &mut std::io::Read::take(&mut random, random_bytes),
        &mut out,
    )
    .expect("write random data");
    assert_eq!(copied, random_bytes);
    drop(out);
    must(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    fs::remove_dir_all(&bundle).expect("remove bundle");
    must(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.entrypoint",
        "/bin/sh",
        "--config.env",
        "PATH=/bin",
    ]));
}

/// Debian's docker-registry on a loopback port, killed on drop.
struct Registry {
    host: String,
    child: Child,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: '{host}'}}\n",
                dir.join("registry-data").display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let t0 = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(&host) {
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/") {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { host, child }
    }

    fn push(&self, layout: &Path, tag: &str) -> String {
        let reference = format!("{}/{tag}:1", self.host);
        must(
            Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://{reference}")),
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` and returns its peak resident set in KiB: `ru_maxrss` from
/// `wait4` on that one child, i.e. the VmHWM the kernel kept for it.
fn peak_rss_kib(cmd: &mut Command) -> u64 {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as nix::libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child (std's `Child` is dropped
    // without waiting, so nothing else reaps it); both pointers are to live
    // locals of the right types.
    let reaped = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    drop(child);
    usage.ru_maxrss as u64
}

fn data_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = fs::remove_dir_all(&d);
    d
}

pub fn run() {
    println!("## Images (release build, docker-registry on loopback)\n");
    let missing: Vec<&str> = ["umoci", "skopeo", "docker-registry"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        println!("- skipped: busybox-static is not installed\n");
        return;
    };
    if !missing.is_empty() {
        println!("- skipped: {} missing\n", missing.join(", "));
        return;
    }
    let dir = std::env::temp_dir().join(format!("bramble-bench-images-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create bench dir");
    let layout = dir.join("layout");
    must(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    build_image(&layout, "small", busybox, 4 << 20, &dir);
    build_image(&layout, "big", busybox, 100 << 20, &dir);
    build_image(&layout, "archive", busybox, 50 << 20, &dir);
    let registry = Registry::start(&dir);
    let small = registry.push(&layout, "small");
    let big = registry.push(&layout, "big");

    // Pull + unpack of the small image, each run into an empty store or directory.
    let blob_bytes = |tag: &str| -> u64 {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
                .expect("parse index.json");
        let manifest = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .expect("tag in layout");
        let blob = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(blob(manifest["digest"].as_str().expect("digest"))).expect("manifest"),
        )
        .expect("parse manifest");
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["size"].as_u64().unwrap_or(0))
            .sum()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let data = data_dir(&dir, &format!("pull-{i}"));
        ours.push(timed(
            Command::new(bin())
                .args(["image", "pull", &small, "--data-dir"])
                .arg(&data),
        ));
        let _ = fs::remove_dir_all(&data);
        let oci = dir.join(format!("skopeo-{i}"));
        let bundle = dir.join(format!("bundle-skopeo-{i}"));
        let t0 = Instant::now();
        must(
            Command::new("skopeo")
                .args(["copy", "-q", "--src-tls-verify=false"])
                .arg(format!("docker://{small}"))
                .arg(format!("oci:{}:small", oci.display())),
        );
        must(
            Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:small", oci.display()))
                .arg(&bundle),
        );
        theirs.push(t0.elapsed());
        let _ = fs::remove_dir_all(&oci);
        let _ = fs::remove_dir_all(&bundle);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "- pull + unpack of a {:.1} MB image (busybox + 4 MiB random, one gzip layer), into an empty store, median of {RUNS}: `bramble image pull` {}, `skopeo copy` + `umoci unpack` {} (bramble takes {:.2}x their time)",
        blob_bytes("small") as f64 / 1e6,
        ms(ours),
        ms(theirs),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );

    // Peak RSS while pulling the 100 MB layer, over the same command's idle peak.
    let data = data_dir(&dir, "pull-big");
    let idle = peak_rss_kib(
        Command::new(bin())
            .args(["image", "ls", "--data-dir"])
            .arg(&data),
    );
    let t0 = Instant::now();
    let peak = peak_rss_kib(
        Command::new(bin())
            .args(["image", "pull", &big, "--data-dir"])
            .arg(&data),
    );
    let took = t0.elapsed();
    let _ = fs::remove_dir_all(&data);
    println!(
        "- peak RSS of `bramble image pull` of a {:.0} MB layer (ru_maxrss from wait4, i.e. VmHWM at exit): {} (pull took {}); idle (`bramble image ls` on the same store): {}; over idle: {} (target ≤ 16 MiB)",
        blob_bytes("big") as f64 / 1e6,
        mib(peak),
        ms(took),
        mib(idle),
        mib(peak.saturating_sub(idle))
    );

    // Import of a 50 MB oci-archive, into an empty store each time.
    let archive = dir.join("archive-oci.tar");
    must(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("oci:{}:archive", layout.display()))
            .arg(format!("oci-archive:{}:bench/archive:1", archive.display())),
    );
    let size = fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    let mut imports = Vec::new();
    for i in 0..3 {
        let data = data_dir(&dir, &format!("import-{i}"));
        imports.push(timed(
            Command::new(bin())
                .args(["image", "import"])
                .arg(&archive)
                .arg("--data-dir")
                .arg(&data),
        ));
        let _ = fs::remove_dir_all(&data);
    }
    println!(
        "- `bramble image import` of a {:.1} MB oci-archive (busybox + 50 MiB random) into an empty store (verify, copy the blob, unpack), median of 3: {}",
        size as f64 / 1e6,
        ms(median(imports))
    );
    drop(registry);
    let _ = fs::remove_dir_all(&dir);
    println!();
}
