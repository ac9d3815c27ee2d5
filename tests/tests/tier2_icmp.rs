//! Tier 2: ICMP to VIP addresses through BPF_PROG_TEST_RUN.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{xdp_action, Reason};
use lb_userspace::config::Proto;
use tests::{
    harness::{Harness, CLIENT, CLIENT6, VIP, VIP6},
    packet::{ipv4_header_check, l4_check, DST_MAC, SRC_MAC},
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
    let mut msg = vec![kind, code, 0, 0, 0x12, 0x34, 0, 1];
    msg.extend_from_slice(b"ping payload");
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

#[test]
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

#[test]
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

#[test]
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

#[test]
fn other_icmp_to_a_vip_goes_to_the_stack() {
    Harness::new().run(|lb| {
        lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
        let frame = icmp(CLIENT.into(), VIP.into(), 3, 4);
        let (action, out) = lb.run(&frame);
        assert_eq!(action, xdp_action::PASS);
        assert_eq!(out, frame);
    });
}
