//! Tier 2: packet tables through BPF_PROG_TEST_RUN in the real kernel. Each test is one
//! scenario: input frame + map state -> expected action, output bytes and counter.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_common::{flow_hash, map_names, xdp_action, Reason};
use lb_userspace::{
    balance::{
        self,
        maglev::{self, Member},
    },
    model::{
        config::{BackendConfig, Proto, TableKind},
        wire::BackendChange,
    },
};
use tests::hook_tests;
use tests::{
    harness::{
        backend, tcp_key, Balancer, Harness, BACKEND_MAC, CLIENT, CLIENT_MAC, SEED, T0_MAC, T1_MAC,
        VIP,
    },
    packet::{parse_and_verify, Frame, ACK, SYN},
};

fn syn() -> Frame {
    Frame::tcp(CLIENT, 40000, VIP, 80, SYN)
}

hook_tests! {
    fn tcp_syn_to_vip_is_rewritten_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let (action, out) = lb.run(&syn().bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify(&out);
            assert_eq!((p.src, p.sport), (CLIENT, 40000), "source untouched");
            assert_eq!((p.dst, p.dport), (backend(0), 8080), "DNAT to the backend");
            assert_eq!(p.ttl, 63, "TTL decremented");
            assert_eq!(p.dst_mac, BACKEND_MAC, "next hop from bpf_fib_lookup");
            assert_eq!(p.src_mac, T0_MAC, "egress interface's MAC");
            assert_eq!(lb.count(Reason::FwdNat), 1);
        });
    }
}

hook_tests! {
    fn tcp_to_vip_address_on_other_port_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = Frame::tcp(CLIENT, 40000, VIP, 81, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame, "bytes untouched");
            assert_eq!(lb.count(Reason::PassNotVip), 1);
            assert_eq!(lb.count(Reason::FwdNat), 0);
        });
    }
}

hook_tests! {
    fn udp_to_vip_is_rewritten_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(1, 5353, 1)]);
            let (action, out) = lb.run(&Frame::udp(CLIENT, 40001, VIP, 53).bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify(&out);
            assert_eq!((p.dst, p.dport), (backend(1), 5353));
            assert_eq!((p.src, p.sport), (CLIENT, 40001));
            assert_eq!(lb.count(Reason::FwdNat), 1);
        });
    }
}

hook_tests! {
    fn udp_to_tcp_only_vip_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 53, &[(1, 5353, 1)]);
            let frame = Frame::udp(CLIENT, 40001, VIP, 53).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassNotVip), 1);
        });
    }
}

hook_tests! {
    fn udp_without_checksum_keeps_it_zero() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(1, 5353, 1)]);
            let mut frame = Frame::udp(CLIENT, 40001, VIP, 53).bytes();
            frame[14 + 20 + 6] = 0;
            frame[14 + 20 + 7] = 0;
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0]);
            parse_and_verify(&out);
        });
    }
}

hook_tests! {
    fn a_nat_udp_checksum_that_comes_out_zero_is_sent_as_all_ones() {
        Harness::new().run(|lb| {
            lb.add_vip("dns", Proto::Udp, 53, &[(1, 5353, 1)]);
            // A payload word that makes the rewritten datagram's checksum compute to zero,
            // which UDP over IPv4 must send as 0xffff (zero means "no checksum").
            let with = |dst: Ipv4Addr, port: u16, v: u16| {
                let mut f = Frame::udp(CLIENT, 40001, dst, port);
                f.payload = v.to_be_bytes().to_vec();
                f.bytes()
            };
            let check = |f: &[u8]| u16::from_be_bytes([f[14 + 20 + 6], f[14 + 20 + 7]]);
            let v = (0..=u16::MAX)
                .find(|&v| check(&with(backend(1), 5353, v)) == 0)
                .expect("a payload word exists");
            let frame = with(VIP, 53, v);
            assert_ne!(check(&frame), 0, "the datagram as sent carries a checksum");
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(check(&out), 0xffff, "zero is sent as all ones");
            assert_eq!(parse_and_verify(&out).dst, backend(1));
        });
    }
}

