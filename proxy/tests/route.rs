//! Properties of the pure routing rule, over random deployments states and clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use meridian_config::{Config, CountryCode};
use meridian_proxy::route::{Leave, Plan, Refuse, RouteInput, Target, drained_copy, fast_path, plan};
use meridian_steer::{
    ClientLocation, Drill, DrillMode, Health, RegionSet, RegionStates, Topology, residency_allows,
};
use proptest::prelude::*;

const REGIONS: [(&str, &str, &str, &str, &str); 4] = [
    ("waw", "52.23", "21.01", "PL", "eu"),
    ("fra", "50.11", "8.68", "DE", "eu"),
    ("lon", "51.51", "-0.13", "GB", "uk"),
    ("vin", "38.75", "-77.67", "US", "us"),
];

fn topology(residency: bool, policy: &str) -> Arc<Topology> {
    let mut t = String::from("schema-version = 1\n");
    for (id, lat, lon, cc, j) in REGIONS {
        t.push_str(&format!(
            "[regions.{id}]\nname = \"{id}\"\nlat = {lat}\nlon = {lon}\ncountry = \"{cc}\"\njurisdictions = [\"{j}\"]\n\
             ipv4 = [\"192.0.2.1\"]\ncapacity = 100\nproxy-address = \"127.0.0.1:80\"\n"
        ));
    }
    t.push_str(
        "[residency.gdpr]\ncountry-groups = [\"EEA\"]\njurisdiction = \"eu\"\nunknown-clients = \"exempt\"\n\
         [zones.\"x.example\"]\nns = [\"ns1.x.example.\"]\n[zones.\"x.example\".soa]\nmname = \"ns1.x.example.\"\n\
         rname = \"h.x.example.\"\n[[zones.\"x.example\".records]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"192.0.2.9\"\n",
    );
    t.push_str(&format!(
        "[services.s]\nhostname = \"s.x.example\"\npolicy = \"{policy}\"\nregions = [\"waw\", \"fra\", \"lon\", \"vin\"]\n\
         answer-regions = 2\n{}\n[services.s.backends]\nwaw = [\"127.0.0.1:1\"]\n",
        if residency { "residency = [\"gdpr\"]" } else { "" }
    ));
    Arc::new(Topology::new(Arc::new(Config::from_toml_str(&t).unwrap())))
}

#[derive(Clone, Debug)]
struct RegionGen {
    health: u8,
    drained: bool,
    weight: u32,
    in_flight: Option<u32>,
    drill: u8,
}

fn region_gen() -> impl Strategy<Value = RegionGen> {
    (
        0u8..3,
        prop::bool::weighted(0.2),
        prop_oneof![Just(0u32), Just(100), 1u32..500],
        prop::option::of(0u32..200),
        0u8..6,
    )
        .prop_map(|(health, drained, weight, in_flight, drill)| RegionGen {
            health,
            drained,
            weight,
            in_flight,
            drill,
        })
}

fn states(topo: &Topology, gens: &[RegionGen]) -> RegionStates {
    let mut s = RegionStates::initial(topo.config());
    for (i, r) in topo.region_indices().enumerate() {
        let g = &gens[i];
        let st = s.get_mut(r).unwrap();
        st.health = [Health::Up, Health::Down, Health::Unknown][usize::from(g.health)];
        st.drained = g.drained;
        st.weight = g.weight;
        st.in_flight = g.in_flight;
        let mode = match g.drill {
            1 => Some(DrillMode::Down),
            2 => Some(DrillMode::Drain),
            3 => Some(DrillMode::Capacity { percent: 10 }),
            _ => None,
        };
        if let Some(mode) = mode {
            st.drills.push(Drill {
                id: "d".into(),
                mode,
                expires_at_ms: 2000,
            });
        }
    }
    s
}

const COUNTRIES: [Option<&str>; 6] = [Some("PL"), Some("DE"), Some("GB"), Some("US"), Some("NO"), None];

