//! Tier 2 property test: 100,000 random and mutated frames through `lb_xdp`. None aborts, none
//! is forwarded unless it is a well-formed packet for a VIP (or the reply of a flow the
//! balancer forwarded), everything passed is untouched, and every frame is counted once.
use std::{collections::HashSet, net::Ipv4Addr};

use lb_common::{xdp_action, Reason};
use lb_userspace::config::Proto;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tests::{
    harness::{backend, Harness, CLIENT, VIP},
    packet::{Frame, ACK, SYN},
};

const FRAMES: usize = 100_000;

/// What an independent parser says a frame is: `(src, sport, dst, dport, proto)` of a
/// well-formed, unfragmented IPv4 TCP/UDP packet, or None.
fn well_formed(f: &[u8]) -> Option<(Ipv4Addr, u16, Ipv4Addr, u16, u8)> {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let proto = f[23];
    let l4_min = match proto {
        6 => 20,
        17 => 8,
        _ => return None,
    };
    let frag = u16::from_be_bytes([f[20], f[21]]) & 0x3fff;
    if ihl < 20 || tot < ihl + l4_min || 14 + tot > f.len() || frag != 0 || f[22] <= 1 {
        return None;
    }
    let l4 = 14 + ihl;
    Some((
        Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
        Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        proto,
    ))
}

fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let dst = if rng.random_bool(0.7) {
        VIP
    } else {
        Ipv4Addr::from(rng.random::<u32>())
    };
    let src = if rng.random_bool(0.1) {
        backend(rng.random_range(0..3))
    } else {
        CLIENT
    };
    let sport = if src == CLIENT {
        rng.random_range(40000..40100)
    } else {
        8080
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

#[test]
fn a_hundred_thousand_mutated_frames_are_all_counted_and_never_misforwarded() {
    Harness::new().run(|lb| {
        lb.add_vip(
            "web",
            Proto::Tcp,
            80,
            &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
        );
        lb.add_vip("dns", Proto::Udp, 53, &[(0, 8080, 1)]);
        let mut rng = StdRng::seed_from_u64(0x1b_2025);
        let vips: HashSet<(u16, u8)> = [(80, 6), (53, 17)].into();
        let mut forwarded_flows = HashSet::new();
        let mut redirected = 0;
        for i in 0..FRAMES {
            let frame = random_frame(&mut rng);
            let (action, out) = lb.run(&frame);
            let parsed = well_formed(&frame);
            match action {
                xdp_action::REDIRECT => {
                    let (src, sport, dst, dport, proto) = parsed.unwrap_or_else(|| {
                        panic!("frame {i} forwarded but malformed: {frame:02x?}")
                    });
                    let to_vip = dst == VIP && vips.contains(&(dport, proto));
                    let reply = forwarded_flows.contains(&(dst, dport, src, sport, proto));
                    assert!(
                        to_vip || reply,
                        "frame {i} forwarded but not for a VIP: {frame:02x?}"
                    );
                    if to_vip {
                        let p = tests::packet::parse(&out);
                        forwarded_flows.insert((src, sport, p.dst, p.dport, proto));
                    }
                    redirected += 1;
                }
                xdp_action::PASS => assert_eq!(out, frame, "frame {i} passed but modified"),
                xdp_action::DROP => {}
                other => panic!("frame {i}: unexpected action {other}: {frame:02x?}"),
            }
        }
        let total: u64 = Reason::ALL.iter().map(|r| lb.count(*r)).sum();
        assert_eq!(total, FRAMES as u64, "every frame counted exactly once");
        assert!(
            redirected > 1000,
            "the mix must exercise forwarding too ({redirected})"
        );
        assert!(
            lb.count(Reason::DropMalformed) > 1000,
            "and malformed drops"
        );
    });
}
