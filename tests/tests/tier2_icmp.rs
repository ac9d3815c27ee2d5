//! Tier 2: ICMP to VIP addresses through BPF_PROG_TEST_RUN.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{xdp_action, Reason};
use lb_userspace::model::config::Proto;
use tests::hook_tests;
use tests::{
    harness::{backend, Harness, CLIENT, CLIENT6, VIP, VIP6},
    packet::{ipv4_header_check, l4_check, Frame, ACK, DST_MAC, SRC_MAC, SYN},
};

/// Ones-complement checksum of an ICMPv4 message (0 when valid).
fn icmp4_check(msg: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in msg.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP (type, code) frame from `src` to `dst`, with valid checksums.
fn icmp(src: IpAddr, dst: IpAddr, kind: u8, code: u8) -> Vec<u8> {
    icmp_with(src, dst, kind, code, b"ping payload")
}

/// The same with `body` after the 8-byte ICMP header (the quoted packet of an error).
fn icmp_with(src: IpAddr, dst: IpAddr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0, 0, 0, 0x05, 0xdc];
    msg.extend_from_slice(body);
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = icmp4_check(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = ipv4_header_check(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let c = l4_check(src, dst, 58, &msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            f.extend_from_slice(&[58, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&msg);
    f
}

hook_tests! {
    fn ping_to_a_vip_is_answered_from_the_vip() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let (action, out) = lb.run(&icmp(CLIENT.into(), VIP.into(), 8, 0));
            assert_eq!(action, xdp_action::TX);
            assert_eq!(
                (&out[0..6], &out[6..12]),
                (&SRC_MAC[..], &DST_MAC[..]),
                "MACs swapped"
            );
            let ip = &out[14..34];
            assert_eq!(ipv4_header_check(ip), 0);
            assert_eq!(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), VIP);
            assert_eq!(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), CLIENT);
            assert_eq!(out[34], 0, "echo reply");
            assert_eq!(icmp4_check(&out[34..]), 0, "ICMP checksum");
            assert_eq!(lb.count(Reason::IcmpEchoReply), 1);
        });
    }
}

hook_tests! {
    fn ping_to_another_address_passes_unchanged() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = icmp(CLIENT.into(), Ipv4Addr::new(10, 200, 0, 99).into(), 8, 0);
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::IcmpEchoReply), 0);
        });
    }
}

hook_tests! {
    fn echo_request_with_a_non_zero_code_to_a_vip_goes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = icmp(CLIENT.into(), VIP.into(), 8, 1);
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
            assert_eq!(lb.count(Reason::IcmpEchoReply), 0);
        });
    }
}

hook_tests! {
    fn ipv6_ping_to_a_vip_is_answered_from_the_vip() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let (action, out) = lb.run(&icmp(CLIENT6.into(), VIP6.into(), 128, 0));
            assert_eq!(action, xdp_action::TX);
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&out[22..38]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&out[38..54]).unwrap());
            assert_eq!((src, dst), (VIP6, CLIENT6));
            assert_eq!(out[54], 129, "echo reply");
            assert_eq!(
                l4_check(src.into(), dst.into(), 58, &out[54..]),
                0,
                "ICMPv6 checksum"
            );
        });
    }
}

hook_tests! {
    fn other_icmp_to_a_vip_goes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let frame = icmp(CLIENT.into(), VIP.into(), 3, 4);
            let (action, out) = lb.run(&frame);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, frame);
        });
    }
}

/// The first 28 (IPv4) or 48 (IPv6) bytes of a TCP packet from VIP:80 to the client's `port`,
/// as an ICMP error quotes it.
fn quoted(v6: bool, port: u16) -> Vec<u8> {
    let f = if v6 {
        Frame::tcp(VIP6, 80, CLIENT6, port, ACK).bytes()
    } else {
        Frame::tcp(VIP, 80, CLIENT, port, ACK).bytes()
    };
    let ip = if v6 { 40 } else { 20 };
    f[14..14 + ip + 8].to_vec()
}

/// A router on the client's path, sending ICMP errors to the VIP.
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 254);

hook_tests! {
    fn fragmentation_needed_about_a_dsr_flow_goes_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0, 1, 2]);
            let (_, syn) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            let owner = &syn[30..34];
            let err = icmp_with(ROUTER.into(), VIP.into(), 3, 4, &quoted(false, 40000));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out[14 + 9], 4, "encapsulated IP-in-IP");
            assert_eq!(
                &out[30..34],
                owner,
                "to the backend that owns the quoted flow"
            );
            assert_eq!(
                &out[34..],
                &err[14..],
                "the ICMP packet itself is untouched"
            );
            assert_eq!(lb.count(Reason::FwdIcmpError), 1);
        });
    }
}

