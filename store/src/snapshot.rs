//! From the store to an immutable [`Snapshot`]: what a DNS query or a proxied request reads.
//!
//! [`SnapshotBuilder`] is pure: it holds the decoded documents under the prefix and assembles a snapshot
//! from them. Documents are decoded once, when their key changes; a bad document (garbage, a schema
//! version this build does not read, a reference to an unknown region) is reported in
//! [`Snapshot::problems`] and skipped. An invalid configuration in the store does not replace a valid
//! one: the last good configuration stays, with a problem saying so.
//!
//! Health: the builder turns the probers' observations into region health with the pure
//! `meridian_health::aggregate`, at the time it is given, remembering the previous result (a region nobody
//! sees keeps its last state; transitions keep their start time). The watcher calls it again on a timer,
//! since opinions go stale with time, not only with store events.
//!
//! Health per zone (docs/deployment.md, "The Atlantic cut"): with a *health store* (the zone's own etcd
//! cluster), what must keep working inside a zone — prober opinions, load reports, latency summaries
//! ([`KeyKind::is_zone_scoped`]) — comes from it and only from it, and everything else (configuration,
//! operator state, ACME) from the global store. The builder keeps the two sources apart
//! ([`SnapshotBuilder::with_health_store`], [`SnapshotBuilder::reset_health`],
//! [`SnapshotBuilder::apply_health`]) and builds one snapshot from both.

use std::collections::BTreeMap;
use std::sync::Arc;

use meridian_config::Config;
use meridian_health::{HealthView, Opinion, RegionOpinions, State, aggregate};
use meridian_steer::{Health, LatencyArea, LatencyMatrix, Measured, RegionStates, Topology};

use crate::kv::{Event, EventKind, KeyValue, Revision};
use crate::operator::{OperatorDoc, overlay_operator_state};
use crate::schema::*;

/// Where a snapshot's configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// The store's `config` key, changed last at `revision`.
    Store {
        /// `mod_revision` of the config key.
        revision: Revision,
        /// Who applied it.
        author: String,
        /// When.
        applied_at_ms: u64,
    },
    /// No configuration in the store (yet): the one this process was started with.
    Bootstrap,
}

/// Everything a decision needs, as of one store revision. Immutable; replaced, never modified.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Store revision this reflects.
    pub revision: Revision,
    /// Compiled configuration.
    pub topology: Arc<Topology>,
    /// Where the configuration came from.
    pub config_source: ConfigSource,
    /// Region state for steering: overrides, drills, load and aggregated health applied.
    pub states: RegionStates,
    /// Aggregated health per region (configuration order), with the opinions behind it, whether it is
    /// stale and whether the panic threshold is in force.
    pub health: HealthView,
    /// Every prober opinion: (target, vantage, observation).
    pub observations: Vec<(String, String, HealthObservation)>,
    /// Every load report: (region, instance, report).
    pub loads: Vec<(String, String, LoadReport)>,
    /// Every latency summary: (region, instance, report). Merged into `states.latency()` for steering.
    pub latency_reports: Vec<(String, String, LatencyReport)>,
    /// Every drill document, active or expired: (id, drill).
    pub drills: Vec<(String, DrillDoc)>,
    /// Operator drains in force: (region, who and why).
    pub drains: Vec<(String, DrainOverride)>,
    /// Operator weight overrides in force: (region, override).
    pub weights: Vec<(String, WeightOverride)>,
    /// Backends drained at the proxies: (service, backend address as written in the key, who and why).
    pub backend_drains: Vec<(String, String, DrainOverride)>,
    /// Values that were skipped, and why (`/meridian/overrides/weights/waw: not JSON: ...`).
    pub problems: Vec<String>,
    /// DNS-01 answers being validated now: owner name (`_acme-challenge.meet.gslb.example`, lower case,
    /// no trailing dot) -> TXT values. The same `Arc` while no challenge key changes, so that DNS rebuilds
    /// its zones only when they do.
    pub acme_challenges: Arc<BTreeMap<String, Vec<String>>>,
    /// The store revision at which the challenges last changed (0: never): DNS's SOA serial follows it.
    pub acme_challenges_revision: Revision,
    /// The health store's revision this reflects (`None`: no health store; health, load and latency come
    /// from the global store, whose revision is `revision`).
    pub health_revision: Option<Revision>,
    /// ACME certificates: (id, certificate with its sealed key).
    pub acme_certs: Vec<(String, AcmeCertDoc)>,
    /// How ordering each ACME certificate went last: (id, status).
    pub acme_status: Vec<(String, AcmeStatusDoc)>,
}