hook_tests! {
    fn non_vip_address_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = Frame::tcp(CLIENT, 40000, Ipv4Addr::new(10, 200, 0, 99), 80, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassNotVip), 1);
        });
    }
}

hook_tests! {
    fn vip_without_backends_drops_and_counts() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[]);
            let (action, _) = lb.run(&syn().bytes());
            assert_eq!(action, xdp_action::DROP);
            assert_eq!(lb.count(Reason::DropNoBackend), 1);
        });
    }
}

hook_tests! {
    fn a_vip_whose_backends_are_all_drained_takes_no_new_flow() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 0), (1, 8080, 0)]);
            let (action, _) = lb.run(&syn().bytes());
            assert_eq!(action, xdp_action::DROP, "no backend takes new flows");
            assert_eq!(lb.count(Reason::DropNoBackend), 1);
            assert_eq!(lb.count(Reason::FwdNat), 0);
        });
    }
}

hook_tests! {
    fn vip_whose_only_backend_was_removed_drops() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            assert_eq!(lb.run(&syn().bytes()).0, xdp_action::REDIRECT);
            lb.ctl
                .remove_backend(&BackendChange {
                    vip: "web".into(),
                    addr: backend(0).into(),
                    port: 8080,
                    weight: None,
                })
                .expect("remove");
            let ack = Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes();
            assert_eq!(
                lb.run(&ack).0,
                xdp_action::DROP,
                "tracked flow of a removed backend"
            );
            assert_eq!(lb.count(Reason::DropNoBackend), 1);
        });
    }
}

hook_tests! {
    fn truncated_tcp_header_drops_and_counts() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            frame.truncate(14 + 20 + 10);
            // Keep the IPv4 total length consistent with the frame: only the TCP header is short.
            frame[16..18].copy_from_slice(&30u16.to_be_bytes());
            let (action, _) = lb.run(&frame);
            assert_eq!(action, xdp_action::DROP);
            assert_eq!(lb.count(Reason::DropMalformed), 1);
        });
    }
}

/// XDP only: the kernel refuses to test-run a socket buffer with a short IPv4 header.
#[test]
fn truncated_ipv4_header_drops_and_counts() {
    Harness::new().run(|lb| {
        let mut frame = syn().bytes();
        frame.truncate(14 + 12);
        let (action, _) = lb.run(&frame);
        assert_eq!(action, xdp_action::DROP);
        assert_eq!(lb.count(Reason::DropMalformed), 1);
    });
}

hook_tests! {
    fn ipv4_total_length_beyond_frame_drops() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            frame[16..18].copy_from_slice(&1500u16.to_be_bytes());
            assert_eq!(lb.run(&frame).0, xdp_action::DROP);
            assert_eq!(lb.count(Reason::DropMalformed), 1);
        });
    }
}

hook_tests! {
    fn ihl_below_five_drops() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            frame[14] = 0x44;
            assert_eq!(lb.run(&frame).0, xdp_action::DROP);
            assert_eq!(lb.count(Reason::DropMalformed), 1);
        });
    }
}

