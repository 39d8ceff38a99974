//! Controllers: each a level-triggered loop that owns one resource and makes
//! the cluster match what its objects declare. They read and write only
//! through the store.

pub mod gc;
pub mod namespace;
pub mod replicaset;

use std::time::Duration;

use crate::model::Resource;
use crate::store::Store;

/// Runs `pass` now, and again whenever an object of `resources` changes or
/// when the last pass asked to run again after a delay. A pass looks at the
/// current state (level-triggered), so events are only a wake-up: any number
/// of them coalesce into one pass.
pub async fn level_loop(
    store: &Store,
    resources: &[&'static Resource],
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
