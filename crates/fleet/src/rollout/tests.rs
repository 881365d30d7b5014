use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::model::{Architecture, LifecycleClass, RoutingMode};
use crate::object::{
    FleetNodeSpec, FleetTemplateSpec, ObjectRef, SdwanNetworkSpec, SdwanPeerSpec, Spec,
    VirtualIpSpec, peer_name,
};
use crate::plan::{PlanOptions, plan};

const REPO: &str = "fleet";

/// A fleet being written down for a test: a template, a network, nodes (each a peer of
/// the network) and virtual IPs.
#[derive(Clone, Debug, Default)]
struct Fleet {
    nodes: BTreeMap<String, (String, String)>,
    vips: BTreeMap<String, Vec<String>>,
}

impl Fleet {
    fn with_nodes(mut self, region: &str, names: impl IntoIterator<Item = String>) -> Self {
        for n in names {
            self.nodes
                .insert(n, (region.to_owned(), "t3-medium".to_owned()));
        }
        self
    }

    fn with_vip(mut self, name: &str, holders: &[&str]) -> Self {
        self.vips
            .insert(name.into(), holders.iter().map(|h| h.to_string()).collect());
        self
    }

    /// Every node's instance type changed: an update of each machine.
    fn resized(mut self) -> Self {
        for (_, size) in self.nodes.values_mut() {
            *size = "t3-large".into();
        }
        self
    }

    fn resized_only(mut self, names: &[&str]) -> Self {
        for n in names {
            if let Some((_, size)) = self.nodes.get_mut(*n) {
                *size = "t3-large".into();
            }
        }
        self
    }

    fn objects(&self) -> Vec<FleetObject> {
        let mut out = vec![
            FleetObject::new(
                "base",
                Spec::FleetTemplate(FleetTemplateSpec {
                    extends: None,
                    node_platform: "ubuntu-24.04".into(),
                    architecture: Architecture::Amd64,
                    modules: Vec::new().into(),
                    metadata: Default::default(),
                }),
            ),
            FleetObject::new(
                "wan",
                Spec::SdwanNetwork(SdwanNetworkSpec {
                    routing_mode: RoutingMode::Ibgp,
                }),
            ),
        ];
        for (name, (region, size)) in &self.nodes {
            out.push(FleetObject::new(
                name.clone(),
                Spec::FleetNode(FleetNodeSpec {
                    template: "base".into(),
                    node_platform: "ubuntu-24.04".into(),
                    architecture: Architecture::Amd64,
                    modules: Vec::new().into(),
                    metadata: Default::default(),
                    region: region.clone(),
                    instance_type: size.clone(),
                    lifecycle_class: LifecycleClass::Persistent,
                }),
            ));
            out.push(FleetObject::new(
                peer_name("wan", name),
                Spec::SdwanPeer(SdwanPeerSpec {
                    network: "wan".into(),
                    host: name.clone(),
                    publicly_reachable: false,
                }),
            ));
        }
        for (name, holders) in &self.vips {
            out.push(FleetObject::new(
                name.clone(),
                Spec::VirtualIp(VirtualIpSpec {
                    network: "wan".into(),
                    primary_holder: holders[0].clone(),
                    failover_holders: holders[1..].to_vec(),
                }),
            ));
        }
        out
    }

    fn live(&self) -> Vec<LiveObject> {
        self.objects()
            .iter()
            .map(|o| LiveObject::owned_by(o, REPO))
            .collect()
    }
}

fn named(prefix: &str, n: usize) -> impl Iterator<Item = String> {
    (0..n).map(move |i| format!("{prefix}-{i:02}"))
}

fn staged(from: &Fleet, to: &Fleet, policy: &Policy) -> Plan {
    staged_over(&from.live(), to, policy)
}

fn staged_over(live: &[LiveObject], to: &Fleet, policy: &Policy) -> Plan {
    let desired = to.objects();
    let options = PlanOptions {
        repository: REPO,
        revision: "abc",
        prune: true,
        exclude: &[],
    };
    let mut p = plan(&desired, live, &options).unwrap();
    stage(&mut p, &desired, live, REPO, policy).unwrap();
    p
}