/// Sends 64 SYNs to a three-backend VIP with a `kind` table and checks each goes to the
/// backend of its flow hash's slot in that table, built here from the VIP's ring weights.
fn flows_follow_the_table(lb: &mut Balancer, kind: TableKind) {
    let backends = [(0u8, 8080u16, 1u32), (1, 8080, 1), (2, 8080, 1)];
    lb.add_vip_table("web", 80, &backends, kind);
    let vip = lb.ctl.vips().remove(0);
    let members: Vec<Member> = vip
        .backends
        .iter()
        .map(|b| Member {
            id: b.id,
            addr: SocketAddr::new(b.addr, b.port),
            weight: b.ring_weight,
        })
        .collect();
    let table = balance::table(kind, &members, vip.ring_size);
    let mut seen = std::collections::HashSet::new();
    for sport in 40000..40064u16 {
        let key = tcp_key(sport);
        let id = table[(flow_hash(SEED, &key) % vip.ring_size) as usize];
        let want = vip
            .backends
            .iter()
            .find(|b| b.id == id)
            .expect("id in table");
        let (action, out) = lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes());
        assert_eq!(action, xdp_action::REDIRECT);
        let p = parse_and_verify(&out);
        assert_eq!(std::net::IpAddr::from(p.dst), want.addr, "sport {sport}");
        seen.insert(p.dst);
    }
    assert_eq!(seen.len(), 3, "64 flows spread over all three backends");
}

hook_tests! {
    fn backend_is_the_maglev_slot_of_the_flow_hash() {
        Harness::new().run(|lb| flows_follow_the_table(lb, TableKind::Maglev));
    }
}

hook_tests! {
    fn backend_is_the_consistent_table_slot_of_the_flow_hash() {
        Harness::new().run(|lb| flows_follow_the_table(lb, TableKind::Consistent));
    }
}

hook_tests! {
    fn reply_of_tracked_flow_is_rewritten_to_vip() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            assert_eq!(lb.run(&syn().bytes()).0, xdp_action::REDIRECT);
            let reply = Frame::tcp(backend(0), 8080, CLIENT, 40000, SYN | ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify(&out);
            assert_eq!((p.src, p.sport), (VIP, 80), "source back to VIP:port");
            assert_eq!((p.dst, p.dport), (CLIENT, 40000));
            assert_eq!(p.dst_mac, CLIENT_MAC);
            assert_eq!(p.src_mac, T1_MAC);
            assert_eq!(lb.count(Reason::FwdReply), 1);
        });
    }
}

hook_tests! {
    fn untracked_packet_from_backend_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let reply = Frame::tcp(backend(0), 8080, CLIENT, 40000, SYN | ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, reply);
            assert_eq!(lb.count(Reason::PassNotVip), 1);
        });
    }
}

hook_tests! {
    fn established_flow_keeps_its_backend_when_the_ring_changes() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            assert_eq!(lb.run(&syn().bytes()).0, xdp_action::REDIRECT);
            // Backend 1 with a huge weight now owns nearly the whole ring.
            lb.ctl
                .add_backend(&BackendChange {
                    vip: "web".into(),
                    addr: backend(1).into(),
                    port: 8080,
                    weight: Some(65535),
                })
                .expect("add");
            let (_, out) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes());
            assert_eq!(parse_and_verify(&out).dst, backend(0), "tracked flow stays");
        });
    }
}

hook_tests! {
    fn a_syn_on_a_tracked_tuple_ignores_the_entry_while_its_backend_is_still_there() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1), (1, 8080, 1)]);
            // A client port whose flow lands on backend 0.
            let sport = (40000..40100)
                .find(|&p| {
                    let (_, out) = lb.run(&Frame::tcp(CLIENT, p, VIP, 80, SYN).bytes());
                    parse_and_verify(&out).dst == backend(0)
                })
                .expect("some port lands on backend 0");
            let weight = |w| BackendChange {
                vip: "web".into(),
                addr: backend(0).into(),
                port: 8080,
                weight: Some(w),
            };
            // Drained: its record stays (its flows keep going), the ring has backend 1 only.
            lb.ctl.add_backend(&weight(0)).expect("drain backend 0");
            let ack = Frame::tcp(CLIENT, sport, VIP, 80, ACK).bytes();
            assert_eq!(
                parse_and_verify(&lb.run(&ack).1).dst,
                backend(0),
                "the tracked flow keeps its drained backend"
            );
            // The same four-tuple opens again (the client reused the port).
            let (action, out) = lb.run(&Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(parse_and_verify(&out).dst, backend(1), "balanced afresh");
            let entry = lb
                .flow_table(map_names::CONNS)
                .get(&tcp_key(sport), 0)
                .expect("entry");
            let id1 = lb.ctl.vips()[0]
                .backends
                .iter()
                .find(|b| b.addr == IpAddr::from(backend(1)))
                .expect("backend 1")
                .id;
            assert_eq!(entry.backend_id, id1, "the entry names the new backend");
            assert_eq!(
                parse_and_verify(&lb.run(&ack).1).dst,
                backend(1),
                "and the connection's next packet follows it"
            );
        });
    }
}

