//! Tier 2: per-VIP and per-backend counters, the active-flow estimate, and UDP idle expiry.
use aya::maps::{HashMap, MapData};
use lb_common::addr_words;
use lb_common::{map_names, ConnEntry, FlowKey, CONN_F_CLOSED, FAMILY_V4, PROTO_TCP, PROTO_UDP};
use lb_userspace::{
    dataplane::object::time_units,
    model::config::{BackendConfig, Proto},
};
use tests::hook_tests;
use tests::{
    harness::{backend, Balancer, Harness, CLIENT, UDP_IDLE_S, VIP},
    packet::{parse_and_verify, Frame, ACK, SYN},
};

const FIN: u8 = 0x01;

fn conns(lb: &Balancer) -> HashMap<MapData, FlowKey, ConnEntry> {
    lb.flow_table(map_names::CONNS)
}

/// Backend 0 drained (weight 0: no new flows, tracked ones stay) and backend 1 taking new ones.
fn drain_backend0(lb: &mut Balancer) {
    let drained = vec![
        BackendConfig {
            addr: backend(0).into(),
            port: 5353,
            weight: 0,
        },
        BackendConfig {
            addr: backend(1).into(),
            port: 5353,
            weight: 1,
        },
    ];
    lb.ctl.replace_backends("dns", drained).expect("drain");
}

fn key(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src: addr_words(CLIENT.into()),
        dst: addr_words(VIP.into()),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

hook_tests! {
    fn vip_and_backend_counters_count_packets_bytes_and_new_flows() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let syn = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes();
            let ack = Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes();
            lb.run(&syn);
            lb.run(&ack);
            lb.run(&ack);
            let vip = lb.ctl.vips().remove(0);
            assert_eq!((vip.packets, vip.new_flows), (3, 1));
            assert_eq!(vip.bytes, (syn.len() + 2 * ack.len()) as u64);
            let b = &vip.backends[0];
            assert_eq!((b.packets, b.new_flows, b.active_flows), (3, 1, 1));
        });
    }
}

hook_tests! {
    fn traffic_to_another_port_counts_nothing() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            lb.run(&Frame::tcp(CLIENT, 40000, VIP, 81, SYN).bytes());
            let vip = lb.ctl.vips().remove(0);
            assert_eq!((vip.packets, vip.backends[0].active_flows), (0, 0));
        });
    }
}

hook_tests! {
    fn a_client_fin_closes_the_flow_for_the_active_estimate() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            lb.run(&Frame::tcp(CLIENT, 40001, VIP, 80, SYN).bytes());
            lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, FIN | ACK).bytes());
            let entry = conns(lb).get(&key(PROTO_TCP, 40000, 80), 0).expect("entry");
            assert_eq!(entry.flags & CONN_F_CLOSED, CONN_F_CLOSED);
            let open = conns(lb).get(&key(PROTO_TCP, 40001, 80), 0).expect("entry");
            assert_eq!(open.flags & CONN_F_CLOSED, 0, "a plain ACK does not close");
            assert_eq!(lb.ctl.vips()[0].backends[0].active_flows, 1);
        });
    }
}

hook_tests! {
    fn the_active_estimate_counts_a_table_larger_than_one_batch_read() {
        // 5,000 flows span two batch reads of the connection table (4,096 entries each, and NAT
        // records two entries per flow); 1,000 of them closed by the client no longer count.
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            for sport in 20000..25000 {
                lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes());
            }
            assert_eq!(lb.ctl.vips()[0].backends[0].active_flows, 5000);
            for sport in 20000..21000 {
                lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, FIN | ACK).bytes());
            }
            assert_eq!(lb.ctl.vips()[0].backends[0].active_flows, 4000);
        });
    }
}

hook_tests! {
    fn a_udp_flow_stays_on_its_backend_while_active() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(0, 5353, 1)]);
            lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            drain_backend0(lb);
            let (_, out) = lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            assert_eq!(
                parse_and_verify(&out).dst,
                backend(0),
                "tracked and not idle: stays"
            );
        });
    }
}

hook_tests! {
    fn a_udp_flow_idle_just_under_the_timeout_stays_on_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(0, 5353, 1)]);
            lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            drain_backend0(lb);
            let k = key(PROTO_UDP, 40000, 53);
            let mut map = conns(lb);
            let mut entry = map.get(&k, 0).expect("entry");
            entry.last_seen = entry.last_seen.wrapping_sub(time_units(UDP_IDLE_S) - 2);
            map.insert(k, entry, 0).expect("age entry");
            let (_, out) = lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            assert_eq!(
                parse_and_verify(&out).dst,
                backend(0),
                "idle, but not for the timeout: stays"
            );
        });
    }
}

hook_tests! {
    fn a_udp_flow_idle_past_the_timeout_is_balanced_afresh() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(0, 5353, 1)]);
            lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            drain_backend0(lb);
            // Age the entry past the timeout.
            let k = key(PROTO_UDP, 40000, 53);
            let mut map = conns(lb);
            let mut entry = map.get(&k, 0).expect("entry");
            entry.last_seen = entry.last_seen.wrapping_sub(time_units(UDP_IDLE_S) + 2);
            map.insert(k, entry, 0).expect("age entry");
            let (_, out) = lb.run(&Frame::udp(CLIENT, 40000, VIP, 53).bytes());
            assert_eq!(
                parse_and_verify(&out).dst,
                backend(1),
                "idle flow re-balanced"
            );
            assert_eq!(lb.ctl.vips()[0].backends[1].new_flows, 1);
        });
    }
}
