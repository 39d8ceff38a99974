//! The runtime helper with real containers: busybox root filesystems made on the fly, one helper
//! per test (its own root directory), real namespaces, cgroups and mounts. Needs root and
//! /bin/busybox (Debian's busybox-static); without them the tests are skipped, or fail under CI.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bramble::runtime::protocol::{ContainerSpec, Event, Resources, Status, User, VolumeMount};
use bramble::runtime::{CgroupLayout, HelperCommand, RuntimeClient};
use nix::sys::signal::Signal;

const BUSYBOX: &str = "/bin/busybox";
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A helper with its own root, a busybox layer, and the pods to clean up.
struct Fixture {
    root: PathBuf,
    layer: PathBuf,
    client: RuntimeClient,
    pods: Vec<String>,
}

/// `None` (skip) when not root or without busybox, unless CI=true: then it panics.
fn fixture(test: &str) -> Option<Fixture> {
    let missing = if !nix::unistd::Uid::effective().is_root() {
        Some("these tests need root")
    } else if !Path::new(BUSYBOX).exists() {
        Some("these tests need /bin/busybox (apt-get install busybox-static)")
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipping {test}: {why}");
        return None;
    }
    let base = std::env::temp_dir().join(format!("bramble-it-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let layer = base.join("layer");
    busybox_layer(&layer);
    let root = base.join("runtime");
    let client =
        RuntimeClient::connect_with(&root, &helper(&root)).expect("start the runtime helper");
    Some(Fixture {
        root,
        layer,
        client,
        pods: Vec::new(),
    })
}

fn helper(root: &Path) -> HelperCommand {
    HelperCommand {
        program: env!("CARGO_BIN_EXE_bramble").into(),
        args: vec![
            "runtime-helper".into(),
            "--root".into(),
            root.as_os_str().to_owned(),
        ],
    }
}

/// A root filesystem of one layer: busybox and a symlink per applet.
fn busybox_layer(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter(|a| *a != "busybox")
    {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

impl Fixture {
    fn pod(&mut self, uid: &str, hostname: &str) -> String {
        let uid = format!("{uid}-{}", std::process::id());
        self.client.create_sandbox(&uid, hostname, false).unwrap();
        self.pods.push(uid.clone());
        uid
    }

    fn spec(&self, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            layers: vec![self.layer.clone()],
            args: vec!["sh".into(), "-c".into(), script.into()],
            log_path: self.log(name),
            ..Default::default()
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root
            .parent()
            .unwrap()
            .join("logs")
            .join(format!("{name}.log"))
    }

    fn run(&mut self, id: &str, pod: &str, spec: ContainerSpec) -> u32 {
        self.client.create_container(id, pod, spec).unwrap();
        self.client.start(id).unwrap().pid.unwrap()
    }

    fn wait_exit(&mut self, id: &str) -> Event {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.client.next_event(Some(left)).unwrap() {
                Some(e @ Event::Exited { .. }) if matches!(&e, Event::Exited { id: got, .. } if got == id) =>
                {
                    return e;
                }
                _ => {}
            }
        }
        panic!("container {id} did not exit within {EVENT_TIMEOUT:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            if self.client.remove_sandbox(&pod).is_err() {
                // The test may have left the client broken; a fresh one cleans up.
                if let Ok(c) = RuntimeClient::connect_with(&self.root, &helper(&self.root)) {
                    self.client = c;
                    let _ = self.client.remove_sandbox(&pod);
                }
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.client.helper_pid() as i32),
            Signal::SIGKILL,
        );
        // A failed test keeps its directory (helper.log, container logs) for a post-mortem.
        if let Some(base) = self.root.parent().filter(|_| !std::thread::panicking()) {
            let _ = fs::remove_dir_all(base);
        }
    }
}

/// One record of a CRI log file: `TIME STREAM TAG CONTENT`.
#[derive(Debug)]
struct Record {
    time: SystemTime,
    stream: String,
    tag: String,
    content: String,
}

/// The records of a log file (none if it does not exist yet). Every timestamp must be RFC 3339
/// UTC with nanoseconds, as the CRI format has it.
fn records(path: &Path) -> Vec<Record> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            let [time, stream, tag, content] = fields[..] else {
                panic!("not a CRI record: {line:?}");
            };
            let nanos = time
                .strip_suffix('Z')
                .and_then(|t| t.split_once('.'))
                .map(|(_, frac)| frac);
            assert!(
                nanos.is_some_and(|n| n.len() == 9 && n.bytes().all(|b| b.is_ascii_digit())),
                "not an RFC 3339 UTC time with nanoseconds: {line:?}"
            );
            Record {
                time: humantime::parse_rfc3339(time).unwrap(),
                stream: stream.into(),
                tag: tag.into(),
                content: content.into(),
            }
        })
        .collect()
}