fn wave_of(p: &Plan, kind: ObjectKind, name: &str) -> u32 {
    p.actions
        .iter()
        .find(|a| a.kind == kind && a.name == name)
        .unwrap_or_else(|| panic!("no action for {kind}/{name}"))
        .wave
}

fn wave_names(p: &Plan) -> Vec<String> {
    p.rollout
        .as_ref()
        .unwrap()
        .waves
        .iter()
        .map(|w| w.name.clone())
        .collect()
}

fn three_regions() -> Fleet {
    Fleet::default()
        .with_nodes("ap-tokyo-1", named("tokyo", 10))
        .with_nodes("eu-west-1", named("dublin", 10))
        .with_nodes("us-east-1", named("virginia", 10))
}

#[test]
fn thirty_new_machines_in_three_regions_go_out_region_by_region() {
    let p = staged_over(&[], &three_regions(), &Policy::default());
    assert_eq!(
        wave_names(&p),
        ["region=ap-tokyo-1", "region=eu-west-1", "region=us-east-1"]
    );
    let waves = &p.rollout.as_ref().unwrap().waves;
    // The template and the network go with the first machines; each node with its peer.
    assert_eq!(waves[0].actions, 2 + 20);
    assert_eq!(waves[1].actions, 20);
    assert_eq!(wave_of(&p, ObjectKind::FleetTemplate, "base"), 0);
    assert_eq!(wave_of(&p, ObjectKind::FleetNode, "dublin-03"), 1);
    assert_eq!(wave_of(&p, ObjectKind::SdwanPeer, "wan.virginia-09"), 2);
    // Creating machines disrupts none: a whole region in one wave.
    assert!(waves.iter().all(|w| w.disrupted == 0));
    assert!(p.rollout.as_ref().unwrap().regions.is_empty());
}

#[test]
fn leaving_a_machine_out_leaves_out_what_depends_on_it() {
    let p = staged_over(&[], &three_regions(), &Policy::default());
    let mut pending = vec![true; p.actions.len()];
    // The first wave is written.
    for (i, a) in p.actions.iter().enumerate() {
        pending[i] = a.wave > 0;
    }
    let out = pause::left_out(
        &p,
        &pending,
        &[ObjectRef::new(ObjectKind::FleetNode, "dublin-03")],
    );
    let names: BTreeSet<String> = out
        .iter()
        .map(|i| p.actions[*i].reference().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "fleetnode/dublin-03".to_owned(),
            "sdwanpeer/wan.dublin-03".to_owned()
        ])
    );
    // What was written already is not undone; what is still to be built on it is left out.
    let base = pause::left_out(
        &p,
        &pending,
        &[ObjectRef::new(ObjectKind::FleetTemplate, "base")],
    );
    assert_eq!(
        base.len(),
        pending.iter().filter(|p| **p).count(),
        "every node, and so every peer"
    );
    assert!(base.iter().all(|i| pending[*i]));
    assert_eq!(pause::following_wave(&p, &pending, 0), Some(1));
    assert_eq!(pause::following_wave(&p, &pending, 2), None);
}

#[test]
fn updates_go_out_at_most_max_unavailable_at_a_time() {
    let before = Fleet::default().with_nodes("eu-west-1", named("dublin", 8));
    let p = staged(&before, &before.clone().resized(), &Policy::default());
    // A quarter of eight machines: two at a time.
    assert_eq!(
        wave_names(&p),
        (1..=4)
            .map(|i| format!("region=eu-west-1 ({i}/4)"))
            .collect::<Vec<_>>()
    );
    let waves = &p.rollout.as_ref().unwrap().waves;
    assert!(waves.iter().all(|w| w.disrupted == 2), "{waves:?}");
    let count = Policy {
        max_unavailable: Amount::Count(3),
        ..Policy::default()
    };
    let p = staged(&before, &before.clone().resized(), &count);
    let disrupted: Vec<u32> = p
        .rollout
        .unwrap()
        .waves
        .iter()
        .map(|w| w.disrupted)
        .collect();
    assert_eq!(disrupted, [3, 3, 2]);
}

