//! Power loss: the daemon killed mid-write, a torn or corrupted WAL, a
//! corrupt database, a data dir copied while written. The daemon must start
//! every time, keep every acknowledged write SQLite could keep, and say in
//! one line what it recovered and what was lost.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{Server, TempDir, missing, reset_runtime, server_with_busybox};

pub const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

pub fn configmap(name: &str, data: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": data}})
        .to_string()
        .into_bytes()
}

/// POSTs a ConfigMap; the HTTP status (0 when the daemon did not answer).
pub fn create(s: &Server, name: &str, data: &str) -> u16 {
    s.request(
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        &configmap(name, data),
    )
    .0
}

/// The default namespace's ConfigMaps: name -> (data, uid).
pub fn configmaps(s: &Server) -> BTreeMap<String, (String, String)> {
    let list = s.get_json(CONFIGMAPS);
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().unwrap() {
        let name = item["metadata"]["name"].as_str().unwrap().to_string();
        let data = item["data"]["v"].as_str().unwrap_or_default().to_string();
        let uid = item["metadata"]["uid"].as_str().unwrap().to_string();
        assert!(
            out.insert(name.clone(), (data, uid)).is_none(),
            "{name} is listed twice"
        );
    }
    out
}

/// The store's resourceVersion, as a list reports it.
fn list_rv(s: &Server) -> u64 {
    s.get_json(CONFIGMAPS)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The lines in which start-up said it replaced a corrupt database.
fn recovery_lines(s: &Server) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.contains("; moved it (and its -wal and -shm, if any) to "))
        .map(str::to_string)
        .collect()
}

/// Files in the data dir whose name contains `part`.
fn files_named(s: &Server, part: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(part))
        .collect();
    found.sort();
    found
}

/// A board config checkpointing the WAL after every commit, so that
/// state.db itself holds the objects (by default they sit in the WAL).
fn checkpoint_always_config(dir: &TempDir) -> String {
    let path = dir.0.join("checkpoint.toml");
    std::fs::write(&path, "[sqlite]\nwal_autocheckpoint = 1\n").unwrap();
    path.display().to_string()
}

/// Creates ConfigMaps from `threads` threads until `stop`; returns the
/// names whose create was acknowledged (201).
fn burst(s: &Server, threads: usize, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let name = format!("t{t}-{i}");
                    if create(s, &name, &name) == 201 {
                        acked.lock().unwrap().push(name);
                    }
                }
            });
        }
    });
}

#[test]
fn kill_9_during_a_burst_of_creates_loses_no_acknowledged_one() {
    if missing("curl") {
        return;
    }
    let mut s = Server::start();
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| burst(&s, 4, &stop, &acked));
        // Several group commits in, then kill -9 while creates are in flight.
        while acked.lock().unwrap().len() < 40 {
            std::thread::sleep(Duration::from_millis(10));
        }
        crate::support::unsafe_kill(s.pid(), "KILL");
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
    });
    s.kill9();
    s.spawn(&[]);
    let stored = configmaps(&s);
    let acked = acked.into_inner().unwrap();
    for name in &acked {
        assert_eq!(
            stored.get(name).map(|(d, _)| d.as_str()),
            Some(name.as_str()),
            "{name} was acknowledged before the kill"
        );
    }
    // Creates in flight at the kill may or may not have been committed.
    assert!(stored.len() >= acked.len());
    assert_eq!(
        recovery_lines(&s),
        Vec::<String>::new(),
        "nothing was corrupt"
    );
}

/// WAL layout (sqlite.org/fileformat2.html#walformat): a 32-byte header,
/// then frames of a 24-byte header and one page.
fn wal_frames(wal: &[u8]) -> (usize, usize) {
    let page = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let frame = 24 + page;
    (frame, (wal.len() - 32) / frame)
}