/// A decoded document.
#[derive(Clone, Debug)]
enum Doc {
    Config(ConfigDoc),
    /// A weight override, a drain or a drill.
    Operator(OperatorDoc),
    BackendDrain(DrainOverride),
    Health(HealthObservation),
    Load(LoadReport),
    AcmeChallenge(AcmeChallengeDoc),
    AcmeCert(AcmeCertDoc),
    AcmeStatus(AcmeStatusDoc),
    Latency(LatencyReport),
}

#[derive(Clone, Debug)]
struct Entry {
    kv: KeyValue,
    doc: Result<Doc, String>,
}

/// The decoded contents of the prefix, kept current by applying watch events.
#[derive(Clone, Debug)]
pub struct SnapshotBuilder {
    keys: Keys,
    entries: BTreeMap<String, Entry>,
    revision: Revision,
    bootstrap: Option<Arc<Config>>,
    /// The last configuration that validated, and its revision (0 = bootstrap): kept when a newer one is
    /// invalid, and reused (not recompiled) while the config key does not change.
    last_good: Option<(Revision, Arc<Topology>, ConfigSource)>,
    /// The last aggregated health: a region without fresh opinions keeps its state from here.
    health: HealthView,
    /// The ACME challenge answers as of the last build, rebuilt only when a challenge key changed.
    challenges: Arc<BTreeMap<String, Vec<String>>>,
    challenges_dirty: bool,
    challenges_revision: Revision,
    /// With a health store: its zone-scoped documents and its revision (the global store's copies of such
    /// keys are then ignored).
    health_store: Option<(BTreeMap<String, Entry>, Revision)>,
}

impl SnapshotBuilder {
    /// A builder for `keys`, falling back to `bootstrap` while the store holds no configuration.
    pub fn new(keys: Keys, bootstrap: Option<Arc<Config>>) -> Self {
        Self {
            keys,
            entries: BTreeMap::new(),
            revision: 0,
            bootstrap,
            last_good: None,
            health: HealthView::default(),
            challenges: Arc::default(),
            challenges_dirty: false,
            challenges_revision: 0,
            health_store: None,
        }
    }

    /// Takes prober opinions, load reports and latency summaries from a health store of their own
    /// ([`SnapshotBuilder::reset_health`], [`SnapshotBuilder::apply_health`]); the global store's keys of
    /// those kinds are ignored from now on.
    pub fn with_health_store(mut self) -> Self {
        self.health_store = Some((BTreeMap::new(), 0));
        self.entries
            .retain(|k, _| !self.keys.classify(k).is_zone_scoped());
        self
    }

    /// The health store's revision applied last (`None` without one).
    pub fn health_revision(&self) -> Option<Revision> {
        self.health_store.as_ref().map(|(_, r)| *r)
    }

    /// Replaces everything from the health store with a listing of it (no-op without a health store).
    pub fn reset_health(&mut self, kvs: Vec<KeyValue>, revision: Revision) {
        let keys = self.keys.clone();
        if let Some((entries, rev)) = &mut self.health_store {
            entries.clear();
            for kv in kvs {
                let entry = health_entry(&keys, kv);
                entries.insert(entry.kv.key.clone(), entry);
            }
            *rev = revision;
        }
    }

    /// Applies the health store's watch events; `false` when there is no health store.
    pub fn apply_health(&mut self, events: Vec<Event>, revision: Revision) -> bool {
        let keys = self.keys.clone();
        let Some((entries, rev)) = &mut self.health_store else {
            return false;
        };
        for e in events {
            match e.kind {
                EventKind::Put => {
                    let entry = health_entry(&keys, e.kv);
                    entries.insert(entry.kv.key.clone(), entry);
                }
                EventKind::Delete => {
                    entries.remove(&e.kv.key);
                }
            }
        }
        *rev = (*rev).max(revision);
        true
    }

    /// Confirms the health store is in sync up to `revision` (progress).
    pub fn confirm_health(&mut self, revision: Revision) {
        if let Some((_, rev)) = &mut self.health_store {
            *rev = (*rev).max(revision);
        }
    }

    /// The revision applied last.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Replaces everything with a listing.
    pub fn reset(&mut self, kvs: Vec<KeyValue>, revision: Revision) {
        let before = self.challenge_keys();
        self.entries.clear();
        for kv in kvs {
            self.insert(kv);
        }
        self.revision = revision;
        // The challenge records' revision moves only if they changed (a DNS serial that follows it
        // stays the configuration's otherwise); a record deleted while unseen counts at the listing.
        let after = self.challenge_keys();
        if before != after {
            self.challenges_dirty = true;
            let removed = before.iter().any(|k| !after.contains(k));
            let newest = after.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
            self.challenges_revision =
                self.challenges_revision
                    .max(newest)
                    .max(if removed { revision } else { 0 });
        }
    }

