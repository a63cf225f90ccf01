//! Operator state on region states: what weight overrides, drains and drills do to the states steering
//! reads. One rule, used by the [`SnapshotBuilder`](crate::SnapshotBuilder) for every snapshot and by the
//! admin API for its safety checks (region states before and after a change), so the two cannot disagree
//! about a weight's bound or what a drill mode means.

use meridian_steer::{Drill, DrillMode, RegionStates, Topology};

use crate::kv::KeyValue;
use crate::schema::{DrainOverride, DrillDoc, DrillModeDoc, KeyKind, Keys, WeightOverride, decode};

/// A decoded operator document that bears on a region's state, with the name its key gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorDoc {
    /// `overrides/weights/REGION`: the region's weight instead of the configured one.
    Weight {
        /// The region (from the key).
        region: String,
        /// The document.
        doc: WeightOverride,
    },
    /// `overrides/drains/REGION`: the region gets no new clients.
    Drain {
        /// The region (from the key).
        region: String,
        /// The document.
        doc: DrainOverride,
    },
    /// `drills/ID`: the region behaves as down, drained or with less capacity until the drill expires.
    Drill {
        /// The drill's id (from the key).
        id: String,
        /// The document (it names the region).
        doc: DrillDoc,
    },
}

impl OperatorDoc {
    /// The operator document a key holds: `None` if the key is not a weight, drain or drill key;
    /// `Some(Err(why))` if its value does not decode.
    pub fn decode(kind: KeyKind<'_>, value: &[u8]) -> Option<Result<Self, String>> {
        Some(match kind {
            KeyKind::Weight(region) => decode(value).map(|doc| Self::Weight {
                region: region.to_owned(),
                doc,
            }),
            KeyKind::Drain(region) => decode(value).map(|doc| Self::Drain {
                region: region.to_owned(),
                doc,
            }),
            KeyKind::Drill(id) => decode(value).map(|doc| Self::Drill {
                id: id.to_owned(),
                doc,
            }),
            _ => return None,
        })
    }

    /// The operator document at `kv`, under `keys`' layout (as [`OperatorDoc::decode`]).
    pub fn from_kv(keys: &Keys, kv: &KeyValue) -> Option<Result<Self, String>> {
        Self::decode(keys.classify(&kv.key), &kv.value)
    }

    /// The region it is about.
    pub fn region(&self) -> &str {
        match self {
            Self::Weight { region, .. } | Self::Drain { region, .. } => region,
            Self::Drill { doc, .. } => &doc.region,
        }
    }
}

/// Steering's drill mode for a stored one (a capacity above 100% is 100%).
fn drill_mode(mode: DrillModeDoc) -> DrillMode {
    match mode {
        DrillModeDoc::Down => DrillMode::Down,
        DrillModeDoc::Drain => DrillMode::Drain,
        DrillModeDoc::Capacity { percent } => DrillMode::Capacity {
            percent: percent.min(100),
        },
    }
}