/// Creates c0..c9 one at a time (one transaction each), kills the daemon,
/// damages the last WAL frame with `damage`, restarts: c0..c8 are there
/// with their data, c9, whose transaction was torn, is not.
fn torn_last_transaction(s: &mut Server, round: &str, damage: impl Fn(&mut Vec<u8>)) {
    let names: Vec<String> = (0..10).map(|i| format!("{round}-c{i}")).collect();
    for n in &names {
        assert_eq!(create(s, n, n), 201);
    }
    let last: u64 =
        s.get_json(&format!("{CONFIGMAPS}/{}", names[9]))["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(
        list_rv(s),
        last,
        "the test needs the last create to be the last transaction"
    );
    let before = configmaps(s);
    s.kill9();
    let wal_path = s.data_dir().join("state.db-wal");
    let mut wal = std::fs::read(&wal_path).unwrap();
    damage(&mut wal);
    std::fs::write(&wal_path, &wal).unwrap();
    s.spawn(&[]);
    let after = configmaps(s);
    let mut expected = before.clone();
    expected.remove(&names[9]);
    assert_eq!(
        after, expected,
        "{round}: every complete commit is kept, the torn one is dropped"
    );
    assert_eq!(
        recovery_lines(s),
        Vec::<String>::new(),
        "SQLite repairs a torn WAL itself"
    );
    // Writing goes on after the repaired WAL.
    assert_eq!(create(s, &format!("{round}-after"), "x"), 201);
}

#[test]
fn a_torn_or_corrupted_last_wal_frame_loses_only_that_transaction() {
    if missing("curl") {
        return;
    }
    let mut s = Server::start();
    // A power cut in the middle of writing the last frame...
    torn_last_transaction(&mut s, "truncated", |wal| {
        let (frame, frames) = wal_frames(wal);
        assert!(frames > 10, "the creates are in the WAL");
        wal.truncate(32 + (frames - 1) * frame + frame / 2);
    });
    // ...and a last frame that reached the disk with wrong bytes.
    torn_last_transaction(&mut s, "flipped", |wal| {
        let (frame, frames) = wal_frames(wal);
        let middle = 32 + (frames - 1) * frame + 24 + frame / 2;
        for b in &mut wal[middle..middle + 16] {
            *b ^= 0xFF;
        }
    });
}

#[test]
fn a_corrupt_database_is_replaced_by_the_snapshot_and_said_in_one_line() {
    if missing("curl") {
        return;
    }
    let cfg_dir = TempDir::new("power-loss-cfg");
    let cfg = checkpoint_always_config(&cfg_dir);
    let mut s = Server::start_with(&["--config", &cfg]);
    let filler = "x".repeat(1000);
    for i in 0..120 {
        assert_eq!(create(&s, &format!("kept-{i}"), &filler), 201);
    }
    let kept = configmaps(&s);
    // A clean stop leaves a snapshot of everything.
    assert_eq!(s.terminate(), Some(0));
    assert!(s.data_dir().join("state.db.snapshot").exists());
    s.spawn(&["--config", &cfg]);
    for i in 0..5 {
        assert_eq!(create(&s, &format!("late-{i}"), "after the snapshot"), 201);
    }
    let handed_out = list_rv(&s);
    s.kill9();
    // Garbage over the middle third of the database's pages.
    let db = s.data_dir().join("state.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 30, "state.db holds the objects ({pages} pages)");
    for (i, b) in bytes[pages / 3 * 4096..pages * 2 / 3 * 4096]
        .iter_mut()
        .enumerate()
    {
        *b = (i * 131 % 251) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();

    s.spawn(&["--config", &cfg]);
    let lines = recovery_lines(&s);
    assert_eq!(lines.len(), 1, "one line says what happened: {lines:?}");
    let line = &lines[0];
    for part in [
        "ERROR",
        "failed its integrity check",
        "state.db.corrupt-",
        "restored the snapshot of",
        "changes after it are lost",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert_eq!(
        configmaps(&s),
        kept,
        "the snapshot's objects, uids and data"
    );
    let aside = files_named(&s, "state.db.corrupt-");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bytes,
        "the corrupt file is kept aside as it was: {aside:?}"
    );
    // Clients may hold resourceVersions up to `handed_out`: none is reused,
    // and a watch from one lists again (its cache may hold lost objects).
    let (code, v) = s.request(
        "GET",
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={handed_out}"),
        None,
        b"",
    );
    assert_eq!(code, 410, "{v}");
    assert_eq!(create(&s, "new", "x"), 201);
    let new: Value = s.get_json(&format!("{CONFIGMAPS}/new"));
    let rv: u64 = new["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > handed_out, "{rv} > {handed_out}");
}

#[test]
fn a_data_dir_copied_while_the_daemon_writes_starts() {
    if missing("curl") {
        return;
    }
    let s = Server::start();
    let copy = TempDir::new("power-loss-copy");
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| burst(&s, 3, &stop, &acked));
        while acked.lock().unwrap().len() < 30 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let cp = Command::new("cp")
            .arg("-r")
            .arg(s.data_dir())
            .arg(copy.0.join("data"))
            .status()
            .unwrap();
        assert!(cp.success());
        stop.store(true, Ordering::SeqCst);
    });
    assert!(!acked.into_inner().unwrap().is_empty());
    drop(s);

    // A second server whose data dir becomes the copy.
    let mut t = Server::start();
    t.kill9();
    reset_runtime(&t.data_dir());
    std::fs::remove_dir_all(t.data_dir()).unwrap();
    std::fs::rename(copy.0.join("data"), t.data_dir()).unwrap();
    t.token = std::fs::read_to_string(t.data_dir().join("tls/token"))
        .unwrap()
        .trim()
        .to_string();
    t.spawn(&[]);
    // Whatever the copy caught, the store is whole and takes writes.
    let lines = recovery_lines(&t);
    assert!(lines.len() <= 1, "{lines:?}");
    let before = configmaps(&t);
    assert_eq!(create(&t, "after-copy", "x"), 201);
    assert_eq!(configmaps(&t).len(), before.len() + 1);
}

