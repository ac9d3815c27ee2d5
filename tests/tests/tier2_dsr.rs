//! Tier 2: DSR encapsulation by the balancer and decapsulation by `lb_decap`, through
//! BPF_PROG_TEST_RUN at both hooks (XDP and tc). One scenario per test.
use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use lb_common::addr_words;
use lb_common::{encap_source_low, prog_names, xdp_action, FlowKey, Reason, FAMILY_V4, FAMILY_V6};
use lb_userspace::model::config::Hook;
use tests::hook_tests;
use tests::{
    harness::{
        backend, backend6, current_hook, tc_verdict, Harness, BACKEND_MAC, CLIENT, CLIENT6, T0_MAC,
        VIP, VIP6,
    },
    packet::{ipv4_header_check, Frame, ACK, SYN},
};

fn key(v6: bool, sport: u16) -> FlowKey {
    let (src, family) = if v6 {
        (addr_words(CLIENT6.into()), FAMILY_V6)
    } else {
        (addr_words(CLIENT.into()), FAMILY_V4)
    };
    FlowKey {
        src,
        sport: sport.to_be(),
        family,
        ..FlowKey::default()
    }
}

hook_tests! {
    fn dsr_ipv4_syn_is_encapsulated_ipip_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let frame = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out.len(), frame.len() + 20);
            assert_eq!(&out[0..6], &BACKEND_MAC);
            assert_eq!(&out[6..12], &T0_MAC);
            assert_eq!(&out[12..14], &[0x08, 0x00]);
            let outer = &out[14..34];
            assert_eq!(outer[0], 0x45);
            assert_eq!(outer[9], 4, "IP-in-IP");
            assert_eq!(outer[8], 64, "outer TTL");
            let inner_len = u16::from_be_bytes([frame[16], frame[17]]);
            assert_eq!(u16::from_be_bytes([outer[2], outer[3]]), inner_len + 20);
            assert_eq!(ipv4_header_check(outer), 0, "outer checksum");
            let low = encap_source_low(&key(false, 40000)).to_be_bytes();
            assert_eq!(
                Ipv4Addr::new(outer[12], outer[13], outer[14], outer[15]),
                Ipv4Addr::new(172, 16, low[0], low[1])
            );
            assert_eq!(
                Ipv4Addr::new(outer[16], outer[17], outer[18], outer[19]),
                backend(0)
            );
            assert_eq!(&out[34..], &frame[14..], "inner packet untouched");
            assert_eq!(lb.count(Reason::FwdNat), 1);
        });
    }
}

hook_tests! {
    fn dsr_outer_source_differs_per_client_port() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let (_, a) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            let (_, b) = lb.run(&Frame::tcp(CLIENT, 40001, VIP, 80, SYN).bytes());
            assert_ne!(&a[26..30], &b[26..30], "outer sources spread flows");
            for out in [&a, &b] {
                assert_eq!(ipv4_header_check(&out[14..34]), 0, "outer checksum");
            }
        });
    }
}

hook_tests! {
    fn dsr_ipv6_syn_is_encapsulated_ip6ip6_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr6", true, 80, &[1]);
            let frame = Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out.len(), frame.len() + 40);
            assert_eq!(&out[12..14], &[0x86, 0xdd]);
            let outer = &out[14..54];
            assert_eq!(outer[0] >> 4, 6);
            assert_eq!(outer[6], 41, "IPv6-in-IPv6");
            let inner_payload = u16::from_be_bytes([frame[18], frame[19]]);
            assert_eq!(u16::from_be_bytes([outer[4], outer[5]]), inner_payload + 40);
            let low = encap_source_low(&key(true, 40000)).to_be_bytes();
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&outer[8..24]).unwrap());
            assert_eq!(
                src,
                Ipv6Addr::new(0xfd00, 0, 0, 0xffff, 0, 0, 0, u16::from_be_bytes(low))
            );
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&outer[24..40]).unwrap());
            assert_eq!(dst, backend6(1));
            assert_eq!(&out[54..], &frame[14..], "inner packet untouched");
        });
    }
}

hook_tests! {
    fn dsr_established_flow_keeps_its_backend() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0, 1, 2]);
            let (_, first) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            for _ in 0..5 {
                let (_, out) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, ACK).bytes());
                assert_eq!(&out[30..34], &first[30..34], "same outer destination");
                assert_eq!(ipv4_header_check(&out[14..34]), 0, "outer checksum");
            }
        });
    }
}

hook_tests! {
    fn dsr_keeps_no_reply_state() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            assert_eq!(
                lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes()).0,
                xdp_action::REDIRECT
            );
            // The backend answers from the VIP; if such a packet reaches the balancer it is not
            // rewritten: DSR replies are the backend's business.
            let reply = Frame::tcp(VIP, 80, CLIENT, 40000, SYN | ACK).bytes();
            let (action, out) = lb.run(&reply);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, reply);
        });
    }
}