/// Overlays operator state onto region states: afterwards every region's weight, drain and drills are
/// what `docs` say, over what the configuration says without them (its configured weight, not drained,
/// no drills); health, load and capacity are left as they are. Documents apply in order.
///
/// A document is skipped when it cannot apply: a weight above [`meridian_config::MAX_WEIGHT`], a region
/// `topology` does not have. Drills apply whether active or expired (every decision compares a drill's
/// expiry with its own time). Returns, for each document in order, `Ok` if applied or why it was skipped
/// (`unknown region "frx" in the current configuration`).
pub fn overlay_operator_state<'a>(
    topology: &Topology,
    states: &mut RegionStates,
    docs: impl IntoIterator<Item = &'a OperatorDoc>,
) -> Vec<Result<(), String>> {
    for region in topology.config().regions() {
        if let Some(s) = topology.region_index(&region.id).and_then(|i| states.get_mut(i)) {
            s.weight = region.weight;
            s.drained = false;
            s.drills.clear();
        }
    }
    docs.into_iter()
        .map(|doc| {
            if let OperatorDoc::Weight { doc: w, .. } = doc
                && w.weight > meridian_config::MAX_WEIGHT
            {
                return Err(format!(
                    "weight {} is above {}",
                    w.weight,
                    meridian_config::MAX_WEIGHT
                ));
            }
            let region = doc.region();
            let state = topology
                .region_index(region)
                .and_then(|i| states.get_mut(i))
                .ok_or_else(|| format!("unknown region {region:?} in the current configuration"))?;
            match doc {
                OperatorDoc::Weight { doc: w, .. } => state.weight = w.weight,
                OperatorDoc::Drain { .. } => state.drained = true,
                OperatorDoc::Drill { id, doc: d } => state.drills.push(Drill {
                    id: id.clone(),
                    mode: drill_mode(d.mode),
                    expires_at_ms: d.expires_at_ms,
                }),
            }
            Ok(())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use meridian_config::Config;
    use meridian_steer::Health;

    use super::*;
    use crate::schema::DOC_SCHEMA;

    fn topology() -> Topology {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/meridian.toml");
        Topology::new(Arc::new(Config::load(std::path::Path::new(path)).unwrap()))
    }

    fn weight(region: &str, weight: u32) -> OperatorDoc {
        OperatorDoc::Weight {
            region: region.to_owned(),
            doc: WeightOverride {
                schema: DOC_SCHEMA,
                weight,
                author: "a".into(),
                reason: "r".into(),
                at_ms: 1,
            },
        }
    }

    fn drain(region: &str) -> OperatorDoc {
        OperatorDoc::Drain {
            region: region.to_owned(),
            doc: DrainOverride {
                schema: DOC_SCHEMA,
                author: "a".into(),
                reason: "r".into(),
                at_ms: 1,
            },
        }
    }

    fn drill(id: &str, region: &str, mode: DrillModeDoc) -> OperatorDoc {
        OperatorDoc::Drill {
            id: id.to_owned(),
            doc: DrillDoc {
                schema: DOC_SCHEMA,
                region: region.to_owned(),
                mode,
                started_at_ms: 1,
                expires_at_ms: 1000,
                author: "a".into(),
                reason: "r".into(),
            },
        }
    }

    #[test]
    fn operator_state_replaces_what_was_there_and_keeps_the_rest() {
        let t = topology();
        let waw = t.region_index("waw").unwrap();
        let fra = t.region_index("fra").unwrap();
        let mut states = RegionStates::initial(t.config());
        // What a snapshot had: health and load stay, its operator state goes.
        {
            let s = states.get_mut(waw).unwrap();
            s.health = Health::Down;
            s.in_flight = Some(7);
            s.drained = true;
            s.weight = 1;
            s.drills.push(Drill {
                id: "old".into(),
                mode: DrillMode::Down,
                expires_at_ms: 5,
            });
        }
        let docs = [
            weight("fra", 50),
            weight("lon", meridian_config::MAX_WEIGHT + 1),
            drain("frx"),
            drill("d1", "fra", DrillModeDoc::Capacity { percent: 250 }),
            drain("fra"),
        ];
        let outcomes = overlay_operator_state(&t, &mut states, &docs);
        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(outcomes[1], Err("weight 10001 is above 10000".to_owned()));
        assert_eq!(
            outcomes[2],
            Err("unknown region \"frx\" in the current configuration".to_owned())
        );
        assert_eq!(outcomes[3..], [Ok(()), Ok(())]);

        let w = states.get(waw).unwrap();
        assert_eq!((w.health, w.in_flight), (Health::Down, Some(7)));
        assert!(!w.drained && w.drills.is_empty());
        assert_eq!(w.weight, t.config().region("waw").unwrap().weight);
        let f = states.get(fra).unwrap();
        assert_eq!(f.weight, 50);
        assert!(f.drained);
        assert_eq!(f.drills[0].mode, DrillMode::Capacity { percent: 100 });
        assert_eq!((f.drills[0].id.as_str(), f.drills[0].expires_at_ms), ("d1", 1000));
        let lon = states.get(t.region_index("lon").unwrap()).unwrap();
        assert_eq!(lon.weight, t.config().region("lon").unwrap().weight);
    }

    #[test]
    fn key_values_decode_by_their_key() {
        let keys = Keys::new("/meridian/").unwrap();
        let kv = |key: String, value: &[u8]| KeyValue {
            key,
            value: value.to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        };
        let w = weight("waw", 5);
        let OperatorDoc::Weight { doc, .. } = &w else {
            unreachable!()
        };
        let encoded = crate::schema::encode(doc);
        assert_eq!(
            OperatorDoc::from_kv(&keys, &kv(keys.weight("waw"), &encoded)),
            Some(Ok(w))
        );
        assert!(matches!(
            OperatorDoc::from_kv(&keys, &kv(keys.drain("waw"), b"garbage")),
            Some(Err(_))
        ));
        assert_eq!(OperatorDoc::from_kv(&keys, &kv(keys.config(), b"{}")), None);
    }
}
