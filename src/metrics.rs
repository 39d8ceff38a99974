//! `/metrics` in the Prometheus text format: API requests and latency, the
//! store, image pulls, this process, this node and its pods (CPU and memory
//! from their cgroups). Counters live in memory; everything else is read
//! when scraped, so an unscraped daemon pays nothing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::model::{RESOURCES, res};
use crate::runtime::cgroups::CgroupLayout;
use crate::store::Store;

/// Upper bounds of the request latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Counters kept by the API as it answers.
#[derive(Default)]
pub struct ApiCounters {
    /// (verb, code) -> requests.
    requests: RefCell<BTreeMap<(&'static str, u16), u64>>,
    /// Requests at or under each bucket's bound (not yet cumulative).
    latency: RefCell<[u64; BUCKETS.len()]>,
    latency_sum: Cell<f64>,
    latency_count: Cell<u64>,
}

impl ApiCounters {
    pub fn record(&self, verb: &'static str, code: u16, took: Duration) {
        *self.requests.borrow_mut().entry((verb, code)).or_default() += 1;
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency.borrow_mut()[i] += 1;
        }
        self.latency_sum.set(self.latency_sum.get() + secs);
        self.latency_count.set(self.latency_count.get() + 1);
    }

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP bramble_api_requests_total API requests answered, by verb and HTTP code.\n",
        );
        out.push_str("# TYPE bramble_api_requests_total counter\n");
        for ((verb, code), n) in self.requests.borrow().iter() {
            let _ = writeln!(
                out,
                "bramble_api_requests_total{{verb=\"{verb}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP bramble_api_request_duration_seconds Time to answer API requests (until the reply or stream starts).\n");
        out.push_str("# TYPE bramble_api_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.latency.borrow().iter()) {
            cumulative += n;
            let _ = writeln!(
                out,
                "bramble_api_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.get();
        let _ = writeln!(
            out,
            "bramble_api_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "bramble_api_request_duration_seconds_sum {}",
            self.latency_sum.get()
        );
        let _ = writeln!(out, "bramble_api_request_duration_seconds_count {count}");
    }
}

/// What the scrape reads besides the API's counters.
pub struct Sources<'a> {
    pub store: &'a Store,
    pub data_dir: &'a Path,
    pub node_name: &'a str,
    /// (pulls, failed pulls) of the image store.
    pub pulls: (u64, u64),
    pub cgroups: Option<&'a CgroupLayout>,
    /// (open connections, boards linked) of the cluster listener.
    pub cluster: Option<(usize, usize)>,
}

pub fn render(api: &ApiCounters, src: &Sources) -> String {
    let mut out = String::new();
    api.render(&mut out);
    store(src, &mut out);
    gauge(
        &mut out,
        "bramble_image_pulls_total",
        "counter",
        "Image pulls started.",
        src.pulls.0,
    );
    gauge(
        &mut out,
        "bramble_image_pull_failures_total",
        "counter",
        "Image pulls that failed.",
        src.pulls.1,
    );
    if let Some((open, linked)) = src.cluster {
        gauge(
            &mut out,
            "bramble_cluster_connections",
            "gauge",
            "Open connections on the cluster listener.",
            open,
        );
        gauge(
            &mut out,
            "bramble_cluster_boards",
            "gauge",
            "Boards linked to this server.",
            linked,
        );
    }
    process(&mut out);
    node(src, &mut out);
    pods(src, &mut out);
    out
}

fn gauge(out: &mut String, name: &str, ty: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {value}\n"
    );
}

fn store(src: &Sources, out: &mut String) {
    gauge(
        out,
        "bramble_store_resource_version",
        "counter",
        "The store's latest resourceVersion.",
        src.store.resource_version(),
    );
    out.push_str("# HELP bramble_store_objects Objects stored, by resource.\n# TYPE bramble_store_objects gauge\n");
    for r in RESOURCES {
        let _ = writeln!(
            out,
            "bramble_store_objects{{resource=\"{}\"}} {}",
            r.key(),
            src.store.list(r, None).len()
        );
    }
    let db = crate::store::db_path(src.data_dir);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = db.with_extension("db-wal");
    gauge(
        out,
        "bramble_store_disk_bytes",
        "gauge",
        "Size of the SQLite database and its WAL.",
        size(&db) + size(&wal),
    );
}