/// The decap object with `lb_decap` (XDP) and `lb_decap_tc` loaded.
fn decap() -> Ebpf {
    tests::require_root();
    let mut obj =
        Ebpf::load(lb_userspace::dataplane::object::DECAP_OBJECT).expect("load decap object");
    let xdp: &mut Xdp = obj
        .program_mut(prog_names::LB_DECAP)
        .expect("lb_decap")
        .try_into()
        .expect("xdp");
    xdp.load().expect("verifier");
    let tc: &mut SchedClassifier = obj
        .program_mut(prog_names::LB_DECAP_TC)
        .expect("lb_decap_tc")
        .try_into()
        .expect("tc");
    tc.load().expect("verifier");
    obj
}

/// Runs `frame` through the decap program of the current hook: the action (in XDP terms:
/// both programs always pass) and the output.
fn run_decap(obj: &Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 64];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let (action, r) = match current_hook() {
        Hook::Xdp => {
            let prog: &Xdp = obj
                .program(prog_names::LB_DECAP)
                .unwrap()
                .try_into()
                .unwrap();
            let r = prog.test_run(opts).expect("test run");
            (r.return_value, r)
        }
        Hook::Tc => {
            let prog: &SchedClassifier = obj
                .program(prog_names::LB_DECAP_TC)
                .unwrap()
                .try_into()
                .unwrap();
            let r = prog.test_run(opts).expect("test run");
            assert_eq!(r.return_value, tc_verdict(xdp_action::PASS), "TC_ACT_OK");
            (xdp_action::PASS, r)
        }
    };
    out.truncate(r.data_size_out as usize);
    (action, out)
}

hook_tests! {
    fn decap_restores_what_lb_xdp_encapsulated_ipv4() {
        let frame = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes();
        let encapsulated = Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            lb.run(&frame).1
        });
        let (action, out) = run_decap(&decap(), &encapsulated);
        assert_eq!(action, xdp_action::PASS);
        assert_eq!(
            &out[0..12],
            &encapsulated[0..12],
            "MACs of the received frame"
        );
        assert_eq!(&out[12..], &frame[12..], "the client's original packet");
    }
}

hook_tests! {
    fn decap_restores_what_lb_xdp_encapsulated_ipv6() {
        let frame = Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN).bytes();
        let encapsulated = Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr6", true, 80, &[0]);
            lb.run(&frame).1
        });
        let (action, out) = run_decap(&decap(), &encapsulated);
        assert_eq!(action, xdp_action::PASS);
        assert_eq!(&out[12..], &frame[12..]);
    }
}

hook_tests! {
    fn decap_leaves_an_outer_ipv4_header_with_options_untouched() {
        // lb_xdp never adds options; an IP-in-IP packet that has them is not ours to strip.
        let frame = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes();
        let encapsulated = Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            lb.run(&frame).1
        });
        let mut with_options = encapsulated[..34].to_vec();
        with_options.extend_from_slice(&[1, 1, 1, 0]); // NOP, NOP, NOP, end of options
        with_options.extend_from_slice(&encapsulated[34..]);
        with_options[14] = 0x46;
        let total = u16::from_be_bytes([with_options[16], with_options[17]]) + 4;
        with_options[16..18].copy_from_slice(&total.to_be_bytes());
        with_options[24..26].copy_from_slice(&[0, 0]);
        let c = ipv4_header_check(&with_options[14..38]);
        with_options[24..26].copy_from_slice(&c.to_be_bytes());
        let (action, out) = run_decap(&decap(), &with_options);
        assert_eq!(action, xdp_action::PASS);
        assert_eq!(out, with_options);
    }
}

hook_tests! {
    fn decap_passes_plain_traffic_unchanged() {
        let obj = decap();
        for frame in [
            Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes(),
            Frame::udp(CLIENT6, 40000, VIP6, 53).bytes(),
        ] {
            let (action, out) = run_decap(&obj, &frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
        }
    }
}

hook_tests! {
    fn dsr_with_an_unresolved_neighbour_hands_the_stack_a_frame_addressed_to_us() {
        Harness::new().run(|lb| {
            // Backend 9 has no neighbour entry in the harness: the route lookup says NO_NEIGH.
            lb.add_dsr_vip("dsr", false, 80, &[9]);
            let frame = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes();
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(
                &out[0..12],
                &frame[0..12],
                "received MACs kept: the stack forwards it"
            );
            assert_eq!(out[14 + 9], 4, "already encapsulated");
            assert_eq!(&out[34..], &frame[14..]);
            assert_eq!(lb.count(Reason::PassNoNeigh), 1);
        });
    }
}