hook_tests! {
    fn syn_reselects_from_the_new_ring() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            assert_eq!(lb.run(&syn().bytes()).0, xdp_action::REDIRECT);
            lb.ctl
                .add_backend(&BackendChange {
                    vip: "web".into(),
                    addr: backend(1).into(),
                    port: 8080,
                    weight: Some(65535),
                })
                .expect("add");
            lb.ctl
                .remove_backend(&BackendChange {
                    vip: "web".into(),
                    addr: backend(0).into(),
                    port: 8080,
                    weight: None,
                })
                .expect("remove");
            let (_, out) = lb.run(&syn().bytes());
            assert_eq!(
                parse_and_verify(&out).dst,
                backend(1),
                "a new SYN follows the ring"
            );
        });
    }
}

hook_tests! {
    fn ttl_of_one_passes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut f = syn();
            f.ttl = 1;
            let frame = f.bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame, "unchanged: the stack sends time-exceeded");
            assert_eq!(lb.count(Reason::PassTtl), 1);
        });
    }
}

hook_tests! {
    fn fragment_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            frame[20] = 0x20; // more fragments
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassFragment), 1);
        });
    }
}

hook_tests! {
    fn vlan_tagged_frame_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            frame.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassVlan), 1);
        });
    }
}

hook_tests! {
    fn arp_passes_unchanged() {
        Harness::new().run(|lb| {
            let mut frame = syn().bytes();
            frame[12..14].copy_from_slice(&[0x08, 0x06]);
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassNotIp), 1);
        });
    }
}

hook_tests! {
    fn ipv4_options_are_forwarded_with_the_packet() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn().bytes();
            // Insert one 4-byte NOP/EOL option word and fix IHL, total length and checksum.
            frame.splice(34..34, [1, 1, 1, 0]);
            frame[14] = 0x46;
            let tot = u16::from_be_bytes([frame[16], frame[17]]) + 4;
            frame[16..18].copy_from_slice(&tot.to_be_bytes());
            frame[24..26].copy_from_slice(&[0, 0]);
            let c = tests::packet::ipv4_header_check(&frame[14..38]);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify(&out);
            assert_eq!((p.dst, p.dport), (backend(0), 8080));
            assert_eq!(&out[34..38], &[1, 1, 1, 0], "options kept");
        });
    }
}

