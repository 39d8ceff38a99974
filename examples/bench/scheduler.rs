//! Scheduler: 10,000 pods onto 100 simulated nodes, in-process (no HTTP):
//! first the pure decision path (snapshot, filters, scores, counting the
//! pod in the snapshot), then a whole scheduler pass over a real store
//! (SQLite in a temporary directory) that also writes each binding and its
//! Scheduled event, until the last write is durable.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble::model::res;
use bramble::scheduler::{self, Node, Pod, Scheduler, Snapshot};
use bramble::store::Store;

use super::{ms, percentile};

const NODES: usize = 100;
const PODS: usize = 10_000;
/// Pods per owner (ReplicaSet): 100 owners.
const PER_OWNER: usize = 100;

fn node(i: usize) -> Value {
    let name = format!("sim-{i:03}");
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"allocatable": {"cpu": "16", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// A pod of owner `i / PER_OWNER` asking for 100m and 128Mi; with
/// `anti`, it also prefers nodes without its owner's other pods.
fn pod(i: usize, anti: bool) -> Value {
    let owner = i / PER_OWNER;
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{i:05}"), "namespace": "default",
            "creationTimestamp": "2026-11-26T00:00:00Z",
            "labels": {"app": format!("app-{owner}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{owner}"),
                                 "uid": format!("uid-{owner}"), "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}});
    if anti {
        p["spec"]["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": format!("app-{owner}")}},
                                               "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    p
}

/// The pure decision path: pods/s over the whole run (snapshot included)
/// and the latency of each decision.
fn decisions(anti: bool) -> (f64, Vec<Duration>) {
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| Node::from_value(&node(i)).unwrap())
        .collect();
    let pods: Vec<Arc<Pod>> = (0..PODS)
        .map(|i| Arc::new(Pod::from_value(&pod(i, anti)).unwrap()))
        .collect();
    let t0 = Instant::now();
    let mut snap = Snapshot::new(nodes, HashMap::new(), std::iter::empty(), anti);
    let mut times = Vec::with_capacity(PODS);
    for p in &pods {
        let t = Instant::now();
        let i = scheduler::schedule(&snap, p).expect("every pod fits");
        snap.assume(p, i);
        times.push(t.elapsed());
    }
    let rate = PODS as f64 / t0.elapsed().as_secs_f64();
    times.sort();
    (rate, times)
}

/// A scheduler pass over a real store: parse, decide, write each binding
/// and event, then wait for the group commit to make them durable.
fn store_pass() -> (f64, usize) {
    let dir = std::env::temp_dir().join(format!("bramble-bench-sched-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir).expect("store opens");
    let ex = async_executor::LocalExecutor::new();
    let result = smol::block_on(ex.run(async {
        ex.spawn({
            let store = store.clone();
            async move { store.run_flusher().await }
        })
        .detach();
        store
            .create(res("Namespace"), json!({"metadata": {"name": "default"}}))
            .unwrap();
        for i in 0..NODES {
            store.create(res("Node"), node(i)).unwrap();
        }
        for i in 0..PODS {
            store.create(res("Pod"), pod(i, false)).unwrap();
        }
        store.durable(store.resource_version()).await;
        let t0 = Instant::now();
        Scheduler::default().pass(&store);
        store.durable(store.resource_version()).await;
        let elapsed = t0.elapsed();
        let bound = store
            .list(res("Pod"), None)
            .iter()
            .filter(|p| !p.node_name.is_empty())
            .count();
        (bound as f64 / elapsed.as_secs_f64(), bound)
    }));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub fn run() {
    println!(
        "## Scheduler (in-process, release build; {PODS} pods onto {NODES} simulated nodes)\n"
    );
    for (what, anti) in [
        ("pods of 100 owners, 100m/128Mi each", false),
        (
            "the same with a preferred pod anti-affinity to their owner's pods",
            true,
        ),
    ] {
        let (rate, times) = decisions(anti);
        println!(
            "- decisions, {what}: {rate:.0} pods/s; decision p50 {}, p99 {}, max {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap())
        );
    }
    let (rate, bound) = store_pass();
    println!(
        "- one scheduler pass over a real store (parse, decide, write binding + Scheduled event, until durable in SQLite): {bound} bound, {rate:.0} pods/s"
    );
    println!();
}
