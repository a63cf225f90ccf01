//! `[services.NAME.latency]`: steering a `nearest` service by the latency its proxies measure — how many
//! samples an estimate needs, the margin a measured region must win by (the hysteresis), and the share of
//! clients that explore other regions (`docs/latency.md`).

use crate::checker::Checker;
use crate::model::LatencySteering;
use crate::raw::RawService;

/// Defaults: 20 samples; beat the nearest by 10 ms and 15 %; 2 % of networks explore the next 2 regions.
const DEFAULT_MIN_SAMPLES: u32 = 20;
const DEFAULT_MARGIN_MS: f64 = 10.0;
const DEFAULT_MARGIN_PERCENT: f64 = 15.0;
const DEFAULT_EXPLORE_PERCENT: f64 = 2.0;
const DEFAULT_EXPLORE_REGIONS: u32 = 2;
/// Exploration sends users to a region that is probably slower: never more than a fifth of them.
const MAX_EXPLORE_PERCENT: f64 = 20.0;

pub(super) fn check_latency(c: &mut Checker, path: &str, s: &RawService) -> Option<LatencySteering> {
    let raw = s.latency.as_ref()?;
    let path = format!("{path}.latency");
    if s.policy.as_deref().is_some_and(|p| p != "nearest") {
        c.err(&path, "only applies to policy \"nearest\"");
    }
    let min_samples = c.int(
        &format!("{path}.min-samples"),
        raw.min_samples,
        DEFAULT_MIN_SAMPLES,
        1..=1_000_000,
    );
    let mut number = |field: &str, value: Option<f64>, default: f64, max: f64| {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            c.err(
                format!("{path}.{field}"),
                format!("{v} is out of range (0 to {max})"),
            );
            return default;
        }
        v
    };
    let margin_ms = number("margin-ms", raw.margin_ms, DEFAULT_MARGIN_MS, 10_000.0);
    let margin_percent = number(
        "margin-percent",
        raw.margin_percent,
        DEFAULT_MARGIN_PERCENT,
        100.0,
    );
    let explore_percent = number(
        "explore-percent",
        raw.explore_percent,
        DEFAULT_EXPLORE_PERCENT,
        MAX_EXPLORE_PERCENT,
    );
    let explore_regions = c.int(
        &format!("{path}.explore-regions"),
        raw.explore_regions,
        DEFAULT_EXPLORE_REGIONS,
        1..=8,
    ) as usize;
    Some(LatencySteering {
        min_samples,
        margin_ms,
        margin_share: margin_percent / 100.0,
        explore_share: explore_percent / 100.0,
        explore_regions,
    })
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const EXAMPLE: &str = include_str!("../../../examples/meridian.toml");

    fn problems(extra: &str) -> Vec<String> {
        match Config::from_toml_str(&format!("{EXAMPLE}\n{extra}")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| p.to_string())
                .chain([e.to_string()])
                .collect(),
        }
    }

    #[test]
    fn defaults_and_settings() {
        let cfg = Config::from_toml_str(&format!(
            "{EXAMPLE}\n[services.meet.latency]\nexplore-percent = 5\nmin-samples = 50\n"
        ))
        .unwrap();
        let l = cfg.service("meet").unwrap().latency.unwrap();
        assert_eq!(l.min_samples, 50);
        assert_eq!(l.margin_ms, 10.0);
        assert!((l.margin_share - 0.15).abs() < 1e-12);
        assert!((l.explore_share - 0.05).abs() < 1e-12);
        assert_eq!(l.explore_regions, 2);
        assert_eq!(cfg.service("api").unwrap().latency, None);
    }

    #[test]
    fn bad_settings_are_named() {
        let p = problems("[services.files.latency]\n");
        assert!(
            p.iter()
                .any(|p| p.contains("services.files.latency")
                    && p.contains("only applies to policy \"nearest\"")),
            "{p:?}"
        );
        let p = problems("[services.meet.latency]\nexplore-percent = 30\nmin-samples = 0\nmargin-ms = -1\n");
        for field in ["explore-percent", "min-samples", "margin-ms"] {
            assert!(
                p.iter()
                    .any(|p| p.contains(&format!("services.meet.latency.{field}"))),
                "{field}: {p:?}"
            );
        }
        let p = problems("[services.meet.latency]\nexplore = 3\n");
        assert!(p.iter().any(|p| p.contains("explore")), "{p:?}");
    }
}
