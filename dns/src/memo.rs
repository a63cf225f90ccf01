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
//! Must not: be shared between threads (each worker owns one: no locks, no atomics per query), or grow
//! beyond one entry per (service, location value) of the database.
//!
//! [`RegionStates::unchanged_until`]: meridian_steer::RegionStates::unchanged_until

use std::sync::Arc;

use meridian_geoip::{GeoDb, LocationId};
use meridian_steer::ServiceIndex;
use meridian_store::Snapshot;

use crate::answer::{Context, Steered};

/// Decisions of one worker, by service and location (see the module documentation).
pub struct DecisionMemo {
    /// The snapshot the entries were decided over. Held, so that its address identifies it: a newer
    /// snapshot can never be allocated where this one lives.
    snapshot: Option<Arc<Snapshot>>,
    /// [`GeoDb::instance`] of the database the location ids belong to.
    geo: u64,
    /// The entries hold for `now_ms` in `from_ms..until_ms`.
    from_ms: u64,
    until_ms: u64,
    /// Per service (allocated on a service's first query).
    tables: Vec<Table>,
    /// Decisions read from the memo instead of made.
    hits: u64,
}

/// One service's decisions, as a sparse set over location ids (Briggs and Torczon): `sparse[id]` says
/// where in `dense` the id's entry is, and is believed only if that entry names the id. Why: forgetting
/// is `dense.clear()`, whatever the number of locations; `sparse` is zero-filled memory that the
/// allocator gets from the kernel untouched, so only the pages of locations actually seen become
/// resident (4 octets per location value at most: 1.5 MB for a city database's 388k values).
#[derive(Default)]
struct Table {
    sparse: Vec<u32>,
    /// (location id, decision; `None` when it depends on the request hash and is made every time).
    dense: Vec<(u32, Option<Steered>)>,
}

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
            tables: Vec::new(),
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
        for table in &mut self.tables {
            table.dense.clear();
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

    /// The decision for a client of `service` at location `id`: from the memo when it holds one, else
    /// from `decide` (remembered unless it depends on the request hash).
    pub(crate) fn decide(
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
            self.tables.resize_with(service.get() + 1, Table::default);
        }
        let table = &mut self.tables[service.get()];
        let ids = ctx.geo.location_ids();
        if table.sparse.len() != ids {
            table.sparse = vec![0; ids];
            table.dense.clear();
        }
        let (Some(slot), Ok(id)) = (table.sparse.get(id.index()).copied(), u32::try_from(id.index())) else {
            return decide();
        };
        if let Some(&(named, remembered)) = table.dense.get(slot as usize)
            && named == id
        {
            if let Some(steered) = remembered {
                self.hits += 1;
                return steered;
            }
            return decide();
        }
        let steered = decide();
        table.sparse[id as usize] = table.dense.len() as u32;
        table
            .dense
            .push((id, (!steered.depends_on_hash).then_some(steered)));
        steered
    }
}