#[test]
fn every_holder_of_a_virtual_ip_never_goes_out_in_one_wave() {
    let before = Fleet::default()
        .with_nodes("eu-west-1", named("dublin", 4))
        .with_vip("api", &["dublin-00", "dublin-01"]);
    let all_at_once = Policy {
        max_unavailable: Amount::Percent(100),
        ..Policy::default()
    };
    let p = staged(&before, &before.clone().resized(), &all_at_once);
    assert_ne!(
        wave_of(&p, ObjectKind::FleetNode, "dublin-00"),
        wave_of(&p, ObjectKind::FleetNode, "dublin-01")
    );
    // Only as many waves as the holders need.
    assert_eq!(wave_names(&p).len(), 2);
    let rollout = p.rollout.unwrap();
    assert_eq!(
        rollout.findings,
        [
            "virtualip/api: its holders (dublin-00, dublin-01) change in different waves, so one holds the address at all times"
        ]
    );

    // One holder changing leaves the other up: nothing to split.
    let p = staged(
        &before,
        &before.clone().resized_only(&["dublin-00", "dublin-02"]),
        &all_at_once,
    );
    assert_eq!(wave_names(&p).len(), 1);
    assert!(p.rollout.unwrap().findings.is_empty());
}

#[test]
fn a_virtual_ip_with_one_holder_is_named() {
    let before = Fleet::default()
        .with_nodes("eu-west-1", named("dublin", 2))
        .with_vip("api", &["dublin-00"]);
    let p = staged(&before, &before.clone().resized(), &Policy::default());
    assert_eq!(
        p.rollout.unwrap().findings,
        [
            "virtualip/api: its only holder, dublin-00, changes in this plan; the address is down while it does"
        ]
    );
}

#[test]
fn explicit_partitions_go_in_their_order_and_the_rest_last() {
    let fleet = three_regions().with_nodes("sa-east-1", named("saopaulo", 2));
    let policy = Policy {
        partitioning: Partitioning::Explicit(vec![
            vec!["us-east-1".into()],
            vec!["eu-west-1".into(), "ap-tokyo-1".into()],
            vec!["mars-1".into()],
        ]),
        ..Policy::default()
    };
    let p = staged(&Fleet::default(), &fleet, &policy);
    assert_eq!(
        wave_names(&p),
        [
            "region=us-east-1",
            "region=eu-west-1,ap-tokyo-1",
            "region: the rest"
        ]
    );
    assert_eq!(wave_of(&p, ObjectKind::FleetNode, "tokyo-00"), 1);
    assert_eq!(wave_of(&p, ObjectKind::FleetNode, "saopaulo-01"), 2);
}

#[test]
fn steps_are_cumulative_shares_of_the_machines_touched() {
    let policy = Policy {
        partitioning: Partitioning::Steps(vec![10, 50, 100]),
        ..Policy::default()
    };
    let p = staged(&Fleet::default(), &three_regions(), &policy);
    assert_eq!(wave_names(&p), ["10%", "50%", "100%"]);
    let nodes: Vec<u32> = (0..3)
        .map(|w| {
            p.actions
                .iter()
                .filter(|a| a.kind == ObjectKind::FleetNode && a.wave == w)
                .count() as u32
        })
        .collect();
    assert_eq!(nodes, [3, 12, 15]);
}

#[test]
fn waves_by_a_label_or_field() {
    assert_eq!(
        "label:rack".parse::<WaveKey>().unwrap(),
        WaveKey::Label("rack".into())
    );
    assert!("label:".parse::<WaveKey>().is_err());
    assert!(
        "colour"
            .parse::<WaveKey>()
            .unwrap_err()
            .contains("label:<key>")
    );
    let fleet = three_regions();
    let by_size = Policy {
        key: WaveKey::InstanceType,
        ..Policy::default()
    };
    let p = staged(&Fleet::default(), &fleet, &by_size);
    assert_eq!(wave_names(&p), ["instanceType=t3-medium"]);
    let by_label = Policy {
        key: WaveKey::Label("rack".into()),
        ..Policy::default()
    };
    // No node carries the label: all in the group "".
    assert_eq!(
        wave_names(&staged(&Fleet::default(), &fleet, &by_label)),
        ["label:rack="]
    );
}

