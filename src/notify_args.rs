//! `--notify FILE`, shared by every long-running command (`up`, `dns`, `proxy`, `health`): the webhook
//! notifications file, read and checked at start, and the notifier it starts over the node
//! ([`meridian_admin::notify`]). Every node with the flag sends its own events (its rate limiting, its
//! store connection); the fleet's (regions, drills) are sent by one of them, the holder of a store lock.

use std::path::PathBuf;

use meridian_admin::notify::{Fleet, Notifier, Surge};
use meridian_config::notifications::Notifications;

use crate::node::Node;

/// `--notify`.
#[derive(clap::Args, Default)]
pub(crate) struct NotifyArgs {
    /// Webhook notifications: which events go to which webhooks (docs/dashboard.md). Checked at start.
    /// The fleet's events (regions, drills) are sent once, by one of the nodes given this flag.
    #[arg(long, value_name = "FILE")]
    pub(crate) notify: Option<PathBuf>,
}

impl NotifyArgs {
    /// Reads and checks the file: every problem with its path, before anything listens.
    pub(crate) fn load(&self) -> anyhow::Result<Option<Notifications>> {
        let Some(p) = &self.notify else {
            return Ok(None);
        };
        Notifications::from_file(p).map(Some).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("--notify {}: invalid:\n  {}", p.display(), list.join("\n  "))
        })
    }
}

/// Starts notifying `notifications`' webhooks of `node`'s events (`surges`: the node's rate limiters),
/// `holder` (`ROLE/INSTANCE`) naming it in payloads and in the fleet sender's lock.
pub(crate) fn start(
    notifications: Option<&Notifications>,
    node: &Node,
    surges: Vec<Surge>,
    holder: &str,
) -> anyhow::Result<Option<Notifier>> {
    let Some(n) = notifications else {
        return Ok(None);
    };
    let fleet = Fleet {
        store: node.store.clone(),
        keys: node.keys.clone(),
        holder: holder.to_owned(),
    };
    meridian_admin::notify::start(n, node.watcher.clone(), surges, fleet, &node.registry, holder)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--notify: {e}"))
}

/// Stops `notifier`, if any, handing the fleet's events over to another node at once.
pub(crate) async fn stop(notifier: Option<Notifier>) {
    if let Some(n) = notifier {
        n.stop().await;
    }
}
