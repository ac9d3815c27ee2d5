//! Tier 2: weight policies as the data path applies them: new flows through `lb_xdp` split
//! by the configured weights under `static`, evenly under `round-robin`.
use std::collections::BTreeMap;

use lb_userspace::model::config::Policy;
use tests::hook_tests;
use tests::{
    harness::{Balancer, Harness, CLIENT, VIP},
    packet::{parse_and_verify, Frame, SYN},
};

/// Sends 2,000 new flows to the VIP; returns how many each backend address received.
fn split(lb: &mut Balancer) -> BTreeMap<String, u32> {
    let mut got = BTreeMap::new();
    for sport in 20000..22000 {
        let (_, out) = lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes());
        *got.entry(parse_and_verify(&out).dst.to_string())
            .or_default() += 1;
    }
    got
}

/// A VIP with backends of weight 1 and 3 under `policy`, after one telemetry round.
fn weighted(lb: &mut Balancer, policy: Policy) -> BTreeMap<String, u32> {
    lb.add_vip_with_policy("web", 80, &[(0, 8080, 1), (1, 8080, 3)], policy);
    std::thread::sleep(std::time::Duration::from_millis(150));
    lb.ctl.update_weights().expect("telemetry round");
    split(lb)
}

hook_tests! {
    fn static_weights_split_new_flows_one_to_three() {
        Harness::new().run(|lb| {
            let got = weighted(lb, Policy::Static);
            let shares: Vec<f64> = got.values().map(|&n| f64::from(n) / 2000.0).collect();
            assert_eq!(shares.len(), 2, "{got:?}");
            assert!(
                (0.2..0.3).contains(&shares[0]),
                "weight 1 takes a quarter: {got:?}"
            );
            assert!(
                (0.7..0.8).contains(&shares[1]),
                "weight 3 the rest: {got:?}"
            );
        });
    }
}

hook_tests! {
    fn round_robin_splits_new_flows_evenly_whatever_the_weights() {
        Harness::new().run(|lb| {
            let got = weighted(lb, Policy::RoundRobin);
            assert_eq!(got.len(), 2, "{got:?}");
            for n in got.values() {
                let share = f64::from(*n) / 2000.0;
                assert!((0.45..0.55).contains(&share), "even split: {got:?}");
            }
        });
    }
}
