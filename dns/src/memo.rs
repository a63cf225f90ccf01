//! A UDP worker's memo of steering decisions by (service, client location), kept for as long as they
//! cannot change: one snapshot, one GeoIP database, and the time before the first acting drill ends.
//!
//! Why: gdnsd computes a result per network when it loads its map, so a query costs it a lookup. Meridian
//! decides per query, from live state, which cost about a quarter of its own CPU per answer. With the
//! memo the first query from a location decides, and the following ones read the decision — until the
//! snapshot changes (health, weights, load, drills, configuration), which forgets everything at once.
//!
//! Exact, not approximate. A decision is a function of the snapshot, the client's location, the time and
//! the request hash. The memo is keyed by the first two (the snapshot by identity, the location by its
//! [`LocationId`] in one database); it trusts [`RegionStates::unchanged_until`] for the time; and it keeps
//! only decisions that do not depend on the hash (`Decision::depends_on_hash`: weighted choices, near
//! ties and spill draws are decided every time). The steer crate's property tests hold it to both
//! promises; `memo_changes_no_answer` (tests/fast_path.rs) checks that answers with and without the memo
//! are byte for byte the same, across snapshot, database and drill changes.
//!
//! Built on [`crate::decide`] (the memo depends on the decision, never the other way round): it only
//! chooses whether to decide; what it remembers is `decide`'s own decision.
//!
//! Must not: be shared between threads (each worker owns one: no locks, no atomics per query), or grow
//! beyond one entry per (service, location value) of the database.
//!
//! [`RegionStates::unchanged_until`]: meridian_steer::RegionStates::unchanged_until

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use meridian_geoip::{GeoDb, LocationId};
use meridian_steer::ServiceIndex;
use meridian_store::Snapshot;

use crate::context::Context;
use crate::decide::{self, Steered};

/// Decisions of one worker, by service and location (see the module documentation).
///
/// Storage: per service, one `u32` per location id of the database, saying which of the (few) distinct
/// decisions of the current epoch that location has. Why this shape: a lookup is one read at a random
/// place (the location) followed by one in a short, cache-resident list, where a map or a sparse set
/// costs two cache misses; and forgetting is starting a new epoch, O(1), whatever the number of entries.
/// The per-location tables are zero-filled memory, which the allocator gets untouched from the kernel:
/// only the pages of locations actually seen become resident (4 octets per location value at most,
/// 1.5 MB for a city database's 388k values).
pub struct DecisionMemo {
    /// The snapshot the entries were decided over. Held, so that its address identifies it: a newer
    /// snapshot can never be allocated where this one lives.
    snapshot: Option<Arc<Snapshot>>,
    /// [`GeoDb::instance`] of the database the location ids belong to.
    geo: u64,
    /// The entries hold for `now_ms` in `from_ms..until_ms`.
    from_ms: u64,
    until_ms: u64,
    /// The current epoch, never 0 (the zero-filled tables name no epoch). An entry written in an earlier
    /// epoch is not believed.
    epoch: u16,
    /// Per service (allocated on a service's first query): [`Entry`] by location id.
    tables: Vec<Vec<u32>>,
    /// The distinct decisions of this epoch; `None` stands for "depends on the request hash: decide every
    /// time". An entry names one by its position.
    decisions: Vec<Option<Steered>>,
    /// Position of each decision in `decisions` (consulted only when a location is first seen).
    positions: HashMap<Option<Steered>, u16, foldhash::fast::RandomState>,
    /// Decisions read from the memo instead of made.
    hits: u64,
}

/// Encoding of a table entry: the epoch in the high 16 bits, the decision's position plus one in the low
/// 16 (0: none).
struct Entry;

impl Entry {
    fn encode(epoch: u16, position: u16) -> u32 {
        (u32::from(epoch) << 16) | (u32::from(position) + 1)
    }

    /// The position named by `entry` if it was written in `epoch`.
    fn position(entry: u32, epoch: u16) -> Option<usize> {
        let low = entry & 0xFFFF;
        ((entry >> 16) == u32::from(epoch) && low != 0).then(|| (low - 1) as usize)
    }
}

/// At most this many distinct decisions per epoch (what the entry encoding can name); beyond them the
/// memo stops remembering until it next forgets.
const MAX_DECISIONS: usize = 0xFFFF;

