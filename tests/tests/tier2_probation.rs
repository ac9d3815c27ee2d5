//! Tier 2: the new-flow limit. Past it, new flows go on probation (a table of their own)
//! instead of into the connection table, and their second forward packet promotes them, so a
//! flood of spoofed SYNs cannot evict established flows. One scenario per test.
use aya::maps::{HashMap, MapData};
use lb_common::addr_words;
use lb_common::{map_names, xdp_action, ConnEntry, FlowKey, Reason};
use lb_userspace::model::config::Proto;
use tests::hook_tests;
use tests::{
    harness::{backend, tcp_key, Balancer, Harness, CLIENT, VIP},
    packet::{parse_and_verify, Frame, ACK, SYN},
};

/// 1 new flow per second is 2 per data-path time unit (~1.07 s): a burst of SYNs crosses
/// the limit within a few flows.
const LIMIT: u32 = 1;

/// The reply direction of client port `sport`'s flow through the NAT VIP to backend 0.
fn reply_key(sport: u16) -> FlowKey {
    FlowKey {
        src: addr_words(backend(0).into()),
        dst: addr_words(CLIENT.into()),
        sport: 8080u16.to_be(),
        dport: sport.to_be(),
        ..tcp_key(sport)
    }
}

fn conns(lb: &Balancer) -> HashMap<MapData, FlowKey, ConnEntry> {
    lb.flow_table(map_names::CONNS)
}

fn probation(lb: &Balancer) -> HashMap<MapData, FlowKey, ConnEntry> {
    lb.flow_table(map_names::PROBATION)
}

fn syn(sport: u16) -> Vec<u8> {
    Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes()
}

hook_tests! {
    fn past_the_limit_new_dsr_flows_are_forwarded_and_kept_on_probation() {
        Harness::with_new_flow_limit(LIMIT).run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            for sport in 40000..40010 {
                let (action, _) = lb.run(&syn(sport));
                assert_eq!(action, xdp_action::REDIRECT, "every flow is forwarded");
            }
            let tracked = lb.count(Reason::FwdNat);
            let held = lb.count(Reason::FwdProbation);
            assert_eq!(tracked + held, 10);
            assert!((2..=4).contains(&tracked), "tracked {tracked}");
            assert_eq!(conns(lb).keys().count() as u64, tracked);
            assert_eq!(probation(lb).keys().count() as u64, held);
            assert_eq!(lb.ctl.vips()[0].backends[0].active_flows, tracked);
        });
    }
}

hook_tests! {
    fn within_the_limit_new_nat_flows_go_straight_into_the_connection_table() {
        Harness::with_new_flow_limit(1_000_000).run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            for sport in 40000..40010 {
                assert_eq!(lb.run(&syn(sport)).0, xdp_action::REDIRECT);
            }
            assert_eq!(lb.count(Reason::FwdNat), 10);
            assert_eq!(lb.count(Reason::FwdProbation), 0);
            assert_eq!(conns(lb).keys().count(), 20, "forward and reply of each");
            assert_eq!(probation(lb).keys().count(), 0);
        });
    }
}

hook_tests! {
    fn the_reply_of_a_nat_flow_on_probation_is_rewritten_to_the_vip() {
        Harness::with_new_flow_limit(LIMIT).run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let sport = lb.syn_on_probation();
            assert!(probation(lb).get(&reply_key(sport), 0).is_ok());
            let syn_ack = Frame::tcp(backend(0), 8080, CLIENT, sport, SYN | ACK).bytes();
            let (action, out) = lb.run(&syn_ack);
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify(&out);
            assert_eq!((p.src, p.sport), (VIP, 80));
            assert_eq!((p.dst, p.dport), (CLIENT, sport));
            assert_eq!(lb.count(Reason::FwdReply), 1);
        });
    }
}

hook_tests! {
    fn the_handshake_ack_moves_a_nat_flow_from_probation_to_the_connection_table() {
        Harness::with_new_flow_limit(LIMIT).run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let sport = lb.syn_on_probation();
            let new_flows = lb.ctl.vips()[0].new_flows;
            let (action, out) = lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, ACK).bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(parse_and_verify(&out).dst, backend(0));
            for k in [tcp_key(sport), reply_key(sport)] {
                assert!(conns(lb).get(&k, 0).is_ok(), "{k:?} promoted");
                assert!(probation(lb).get(&k, 0).is_err(), "{k:?} off probation");
            }
            assert_eq!(
                lb.ctl.vips()[0].new_flows,
                new_flows,
                "not a new flow again"
            );
        });
    }
}

hook_tests! {
    fn a_retransmitted_syn_does_not_promote_a_flow_on_probation() {
        Harness::with_new_flow_limit(LIMIT).run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let sport = lb.syn_on_probation();
            let (before, tracked) = (lb.count(Reason::FwdProbation), lb.count(Reason::FwdNat));
            let new_flows = lb.ctl.vips()[0].new_flows;
            assert_eq!(lb.run(&syn(sport)).0, xdp_action::REDIRECT);
            if lb.count(Reason::FwdNat) > tracked {
                // A new time unit began in between: the SYN was within the limit again, and
                // balanced as a new flow; a promotion would not count one.
                assert_eq!(
                    lb.ctl.vips()[0].new_flows,
                    new_flows + 1,
                    "tracked as a new flow, not promoted off probation"
                );
                return;
            }
            assert!(
                conns(lb).get(&tcp_key(sport), 0).is_err(),
                "still not tracked"
            );
            assert!(
                probation(lb).get(&tcp_key(sport), 0).is_ok(),
                "still on probation"
            );
            assert_eq!(lb.count(Reason::FwdProbation), before + 1);
        });
    }
}

hook_tests! {
    fn a_syn_flood_past_the_limit_leaves_the_connection_table_alone() {
        Harness::with_new_flow_limit(LIMIT).run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            // An established flow: its SYN may itself have gone on probation; its ACK promotes it.
            assert_eq!(lb.run(&syn(40000)).0, xdp_action::REDIRECT);
            let ack = Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes();
            assert_eq!(lb.run(&ack).0, xdp_action::REDIRECT);
            let before = conns(lb).keys().count();
            for sport in 42000..42500 {
                lb.run(&syn(sport));
            }
            let after = conns(lb).keys().count();
            // At most one limit's worth per time unit boundary crossed: 2 flows, 2 entries each.
            assert!(
                after - before <= 8,
                "the flood added {} entries",
                after - before
            );
            assert!(lb.count(Reason::FwdProbation) >= 490);
            assert!(
                conns(lb).get(&tcp_key(40000), 0).is_ok(),
                "established flow kept"
            );
            assert_eq!(parse_and_verify(&lb.run(&ack).1).dst, backend(0));
        });
    }
}