fn process(out: &mut String) {
    // statm: size resident shared ... in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    gauge(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon.",
        pages * page,
    );
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    gauge(
        out,
        "process_open_fds",
        "gauge",
        "Open file descriptors of the daemon.",
        fds,
    );
}

fn node(src: &Sources, out: &mut String) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (total, available) = (
        meminfo_kib(&meminfo, "MemTotal"),
        meminfo_kib(&meminfo, "MemAvailable"),
    );
    let node = src.node_name;
    out.push_str("# HELP bramble_node_memory_used_bytes Memory in use on this node (MemTotal - MemAvailable).\n# TYPE bramble_node_memory_used_bytes gauge\n");
    let _ = writeln!(
        out,
        "bramble_node_memory_used_bytes{{node=\"{node}\"}} {}",
        total.saturating_sub(available) * 1024
    );
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(secs) = cpu_seconds(&stat) {
        out.push_str("# HELP bramble_node_cpu_seconds_total CPU time spent by this node outside idle and iowait.\n# TYPE bramble_node_cpu_seconds_total counter\n");
        let _ = writeln!(
            out,
            "bramble_node_cpu_seconds_total{{node=\"{node}\"}} {secs}"
        );
    }
}

fn pods(src: &Sources, out: &mut String) {
    let Some(cgroups) = src.cgroups else {
        return;
    };
    let mut mem = String::new();
    let mut cpu = String::new();
    for p in src.store.list(res("Pod"), None) {
        if p.node_name != src.node_name || p.finished {
            continue;
        }
        let labels = format!("namespace=\"{}\",pod=\"{}\"", p.namespace, p.name);
        let usage = cgroups.pod_usage(&p.uid);
        if let Some(bytes) = usage.memory_bytes {
            let _ = writeln!(mem, "bramble_pod_memory_bytes{{{labels}}} {bytes}");
        }
        if let Some(usec) = usage.cpu_usec {
            let _ = writeln!(
                cpu,
                "bramble_pod_cpu_seconds_total{{{labels}}} {}",
                usec as f64 / 1e6
            );
        }
    }
    out.push_str("# HELP bramble_pod_memory_bytes Memory charged to the pod's cgroup.\n# TYPE bramble_pod_memory_bytes gauge\n");
    out.push_str(&mem);
    out.push_str("# HELP bramble_pod_cpu_seconds_total CPU time used by the pod's cgroup.\n# TYPE bramble_pod_cpu_seconds_total counter\n");
    out.push_str(&cpu);
}

fn meminfo_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Busy CPU seconds from the `cpu` line of /proc/stat (USER_HZ = 100 on
/// Linux for every architecture bramble runs on).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some(total.saturating_sub(idle) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative() {
        let api = ApiCounters::default();
        api.record("GET", 200, Duration::from_micros(500));
        api.record("GET", 200, Duration::from_millis(20));
        api.record("POST", 201, Duration::from_secs(10));
        let mut out = String::new();
        api.render(&mut out);
        assert!(
            out.contains("bramble_api_requests_total{verb=\"GET\",code=\"200\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("bramble_api_requests_total{verb=\"POST\",code=\"201\"} 1\n"));
        assert!(out.contains("_bucket{le=\"0.001\"} 1\n"));
        assert!(out.contains("_bucket{le=\"0.025\"} 2\n"));
        assert!(out.contains("_bucket{le=\"5\"} 2\n"));
        assert!(out.contains("_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("bramble_api_request_duration_seconds_count 3\n"));
    }

    #[test]
    fn proc_files_are_read() {
        let meminfo =
            "MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     400 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), 1000);
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), 400);
        assert_eq!(meminfo_kib(meminfo, "Nope"), 0);
        // user nice system idle iowait irq softirq steal
        let stat = "cpu  100 0 50 1000 30 5 5 10 0 0\ncpu0 1 2 3\n";
        assert_eq!(cpu_seconds(stat), Some(1.7));
    }
}
