//! Region state given on the command line (`--down waw --load fra=7000 --drill sbg=capacity=50`), for asking
//! "what if" of `explain` before a live state store is in the picture.

use anyhow::{Context, anyhow, bail};
use meridian_steer::{Health, RegionIndex, RegionStates, Topology};
use meridian_store::schema::{DOC_SCHEMA, DrainOverride, DrillDoc, WeightOverride};
use meridian_store::{OperatorDoc, overlay_operator_state};

/// State overrides, as parsed from flags.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct StateFlags {
    /// Treat REGION as up (health checks pass). Repeatable.
    #[arg(long = "up", value_name = "REGION")]
    pub(crate) up: Vec<String>,
    /// Treat REGION as down (health checks fail). Repeatable.
    #[arg(long = "down", value_name = "REGION")]
    pub(crate) down: Vec<String>,
    /// Treat REGION as drained by an operator. Repeatable.
    #[arg(long = "drain", value_name = "REGION")]
    pub(crate) drain: Vec<String>,
    /// Override a region's weight: REGION=N. Repeatable.
    #[arg(long = "weight", value_name = "REGION=N")]
    pub(crate) weight: Vec<String>,
    /// Requests in flight in a region: REGION=N. Repeatable.
    #[arg(long = "load", value_name = "REGION=N")]
    pub(crate) load: Vec<String>,
    /// An active drill: REGION=down, REGION=drain or REGION=capacity=PCT (as `drill start --mode`).
    /// Repeatable.
    #[arg(long = "drill", value_name = "REGION=MODE")]
    pub(crate) drill: Vec<String>,
}

/// The drills simulated here never expire during the command.
const FOREVER: u64 = u64::MAX;
/// Who the simulated operator documents are by.
const AUTHOR: &str = "meridian explain";

impl StateFlags {
    /// Whether any state was given.
    pub(crate) fn any(&self) -> bool {
        !(self.up.is_empty()
            && self.down.is_empty()
            && self.drain.is_empty()
            && self.weight.is_empty()
            && self.load.is_empty()
            && self.drill.is_empty())
    }

    /// Applies the flags to the initial state of `topology`'s regions.
    pub(crate) fn states(&self, topology: &Topology) -> anyhow::Result<RegionStates> {
        let mut states = RegionStates::initial(topology.config());
        let region = |flag: &str, id: &str| -> anyhow::Result<RegionIndex> {
            topology.region_index(id).ok_or_else(|| {
                let known: Vec<&str> = topology
                    .config()
                    .regions()
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect();
                anyhow!("--{flag}: unknown region {id:?} (known: {})", known.join(", "))
            })
        };
        let split = |flag: &str, arg: &str| -> anyhow::Result<(RegionIndex, String)> {
            let (id, value) = arg
                .split_once('=')
                .ok_or_else(|| anyhow!("--{flag} {arg:?}: expected REGION=VALUE"))?;
            Ok((region(flag, id)?, value.to_owned()))
        };
        for (flag, list, health) in [("up", &self.up, Health::Up), ("down", &self.down, Health::Down)] {
            for id in list {
                state(&mut states, region(flag, id)?)?.health = health;
            }
        }
        // Weights, drains and drills are operator state: laid over as a snapshot lays the store's over
        // (`overlay_operator_state`), drill modes read as `drill start` reads them.
        let mut docs = Vec::new();
        for id in &self.drain {
            region("drain", id)?;
            docs.push(OperatorDoc::Drain {
                region: id.clone(),
                doc: DrainOverride {
                    schema: DOC_SCHEMA,
                    author: AUTHOR.to_owned(),
                    reason: String::new(),
                    at_ms: 0,
                },
            });
        }
        for arg in &self.weight {
            let (r, v) = split("weight", arg)?;
            let weight: u32 = v
                .parse()
                .with_context(|| format!("--weight {arg:?}: {v:?} is not a whole number"))?;
            if weight > meridian_config::MAX_WEIGHT {
                bail!("--weight {arg:?}: at most {}", meridian_config::MAX_WEIGHT);
            }
            docs.push(OperatorDoc::Weight {
                region: topology.region_id(r).to_owned(),
                doc: WeightOverride {
                    schema: DOC_SCHEMA,
                    weight,
                    author: AUTHOR.to_owned(),
                    reason: String::new(),
                    at_ms: 0,
                },
            });
        }
        for (i, arg) in self.drill.iter().enumerate() {
            let (r, mode) = split("drill", arg)?;
            let mode =
                meridian_admin::parse_drill_mode(&mode).map_err(|e| anyhow!("--drill {arg:?}: {e}"))?;
            docs.push(OperatorDoc::Drill {
                id: format!("cli-{}", i + 1),
                doc: DrillDoc {
                    schema: DOC_SCHEMA,
                    region: topology.region_id(r).to_owned(),
                    mode,
                    started_at_ms: 0,
                    expires_at_ms: FOREVER,
                    author: AUTHOR.to_owned(),
                    reason: String::new(),
                },
            });
        }
        // Every region was checked above: nothing is skipped.
        for (doc, applied) in docs
            .iter()
            .zip(overlay_operator_state(topology, &mut states, &docs))
        {
            applied.map_err(|e| anyhow!("{:?}: {e}", doc.region()))?;
        }
        for arg in &self.load {
            let (r, v) = split("load", arg)?;
            let n: u32 = v
                .parse()
                .with_context(|| format!("--load {arg:?}: {v:?} is not a whole number"))?;
            state(&mut states, r)?.in_flight = Some(n);
        }
        Ok(states)
    }
}

fn state(states: &mut RegionStates, r: RegionIndex) -> anyhow::Result<&mut meridian_steer::RegionState> {
    states
        .get_mut(r)
        .ok_or_else(|| anyhow!("region index {} has no state", r.get()))
}