/// What one stream printed, from the log's records.
fn printed(path: &Path, stream: &str) -> String {
    let mut text = String::new();
    for r in records(path).iter().filter(|r| r.stream == stream) {
        text.push_str(&r.content);
        if r.tag == "F" {
            text.push('\n');
        }
    }
    text
}

/// Waits until the log holds `n` records.
fn wait_records(path: &Path, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let got = records(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} records, not {n}: {got:#?}",
            path.display(),
            got.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exit_code(e: &Event) -> (Option<i32>, Option<i32>, bool) {
    match e {
        Event::Exited {
            exit_code,
            signal,
            oom_killed,
            ..
        } => (*exit_code, *signal, *oom_killed),
        other => panic!("not an exit: {other:?}"),
    }
}

#[test]
fn pod_containers_share_hostname_and_localhost() {
    let Some(mut fx) = fixture("share") else {
        return;
    };
    let pod = fx.pod("share", "kubia");
    let shared = fx.root.parent().unwrap().join("shared");
    fs::create_dir_all(&shared).unwrap();
    let volume = VolumeMount {
        host_path: shared.clone(),
        container_path: "/shared".into(),
        read_only: false,
    };

    let mut server = fx.spec(
        "server",
        "echo from-server > /dev/shm/note; echo hello > /shared/index.html; \
         exec httpd -f -p 8080 -h /shared",
    );
    server.mounts = vec![volume.clone()];
    fx.run("share-server", &pod, server);
    let mut client = fx.spec(
        "client",
        "hostname > /shared/client-hostname; ok=1; \
         for i in $(seq 50); do wget -q -O /shared/fetched http://127.0.0.1:8080/index.html \
         && { ok=0; break; }; sleep 0.1; done; cat /dev/shm/note > /shared/shm-seen; exit $ok",
    );
    client.mounts = vec![volume];
    fx.run("share-client", &pod, client);

    assert_eq!(
        exit_code(&fx.wait_exit("share-client")).0,
        Some(0),
        "log: {:?}",
        fs::read_to_string(fx.log("client"))
    );
    assert_eq!(
        fs::read_to_string(shared.join("fetched")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(shared.join("client-hostname")).unwrap(),
        "kubia\n"
    );
    let shm = fs::read_to_string(shared.join("shm-seen")).unwrap();
    assert_eq!(shm, "from-server\n", "the pod's containers share /dev/shm");

    // The server sees the same hostname, asked through exec.
    let mut exec = fx
        .client
        .exec("share-server", vec!["hostname".into()], vec![])
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut exec.stdout, &mut out).unwrap();
    assert_eq!(out, "kubia\n");
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        match fx
            .client
            .next_event(Some(deadline - Instant::now()))
            .unwrap()
        {
            Some(Event::ExecExited {
                exec_id, exit_code, ..
            }) if exec_id == exec.exec_id => {
                assert_eq!(exit_code, Some(0));
                break;
            }
            None => panic!("no ExecExited event"),
            _ => {}
        }
    }
    // libcontainer is only safe in a single-threaded process: the helper must have stayed one.
    let tasks = fs::read_dir(format!("/proc/{}/task", fx.client.helper_pid())).unwrap();
    assert_eq!(tasks.count(), 1, "the runtime helper started a thread");
}

#[test]
fn container_exit_code_is_reported() {
    let Some(mut fx) = fixture("exit") else {
        return;
    };
    let pod = fx.pod("exit", "exit");
    let mut spec = fx.spec(
        "app",
        "echo to-stdout; echo to-stderr >&2; id -u; id -G; grep SigIgn /proc/self/status; exit 3",
    );
    spec.user = User {
        uid: 1000,
        gid: 1001,
        additional_gids: vec![5],
    };
    fx.run("exit-3", &pod, spec);
    let (code, signal, oom) = exit_code(&fx.wait_exit("exit-3"));
    assert_eq!((code, signal, oom), (Some(3), None, false));
    let state = fx.client.state("exit-3").unwrap();
    assert_eq!(state.status, Status::Exited);
    assert_eq!(state.exit.unwrap().exit_code, Some(3));
    assert_eq!(printed(&fx.log("app"), "stderr"), "to-stderr\n");
    let stdout = printed(&fx.log("app"), "stdout");
    let (output, sig_ign) = stdout.split_once("SigIgn:\t").unwrap();
    assert_eq!(
        output, "to-stdout\n1000\n1001 5\n",
        "output, uid and groups"
    );
    // No standard signal (SIGPIPE above all) may be ignored; 32 and 33 belong to the C library.
    let ignored = u64::from_str_radix(sig_ign.trim(), 16).unwrap();
    assert_eq!(
        ignored & 0x7fff_ffff,
        0,
        "signals ignored in the container: {ignored:#x}"
    );
    fx.client.delete("exit-3").unwrap();
    assert!(fx.client.list().unwrap().is_empty());
}

#[test]
fn memory_limit_oom_is_reported_as_oomkilled() {
    let Some(mut fx) = fixture("oom") else { return };
    let pod = fx.pod("oom", "oom");
    let mut spec = fx.spec("hog", "");
    spec.args = vec!["tail".into(), "/dev/zero".into()];
    spec.resources.memory_limit_bytes = Some(32 << 20);
    fx.run("oom-hog", &pod, spec);
    let (_, signal, oom) = exit_code(&fx.wait_exit("oom-hog"));
    assert!(oom, "not reported as OOM-killed");
    assert_eq!(signal, Some(Signal::SIGKILL as i32));
}

#[test]
fn limits_land_in_cgroup_files() {
    let Some(mut fx) = fixture("limits") else {
        return;
    };
    let pod = fx.pod("limits", "limits");
    let mut spec = fx.spec("app", "exec sleep 1000");
    spec.resources = Resources {
        cpu_request_millis: Some(250),
        cpu_limit_millis: Some(500),
        memory_limit_bytes: Some(64 << 20),
        pids_limit: Some(100),
    };
    fx.run("limits-app", &pod, spec);
    let read = |p: PathBuf| {
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_owned()
    };
    let cg = Path::new("bramble").join(&pod).join("app");
    match CgroupLayout::detect().unwrap() {
        CgroupLayout::V1 { hierarchies, .. } => {
            let file = |ctrl: &str, f: &str| {
                let h = hierarchies.iter().find(|h| h.ends_with(ctrl)).unwrap();
                read(h.join(&cg).join(f))
            };
            assert_eq!(file("cpu", "cpu.shares"), "256");
            assert_eq!(file("cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(
                file("memory", "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(file("pids", "pids.max"), "100");
            // The pod as a whole is capped too.
            let pids = hierarchies.iter().find(|h| h.ends_with("pids")).unwrap();
            assert_eq!(
                read(pids.join("bramble").join(&pod).join("pids.max")),
                "100"
            );
        }
        CgroupLayout::V2 { mount, .. } => {
            let file = |f: &str| read(mount.join(&cg).join(f));
            assert_eq!(file("cpu.max"), "50000 100000");
            assert_eq!(file("memory.max"), (64u64 << 20).to_string());
            assert_eq!(file("pids.max"), "100");
        }
    }
}

#[test]
fn helper_restart_reattaches_running_containers() {
    let Some(mut fx) = fixture("restart") else {
        return;
    };
    let pod = fx.pod("restart", "restart");
    fx.run("restart-done", &pod, fx.spec("done", "exit 7"));
    fx.wait_exit("restart-done");
    let pid = fx.run(
        "restart-sleeper",
        &pod,
        fx.spec("sleeper", "exec sleep 1000"),
    );

    // The daemon restarts: a new connection finds the same containers.
    let old_helper = fx.client.helper_pid();
    fx.client = RuntimeClient::connect_with(&fx.root, &helper(&fx.root)).unwrap();
    assert_eq!(fx.client.helper_pid(), old_helper);
    let running = fx.client.state("restart-sleeper").unwrap();
    assert_eq!((running.status, running.pid), (Status::Running, Some(pid)));

    // The helper dies: a new one reattaches, the container keeps running.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_helper as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        fx.client.next_event(Some(EVENT_TIMEOUT)).is_err(),
        "the old helper's socket must close"
    );
    fx.client = RuntimeClient::connect_with(&fx.root, &helper(&fx.root)).unwrap();
    assert_ne!(fx.client.helper_pid(), old_helper);
    let running = fx.client.state("restart-sleeper").unwrap();
    assert_eq!((running.status, running.pid), (Status::Running, Some(pid)));
    let done = fx.client.state("restart-done").unwrap();
    assert_eq!(
        done.exit.unwrap().exit_code,
        Some(7),
        "an exit reaped before the restart is kept"
    );

    // Its exit is still noticed, with the code lost (it is no longer the helper's child).
    fx.client.kill("restart-sleeper", Signal::SIGKILL).unwrap();
    assert_eq!(
        exit_code(&fx.wait_exit("restart-sleeper")),
        (None, None, false)
    );
}

#[test]
fn remove_sandbox_leaves_no_mounts_or_cgroups() {
    let Some(mut fx) = fixture("leaks") else {
        return;
    };
    let pod = fx.pod("leaks", "leaks");
    let mut spec = fx.spec("sleeper", "exec sleep 1000");
    spec.resources.memory_limit_bytes = Some(64 << 20);
    fx.run("leaks-sleeper", &pod, spec);
    fx.run("leaks-done", &pod, fx.spec("done", "exit 0"));
    fx.wait_exit("leaks-done");

    fx.client.remove_sandbox(&pod).unwrap();
    fx.client.remove_sandbox(&pod).unwrap(); // idempotent
    fx.pods.clear();

    let root = fx.root.to_str().unwrap().to_owned();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
    assert!(leaked.is_empty(), "mounts left: {leaked:#?}");
    for dir in CgroupLayout::detect().unwrap().pod_dirs(&pod) {
        assert!(!dir.exists(), "cgroup left: {}", dir.display());
    }
    for sub in ["sandboxes", "containers", "state"] {
        let left: Vec<_> = fs::read_dir(fx.root.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub} left: {left:?}");
    }
    assert!(fx.client.list().unwrap().is_empty());
}

#[test]
fn sigterm_ignored_by_pid_1_then_sigkill_stops_the_container() {
    let Some(mut fx) = fixture("stop") else {
        return;
    };
    let pod = fx.pod("stop", "stop");
    fx.run("stop-app", &pod, fx.spec("app", "exec sleep 1000"));
    // PID 1 without a SIGTERM handler ignores SIGTERM: still running afterwards.
    fx.client.kill("stop-app", Signal::SIGTERM).unwrap();
    assert!(
        fx.client
            .next_event(Some(Duration::from_millis(300)))
            .unwrap()
            .is_none()
    );
    assert_eq!(fx.client.state("stop-app").unwrap().status, Status::Running);
    fx.client.kill("stop-app", Signal::SIGKILL).unwrap();
    let (code, signal, _) = exit_code(&fx.wait_exit("stop-app"));
    assert_eq!((code, signal), (None, Some(Signal::SIGKILL as i32)));
    fx.client.kill("stop-app", Signal::SIGKILL).unwrap(); // already exited: no error
}

#[test]
fn host_network_pod_sees_the_host_hostname() {
    let Some(mut fx) = fixture("hostnet") else {
        return;
    };
    let pod = format!("hostnet-{}", std::process::id());
    fx.client.create_sandbox(&pod, "ignored", true).unwrap();
    fx.pods.push(pod.clone());
    fx.run(
        "hostnet-app",
        &pod,
        fx.spec("app", "hostname; cat /etc/hostname"),
    );
    assert_eq!(exit_code(&fx.wait_exit("hostnet-app")).0, Some(0));
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        printed(&fx.log("app"), "stdout"),
        format!("{host}\n{host}\n")
    );
}

#[test]
fn stdout_and_stderr_are_logged_as_timestamped_cri_lines_in_order() {
    let Some(mut fx) = fixture("order") else {
        return;
    };
    let pod = fx.pod("order", "order");
    // Each line waits until it is in the log, so the order across the two streams is defined.
    let mut spec = fx.spec(
        "app",
        "say() { echo \"$2\" >&\"$1\"; until grep -q \"$2\" /logs/app.log; do sleep 0.01; done; }; \
         say 1 out-1; say 2 err-1; say 1 out-2; say 2 err-2",
    );
    let logs = fx.log("app").parent().unwrap().to_owned();
    fs::create_dir_all(&logs).unwrap();
    spec.mounts = vec![VolumeMount {
        host_path: logs,
        container_path: "/logs".into(),
        read_only: true,
    }];
    let before = SystemTime::now();
    fx.run("order-app", &pod, spec);
    assert_eq!(exit_code(&fx.wait_exit("order-app")).0, Some(0));

    let got = records(&fx.log("app"));
    let lines: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|r| (r.stream.as_str(), r.tag.as_str(), r.content.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("stdout", "F", "out-1"),
            ("stderr", "F", "err-1"),
            ("stdout", "F", "out-2"),
            ("stderr", "F", "err-2"),
        ]
    );
    assert!(before <= got[0].time, "{got:#?}");
    assert!(got.windows(2).all(|w| w[0].time <= w[1].time), "{got:#?}");
}

#[test]
fn logs_survive_a_helper_restart() {
    let Some(mut fx) = fixture("logrestart") else {
        return;
    };
    let pod = fx.pod("logrestart", "logrestart");
    let shared = fx.root.parent().unwrap().join("shared");
    fs::create_dir_all(&shared).unwrap();
    let mut spec = fx.spec(
        "app",
        "echo before; until [ -e /shared/go ]; do sleep 0.05; done; \
         echo after; touch /shared/wrote; exec sleep 1000",
    );
    spec.mounts = vec![VolumeMount {
        host_path: shared.clone(),
        container_path: "/shared".into(),
        read_only: false,
    }];
    fx.run("logrestart-app", &pod, spec);
    wait_records(&fx.log("app"), 1);

    // The helper dies; the container writes meanwhile, into its FIFO.
    let old_helper = fx.client.helper_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_helper as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    assert!(fx.client.next_event(Some(EVENT_TIMEOUT)).is_err());
    let killed = SystemTime::now();
    fs::write(shared.join("go"), "").unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !shared.join("wrote").exists() {
        assert!(Instant::now() < deadline, "the container did not go on");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        records(&fx.log("app")).len(),
        1,
        "nobody reads while no helper runs"
    );

    // A new helper reattaches and logs what waited in the FIFO.
    let restarted = SystemTime::now();
    fx.client = RuntimeClient::connect_with(&fx.root, &helper(&fx.root)).unwrap();
    assert_ne!(fx.client.helper_pid(), old_helper);
    let got = wait_records(&fx.log("app"), 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        (got[0].stream.as_str(), got[0].content.as_str()),
        ("stdout", "before")
    );
    assert_eq!(
        (got[1].stream.as_str(), got[1].content.as_str()),
        ("stdout", "after")
    );
    assert!(got[0].time < killed, "{got:#?}");
    assert!(restarted <= got[1].time, "{got:#?}");

    // Logging goes on: the FIFOs are in the new helper's poll loop.
    let mut exec = fx
        .client
        .exec(
            "logrestart-app",
            vec!["sh".into(), "-c".into(), "echo again > /proc/1/fd/1".into()],
            vec![],
        )
        .unwrap();
    std::io::Read::read_to_end(&mut exec.stdout, &mut Vec::new()).unwrap();
    assert_eq!(wait_records(&fx.log("app"), 3)[2].content, "again");
}

#[test]
fn last_lines_are_logged_before_the_exit_is_reported() {
    let Some(mut fx) = fixture("lastlines") else {
        return;
    };
    let pod = fx.pod("lastlines", "lastlines");
    // More than a pipe holds, so the container waits for the helper on the way, and an
    // unfinished last line on each stream.
    let mut spec = fx.spec(
        "app",
        "seq 1 20000; printf 'no newline'; printf 'last words' >&2",
    );
    spec.log_max_bytes = 8 << 20;
    fx.run("lastlines-app", &pod, spec);
    assert_eq!(exit_code(&fx.wait_exit("lastlines-app")).0, Some(0));

    let stdout = printed(&fx.log("app"), "stdout");
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert_eq!(stdout.strip_suffix("no newline"), Some(expected.as_str()));
    assert_eq!(printed(&fx.log("app"), "stderr"), "last words");
}

#[test]
fn log_rotation_keeps_at_most_the_configured_files() {
    let Some(mut fx) = fixture("rotation") else {
        return;
    };
    let pod = fx.pod("rotation", "rotation");
    let mut spec = fx.spec("app", "seq 1 500");
    (spec.log_max_bytes, spec.log_max_files) = (1000, 3);
    fx.run("rotation-app", &pod, spec);
    assert_eq!(exit_code(&fx.wait_exit("rotation-app")).0, Some(0));

    let log = fx.log("app");
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    assert!(!rotated(3).exists(), "more than 3 files kept");
    // Oldest first, the kept records are the last lines, without a gap.
    let mut numbers = Vec::new();
    for path in [rotated(2), rotated(1), log.clone()] {
        let size = fs::metadata(&path).unwrap().len();
        assert!(size <= 1000, "{} has {size} bytes", path.display());
        numbers.extend(
            records(&path)
                .iter()
                .map(|r| r.content.parse::<u32>().unwrap()),
        );
    }
    let first = numbers[0];
    assert!(first > 1, "nothing was rotated away");
    assert_eq!(numbers, (first..=500).collect::<Vec<_>>());
}

#[test]
fn failed_exec_leaves_nothing_that_blocks_the_containers_exit() {
    let Some(mut fx) = fixture("badexec") else {
        return;
    };
    let pod = fx.pod("badexec", "badexec");
    fx.run("badexec-app", &pod, fx.spec("app", "exec sleep 1000"));
    assert!(
        fx.client
            .exec("badexec-app", vec!["no-such-program".into()], vec![])
            .is_err()
    );
    // libcontainer's processes of the failed exec sat in the container's pid namespace: unreaped,
    // they kept its init from ever finishing its exit.
    fx.client.kill("badexec-app", Signal::SIGKILL).unwrap();
    let (_, signal, _) = exit_code(&fx.wait_exit("badexec-app"));
    assert_eq!(signal, Some(Signal::SIGKILL as i32));
    fx.client.delete("badexec-app").unwrap();
}
