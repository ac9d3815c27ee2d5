//! Ethernet -> IPv4 / IPv6 -> TCP/UDP parsing. Header fields are compared raw, in network byte
//! order, against constants; nothing read from the packet becomes a Rust enum.
//!
//! Decisions, each counted under its own `Reason`:
//! - VLAN-tagged frames (802.1Q, 802.1ad) pass to the stack untouched (`PassVlan`).
//! - Frames that are neither IPv4 nor IPv6 pass (`PassNotIp`); IP packets that are not TCP,
//!   UDP, ICMP or ICMPv6 pass (`PassNotVip`). ICMP to a VIP address: see the `icmp` stage.
//! - IPv4 with version != 4, IHL < 5, a total length shorter than its headers or longer than
//!   the frame, IPv6 with version != 6 or a payload longer than the frame, and truncated
//!   TCP/UDP headers are dropped (`DropMalformed`).
//! - IPv4 options are allowed: the L4 header is found at IHL * 4 and options are forwarded as is.
//! - IPv4 fragments (MF set or offset != 0) pass to the stack untouched (`PassFragment`): later
//!   fragments carry no ports, so no flow can be chosen for them.
//! - IPv6 packets whose first next-header is an extension header (hop-by-hop, routing,
//!   fragment, destination options, AH, ESP, mobility, HIP, shim6) pass to the stack untouched
//!   (`PassIpv6ExtHeader`): walking a chain of unknown length is not worth its cost for
//!   traffic that load-balanced services do not send.
use lb_common::{
    FlowKey, Reason, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use lb_ebpf::packet::{self, Frame};

/// `Flow::tcp_flags` bit: SYN (same value as in the TCP header's flags byte).
pub const TCP_SYN: u8 = 0x02;
/// `Flow::tcp_flags` bit: ACK.
pub const TCP_ACK: u8 = 0x10;
/// `Flow::tcp_flags` bit: FIN.
pub const TCP_FIN: u8 = 0x01;
/// `Flow::tcp_flags` bit: RST.
pub const TCP_RST: u8 = 0x04;

/// Offset of the IP header: right after an untagged Ethernet header.
pub const L3: usize = EthHdr::LEN;

/// A parsed TCP/UDP packet over IPv4 or IPv6 (`key.family` tells which).
pub struct Flow {
    /// Offset of the TCP/UDP header in the frame.
    pub l4: usize,
    /// The flow as seen on the wire.
    pub key: FlowKey,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// Offset of the L4 checksum within the L4 header.
    pub l4_check: usize,
}

/// Parses the frame up to the L4 ports.
#[inline(always)]
pub fn parse<F: Frame>(ctx: &F) -> Result<Flow, Reason> {
    let eth: EthHdr = packet::load(ctx, 0).map_err(|_| Reason::PassNotIp)?;
    match eth.ether_type {
        ETH_P_IP => parse_v4(ctx),
        ETH_P_IPV6 => parse_v6(ctx),
        ETH_P_8021Q | ETH_P_8021AD => Err(Reason::PassVlan),
        _ => Err(Reason::PassNotIp),
    }
}

#[inline(always)]
fn parse_v4<F: Frame>(ctx: &F) -> Result<Flow, Reason> {
    let ip: Ipv4Hdr = packet::load(ctx, L3)?;
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Reason::DropMalformed);
    }
    let tot_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if tot_len < ihl || L3 + tot_len > ctx.wire_len() {
        return Err(Reason::DropMalformed);
    }
    // More-fragments flag or a non-zero fragment offset.
    if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
        return Err(Reason::PassFragment);
    }
    if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP && ip.proto != PROTO_ICMP {
        return Err(Reason::PassNotVip);
    }
    let addr = |a: [u8; 4]| [u32::from_ne_bytes(a), 0, 0, 0];
    let key = FlowKey {
        src: addr(ip.src_addr),
        dst: addr(ip.dst_addr),
        proto: ip.proto,
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    l4(ctx, key, L3 + ihl, tot_len - ihl)
}

#[inline(always)]
fn parse_v6<F: Frame>(ctx: &F) -> Result<Flow, Reason> {
    let ip: Ipv6Hdr = packet::load(ctx, L3)?;
    if ip.vcf[0] >> 4 != 6 {
        return Err(Reason::DropMalformed);
    }
    let payload = usize::from(u16::from_be_bytes(ip.payload_len));
    if L3 + Ipv6Hdr::LEN + payload > ctx.wire_len() {
        return Err(Reason::DropMalformed);
    }
    match ip.next_hdr {
        PROTO_TCP | PROTO_UDP | PROTO_ICMPV6 => {}
        // hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => return Err(Reason::PassIpv6ExtHeader),
        _ => return Err(Reason::PassNotVip),
    }
    let key = FlowKey {
        src: words(ip.src_addr),
        dst: words(ip.dst_addr),
        proto: ip.next_hdr,
        family: FAMILY_V6,
        ..FlowKey::default()
    };
    l4(ctx, key, L3 + Ipv6Hdr::LEN, payload)
}

/// An IPv6 address as four raw network-order words.
#[inline(always)]
pub fn words(a: [u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// Reads the TCP/UDP ports at `l4`, with `l4_len` bytes of L4 data according to the IP header.
/// ICMP and ICMPv6 have no ports (both 0); the `icmp` stage reads their header.
#[inline(always)]
fn l4<F: Frame>(ctx: &F, mut key: FlowKey, l4: usize, l4_len: usize) -> Result<Flow, Reason> {
    if key.proto == PROTO_ICMP || key.proto == PROTO_ICMPV6 {
        return Ok(Flow {
            l4,
            key,
            tcp_flags: 0,
            l4_check: 2,
        });
    }
    let (sport, dport, tcp_flags, l4_check, min_len) = if key.proto == PROTO_TCP {
        let tcp: TcpHdr = packet::load(ctx, l4)?;
        let mut flags = 0;
        if tcp.syn() != 0 {
            flags |= TCP_SYN;
        }
        if tcp.ack() != 0 {
            flags |= TCP_ACK;
        }
        if tcp.fin() != 0 {
            flags |= TCP_FIN;
        }
        if tcp.rst() != 0 {
            flags |= TCP_RST;
        }
        (tcp.source, tcp.dest, flags, 16, TcpHdr::LEN)
    } else {
        let udp: UdpHdr = packet::load(ctx, l4)?;
        (udp.src, udp.dst, 0, 6, UdpHdr::LEN)
    };
    if l4_len < min_len {
        return Err(Reason::DropMalformed);
    }
    key.sport = u16::from_ne_bytes(sport);
    key.dport = u16::from_ne_bytes(dport);
    Ok(Flow {
        l4,
        key,
        tcp_flags,
        l4_check,
    })
}