#[test]
fn a_garbage_database_and_snapshot_start_empty_and_say_so() {
    if missing("curl") {
        return;
    }
    let mut s = Server::start();
    for i in 0..5 {
        assert_eq!(create(&s, &format!("doomed-{i}"), "x"), 201);
    }
    assert_eq!(s.terminate(), Some(0));
    // Garbage in every file (a WAL that held the pages would hide a
    // garbage state.db: SQLite reads them from the WAL).
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    for f in ["state.db", "state.db-wal", "state.db.snapshot"] {
        std::fs::write(s.data_dir().join(f), &garbage).unwrap();
    }
    s.spawn(&[]);
    let lines = recovery_lines(&s);
    assert_eq!(lines.len(), 1, "{lines:?}");
    for part in [
        "ERROR",
        "file is not a database",
        "the snapshot is unusable too",
        "starting with an empty store, every object is lost",
    ] {
        assert!(lines[0].contains(part), "{part:?} in {}", lines[0]);
    }
    assert_eq!(configmaps(&s), BTreeMap::new());
    assert!(!files_named(&s, "state.db.corrupt-").is_empty());
    assert_eq!(files_named(&s, "state.db.snapshot.corrupt-").len(), 1);
    // The namespaces every cluster has are made again; the next start is
    // an ordinary one.
    assert_eq!(create(&s, "reborn", "x"), 201);
    assert_eq!(s.terminate(), Some(0));
    s.spawn(&[]);
    assert_eq!(recovery_lines(&s).len(), 1, "no second recovery");
    assert!(configmaps(&s).contains_key("reborn"));
}

#[test]
fn containers_of_pods_lost_with_the_database_are_removed_at_start() {
    let Some((mut s, image)) = server_with_busybox() else {
        return;
    };
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: lost}}
spec:
  containers:
  - {{name: c, image: {image}, imagePullPolicy: Never, command: [sleep, '3600']}}
"
    ));
    let uid = s.wait_phase("lost", "Running", 60)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = s.container_pid(&uid);
    // The daemon stops; its containers keep running, as on any restart.
    assert_eq!(s.terminate(), Some(0));
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    let garbage = vec![0x5a; 64 * 1024];
    for f in ["state.db", "state.db-wal", "state.db.snapshot"] {
        std::fs::write(s.data_dir().join(f), &garbage).unwrap();
    }
    s.spawn(&[]);
    assert_eq!(recovery_lines(&s).len(), 1);
    // No pod holds the container any more: it and its sandbox go.
    let sandbox = s.data_dir().join(format!("runtime/sandboxes/{uid}"));
    crate::support::wait_for(30, "the lost pod's container and sandbox gone", || {
        (!PathBuf::from(format!("/proc/{pid}")).exists() && !sandbox.exists()).then_some(())
    });
    let pods = s.kubectl_ok(&["get", "pods", "-A", "-o", "name"]);
    assert_eq!(pods, "");
}
