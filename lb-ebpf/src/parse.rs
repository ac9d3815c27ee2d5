//! Ethernet -> IPv4 -> TCP/UDP parsing. Header fields are compared raw, in network byte order,
//! against constants; nothing read from the packet becomes a Rust enum.
//!
//! Decisions, each counted under its own `Reason`:
//! - VLAN-tagged frames (802.1Q, 802.1ad) pass to the stack untouched (`PassVlan`).
//! - Non-IPv4 frames pass (`PassNotIp`); non-TCP/UDP IPv4 passes (`PassNotVip`).
//! - IPv4 with version != 4, IHL < 5, a total length shorter than its headers or longer than
//!   the frame, or a truncated TCP/UDP header is dropped (`DropMalformed`).
//! - IPv4 options are allowed: the L4 header is found at IHL * 4 and options are forwarded as is.
//! - Fragments (MF set or offset != 0) pass to the stack untouched (`PassFragment`): later
//!   fragments carry no ports, so no flow can be chosen for them.
use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, Reason, FAMILY_V4, PROTO_TCP, PROTO_UDP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

use crate::packet;

/// EtherType IPv4, as the two wire bytes read into a native u16.
const ETH_P_IP: u16 = u16::from_ne_bytes([0x08, 0x00]);
/// EtherType 802.1Q VLAN tag.
const ETH_P_8021Q: u16 = u16::from_ne_bytes([0x81, 0x00]);
/// EtherType 802.1ad (QinQ) service tag.
const ETH_P_8021AD: u16 = u16::from_ne_bytes([0x88, 0xa8]);

/// `Ipv4Flow::tcp_flags` bit: SYN (same value as in the TCP header's flags byte).
pub const TCP_SYN: u8 = 0x02;
/// `Ipv4Flow::tcp_flags` bit: ACK.
pub const TCP_ACK: u8 = 0x10;

/// Offset of the IPv4 header: right after an untagged Ethernet header.
pub const L3: usize = EthHdr::LEN;

/// A parsed IPv4 TCP/UDP packet.
pub struct Ipv4Flow {
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
pub fn parse(ctx: &XdpContext) -> Result<Ipv4Flow, Reason> {
    let eth: EthHdr = packet::load(ctx, 0).map_err(|_| Reason::PassNotIp)?;
    if eth.ether_type != ETH_P_IP {
        if eth.ether_type == ETH_P_8021Q || eth.ether_type == ETH_P_8021AD {
            return Err(Reason::PassVlan);
        }
        return Err(Reason::PassNotIp);
    }
    let ip: Ipv4Hdr = packet::load(ctx, L3)?;
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Reason::DropMalformed);
    }
    let tot_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if tot_len < ihl || L3 + tot_len > packet::len(ctx) {
        return Err(Reason::DropMalformed);
    }
    // More-fragments flag or a non-zero fragment offset.
    if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
        return Err(Reason::PassFragment);
    }
    let l4 = L3 + ihl;
    let (sport, dport, tcp_flags, l4_check, l4_len) = match ip.proto {
        PROTO_TCP => {
            let tcp: TcpHdr = packet::load(ctx, l4)?;
            let mut flags = 0;
            if tcp.syn() != 0 {
                flags |= TCP_SYN;
            }
            if tcp.ack() != 0 {
                flags |= TCP_ACK;
            }
            (tcp.source, tcp.dest, flags, 16, TcpHdr::LEN)
        }
        PROTO_UDP => {
            let udp: UdpHdr = packet::load(ctx, l4)?;
            (udp.src, udp.dst, 0, 6, UdpHdr::LEN)
        }
        _ => return Err(Reason::PassNotVip),
    };
    if tot_len < ihl + l4_len {
        return Err(Reason::DropMalformed);
    }
    Ok(Ipv4Flow {
        l4,
        key: FlowKey {
            src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
            dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
            sport: u16::from_ne_bytes(sport),
            dport: u16::from_ne_bytes(dport),
            proto: ip.proto,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        tcp_flags,
        l4_check,
    })
}