#[test]
fn the_region_budget_is_a_fact_of_the_plan() {
    let before = three_regions();
    let after = before
        .clone()
        .resized_only(&["tokyo-00", "tokyo-01", "tokyo-02", "dublin-00"]);
    let policy = Policy {
        region_budget: Some(Amount::Percent(20)),
        ..Policy::default()
    };
    let rollout = staged(&before, &after, &policy).rollout.unwrap();
    assert!(rollout.budget_exceeded);
    assert_eq!(
        rollout.regions,
        [
            RegionImpact {
                region: "ap-tokyo-1".into(),
                nodes: 10,
                disrupted: 3,
                allowed: Some(2),
                exceeded: true,
            },
            RegionImpact {
                region: "eu-west-1".into(),
                nodes: 10,
                disrupted: 1,
                allowed: Some(2),
                exceeded: false,
            },
        ]
    );
    let unbudgeted = staged(&before, &after, &Policy::default()).rollout.unwrap();
    assert!(!unbudgeted.budget_exceeded);
    assert_eq!(unbudgeted.regions[0].allowed, None);
}

#[test]
fn the_plan_id_covers_the_waves() {
    let before = Fleet::default().with_nodes("eu-west-1", named("dublin", 8));
    let after = before.clone().resized();
    let (desired, live) = (after.objects(), before.live());
    let options = PlanOptions {
        repository: REPO,
        revision: "abc",
        prune: true,
        exclude: &[],
    };
    let unstaged = plan(&desired, &live, &options).unwrap();
    let one_wave = Policy {
        max_unavailable: Amount::Percent(100),
        ..Policy::default()
    };
    let mut whole = unstaged.clone();
    stage(&mut whole, &desired, &live, REPO, &one_wave).unwrap();
    // One wave (every action wave 0): the id a plan always had.
    assert_eq!(whole.plan_id, unstaged.plan_id);
    let mut waved = unstaged.clone();
    stage(&mut waved, &desired, &live, REPO, &Policy::default()).unwrap();
    assert_ne!(waved.plan_id, unstaged.plan_id);
    // Moving one action to another wave is another plan.
    let mut moved = waved.clone();
    let last = moved.actions.iter().map(|a| a.wave).max().unwrap();
    moved.actions[0].wave = last;
    assert_ne!(plan_id("abc", &moved.actions), waved.plan_id);
    // Read back as stored, the waves are kept.
    let back: Plan = serde_json::from_value(serde_json::to_value(&waved).unwrap()).unwrap();
    assert_eq!(back, waved);
}

#[test]
fn too_many_waves_are_refused() {
    let before = Fleet::default().with_nodes("eu-west-1", named("n", MAX_WAVES + 1));
    let (desired, live) = (before.clone().resized().objects(), before.live());
    let options = PlanOptions {
        repository: REPO,
        revision: "abc",
        prune: true,
        exclude: &[],
    };
    let mut p = plan(&desired, &live, &options).unwrap();
    let one_at_a_time = Policy {
        max_unavailable: Amount::Count(1),
        chosen: true,
        ..Policy::default()
    };
    let err = stage(&mut p, &desired, &live, REPO, &one_at_a_time).unwrap_err();
    assert_eq!(err.label(), "TooManyWaves");
    assert!(err.to_string().contains("maxUnavailable"), "{err}");
}

#[test]
fn a_default_that_would_make_too_many_waves_falls_back_to_steps() {
    // A region per site, three machines each: a wave per region is too many.
    let mut before = Fleet::default();
    for site in 0..MAX_WAVES + 10 {
        before = before.with_nodes(&format!("site-{site:03}"), named(&format!("s{site:03}"), 3));
    }
    let p = staged(&before, &before.clone().resized(), &Policy::default());
    let rollout = p.rollout.unwrap();
    // Four steps, each cut to a quarter of its machines at a time.
    assert!(rollout.waves.len() <= 20, "{}", rollout.waves.len());
    assert!(
        rollout.findings[0].starts_with("a wave per region would make"),
        "{:?}",
        rollout.findings
    );
    assert!(
        rollout.policy.contains("steps 10% 25% 50% 100%"),
        "{}",
        rollout.policy
    );
}

