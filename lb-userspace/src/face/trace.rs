//! `POST /v1/trace`: starts the data path's sampling, reads what it samples from the ring
//! buffer until the count or the time is reached, stops it (also when the client goes away),
//! and turns each record into a view: the packet as it arrived, the reason, where it went, its
//! VIP.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{MapData, RingBuf};
use lb_common::{words_addr, Reason, TraceRecord, FAMILY_V4, FAMILY_V6};

use crate::{
    controller::{Command, Handle},
    model::{
        config::{Hook, Proto},
        trace::{TraceList, TraceQuery, TraceView},
        wire::VipView,
        Error, Result,
    },
};

/// How often the ring buffer is read while a trace runs.
const POLL: Duration = Duration::from_millis(10);

/// Gives the ring buffer back to the controller, which stops the sampling, when dropped: the
/// end of a trace, an error, or a client that went away mid-trace.
struct Lent {
    handle: Handle,
    ring: Option<RingBuf<MapData>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            let handle = self.handle.clone();
            tokio::spawn(async move { handle.send(Command::TraceStop(ring)).await });
        }
    }
}

/// Runs the trace `q` asks for.
pub async fn collect(handle: &Handle, q: TraceQuery) -> Result<TraceList> {
    let (count, limit, _) = q.bounds()?;
    let vips = handle.call(Command::Vips).await?;
    let ring = handle.call(|tx| Command::TraceStart(q, tx)).await??;
    let started = Instant::now();
    let started_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start_mono = monotonic_ns()?;
    let mut lent = Lent {
        handle: handle.clone(),
        ring: Some(ring),
    };
    let mut records = Vec::new();
    while records.len() < count as usize && started.elapsed() < limit {
        if let Some(ring) = lent.ring.as_mut() {
            while records.len() < count as usize {
                let Some(item) = ring.next() else { break };
                let Some(record) = read(&item) else { continue };
                records.push(view(&record, start_mono, &vips));
            }
        }
        tokio::time::sleep(POLL).await;
    }
    drop(lent);
    Ok(TraceList {
        records,
        seconds: started.elapsed().as_secs_f64(),
        started_unix_ns,
    })
}

/// A record as the ring buffer carries it (None if it is too short to be one).
fn read(bytes: &[u8]) -> Option<TraceRecord> {
    let size = std::mem::size_of::<TraceRecord>();
    (bytes.len() >= size).then(|| bytemuck::pod_read_unaligned(&bytes[..size]))
}

/// `CLOCK_MONOTONIC` now (the clock of the records' timestamps), ns.
fn monotonic_ns() -> Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| Error::internal("reading CLOCK_MONOTONIC", e))?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// What a packet's headers say: (protocol, source, destination, TCP flags).
type Headers = (String, Option<SocketAddr>, Option<SocketAddr>, String);

/// The protocol, endpoints and TCP flags of an Ethernet frame's first bytes.
pub fn headers(frame: &[u8]) -> Headers {
    let none = || ("-".to_string(), None, None, String::new());
    let Some(ethertype) = frame.get(12..14) else {
        return none();
    };
    let (proto, src, dst, l4): (u8, IpAddr, IpAddr, usize) = match ethertype {
        [0x08, 0x00] if frame.len() >= 34 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let addr =
                |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
            (frame[23], addr(26).into(), addr(30).into(), 14 + ihl)
        }
        [0x86, 0xdd] if frame.len() >= 54 => {
            let addr = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&frame[at..at + 16]);
                IpAddr::from(Ipv6Addr::from(a))
            };
            (frame[20], addr(22), addr(38), 54)
        }
        _ => return none(),
    };
    let name = match proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmpv6".to_string(),
        4 => "ipip".to_string(),
        41 => "ipv6".to_string(),
        p => p.to_string(),
    };
    let ports = frame.get(l4..l4 + 4).filter(|_| proto == 6 || proto == 17);
    let Some(p) = ports else {
        return (
            name,
            Some((src, 0).into()),
            Some((dst, 0).into()),
            String::new(),
        );
    };
    let (sport, dport) = (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    );
    let flags = match frame.get(l4 + 13) {
        Some(f) if proto == 6 => [
            (0x02, 'S'),
            (0x01, 'F'),
            (0x04, 'R'),
            (0x08, 'P'),
            (0x10, 'A'),
        ]
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect(),
        _ => String::new(),
    };
    (
        name,
        Some((src, sport).into()),
        Some((dst, dport).into()),
        flags,
    )
}

