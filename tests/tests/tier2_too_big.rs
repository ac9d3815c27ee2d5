//! Tier 2: a DSR packet that would exceed the egress MTU (the harness's veth: 1500) once
//! encapsulated is answered by `lb_too_big` with ICMP "fragmentation needed" / ICMPv6 "packet
//! too big" from the VIP; one that fits is encapsulated. Through BPF_PROG_TEST_RUN.
use lb_common::{xdp_action, Reason};
use tests::hook_tests;
use tests::{
    harness::{Harness, CLIENT, CLIENT6, VIP, VIP6},
    packet::{ipv4_header_check, l4_check, Frame, ACK, DST_MAC, SRC_MAC},
};

/// Egress MTU of the harness's backend link.
const MTU: usize = 1500;

/// A DSR TCP frame whose IP packet is `ip_len` bytes long.
fn frame(v6: bool, ip_len: usize) -> Vec<u8> {
    let mut f = if v6 {
        Frame::tcp(CLIENT6, 40000, VIP6, 80, ACK)
    } else {
        Frame::tcp(CLIENT, 40000, VIP, 80, ACK)
    };
    let headers = if v6 { 40 + 20 } else { 20 + 20 };
    f.payload = (0..ip_len - headers).map(|i| i as u8).collect();
    f.bytes()
}

/// Checks an ICMP "fragmentation needed" answer to `sent`.
fn assert_frag_needed(out: &[u8], sent: &[u8]) {
    assert_eq!(out.len(), 14 + 20 + 8 + 64, "headers and a 64-byte quote");
    assert_eq!(&out[0..6], &SRC_MAC, "back to the sender");
    assert_eq!(&out[6..12], &DST_MAC);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 64);
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(&ip[12..16], &VIP.octets(), "from the VIP");
    assert_eq!(&ip[16..20], &CLIENT.octets(), "to the client");
    assert_eq!(ipv4_header_check(ip), 0, "IP checksum");
    let icmp = &out[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]) as usize,
        MTU - 20,
        "room left by the outer header"
    );
    assert_eq!(ipv4_header_check(icmp), 0, "ICMP checksum");
    assert_eq!(&icmp[8..], &sent[14..14 + 64], "quotes the packet as sent");
}

hook_tests! {
    fn an_ipv4_dsr_packet_too_big_to_encapsulate_gets_fragmentation_needed() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let big = frame(false, MTU - 20 + 1);
            // First packet: no cached next hop yet (encapsulated, looked up, then taken apart).
            let (action, out) = lb.run(&big);
            assert_eq!(action, xdp_action::TX);
            assert_frag_needed(&out, &big);
            // Second: the cached next hop's MTU decides before anything is written.
            let (action, again) = lb.run(&big);
            assert_eq!(action, xdp_action::TX);
            assert_eq!(again, out);
            assert_eq!(lb.count(Reason::IcmpTooBig), 2);
            assert_eq!(lb.count(Reason::FwdNat), 0);
        });
    }
}

hook_tests! {
    fn an_ipv4_dsr_packet_that_fits_encapsulated_is_forwarded() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr", false, 80, &[0]);
            let fits = frame(false, MTU - 20);
            let (action, out) = lb.run(&fits);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out.len(), fits.len() + 20);
            assert_eq!(u16::from_be_bytes([out[16], out[17]]) as usize, MTU);
            assert_eq!(lb.count(Reason::IcmpTooBig), 0);
        });
    }
}

hook_tests! {
    fn an_ipv6_dsr_packet_too_big_to_encapsulate_gets_packet_too_big() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr6", true, 80, &[1]);
            // A small packet first, so the big one meets a cached next hop.
            let (action, _) = lb.run(&frame(true, 100));
            assert_eq!(action, xdp_action::REDIRECT);
            let big = frame(true, MTU - 40 + 1);
            let (action, out) = lb.run(&big);
            assert_eq!(action, xdp_action::TX);
            assert_eq!(out.len(), 14 + 40 + 8 + 64);
            assert_eq!(&out[0..6], &SRC_MAC);
            assert_eq!(&out[12..14], &[0x86, 0xdd]);
            let ip = &out[14..54];
            assert_eq!(ip[0] >> 4, 6);
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 8 + 64);
            assert_eq!((ip[6], ip[7]), (58, 64), "ICMPv6, hop limit 64");
            assert_eq!(&ip[8..24], &VIP6.octets(), "from the VIP");
            assert_eq!(&ip[24..40], &CLIENT6.octets(), "to the client");
            let icmp = &out[54..];
            assert_eq!((icmp[0], icmp[1]), (2, 0), "packet too big");
            assert_eq!(
                u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]) as usize,
                MTU - 40
            );
            assert_eq!(
                l4_check(VIP6.into(), CLIENT6.into(), 58, icmp),
                0,
                "ICMPv6 checksum"
            );
            assert_eq!(&icmp[8..], &big[14..14 + 64]);
            assert_eq!(lb.count(Reason::IcmpTooBig), 1);
        });
    }
}

hook_tests! {
    fn an_ipv6_dsr_packet_that_fits_encapsulated_is_forwarded() {
        Harness::new().run(|lb| {
            lb.add_dsr_vip("dsr6", true, 80, &[1]);
            let fits = frame(true, MTU - 40);
            let (action, out) = lb.run(&fits);
            assert_eq!(action, xdp_action::REDIRECT);
            assert_eq!(out.len(), fits.len() + 40);
            assert_eq!(lb.count(Reason::IcmpTooBig), 0);
        });
    }
}
