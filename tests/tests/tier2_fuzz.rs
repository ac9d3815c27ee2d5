//! Tier 2 property test: 100,000 random and mutated frames through `lb_xdp` and `lb_tc`. None aborts, none
//! is forwarded unless it is a well-formed packet for a VIP (or the reply of a flow the
//! balancer forwarded), everything passed is untouched, and every frame is counted once.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use lb_common::{xdp_action, Reason};
use lb_userspace::model::config::Proto;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tests::hook_tests;
use tests::{
    harness::{backend, backend6, Harness, CLIENT, CLIENT6, VIP, VIP6},
    packet::{Frame, ACK, SYN},
};

const FRAMES: usize = 100_000;

/// What an independent parser says a frame is: `(src, sport, dst, dport, proto)` of a
/// well-formed, unfragmented IPv4 or IPv6 packet (ports 0 for ICMP, and the ICMP type in
/// `sport`), or None.
fn well_formed(f: &[u8]) -> Option<(IpAddr, u16, IpAddr, u16, u8)> {
    if f.len() < 34 {
        return None;
    }
    let (src, dst, proto, l4, l4_len): (IpAddr, IpAddr, u8, usize, usize) = match [f[12], f[13]] {
        [0x08, 0x00] => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let frag = u16::from_be_bytes([f[20], f[21]]) & 0x3fff;
            if f[14] >> 4 != 4
                || ihl < 20
                || tot < ihl
                || 14 + tot > f.len()
                || frag != 0
                || f[22] <= 1
            {
                return None;
            }
            let s = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            let d = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
            (s.into(), d.into(), f[23], 14 + ihl, tot - ihl)
        }
        [0x86, 0xdd] if f.len() >= 54 => {
            let payload = usize::from(u16::from_be_bytes([f[18], f[19]]));
            if f[14] >> 4 != 6 || 54 + payload > f.len() || f[21] <= 1 {
                return None;
            }
            let s = Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap());
            let d = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
            (s.into(), d.into(), f[20], 54, payload)
        }
        _ => return None,
    };
    let min = match proto {
        6 => 20,
        17 => 8,
        1 | 58 => 2,
        _ => return None,
    };
    if l4_len < min || l4 + min > f.len() {
        return None;
    }
    if proto == 1 || proto == 58 {
        return Some((
            src,
            u16::from(f[l4]) << 8 | u16::from(f[l4 + 1]),
            dst,
            0,
            proto,
        ));
    }
    Some((
        src,
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dst,
        u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        proto,
    ))
}

/// Destination address and port of a forwarded (rewritten) frame.
fn destination(f: &[u8]) -> (IpAddr, u16) {
    if f[12..14] == [0x08, 0x00] {
        let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        (dst.into(), u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]))
    } else {
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
        (dst.into(), u16::from_be_bytes([f[56], f[57]]))
    }
}

fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let v6 = rng.random_bool(0.3);
    let dst: IpAddr = match (v6, rng.random_bool(0.7)) {
        (false, true) => VIP.into(),
        (false, false) => Ipv4Addr::from(rng.random::<u32>()).into(),
        (true, true) => VIP6.into(),
        (true, false) => Ipv6Addr::from(rng.random::<u128>()).into(),
    };
    let from_backend = rng.random_bool(0.1);
    let src: IpAddr = match (v6, from_backend) {
        (false, true) => backend(rng.random_range(0..3)).into(),
        (false, false) => CLIENT.into(),
        (true, true) => backend6(rng.random_range(0..3)).into(),
        (true, false) => CLIENT6.into(),
    };
    let sport = if from_backend {
        8080
    } else {
        rng.random_range(40000..40100)
    };
    let dport = *[80u16, 53, 81, 8080].get(rng.random_range(0..4)).unwrap();
    let mut frame = if rng.random_bool(0.5) {
        let flags = [SYN, ACK, SYN | ACK, 0, 0xff][rng.random_range(0..5)];
        Frame::tcp(src, sport, dst, dport, flags)
    } else {
        Frame::udp(src, sport, dst, dport)
    };
    frame.ttl = rng.random_range(0..=255);
    frame.payload = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
    let mut bytes = frame.bytes();
    match rng.random_range(0..8) {
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (as NICs do).
        0 => bytes.truncate(rng.random_range(14..bytes.len())),
        1 => bytes[14] = (4 << 4) | rng.random_range(0..16u8), // any IHL
        2 => {
            let len: u16 = rng.random();
            bytes[16..18].copy_from_slice(&len.to_be_bytes());
        }
        3 => bytes[20] |= rng.random_range(0..0x40u8), // flags / fragment offset
        4 => {
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
        }
        5 => {
            bytes = (0..rng.random_range(14..128))
                .map(|_| rng.random())
                .collect()
        }
        _ => {} // well-formed
    }
    bytes
}