    /// The challenge keys held, with their revisions.
    fn challenge_keys(&self) -> Vec<(String, Revision)> {
        self.entries
            .iter()
            .filter(|(k, _)| matches!(self.keys.classify(k), KeyKind::AcmeChallenge(_)))
            .map(|(k, e)| (k.clone(), e.kv.mod_revision))
            .collect()
    }

    /// Applies watch events; `false` when none of them can change a snapshot (only audit records and
    /// node registrations, which no decision reads): the caller need not build a new one.
    pub fn apply(&mut self, events: Vec<Event>, revision: Revision) -> bool {
        let zoned = self.health_store.is_some();
        let relevant = events.iter().any(|e| {
            let kind = self.keys.classify(&e.kv.key);
            let unread = matches!(
                kind,
                KeyKind::Audit
                    | KeyKind::Node
                    | KeyKind::AcmeLock
                    | KeyKind::AcmeAccount
                    | KeyKind::NotifySender
                    | KeyKind::NotifySent
            );
            // With a health store, the global store's zone-scoped keys are ignored too.
            let ignored = zoned && kind.is_zone_scoped();
            !(unread || ignored)
        });
        for e in events {
            if let KeyKind::AcmeChallenge(_) = self.keys.classify(&e.kv.key) {
                self.challenges_dirty = true;
                self.challenges_revision = self.challenges_revision.max(e.kv.mod_revision).max(revision);
            }
            match e.kind {
                EventKind::Put => self.insert(e.kv),
                EventKind::Delete => {
                    self.entries.remove(&e.kv.key);
                }
            }
        }
        self.revision = self.revision.max(revision);
        relevant
    }

    /// Confirms the builder is in sync up to `revision` (progress).
    pub fn confirm(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
    }

    /// The raw key-values (for the snapshot cache file).
    pub fn key_values(&self) -> impl Iterator<Item = &KeyValue> {
        self.entries.values().map(|e| &e.kv)
    }

    fn insert(&mut self, kv: KeyValue) {
        if self.health_store.is_some() && self.keys.classify(&kv.key).is_zone_scoped() {
            // Left behind by a node still writing to the global store (a deployment moving to health
            // per zone): the health store is the one source of these.
            return;
        }
        let doc = match self.keys.classify(&kv.key) {
            // The audit log only grows and no decision reads it, nor node registrations: not kept.
            KeyKind::Audit | KeyKind::Node => return,
            // The lock and the account concern the ordering node only, which reads them itself.
            KeyKind::AcmeLock | KeyKind::AcmeAccount => return,
            // Who sends the fleet's webhook events concerns the notifiers only.
            KeyKind::NotifySender | KeyKind::NotifySent => return,
            KeyKind::AcmeChallenge(_) => decode(&kv.value).map(Doc::AcmeChallenge),
            KeyKind::AcmeCert(_) => decode(&kv.value).map(Doc::AcmeCert),
            KeyKind::AcmeStatus(_) => decode(&kv.value).map(Doc::AcmeStatus),
            KeyKind::Config => decode(&kv.value).map(Doc::Config),
            kind @ (KeyKind::Weight(_) | KeyKind::Drain(_) | KeyKind::Drill(_)) => {
                match OperatorDoc::decode(kind, &kv.value) {
                    Some(doc) => doc.map(Doc::Operator),
                    None => Err("document does not match its key".to_owned()),
                }
            }
            KeyKind::BackendDrain { .. } => decode(&kv.value).map(Doc::BackendDrain),
            KeyKind::Health { .. } => decode(&kv.value).map(Doc::Health),
            KeyKind::Load { .. } => decode(&kv.value).map(Doc::Load),
            KeyKind::Latency { .. } => decode(&kv.value).map(Doc::Latency),
            KeyKind::Unknown => Err("unknown key (not part of schema 1)".to_owned()),
        };
        self.entries.insert(kv.key.clone(), Entry { kv, doc });
    }

