//! Tier 2: the connection table at scale. `lbd.max_flows = 2,097,152` sizes `LB_CONNS` at
//! 4,194,304 entries; the test fills it (each CPU's LRU share from that CPU, in batches) and
//! checks that established flows are still found by the data path, at both hooks: a sample of
//! the filled flows is forwarded to the backend their entries name (a drained one, which the
//! ring would never pick), with no new flow counted.
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{HashMap, IterableMap, MapData};
use lb_common::{map_names, xdp_action, ConnEntry, FlowKey, Reason};
use lb_userspace::model::wire::BackendChange;
use tests::hook_tests;
use tests::{
    flows::{flow_key, insert_all, pin_to, possible_cpus},
    harness::{backend, tcp_key, Harness, CLIENT, VIP},
    packet::{parse_and_verify, Frame, ACK, SYN},
};

/// Flows of the harness's table: `LB_CONNS` holds twice as many entries (NAT flows take two).
const MAX_FLOWS: u32 = 2_097_152;
/// Entries of `LB_CONNS`.
const ENTRIES: u32 = 2 * MAX_FLOWS;

hook_tests! {
    fn a_table_of_four_million_entries_still_finds_established_flows() {
        Harness::with_max_flows(MAX_FLOWS).run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0, 1]);
            // A real flow to copy its entry: the VIP id, a backend id, the mode.
            let sport = (40000..40100)
                .find(|&p| {
                    let (_, out) = lb.run(&Frame::tcp(CLIENT, p, VIP, 80, SYN).bytes());
                    out[30..34] == backend(1).octets()
                })
                .expect("a port lands on backend 1");
            let table: HashMap<MapData, FlowKey, ConnEntry> = lb.flow_table(map_names::CONNS);
            let template = table.get(&tcp_key(sport), 0).expect("the real flow's entry");
            // Backend 1 drained: the ring sends new flows to backend 0 only.
            lb.ctl
                .add_backend(&BackendChange {
                    vip: "dsr".into(),
                    addr: backend(1).into(),
                    port: 80,
                    weight: Some(0),
                })
                .expect("drain backend 1");
            let fd = IterableMap::map(&table).fd().as_fd().as_raw_fd();
            let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
                .expect("affinity");
            let possible = possible_cpus();
            let share = ENTRIES / possible as u32;
            // Room for the entries the harness's own packets made on each CPU.
            let per_cpu = share - 16;
            for cpu in 0..possible {
                pin_to(cpu).expect("pin to a CPU");
                let first = cpu as u32 * per_cpu;
                let keys: Vec<FlowKey> = (first..first + per_cpu).map(|i| flow_key(i, VIP)).collect();
                insert_all(fd, &keys, &template);
            }
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)
                .expect("restore affinity");
            let filled = per_cpu * possible as u32;
            let held = table.keys().count() as u32;
            assert!(
                held >= filled && held >= 4_000_000,
                "LB_CONNS holds {held} entries of {filled} written"
            );
            let new_flows = lb.ctl.vips()[0].new_flows;
            let before = lb.count(Reason::FwdNat);
            // A sample across the whole table, both CPUs' shares.
            let sample: Vec<u32> = (0..1000u32).map(|k| k * (filled / 1000) + k % 7).collect();
            for i in &sample {
                let key = flow_key(*i, VIP);
                let src = std::net::Ipv4Addr::from(u32::from_be(key.src[0]));
                let ack = Frame::tcp(src, u16::from_be(key.sport), VIP, 80, ACK).bytes();
                let (action, out) = lb.run(&ack);
                assert_eq!(action, xdp_action::REDIRECT, "flow {i}");
                assert_eq!(
                    &out[30..34],
                    &backend(1).octets(),
                    "flow {i} goes to the backend its entry names"
                );
                // The inner packet, behind the Ethernet header, untouched and valid.
                parse_and_verify(&[&out[..14], &out[34..]].concat());
            }
            assert_eq!(lb.count(Reason::FwdNat), before + sample.len() as u64);
            assert_eq!(
                lb.ctl.vips()[0].new_flows,
                new_flows,
                "every sampled packet was an established flow"
            );
        });
    }
}
