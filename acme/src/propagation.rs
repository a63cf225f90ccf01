//! Whether every DNS node answers the challenge records yet: each `meridian dns` node registers in the
//! store (`nodes/dns/INSTANCE`, `meridian_store::nodes`) with the store revision its snapshot serves, so
//! once every live DNS node reports a revision at or past the challenge write, all of them answer it.
//!
//! Bounded by `propagation-timeout-ms`: a node that does not catch up in time is named (the order goes
//! on, and the CA may well ask a node that has the records). A node that has stopped reporting (silent
//! for [`NODE_SILENT_AFTER`]: dead, or cut off from the store, its lease not yet expired) is not waited
//! for, but named too.

use std::time::{Duration, Instant};

use meridian_store::nodes::NODE_SILENT_AFTER;
use meridian_store::schema::{NodeReport, decode};
use meridian_store::{Keys, KvStore, Revision, now_ms};

/// How often the registrations are read (nodes report every second).
const POLL: Duration = Duration::from_millis(200);

/// What the wait found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Propagation {
    /// Live DNS nodes that report the revision (or a later one).
    pub(crate) caught_up: Vec<String>,
    /// Live DNS nodes still behind when the wait ended, `INSTANCE (at revision N)`, or why the
    /// registrations could not be read.
    pub(crate) lagging: Vec<String>,
    /// Registered DNS nodes that had not reported for a while (not waited for).
    pub(crate) silent: Vec<String>,
}

/// Waits, at most `limit`, until every live DNS node registered under `keys` reports store revision
/// `revision` or later.
pub(crate) async fn wait_for_dns_nodes(
    store: &dyn KvStore,
    keys: &Keys,
    revision: Revision,
    limit: Duration,
) -> Propagation {
    let prefix = format!("{}dns/", keys.nodes_prefix());
    let deadline = Instant::now() + limit;
    loop {
        let mut found = Propagation::default();
        match store.list(&prefix).await {
            Ok(listing) => {
                let now = now_ms();
                for kv in &listing.kvs {
                    let Ok(report) = decode::<NodeReport>(&kv.value) else {
                        continue;
                    };
                    let age = now.saturating_sub(report.reported_at_ms);
                    if age > NODE_SILENT_AFTER.as_millis() as u64 {
                        found
                            .silent
                            .push(format!("{} (silent for {age} ms)", report.instance));
                    } else if report.revision >= revision {
                        found.caught_up.push(report.instance);
                    } else {
                        found.lagging.push(format!(
                            "{} (at revision {}, the records are at {revision})",
                            report.instance, report.revision
                        ));
                    }
                }
            }
            Err(e) => found
                .lagging
                .push(format!("the DNS nodes' registrations could not be read: {e}")),
        }
        if found.lagging.is_empty() || Instant::now() + POLL > deadline {
            return found;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use meridian_store::EmbeddedStore;
    use meridian_store::schema::encode;

    use super::*;

    fn report(instance: &str, revision: Revision, age_ms: u64) -> Vec<u8> {
        encode(&NodeReport {
            schema: 1,
            role: "dns".into(),
            region: None,
            instance: instance.into(),
            version: "test".into(),
            revision,
            staleness_ms: 0,
            connected: true,
            started_at_ms: 0,
            reported_at_ms: now_ms() - age_ms,
        })
    }

    #[tokio::test]
    async fn waits_for_every_live_dns_node_and_names_the_laggards_and_the_silent() {
        let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
        let keys = Keys::new("/m/").unwrap();
        // A proxy's registration is no DNS node: never waited for.
        store
            .put(&keys.node("proxy", "p1"), report("p1", 1, 0), None)
            .await
            .unwrap();
        store
            .put(&keys.node("dns", "a"), report("a", 100, 0), None)
            .await
            .unwrap();
        store
            .put(&keys.node("dns", "dead"), report("dead", 1, 10_000), None)
            .await
            .unwrap();

        // Everyone live caught up: at once.
        let started = Instant::now();
        let p = wait_for_dns_nodes(store.as_ref(), &keys, 100, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(p.caught_up, ["a"]);
        assert!(p.lagging.is_empty(), "{p:?}");
        assert_eq!(p.silent.len(), 1);
        assert!(p.silent[0].starts_with("dead (silent for "), "{p:?}");

        // A node behind that catches up a while later: the wait ends then.
        store
            .put(&keys.node("dns", "b"), report("b", 99, 0), None)
            .await
            .unwrap();
        let later = {
            let (store, keys) = (store.clone(), keys.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                store
                    .put(&keys.node("dns", "b"), report("b", 100, 0), None)
                    .await
                    .unwrap();
            })
        };
        let started = Instant::now();
        let p = wait_for_dns_nodes(store.as_ref(), &keys, 100, Duration::from_secs(5)).await;
        let took = started.elapsed();
        later.await.unwrap();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(p.caught_up, ["a", "b"]);
        assert!(p.lagging.is_empty(), "{p:?}");

        // A node that never catches up: the wait ends at the bound and names it.
        let started = Instant::now();
        let p = wait_for_dns_nodes(store.as_ref(), &keys, 101, Duration::from_millis(600)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert_eq!(
            p.lagging,
            [
                "a (at revision 100, the records are at 101)",
                "b (at revision 100, the records are at 101)"
            ]
        );
    }
}