hook_tests! {
    fn ring_swaps_under_traffic_never_expose_a_half_written_ring() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        // Four disjoint backend sets cycled continuously; every SYN must land on the slot's owner
        // in a table that was live while the packet ran.
        let sets: [[u8; 2]; 4] = [[0, 1], [2, 3], [4, 5], [6, 7]];
        Harness::new().run(|lb| {
            let members = |set: &[u8; 2]| -> Vec<Member> {
                set.iter()
                    .map(|&i| Member {
                        id: 0,
                        addr: SocketAddr::new(backend(i).into(), 8080),
                        weight: 1,
                    })
                    .collect()
            };
            // Addresses per slot for each set (ids do not matter: compare addresses).
            let tables: Vec<Vec<Ipv4Addr>> = sets
                .iter()
                .map(|set| {
                    let mut ms = members(set);
                    for (k, m) in ms.iter_mut().enumerate() {
                        m.id = k as u32 + 1;
                    }
                    maglev::build(&ms, 65537)
                        .iter()
                        .map(|&id| match ms[id as usize - 1].addr.ip() {
                            std::net::IpAddr::V4(a) => a,
                            _ => unreachable!(),
                        })
                        .collect()
                })
                .collect();
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1), (1, 8080, 1)]);
            let pin = std::path::PathBuf::from("/sys/fs/bpf").join(lb_lab::netns::unique_name("swap"));
            lb.ctl
                .dataplane()
                .program()
                .unwrap()
                .pin(&pin)
                .expect("pin program");
            let generation = AtomicU64::new(0);
            let stop = AtomicBool::new(false);
            let checked = std::thread::scope(|s| {
                let runner = s.spawn(|| {
                    /// Stops the swapping loop however the runner ends, a failed assertion too.
                    struct Stop<'a>(&'a AtomicBool);
                    impl Drop for Stop<'_> {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                    let _stop = Stop(&stop);
                    let prog =
                        aya::programs::Xdp::from_pin(&pin, aya_obj::programs::XdpAttachType::Interface)
                            .expect("open pinned program");
                    let mut checked = 0u32;
                    for n in 0..20_000u32 {
                        let sport = 1024 + (n % 60000) as u16;
                        let frame = Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes();
                        let before = generation.load(Ordering::SeqCst);
                        let mut out = vec![0u8; frame.len() + 64];
                        let res = aya::programs::TestRun::test_run(
                            &prog,
                            aya::programs::TestRunOptions {
                                data_in: Some(&frame),
                                data_out: Some(&mut out),
                                ..Default::default()
                            },
                        )
                        .expect("test run");
                        let after = generation.load(Ordering::SeqCst);
                        assert_eq!(res.return_value, xdp_action::REDIRECT);
                        let got = parse_and_verify(&out[..res.data_size_out as usize]).dst;
                        let key = tcp_key(sport);
                        let slot = (flow_hash(SEED, &key) % 65537) as usize;
                        // Generation g means set g % 4 is live; g - 1 may still be read.
                        let allowed: Vec<Ipv4Addr> = (before.saturating_sub(1)..=after)
                            .map(|g| tables[(g % 4) as usize][slot])
                            .collect();
                        assert!(
                            allowed.contains(&got),
                            "packet {n}: {got} not in {allowed:?}"
                        );
                        checked += 1;
                    }
                    checked
                });
                let mut g = 0u64;
                while !stop.load(Ordering::SeqCst) && g < 100_000 {
                    let next = sets[((g + 1) % 4) as usize];
                    let backends = next
                        .iter()
                        .map(|&i| BackendConfig {
                            addr: backend(i).into(),
                            port: 8080,
                            weight: 1,
                        })
                        .collect();
                    generation.store(g + 1, Ordering::SeqCst);
                    lb.ctl.replace_backends("web", backends).expect("swap");
                    g += 1;
                }
                runner.join().expect("runner")
            });
            let _ = std::fs::remove_file(&pin);
            assert_eq!(checked, 20_000);
        });
    }
}

/// Changes backend 0's neighbour entry (from inside the test's namespace).
fn move_backend_mac(mac: [u8; 6]) {
    tests::harness::replace_neighbour("t0", backend(0).into(), mac).expect("replace neighbour");
}

/// Forwards one SYN (caching backend 0's next hop), moves backend 0 to a new MAC, optionally
/// bumps the next-hop epoch, and returns the MAC the next new flow is sent to.
fn mac_after_neighbour_change(bump: bool) -> [u8; 6] {
    Harness::new().run(|lb| {
        lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
        assert_eq!(
            parse_and_verify(&lb.run(&syn().bytes()).1).dst_mac,
            BACKEND_MAC
        );
        move_backend_mac([2, 0, 0, 0, 0, 0xbb]);
        if bump {
            lb.ctl.dataplane().bump_nh_epoch().expect("bump");
        }
        let (_, out) = lb.run(&Frame::tcp(CLIENT, 40001, VIP, 80, SYN).bytes());
        parse_and_verify(&out).dst_mac
    })
}