    /// Assembles a snapshot as of `now_ms` (ms since the epoch: it decides which health opinions are still
    /// fresh); `None` while there is no configuration at all (none in the store, none to start with).
    pub fn build(&mut self, now_ms: u64) -> Option<Snapshot> {
        let mut problems = Vec::new();
        let topology = self.topology(&mut problems)?;
        let (topology, config_source) = (topology.0, topology.1);
        let config = topology.config().clone();
        let mut states = RegionStates::initial(&config);
        let mut observations = Vec::new();
        let mut loads = Vec::new();
        let mut latency_reports = Vec::new();
        let mut latency = LatencyMatrix::new(config.regions().len());
        let mut drills = Vec::new();
        let mut drains = Vec::new();
        let mut weights = Vec::new();
        let mut backend_drains = Vec::new();
        let mut acme_certs = Vec::new();
        let mut acme_status = Vec::new();
        let mut load_sum: BTreeMap<&str, (u32, Option<u32>)> = BTreeMap::new();
        let mut opinions: BTreeMap<&str, Vec<Opinion>> = BTreeMap::new();

        // Weights, drains and drills: the rule the admin API's safety checks apply too. One outcome per
        // operator document, in the entries' order (the order of the loop below, which reports them).
        let operator_docs = self.entries.values().filter_map(|e| match &e.doc {
            Ok(Doc::Operator(d)) => Some(d),
            _ => None,
        });
        let mut outcomes = overlay_operator_state(&topology, &mut states, operator_docs).into_iter();

        let health_entries = self.health_store.iter().flat_map(|(entries, _)| entries.iter());
        for (key, entry) in self.entries.iter().chain(health_entries) {
            let doc = match &entry.doc {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    continue;
                }
            };
            let kind = self.keys.classify(key);
            let region_index = |region: &str, problems: &mut Vec<String>| {
                let idx = topology.region_index(region);
                if idx.is_none() {
                    problems.push(format!(
                        "{key}: unknown region {region:?} in the current configuration"
                    ));
                }
                idx
            };
            match (kind, doc) {
                (KeyKind::Config, Doc::Config(_)) => {}
                (_, Doc::Operator(op)) => {
                    let applied = match outcomes.next() {
                        Some(Err(why)) => {
                            problems.push(format!("{key}: {why}"));
                            false
                        }
                        _ => true,
                    };
                    match op {
                        OperatorDoc::Weight { region, doc } if applied => {
                            weights.push((region.clone(), doc.clone()));
                        }
                        OperatorDoc::Drain { region, doc } if applied => {
                            drains.push((region.clone(), doc.clone()));
                        }
                        // Listed even when its region is unknown (status shows it).
                        OperatorDoc::Drill { id, doc } => drills.push((id.clone(), doc.clone())),
                        _ => {}
                    }
                }
                (KeyKind::BackendDrain { service, backend }, Doc::BackendDrain(d)) => {
                    if config.services().iter().any(|s| s.name == service) {
                        backend_drains.push((service.to_owned(), backend.to_owned(), d.clone()));
                    } else {
                        problems.push(format!(
                            "{key}: unknown service {service:?} in the current configuration"
                        ));
                    }
                }
                (KeyKind::Health { target, vantage }, Doc::Health(h)) => {
                    if region_index(target, &mut problems).is_some() {
                        opinions.entry(target).or_default().push(Opinion {
                            vantage: vantage.to_owned(),
                            healthy: h.healthy,
                            observed_at_ms: h.observed_at_ms,
                        });
                    }
                    observations.push((target.to_owned(), vantage.to_owned(), h.clone()));
                }
                (KeyKind::Load { region, instance }, Doc::Load(l)) => {
                    if region_index(region, &mut problems).is_some() {
                        let sum = load_sum.entry(region).or_insert((0, None));
                        sum.0 = sum.0.saturating_add(l.in_flight);
                        if let Some(c) = l.capacity {
                            sum.1 = Some(sum.1.unwrap_or(0).saturating_add(c));
                        }
                    }
                    loads.push((region.to_owned(), instance.to_owned(), l.clone()));
                }
                (KeyKind::AcmeChallenge(_), Doc::AcmeChallenge(_)) => {}
                (KeyKind::AcmeCert(id), Doc::AcmeCert(c)) => acme_certs.push((id.to_owned(), c.clone())),
                (KeyKind::AcmeStatus(id), Doc::AcmeStatus(st)) => {
                    acme_status.push((id.to_owned(), st.clone()))
                }
                (KeyKind::Latency { region, instance }, Doc::Latency(l)) => {
                    if let Some(r) = region_index(region, &mut problems) {
                        // A bad area is reported, the rest of the summary is used.
                        for a in &l.areas {
                            match a.area.parse::<LatencyArea>() {
                                Ok(area) => latency.add(
                                    area,
                                    r,
                                    Measured {
                                        rtt_ms: a.rtt_ms as f32,
                                        samples: a.samples,
                                        updated_at_ms: l.reported_at_ms,
                                    },
                                ),
                                Err(e) => problems.push(format!("{key}: {e}")),
                            }
                        }
                    }
                    latency_reports.push((region.to_owned(), instance.to_owned(), l.clone()));
                }
                _ => problems.push(format!("{key}: document does not match its key")),
            }
        }
        if self.challenges_dirty {
            let mut challenges: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (key, entry) in &self.entries {
                if let (KeyKind::AcmeChallenge(name), Ok(Doc::AcmeChallenge(c))) =
                    (self.keys.classify(key), &entry.doc)
                {
                    let base = name.strip_prefix("*.").unwrap_or(name).to_ascii_lowercase();
                    let values = challenges.entry(format!("_acme-challenge.{base}")).or_default();
                    values.extend(c.values.iter().cloned());
                    values.sort();
                    values.dedup();
                }
            }
            self.challenges = Arc::new(challenges);
            self.challenges_dirty = false;
        }
        for (region, (in_flight, capacity)) in load_sum {
            if let Some(s) = topology.region_index(region).and_then(|i| states.get_mut(i)) {
                s.in_flight = Some(in_flight);
                if let Some(c) = capacity.filter(|c| *c > 0) {
                    s.capacity = c;
                }
            }
        }
        let inputs: Vec<RegionOpinions> = config
            .regions()
            .iter()
            .map(|r| RegionOpinions {
                region: r.id.clone(),
                probed: !r.health_checks.is_empty(),
                opinions: opinions.remove(r.id.as_str()).unwrap_or_default(),
            })
            .collect();
        let health = aggregate(&self.health, &inputs, config.health(), now_ms);
        for h in &health.regions {
            if let Some(s) = topology.region_index(&h.region).and_then(|r| states.get_mut(r)) {
                s.health = match h.state {
                    State::Up => Health::Up,
                    State::Down => Health::Down,
                    State::Unknown => Health::Unknown,
                };
            }
        }
        self.health = health.clone();
        let states = states.with_latency(Arc::new(latency));
        Some(Snapshot {
            revision: self.revision,
            topology,
            config_source,
            states,
            health,
            observations,
            loads,
            latency_reports,
            drills,
            drains,
            weights,
            backend_drains,
            problems,
            acme_challenges: self.challenges.clone(),
            acme_challenges_revision: self.challenges_revision,
            health_revision: self.health_revision(),
            acme_certs,
            acme_status,
        })
    }

    /// The topology to use: the store's configuration if valid, else the last good one, else bootstrap.
    fn topology(&mut self, problems: &mut Vec<String>) -> Option<(Arc<Topology>, ConfigSource)> {
        let key = self.keys.config();
        // A config key that does not decode is reported with the other entries.
        if let Some(Entry {
            kv,
            doc: Ok(Doc::Config(doc)),
        }) = self.entries.get(&key)
        {
            if let Some((rev, topo, source)) = &self.last_good
                && *rev == kv.mod_revision
            {
                return Some((topo.clone(), source.clone()));
            }
            match Config::from_toml_str(&doc.toml) {
                Ok(config) => {
                    let topo = Arc::new(Topology::new(Arc::new(config)));
                    let source = ConfigSource::Store {
                        revision: kv.mod_revision,
                        author: doc.author.clone(),
                        applied_at_ms: doc.applied_at_ms,
                    };
                    self.last_good = Some((kv.mod_revision, topo.clone(), source.clone()));
                    return Some((topo, source));
                }
                Err(e) => problems.push(format!(
                    "{key}: the configuration at revision {} is invalid, keeping the last good one: {e}",
                    kv.mod_revision
                )),
            }
        }
        if let Some((_, topo, source)) = &self.last_good {
            return Some((topo.clone(), source.clone()));
        }
        let config = self.bootstrap.clone()?;
        let topo = Arc::new(Topology::new(config));
        self.last_good = Some((0, topo.clone(), ConfigSource::Bootstrap));
        Some((topo, ConfigSource::Bootstrap))
    }
}

/// A health store's key decoded: only zone-scoped kinds belong there; anything else is reported (in the
/// snapshot's problems) and never used — configuration and operator state live in the global store.
fn health_entry(keys: &Keys, kv: KeyValue) -> Entry {
    let doc = match keys.classify(&kv.key) {
        KeyKind::Health { .. } => decode(&kv.value).map(Doc::Health),
        KeyKind::Load { .. } => decode(&kv.value).map(Doc::Load),
        KeyKind::Latency { .. } => decode(&kv.value).map(Doc::Latency),
        _ => Err("in the health store, which holds health/, load/ and latency/ only: ignored".to_owned()),
    };
    Entry { kv, doc }
}
