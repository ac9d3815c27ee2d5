//! Tier 2: IPv6 packet tables through BPF_PROG_TEST_RUN, one scenario per test.
use lb_common::{xdp_action, Reason};
use lb_userspace::model::config::Proto;
use tests::hook_tests;
use tests::{
    harness::{backend6, Harness, BACKEND_MAC, CLIENT6, CLIENT_MAC, VIP6},
    packet::{parse_and_verify6, Frame, ACK, SYN},
};

fn syn6() -> Frame {
    Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN)
}

hook_tests! {
    fn ipv6_tcp_syn_to_vip_is_rewritten_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let (action, out) = lb.run(&syn6().bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify6(&out);
            assert_eq!((p.dst, p.dport), (backend6(0), 8080));
            assert_eq!((p.src, p.sport), (CLIENT6, 40000));
            assert_eq!(p.hops, 63, "hop limit decremented");
            assert_eq!(p.dst_mac, BACKEND_MAC);
            assert_eq!(lb.count(Reason::FwdNat), 1);
        });
    }
}

hook_tests! {
    fn ipv6_tcp_to_other_port_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = Frame::tcp(CLIENT6, 40000, VIP6, 443, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassNotVip), 1);
        });
    }
}

hook_tests! {
    fn ipv6_udp_to_vip_is_rewritten_with_a_valid_checksum() {
        Harness::new().run(|lb| {
            lb.add_vip6("dns6", Proto::Udp, 53, &[(2, 5353, 1)]);
            let (action, out) = lb.run(&Frame::udp(CLIENT6, 40001, VIP6, 53).bytes());
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify6(&out);
            assert_eq!((p.dst, p.dport), (backend6(2), 5353));
        });
    }
}

hook_tests! {
    fn ipv6_vip_does_not_answer_for_the_ipv4_family() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = Frame::tcp(tests::harness::CLIENT, 40000, tests::harness::VIP, 80, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
        });
    }
}

hook_tests! {
    fn ipv6_reply_of_tracked_flow_is_rewritten_to_vip() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            assert_eq!(lb.run(&syn6().bytes()).0, xdp_action::REDIRECT);
            let reply = Frame::tcp(backend6(0), 8080, CLIENT6, 40000, SYN | ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::REDIRECT);
            let p = parse_and_verify6(&out);
            assert_eq!((p.src, p.sport), (VIP6, 80));
            assert_eq!((p.dst, p.dport), (CLIENT6, 40000));
            assert_eq!(p.dst_mac, CLIENT_MAC);
            assert_eq!(lb.count(Reason::FwdReply), 1);
        });
    }
}

hook_tests! {
    fn ipv6_untracked_packet_from_backend_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let reply = Frame::tcp(backend6(0), 8080, CLIENT6, 40000, SYN | ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, reply);
        });
    }
}

hook_tests! {
    fn ipv6_extension_header_passes_unchanged_and_is_counted() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn6().bytes();
            frame[14 + 6] = 0; // next header: hop-by-hop options
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassIpv6ExtHeader), 1);
        });
    }
}

hook_tests! {
    fn ipv6_hop_limit_of_one_passes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut f = syn6();
            f.ttl = 1;
            let frame = f.bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::PassTtl), 1);
        });
    }
}

hook_tests! {
    fn ipv6_payload_longer_than_frame_drops() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut frame = syn6().bytes();
            frame[18..20].copy_from_slice(&1400u16.to_be_bytes());
            assert_eq!(lb.run(&frame).0, xdp_action::DROP);
            assert_eq!(lb.count(Reason::DropMalformed), 1);
        });
    }
}

hook_tests! {
    fn ipv6_established_flow_keeps_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip6(
                "web6",
                Proto::Tcp,
                80,
                &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
            );
            let first = parse_and_verify6(&lb.run(&syn6().bytes()).1).dst;
            for _ in 0..5 {
                let (_, out) = lb.run(&Frame::tcp(CLIENT6, 40000, VIP6, 80, ACK).bytes());
                assert_eq!(parse_and_verify6(&out).dst, first);
            }
        });
    }
}
