//! Soak: pod and object churn for BENCH_SOAK_SECS (default 1800), sampling
//! the daemon's RSS, its open file descriptors and the store's size on
//! disk every minute. Flat figures mean nothing leaks; the SQLite WAL is
//! checkpointed, so the store grows only with live objects.

use std::time::{Duration, Instant};

use super::{Daemon, proc_field};

const PODS_PER_CYCLE: usize = 5;

struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    store_kib: u64,
}

fn sample(d: &Daemon, t0: Instant) -> Sample {
    let pid = d.pid();
    let size = |name: &str| std::fs::metadata(d.dir.join("data").join(name)).map_or(0, |m| m.len());
    Sample {
        at: t0.elapsed(),
        rss_kib: proc_field(pid, "status", "VmRSS"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |r| r.count()),
        store_kib: (size("state.db") + size("state.db-wal")) / 1024,
    }
}

pub fn run() {
    let secs: u64 = std::env::var("BENCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    println!("## Soak ({secs} s of churn, release build)\n");
    let (d, _) = Daemon::start("soak");
    d.import(&super::pods::example_image(&d.dir));
    let t0 = Instant::now();
    let mut samples = vec![sample(&d, t0)];
    let mut cycles = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        for i in 0..PODS_PER_CYCLE {
            d.create(&super::pods::pod(
                &format!("soak-{cycles}-{i}"),
                "sleep 3600",
            ));
        }
        d.wait_running(PODS_PER_CYCLE, Duration::from_secs(120));
        let cm = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"soak-{cycles}"}},"data":{{"n":"{cycles}"}}}}"#
        );
        d.call("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
        if cycles > 0 {
            d.call(
                "DELETE",
                &format!("/api/v1/namespaces/default/configmaps/soak-{}", cycles - 1),
                None,
            );
        }
        d.clear_pods();
        cycles += 1;
        if t0.elapsed() >= samples.last().map_or(Duration::ZERO, |s| s.at) + Duration::from_secs(60)
        {
            samples.push(sample(&d, t0));
        }
    }
    samples.push(sample(&d, t0));
    println!("| minute | daemon RSS (KiB) | open fds | store on disk (KiB) |");
    println!("|---|---|---|---|");
    for s in &samples {
        println!(
            "| {:.1} | {} | {} | {} |",
            s.at.as_secs_f64() / 60.0,
            s.rss_kib,
            s.fds,
            s.store_kib
        );
    }
    let (first, last) = (
        &samples[1.min(samples.len() - 1)],
        samples.last().expect("samples"),
    );
    println!(
        "\n- {cycles} cycles of {PODS_PER_CYCLE} pods created, Running, deleted (and a ConfigMap each); from the first minute to the end: RSS {} -> {} KiB, fds {} -> {}, store {} -> {} KiB\n",
        first.rss_kib, last.rss_kib, first.fds, last.fds, first.store_kib, last.store_kib
    );
}
