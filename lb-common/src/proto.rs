//! Protocol constants both sides compare packet fields with: address families, IP protocol
//! numbers, EtherTypes (as the two wire bytes read into a native `u16`) and forwarding modes.

/// Address family tag stored in keys and records: IPv4.
pub const FAMILY_V4: u8 = 4;
/// Address family tag stored in keys and records: IPv6.
pub const FAMILY_V6: u8 = 6;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Forwarding mode of a VIP: destination NAT both ways (replies return through the balancer).
pub const MODE_NAT: u8 = 0;
/// Forwarding mode of a VIP: direct server return. The packet is encapsulated (IPv4-in-IPv4 or
/// IPv6-in-IPv6) to the backend, which decapsulates it (`lb_decap`), holds the VIP on a
/// loopback and answers the client directly.
pub const MODE_DSR: u8 = 1;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// IP protocol number of IPv4-in-IP encapsulation.
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP encapsulation.
pub const PROTO_IPV6: u8 = 41;

/// EtherType IPv4, as the two wire bytes read into a native `u16` (compare with the raw field).
pub const ETH_P_IP: u16 = u16::from_ne_bytes([0x08, 0x00]);
/// EtherType IPv6, wire bytes as a native `u16`.
pub const ETH_P_IPV6: u16 = u16::from_ne_bytes([0x86, 0xdd]);
/// EtherType 802.1Q VLAN tag, wire bytes as a native `u16`.
pub const ETH_P_8021Q: u16 = u16::from_ne_bytes([0x81, 0x00]);
/// EtherType 802.1ad (QinQ) service tag, wire bytes as a native `u16`.
pub const ETH_P_8021AD: u16 = u16::from_ne_bytes([0x88, 0xa8]);