fn client(i: usize) -> ClientLocation {
    match COUNTRIES[i] {
        Some(cc) => {
            let c = CountryCode::parse(cc).unwrap();
            ClientLocation::new(Some(c), Some(c.info().continent), c.info().population_centre)
        }
        None => ClientLocation::UNKNOWN,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_sound(
        residency in any::<bool>(),
        policy in prop_oneof![Just("nearest"), Just("failover"), Just("weighted")],
        gens in prop::collection::vec(region_gen(), 4),
        local in 0usize..4,
        pool in any::<bool>(),
        in_flight in 0u32..200,
        hopped in any::<bool>(),
        now in prop_oneof![Just(1000u64), Just(5000)],
        hash in any::<u64>(),
    ) {
        let topo = topology(residency, policy);
        let st = states(&topo, &gens);
        let local = topo.region_indices().nth(local).unwrap();
        let drained = drained_copy(&st, local);
        let service = topo.service_index("s").unwrap();
        let mut reachable: RegionSet = topo.region_indices().collect();
        reachable = reachable.and(topo.region_indices().filter(|r| *r != local).collect());
        let input = RouteInput {
            topology: &topo,
            states: &st,
            states_local_drained: &drained,
            service,
            local,
            reachable,
            pool_has_backend: pool,
            in_flight,
            hopped,
            now_ms: now,
        };
        let fast = fast_path(&input);
        for c in 0..COUNTRIES.len() {
            let loc = client(c);
            let p = plan(&input, &loc, hash);
            // The fast path never decides differently from the full rule, whoever the client.
            if fast {
                prop_assert_eq!(&p, &Plan::local());
            }
            if let Plan::Serve { targets, spill } = &p {
                prop_assert!(!targets.is_empty());
                for t in targets {
                    match t {
                        Target::Region(r) => {
                            // Residency holds for every region a request may be sent to.
                            prop_assert!(residency_allows(&topo, service, loc.country, *r));
                            prop_assert!(*r != local);
                            // At most one hop.
                            prop_assert!(!hopped);
                        }
                        Target::Local => {
                            prop_assert!(residency_allows(&topo, service, loc.country, local));
                            prop_assert!(pool);
                        }
                    }
                }
                prop_assert_eq!(spill.is_some(), matches!(targets[0], Target::Region(_)));
            }
            if !residency_allows(&topo, service, loc.country, local) {
                let serves_locally = matches!(&p, Plan::Serve { targets, .. } if targets.contains(&Target::Local));
                prop_assert!(!serves_locally);
                if let Plan::Refuse(r) = &p {
                    prop_assert_eq!(*r, Refuse::Residency);
                }
            }
        }
    }
}

#[test]
fn over_capacity_drained_and_drilled_regions_send_requests_on() {
    let topo = topology(false, "nearest");
    let gens = vec![
        RegionGen {
            health: 0,
            drained: false,
            weight: 100,
            in_flight: None,
            drill: 0
        };
        4
    ];
    let st = states(&topo, &gens);
    let waw = topo.region_index("waw").unwrap();
    let fra = topo.region_index("fra").unwrap();
    let reachable: RegionSet = topo.region_indices().filter(|r| *r != waw).collect();
    let service = topo.service_index("s").unwrap();
    let pl = client(0);
    let run = |st: &RegionStates, in_flight: u32, pool: bool| {
        let drained = drained_copy(st, waw);
        let input = RouteInput {
            topology: &topo,
            states: st,
            states_local_drained: &drained,
            service,
            local: waw,
            reachable,
            pool_has_backend: pool,
            in_flight,
            hopped: false,
            now_ms: 1000,
        };
        (fast_path(&input), plan(&input, &pl, 7))
    };
    assert_eq!(run(&st, 10, true), (true, Plan::local()));
    let first = |p: &Plan| match p {
        Plan::Serve { targets, spill } => (targets[0], *spill),
        Plan::Refuse(_) => panic!("{p:?}"),
    };
    let (fast, p) = run(&st, 100, true);
    assert!(!fast);
    assert_eq!(first(&p), (Target::Region(fra), Some(Leave::OverCapacity)));
    let (_, p) = run(&st, 0, false);
    assert_eq!(first(&p), (Target::Region(fra), Some(Leave::NoHealthyBackend)));
    let mut drilled = st.clone();
    drilled.get_mut(waw).unwrap().drills.push(Drill {
        id: "x".into(),
        mode: DrillMode::Down,
        expires_at_ms: 2000,
    });
    let (fast, p) = run(&drilled, 0, true);
    assert!(!fast);
    assert_eq!(first(&p).0, Target::Region(fra));
    // The local pool remains the last resort.
    assert!(matches!(&p, Plan::Serve { targets, .. } if targets.last() == Some(&Target::Local)));
    // An expired drill does nothing.
    let drained = drained_copy(&drilled, waw);
    let input = RouteInput {
        topology: &topo,
        states: &drilled,
        states_local_drained: &drained,
        service,
        local: waw,
        reachable,
        pool_has_backend: true,
        in_flight: 0,
        hopped: false,
        now_ms: 3000,
    };
    assert!(fast_path(&input));
    // A capacity drill at 10% makes 10 in flight "full".
    let mut cap = st.clone();
    cap.get_mut(waw).unwrap().drills.push(Drill {
        id: "c".into(),
        mode: DrillMode::Capacity { percent: 10 },
        expires_at_ms: 2000,
    });
    let (_, p) = run(&cap, 10, true);
    assert_eq!(first(&p), (Target::Region(fra), Some(Leave::OverCapacity)));
}