impl Default for DecisionMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl DecisionMemo {
    /// An empty memo.
    pub fn new() -> Self {
        Self {
            snapshot: None,
            geo: 0,
            from_ms: 0,
            until_ms: 0,
            epoch: 1,
            tables: Vec::new(),
            decisions: Vec::new(),
            positions: HashMap::default(),
            hits: 0,
        }
    }

    /// Readies the memo for answering from `snapshot` with `geo` at `now_ms`: keeps what still holds,
    /// forgets the rest. Call it before answering with a context built from the same three.
    pub fn prepare(&mut self, snapshot: &Arc<Snapshot>, geo: &GeoDb, now_ms: u64) {
        if geo.instance() != self.geo {
            // Location ids of another database: the tables were sized for the old one; drop them.
            self.tables.clear();
            self.geo = geo.instance();
            self.forget(snapshot, now_ms);
            return;
        }
        let same_snapshot = self.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, snapshot));
        if !same_snapshot || !(self.from_ms..self.until_ms).contains(&now_ms) {
            self.forget(snapshot, now_ms);
        }
    }

    fn forget(&mut self, snapshot: &Arc<Snapshot>, now_ms: u64) {
        self.snapshot = Some(snapshot.clone());
        self.from_ms = now_ms;
        self.until_ms = snapshot.states.unchanged_until(now_ms);
        self.decisions.clear();
        self.positions.clear();
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Every epoch number has been used: entries of 65,535 epochs ago would look current. Start
            // the tables afresh (once per 65,535 forgets).
            for table in &mut self.tables {
                *table = vec![0; table.len()];
            }
            self.epoch = 1;
        }
    }

    /// How many decisions were read from the memo rather than made, since it was created.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Whether the entries hold for answering with `ctx` (prepared with its snapshot, database and time).
    fn holds_for(&self, ctx: &Context<'_>) -> bool {
        self.snapshot
            .as_ref()
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), ctx.snapshot))
            && ctx.geo.instance() == self.geo
            && (self.from_ms..self.until_ms).contains(&ctx.now_ms)
    }

    /// [`decide::steer_client`], through the memo: locates the client by its location id, and reads the
    /// location itself and decides only when the memo has no decision for it. Clients without a location
    /// id (a database whose indexes could not be built) are decided every time.
    pub(crate) fn steer_client(
        &mut self,
        ctx: &Context<'_>,
        service: ServiceIndex,
        ecs: Option<(IpAddr, u8)>,
        src: IpAddr,
    ) -> (Steered, Option<u8>) {
        let client_ip = decide::client_ip(ecs, src);
        let Some((id, prefix_len)) = ctx.geo.locate_id(client_ip) else {
            return decide::steer_client(ctx, service, ecs, src);
        };
        let steered = self.recall_or(ctx, service, id, || {
            let location = ctx.geo.location(id).map_or((None, None, None), |l| l.parts());
            decide::decide(ctx, service, client_ip, location)
        });
        (steered, decide::scope(ecs, &steered, prefix_len, client_ip))
    }

    /// The decision for a client of `service` at location `id`: from the memo when it holds one, else
    /// from `decide` (remembered unless it depends on the request hash).
    fn recall_or(
        &mut self,
        ctx: &Context<'_>,
        service: ServiceIndex,
        id: LocationId,
        decide: impl FnOnce() -> Steered,
    ) -> Steered {
        if !self.holds_for(ctx) {
            return decide();
        }
        if self.tables.len() <= service.get() {
            self.tables.resize_with(service.get() + 1, Vec::new);
        }
        let table = &mut self.tables[service.get()];
        let ids = ctx.geo.location_ids();
        if table.len() != ids {
            *table = vec![0; ids];
        }
        let Some(entry) = table.get_mut(id.index()) else {
            return decide();
        };
        if let Some(position) = Entry::position(*entry, self.epoch) {
            if let Some(Some(steered)) = self.decisions.get(position).copied() {
                self.hits += 1;
                return steered;
            }
            return decide();
        }
        let steered = decide();
        let remembered = (!steered.depends_on_hash).then_some(steered);
        let position = match self.positions.get(&remembered) {
            Some(&p) => p,
            None if self.decisions.len() < MAX_DECISIONS => {
                let p = self.decisions.len() as u16;
                self.decisions.push(remembered);
                self.positions.insert(remembered, p);
                p
            }
            None => return steered,
        };
        *entry = Entry::encode(self.epoch, position);
        steered
    }
}
