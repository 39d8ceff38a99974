//! Controllers: each a level-triggered loop that owns one resource and makes
//! the cluster match what its objects declare. They read and write only
//! through the store.

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod replicaset;

use std::time::Duration;

use crate::model::Resource;
use crate::store::Store;

/// How long loops that look at every object wait after a change before
/// their next pass: a burst of writes (a thousand pods created) then costs
/// a few passes, not one per write.
pub const SETTLE: Duration = Duration::from_millis(100);

/// The earlier of two optional delays (a pass's retry and its own deadline).
pub fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `pass` now, and again whenever an object of `resources` changes or
/// when the last pass asked to run again after a delay. A pass looks at the
/// current state (level-triggered), so events are only a wake-up: any number
/// of them coalesce into one pass, and after a change the loop waits
/// `settle` so that the changes right behind it join the same pass.
pub async fn level_loop(
    store: &Store,
    resources: &[&'static Resource],
    settle: Duration,
    mut pass: impl FnMut() -> Option<Duration>,
) {
    loop {
        let Ok(events) = store.watch_many(resources, None, store.resource_version()) else {
            continue;
        };
        let again = pass();
        let changed = async {
            if events.recv().await.is_err() {
                // The store closed the watch (shutdown): idle until the end.
                std::future::pending::<()>().await;
            }
            if !settle.is_zero() {
                smol::Timer::after(settle).await;
            }
        };
        match again {
            Some(delay) => {
                smol::future::or(changed, async {
                    smol::Timer::after(delay).await;
                })
                .await
            }
            None => changed.await,
        }
    }
}
