//! Building test frames with correct checksums, and verifying checksums from scratch: an
//! implementation independent of the data path's incremental updates.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// MAC used as the frame's source in test packets.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// MAC used as the frame's destination in test packets.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

/// TCP flags.
pub const SYN: u8 = 0x02;
/// TCP ACK.
pub const ACK: u8 = 0x10;

/// One's-complement sum of `data` as big-endian 16-bit words.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of an IPv4 header (checksum field included: 0 means valid).
pub fn ipv4_header_check(header: &[u8]) -> u16 {
    fold(sum16(header, 0))
}

/// TCP/UDP checksum over the pseudo header and segment (0 means valid when the segment
/// carries its checksum). IPv4 and IPv6 pseudo headers sum the same way for these fields.
pub fn l4_check(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut acc = sum16(&bytes(src), 0);
    acc = sum16(&bytes(dst), acc);
    acc += u32::from(proto);
    acc += segment.len() as u32;
    fold(sum16(segment, acc))
}

/// An IPv4 or IPv6 TCP or UDP frame description.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as the source).
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// TCP flags (ignored for UDP).
    pub flags: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A TCP segment with `flags`.
    pub fn tcp(
        src: impl Into<IpAddr>,
        sport: u16,
        dst: impl Into<IpAddr>,
        dport: u16,
        flags: u8,
    ) -> Self {
        Frame {
            src: src.into(),
            dst: dst.into(),
            sport,
            dport,
            proto: 6,
            flags,
            ttl: 64,
            payload: b"hello".to_vec(),
        }
    }

    /// A UDP datagram.
    pub fn udp(src: impl Into<IpAddr>, sport: u16, dst: impl Into<IpAddr>, dport: u16) -> Self {
        Frame {
            proto: 17,
            flags: 0,
            ..Frame::tcp(src, sport, dst, dport, 0)
        }
    }

    /// Ethernet + IPv4 + L4 bytes with valid checksums.
    pub fn bytes(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == 6 {
            l4.extend_from_slice(&1000u32.to_be_bytes()); // seq
            l4.extend_from_slice(&0u32.to_be_bytes()); // ack
            l4.push(5 << 4); // data offset
            l4.push(self.flags);
            l4.extend_from_slice(&65535u16.to_be_bytes()); // window
            l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
        } else {
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let check_at = if self.proto == 6 { 16 } else { 6 };
        let c = l4_check(self.src, self.dst, self.proto, &l4);
        l4[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());

        let (ip, ethertype) = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                (self.ipv4_header(src, dst, l4.len()), [0x08, 0x00])
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                (self.ipv6_header(src, dst, l4.len()), [0x86, 0xdd])
            }
            _ => panic!("source and destination must be the same family"),
        };
        let mut f = Vec::new();
        f.extend_from_slice(&DST_MAC);
        f.extend_from_slice(&SRC_MAC);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }

    fn ipv4_header(&self, src: Ipv4Addr, dst: Ipv4Addr, l4_len: usize) -> Vec<u8> {
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0]); // id, DF
        ip.push(self.ttl);
        ip.push(self.proto);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let c = ipv4_header_check(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip
    }

    fn ipv6_header(&self, src: Ipv6Addr, dst: Ipv6Addr, l4_len: usize) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(l4_len as u16).to_be_bytes());
        ip.push(self.proto);
        ip.push(self.ttl);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip
    }
}

/// A parsed view of an output frame, for assertions.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// L4 source port.
    pub sport: u16,
    /// L4 destination port.
    pub dport: u16,
    /// TTL.
    pub ttl: u8,
}

/// Parses an Ethernet/IPv4/TCP-or-UDP frame and checks both checksums from scratch.
pub fn parse_and_verify(frame: &[u8]) -> Parsed {
    parse_inner(frame, true)
}

/// Parses an Ethernet/IPv4/TCP-or-UDP frame without judging its checksums (a frame that came
/// in with a bad checksum keeps it: incremental updates preserve errors, as routers do).
pub fn parse(frame: &[u8]) -> Parsed {
    parse_inner(frame, false)
}

fn parse_inner(frame: &[u8], verify: bool) -> Parsed {
    assert!(
        frame.len() >= 14 + 20 + 8,
        "frame too short: {}",
        frame.len()
    );
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if verify {
        assert_eq!(
            ipv4_header_check(&ip[..ihl]),
            0,
            "IPv4 header checksum is wrong"
        );
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[ihl..tot];
    let proto = ip[9];
    let udp_no_sum = proto == 17 && l4[6] == 0 && l4[7] == 0;
    if verify && !udp_no_sum {
        assert_eq!(
            l4_check(src.into(), dst.into(), proto, l4),
            0,
            "L4 checksum is wrong"
        );
    }
    Parsed {
        dst_mac: frame[0..6].try_into().unwrap(),
        src_mac: frame[6..12].try_into().unwrap(),
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        ttl: ip[8],
    }
}

/// A parsed view of an IPv6 output frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed6 {
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// L4 source port.
    pub sport: u16,
    /// L4 destination port.
    pub dport: u16,
    /// Hop limit.
    pub hops: u8,
}

/// Parses an Ethernet/IPv6/TCP-or-UDP frame and checks the L4 checksum from scratch.
pub fn parse_and_verify6(frame: &[u8]) -> Parsed6 {
    assert!(
        frame.len() >= 14 + 40 + 8,
        "frame too short: {}",
        frame.len()
    );
    assert_eq!(&frame[12..14], &[0x86, 0xdd], "not IPv6");
    let ip = &frame[14..];
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
    let l4 = &ip[40..40 + payload];
    assert_eq!(
        l4_check(src.into(), dst.into(), ip[6], l4),
        0,
        "L4 checksum is wrong"
    );
    Parsed6 {
        dst_mac: frame[0..6].try_into().unwrap(),
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        hops: ip[7],
    }
}