hook_tests! {
    fn cached_next_hop_is_used_until_the_epoch_moves() {
        assert_eq!(
            mac_after_neighbour_change(false),
            BACKEND_MAC,
            "served from the cache"
        );
    }
}

hook_tests! {
    fn bumping_the_epoch_picks_up_a_changed_neighbour() {
        assert_eq!(
            mac_after_neighbour_change(true),
            [2, 0, 0, 0, 0, 0xbb],
            "looked up again"
        );
    }
}

/// `web` on port 80 and `web2` on port 81 share backend 0:8080; a flow to each is open.
fn two_vips_sharing_a_backend_with_a_flow_each(lb: &mut tests::harness::Balancer) {
    lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
    lb.add_vip("web2", Proto::Tcp, 81, &[(0, 8080, 1)]);
    assert_eq!(lb.run(&syn().bytes()).0, xdp_action::REDIRECT);
    let syn81 = Frame::tcp(CLIENT, 40001, VIP, 81, SYN).bytes();
    assert_eq!(lb.run(&syn81).0, xdp_action::REDIRECT);
    lb.ctl.remove_vip("web2").expect("remove web2");
}

hook_tests! {
    fn established_flows_of_a_remaining_vip_are_forwarded_after_another_vip_goes() {
        Harness::new().run(|lb| {
            two_vips_sharing_a_backend_with_a_flow_each(lb);
            let (action, out) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(parse_and_verify(&out).dst, backend(0));
            let reply = Frame::tcp(backend(0), 8080, CLIENT, 40000, ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(parse_and_verify(&out).sport, 80);
        });
    }
}

hook_tests! {
    fn established_flows_of_a_removed_vip_pass_to_the_stack_both_ways() {
        Harness::new().run(|lb| {
            two_vips_sharing_a_backend_with_a_flow_each(lb);
            let ack = Frame::tcp(CLIENT, 40001, VIP, 81, ACK).bytes();
            let (action, out) = lb.run(&ack);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, ack);
            let reply = Frame::tcp(backend(0), 8080, CLIENT, 40001, ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, reply);
            assert_eq!(lb.count(Reason::PassNotVip), 2);
        });
    }
}

hook_tests! {
    fn a_flow_of_a_removed_vip_is_not_forwarded_by_a_vip_that_takes_its_id_on_another_port() {
        Harness::new().run(|lb| {
            two_vips_sharing_a_backend_with_a_flow_each(lb);
            // web2's id goes to VIP:82; port 81 stays a VIP port (on another address), so
            // the old flow's packets still reach the connection table.
            lb.add_vip("web3", Proto::Tcp, 82, &[(1, 8080, 1)]);
            lb.add_vip_at("other", Ipv4Addr::new(10, 200, 0, 11), 81, &[(1, 8080, 1)]);
            let mut key = tcp_key(40001);
            key.dport = 81u16.to_be();
            let entry = lb
                .flow_table(map_names::CONNS)
                .get(&key, 0)
                .expect("web2's flow is still in the table");
            assert_eq!(
                lb.vip_of_id(entry.vip_id),
                (IpAddr::V4(VIP), 82),
                "the flow's VIP id now stands for web3"
            );
            let ack = Frame::tcp(CLIENT, 40001, VIP, 81, ACK).bytes();
            let (action, out) = lb.run(&ack);
            assert_eq!(action, xdp_action::PASS, "not sent to web3's backend");
            assert_eq!(out, ack);
            assert_eq!(lb.count(Reason::PassNotVip), 1);
            // A new flow to web3 is forwarded to its backend.
            let syn82 = Frame::tcp(CLIENT, 40002, VIP, 82, SYN).bytes();
            let (action, out) = lb.run(&syn82);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(parse_and_verify(&out).dst, backend(1));
        });
    }
}