hook_tests! {
    fn fragmentation_needed_about_an_unknown_flow_goes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let err = icmp_with(ROUTER.into(), VIP.into(), 3, 4, &quoted(false, 40000));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::PASS);
            assert_eq!(out, err);
        });
    }
}

hook_tests! {
    fn fragmentation_needed_about_a_nat_flow_is_translated_for_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip(
                "web",
                Proto::Tcp,
                80,
                &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
            );
            let (_, syn) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            let owner: [u8; 4] = syn[30..34].try_into().unwrap();
            let err = icmp_with(ROUTER.into(), VIP.into(), 3, 4, &quoted(false, 40000));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out.len(), err.len());
            let ip = &out[14..34];
            assert_eq!(&ip[12..16], &ROUTER.octets(), "still from the router");
            assert_eq!(
                &ip[16..20],
                &owner,
                "to the backend that owns the quoted flow"
            );
            assert_eq!(ip[8], 63, "TTL decremented");
            assert_eq!(ipv4_header_check(ip), 0, "outer checksum");
            let icmp = &out[34..];
            assert_eq!(&icmp[..2], &[3, 4]);
            assert_eq!(icmp4_check(icmp), 0, "ICMP checksum");
            let q = &icmp[8..];
            assert_eq!(
                &q[12..16],
                &owner,
                "the quoted packet is the one the backend sent"
            );
            assert_eq!(
                u16::from_be_bytes([q[20], q[21]]),
                8080,
                "from the backend's port"
            );
            assert_eq!(&q[16..20], &CLIENT.octets());
            assert_eq!(ipv4_header_check(&q[..20]), 0, "quoted header checksum");
            assert_eq!(lb.count(Reason::FwdIcmpError), 1);
        });
    }
}

hook_tests! {
    fn fragmentation_needed_about_an_unknown_nat_flow_goes_to_the_stack() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
            let err = icmp_with(ROUTER.into(), VIP.into(), 3, 4, &quoted(false, 40001));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::PASS, "no flow from that port");
            assert_eq!(out, err);
        });
    }
}

hook_tests! {
    fn ipv6_packet_too_big_about_a_nat_flow_is_translated_for_its_backend() {
        Harness::new().run(|lb| {
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1), (1, 8080, 1)]);
            let (_, syn) = lb.run(&Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN).bytes());
            let owner = Ipv6Addr::from(<[u8; 16]>::try_from(&syn[38..54]).unwrap());
            let router = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 0xfe);
            let err = icmp_with(router.into(), VIP6.into(), 2, 0, &quoted(true, 40000));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(&out[38..54], &owner.octets(), "to the owner");
            assert_eq!(out[21], 63, "hop limit decremented");
            let icmp = &out[54..];
            assert_eq!(
                l4_check(router.into(), owner.into(), 58, icmp),
                0,
                "ICMPv6 checksum over the new pseudo header"
            );
            let q = &icmp[8..];
            assert_eq!(&q[8..24], &owner.octets(), "quoted source is the backend");
            assert_eq!(u16::from_be_bytes([q[40], q[41]]), 8080);
            assert_eq!(lb.count(Reason::FwdIcmpError), 1);
        });
    }
}

hook_tests! {
    fn ipv6_packet_too_big_about_a_dsr_flow_goes_to_its_backend() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr6", true, 80, &[0, 1, 2]);
            let (_, syn) = lb.run(&Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN).bytes());
            let router = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 0xfe);
            let err = icmp_with(router.into(), VIP6.into(), 2, 0, &quoted(true, 40000));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out[14 + 6], 41, "encapsulated IPv6-in-IPv6");
            assert_eq!(
                &out[38..54],
                &syn[38..54],
                "to the backend that owns the quoted flow"
            );
            assert_eq!(&out[54..], &err[14..]);
            assert_eq!(lb.count(Reason::FwdIcmpError), 1);
        });
    }
}

hook_tests! {
    fn fragmentation_needed_about_a_dsr_flow_on_probation_goes_to_its_backend() {
        Harness::with_new_flow_limit(1).run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let sport = lb.syn_on_probation();
            let err = icmp_with(ROUTER.into(), VIP.into(), 3, 4, &quoted(false, sport));
            let (action, out) = lb.run(&err);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(&out[30..34], &backend(0).octets(), "to the flow's backend");
            assert_eq!(&out[34..], &err[14..]);
            assert_eq!(lb.count(Reason::FwdIcmpError), 1);
        });
    }
}