/// The view of `r`, whose clock started at `start_ns`, its VIP found in `vips`.
fn view(r: &TraceRecord, start_ns: u64, vips: &[VipView]) -> TraceView {
    let captured = usize::from(r.captured).min(r.bytes.len());
    let frame = &r.bytes[..captured];
    let (proto, src, dst, flags) = headers(frame);
    let reason = Reason::ALL
        .iter()
        .find(|x| **x as u8 == r.reason)
        .map_or("unknown", |x| x.name());
    let family = if r.out_addr[1..] == [0; 3] && src.is_some_and(|s| s.is_ipv4()) {
        FAMILY_V4
    } else {
        FAMILY_V6
    };
    let sent_to = (r.out_addr != [0; 4])
        .then(|| SocketAddr::new(words_addr(family, &r.out_addr), u16::from_be(r.out_port)));
    let is_proto = |p: Proto| match p {
        Proto::Tcp => proto == "tcp",
        Proto::Udp => proto == "udp",
    };
    // Its VIP: the service it was addressed to, or, for a reply, the one whose backend sent it.
    let vip = vips
        .iter()
        .find(|v| is_proto(v.proto) && dst.is_some_and(|d| d.ip() == v.addr && d.port() == v.port))
        .or_else(|| {
            vips.iter().find(|v| {
                is_proto(v.proto)
                    && src.is_some_and(|s| v.backends.iter().any(|b| b.socket_addr() == s))
            })
        })
        .map(|v| v.name.clone());
    let iface = nix::net::if_::if_indextoname(r.ifindex)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| r.ifindex.to_string());
    TraceView {
        at_ns: r.ns.saturating_sub(start_ns),
        hook: if r.hook == 1 { Hook::Tc } else { Hook::Xdp },
        iface,
        len: r.len,
        proto,
        src,
        dst,
        flags,
        reason: reason.to_string(),
        sent_to,
        vip,
        packet: frame.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `list` as a pcap file (microsecond timestamps, Ethernet, 128-byte snapshots).
pub fn pcap(list: &TraceList) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone 0, accuracy 0, snaplen, LINKTYPE_ETHERNET.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, lb_common::TRACE_SNAP as u32, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for r in &list.records {
        let bytes: Vec<u8> = (0..r.packet.len() / 2)
            .filter_map(|i| u8::from_str_radix(&r.packet[2 * i..2 * i + 2], 16).ok())
            .collect();
        let ns = list.started_unix_ns + r.at_ns;
        let record = [
            (ns / 1_000_000_000) as u32,
            (ns % 1_000_000_000 / 1000) as u32,
            bytes.len() as u32,
            r.len.max(bytes.len() as u32),
        ];
        for word in record {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_a_tcp_syn_and_of_what_is_not_ip() {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..38].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        f[34 + 13] = 0x12;
        let (proto, src, dst, flags) = headers(&f);
        assert_eq!(proto, "tcp");
        assert_eq!(src, Some("10.0.0.1:40000".parse().unwrap()));
        assert_eq!(dst, Some("10.0.0.2:80".parse().unwrap()));
        assert_eq!(flags, "SA");
        f[12] = 0x88;
        assert_eq!(headers(&f).0, "-");
        assert_eq!(headers(&f[..10]).1, None);
    }

    #[test]
    fn pcap_has_a_header_and_a_record_per_packet() {
        let view = |packet: &str, at_ns| TraceView {
            at_ns,
            hook: Hook::Tc,
            iface: "c0".into(),
            len: 60,
            proto: "tcp".into(),
            src: None,
            dst: None,
            flags: String::new(),
            reason: "fwd_nat".into(),
            sent_to: None,
            vip: None,
            packet: packet.into(),
        };
        let list = TraceList {
            records: vec![view("0a0b0c", 1_500), view("ff", 2_000_000_000)],
            seconds: 1.0,
            started_unix_ns: 1_000_000_000,
        };
        let p = pcap(&list);
        assert_eq!(&p[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(p.len(), 24 + (16 + 3) + (16 + 1));
        let rec = &p[24..];
        let word = |at: usize| u32::from_le_bytes(rec[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(8), word(12)), (1, 1, 3, 60));
        assert_eq!(&rec[16..19], &[0x0a, 0x0b, 0x0c]);
        assert_eq!(
            u32::from_le_bytes(rec[19..23].try_into().unwrap()),
            3,
            "2 s later"
        );
    }
}