#[test]
fn only_the_repositorys_own_machines_count() {
    // Another repository's forty machines in the region do not make the wave larger.
    let mine = Fleet::default().with_nodes("eu-west-1", named("dublin", 4));
    let theirs = Fleet::default().with_nodes("eu-west-1", named("other", 40));
    let mut live = mine.live();
    live.extend(
        theirs
            .objects()
            .iter()
            .filter(|o| o.kind() == ObjectKind::FleetNode)
            .map(|o| LiveObject::owned_by(o, "someone-else")),
    );
    let p = staged_over(&live, &mine.clone().resized(), &Policy::default());
    assert_eq!(wave_names(&p).len(), 4, "a quarter of four, one at a time");
    assert_eq!(p.rollout.unwrap().regions[0].nodes, 4);
}

#[test]
fn long_names_are_cut_where_a_plan_shows_them() {
    assert_eq!(shown("eu-west-1"), "eu-west-1");
    let long = "é".repeat(100);
    let cut = shown(&long);
    assert!(cut.len() <= MAX_SHOWN && cut.ends_with('…'), "{cut}");
    let fleet = Fleet::default().with_nodes(&"r".repeat(300), named("n", 2));
    let rollout = staged_over(&[], &fleet, &Policy::default())
        .rollout
        .unwrap();
    assert!(rollout.waves[0].name.len() <= "region=".len() + MAX_SHOWN);
    assert!(rollout.waves[0].groups[0].len() <= MAX_SHOWN);
}

#[test]
fn a_virtual_ip_held_by_thousands_stages_in_few_waves() {
    let names: Vec<String> = named("n", 2000).collect();
    let holders: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = Fleet::default()
        .with_nodes("eu-west-1", names.iter().cloned())
        .with_vip("everyone", &holders);
    let all_at_once = Policy {
        max_unavailable: Amount::Percent(100),
        ..Policy::default()
    };
    let p = staged(&before, &before.clone().resized(), &all_at_once);
    assert_eq!(wave_names(&p).len(), 2);
    let finding = &p.rollout.unwrap().findings[0];
    assert!(finding.contains("and 1995 more"), "{finding}");
}