hook_tests! {
    fn a_hundred_thousand_mutated_frames_are_all_counted_and_never_misforwarded() {
        Harness::new().run(|lb| {
            lb.add_vip(
                "web",
                Proto::Tcp,
                80,
                &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
            );
            lb.add_vip("dns", Proto::Udp, 53, &[(0, 8080, 1)]);
            lb.add_vip6("web6", Proto::Tcp, 80, &[(0, 8080, 1), (1, 8080, 1)]);
            let mut rng = StdRng::seed_from_u64(0x1b_2025);
            let vip_addr = |a: IpAddr| a == IpAddr::from(VIP) || a == IpAddr::from(VIP6);
            let vips: HashSet<(IpAddr, u16, u8)> = [
                (VIP.into(), 80, 6),
                (VIP.into(), 53, 17),
                (VIP6.into(), 80, 6),
            ]
            .into();
            let mut forwarded_flows = HashSet::new();
            let mut redirected = 0;
            let mut redirected_v6 = 0;
            let mut untestable = 0;
            for i in 0..FRAMES {
                let frame = random_frame(&mut rng);
                let Some((action, out)) = lb.try_run(&frame) else {
                    untestable += 1;
                    continue;
                };
                let parsed = well_formed(&frame);
                match action {
                    xdp_action::REDIRECT => {
                        let (src, sport, dst, dport, proto) = parsed.unwrap_or_else(|| {
                            panic!("frame {i} forwarded but malformed: {frame:02x?}")
                        });
                        let to_vip = vips.contains(&(dst, dport, proto));
                        let reply = forwarded_flows.contains(&(dst, dport, src, sport, proto));
                        assert!(
                            to_vip || reply,
                            "frame {i} forwarded but not for a VIP: {frame:02x?}"
                        );
                        if to_vip {
                            let (to, to_port) = destination(&out);
                            forwarded_flows.insert((src, sport, to, to_port, proto));
                        }
                        redirected += 1;
                        redirected_v6 += usize::from(dst.is_ipv6());
                    }
                    xdp_action::TX => {
                        let (_, kind, dst, _, proto) = parsed.unwrap_or_else(|| {
                            panic!("frame {i} answered but malformed: {frame:02x?}")
                        });
                        let echo = (proto == 1 && kind == 0x0800) || (proto == 58 && kind == 0x8000);
                        assert!(
                            echo && vip_addr(dst),
                            "frame {i} answered but not a ping to a VIP"
                        );
                    }
                    xdp_action::PASS => assert_eq!(out, frame, "frame {i} passed but modified"),
                    xdp_action::DROP => {}
                    other => panic!("frame {i}: unexpected action {other}: {frame:02x?}"),
                }
            }
            let total: u64 = Reason::ALL.iter().map(|r| lb.count(*r)).sum();
            assert_eq!(
                total,
                (FRAMES - untestable) as u64,
                "every frame counted exactly once"
            );
            assert!(
                untestable < FRAMES / 20,
                "at tc, {untestable} frames had a short L3 header the kernel refuses to test-run"
            );
            assert!(
                redirected > 1000,
                "the mix must exercise forwarding too ({redirected})"
            );
            assert!(redirected_v6 > 300, "and IPv6 forwarding ({redirected_v6})");
            assert!(
                lb.count(Reason::DropMalformed) > 1000,
                "and malformed drops"
            );
        });
    }
}