#[test]
fn policies_are_checked_with_the_field_named() {
    assert_eq!(Amount::parse("25%"), Ok(Amount::Percent(25)));
    assert_eq!(Amount::parse(" 3 "), Ok(Amount::Count(3)));
    for bad in ["0", "0%", "101%", "-1", "", "%", "1.5", "99999999999"] {
        assert!(Amount::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Amount::Percent(25).of(2), 1, "never below one");
    assert_eq!(Amount::Percent(25).of(10), 2);
    let steps = |s: Vec<u32>| {
        Policy {
            partitioning: Partitioning::Steps(s),
            ..Policy::default()
        }
        .check()
    };
    assert!(steps(vec![10, 100]).is_ok());
    assert!(steps(vec![10, 50]).unwrap_err().contains("last step"));
    assert!(steps(vec![50, 10, 100]).unwrap_err().contains("steps[1]"));
    assert!(steps(vec![0, 100]).unwrap_err().contains("steps[0]"));
    let parts = |p: Vec<Vec<&str>>| {
        Policy {
            partitioning: Partitioning::Explicit(
                p.into_iter()
                    .map(|p| p.into_iter().map(String::from).collect())
                    .collect(),
            ),
            ..Policy::default()
        }
        .check()
    };
    assert!(parts(vec![vec!["a"], vec!["b", "c"]]).is_ok());
    assert!(
        parts(vec![vec!["a"], vec![]])
            .unwrap_err()
            .contains("partitions[1] is empty")
    );
    assert!(
        parts(vec![vec!["a"], vec!["b", "a"]])
            .unwrap_err()
            .contains("partitions[1]: `a`")
    );
}

/// A random change to a random fleet: machines in a few regions, some created, some
/// updated, some deleted, with virtual IPs over them.
fn change() -> impl Strategy<Value = (Fleet, Fleet, Policy)> {
    (
        proptest::collection::vec((0usize..4, 0u8..4), 1..40),
        proptest::collection::vec(proptest::collection::vec(0usize..40, 1..4), 0..6),
        prop_oneof![
            (1u32..5).prop_map(Amount::Count),
            (1u32..=100).prop_map(Amount::Percent)
        ],
        prop_oneof![
            Just(Partitioning::PerGroup),
            Just(Partitioning::Steps(vec![25, 100])),
            Just(Partitioning::Explicit(vec![
                vec!["r2".into()],
                vec!["r0".into()]
            ])),
        ],
    )
        .prop_map(|(machines, vips, max_unavailable, partitioning)| {
            let (mut before, mut after) = (Fleet::default(), Fleet::default());
            // 0: kept, 1: updated, 2: created, 3: deleted.
            for (i, (region, fate)) in machines.iter().enumerate() {
                let name = format!("m-{i:02}");
                let region = format!("r{region}");
                let node = (region, "t3-medium".to_owned());
                if *fate != 2 {
                    before.nodes.insert(name.clone(), node.clone());
                }
                if *fate != 3 {
                    after.nodes.insert(name.clone(), node);
                }
                if *fate == 1 {
                    after.nodes.get_mut(&name).unwrap().1 = "t3-large".into();
                }
            }
            for (v, holders) in vips.iter().enumerate() {
                let holders: BTreeSet<String> = holders
                    .iter()
                    .map(|h| format!("m-{:02}", h % machines.len()))
                    .filter(|h| before.nodes.contains_key(h) && after.nodes.contains_key(h))
                    .collect();
                if holders.is_empty() {
                    continue;
                }
                let holders: Vec<&str> = holders.iter().map(String::as_str).collect();
                before = before.with_vip(&format!("vip-{v}"), &holders);
                after = after.with_vip(&format!("vip-{v}"), &holders);
            }
            let policy = Policy {
                max_unavailable,
                partitioning,
                ..Policy::default()
            };
            (before, after, policy)
        })
}

proptest! {
    /// Whatever the fleet and the policy: every action once, in a wave no earlier than
    /// what it depends on; no wave disrupts more machines than allowed or every holder
    /// of a virtual IP; waves numbered without gaps.
    #[test]
    fn waves_keep_the_rules((before, after, policy) in change()) {
        let (desired, live) = (after.objects(), before.live());
        let options = PlanOptions { repository: REPO, revision: "r", prune: true, exclude: &[] };
        let unstaged = plan(&desired, &live, &options).unwrap();
        let mut p = unstaged.clone();
        stage(&mut p, &desired, &live, REPO, &policy).unwrap();
        let rollout = p.rollout.clone().unwrap();

        let refs = |p: &Plan| p.actions.iter().map(|a| (a.reference(), a.operation)).collect::<Vec<_>>();
        prop_assert_eq!(refs(&p), refs(&unstaged));
        let wave: HashMap<ObjectRef, u32> = p.actions.iter().map(|a| (a.reference(), a.wave)).collect();
        for a in &p.actions {
            for d in &a.depends_on {
                prop_assert!(wave[d] <= a.wave, "{} in wave {} before {d} in wave {}", a.reference(), a.wave, wave[d]);
            }
        }
        let used: BTreeSet<u32> = wave.values().copied().collect();
        prop_assert_eq!(used.len(), rollout.waves.len());
        prop_assert!(used.iter().copied().eq(0..rollout.waves.len() as u32));
        prop_assert_eq!(rollout.waves.iter().map(|w| w.actions as usize).sum::<usize>(), p.actions.len());

        // Machines disrupted per wave.
        let mut disrupted: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
        for a in p.actions.iter().filter(|a| a.operation != Operation::Create) {
            let machine = match a.kind {
                ObjectKind::FleetNode => a.name.clone(),
                ObjectKind::SdwanPeer => a.name.trim_start_matches("wan.").to_owned(),
                _ => continue,
            };
            disrupted.entry(a.wave).or_default().insert(machine);
        }
        if let Amount::Count(n) = policy.max_unavailable {
            for (w, set) in &disrupted {
                prop_assert!(set.len() <= n as usize, "wave {w} disrupts {set:?}");
            }
        }
        for (name, holders) in &after.vips {
            if holders.len() < 2 {
                continue;
            }
            for (w, set) in &disrupted {
                prop_assert!(!holders.iter().all(|h| set.contains(h)), "wave {w} takes every holder of {name} down: {set:?}");
            }
        }
    }
}
