//! `lbctl trace`'s wire types: which decisions to sample (`POST /v1/trace`) and what was
//! sampled.
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{config::Hook, Error};

/// Most records one trace returns.
pub const MAX_COUNT: u32 = 10_000;
/// Longest one trace runs, seconds (the API's clients wait for it).
pub const MAX_SECONDS: f64 = 20.0;

/// Body of `POST /v1/trace`: every filter given must match (a packet from or to the address,
/// from or to the port); the trace ends after `count` records or `seconds`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    /// Only packets to or from this VIP's address and port.
    #[serde(default)]
    pub vip: Option<String>,
    /// Only packets from or to this address.
    #[serde(default)]
    pub addr: Option<IpAddr>,
    /// Only packets from or to this port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Records to collect (default 100, at most 10,000).
    #[serde(default)]
    pub count: Option<u32>,
    /// Seconds to trace at most (default 5, at most 20).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Sample one packet in this many of those the filters let through (default 1).
    #[serde(default)]
    pub every: Option<u32>,
}

impl TraceQuery {
    /// The bounds it asks for: (records, time, sampling), each checked.
    pub fn bounds(&self) -> Result<(u32, Duration, u32), Error> {
        let count = self.count.unwrap_or(100);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(Error::invalid("count", format!("must be 1-{MAX_COUNT}")));
        }
        let seconds = self.seconds.unwrap_or(5.0);
        if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
            return Err(Error::invalid(
                "seconds",
                format!("must be more than 0 and at most {MAX_SECONDS}"),
            ));
        }
        let every = self.every.unwrap_or(1);
        if every == 0 {
            return Err(Error::invalid("every", "must be at least 1"));
        }
        if self.port == Some(0) {
            return Err(Error::invalid("port", "must be 1-65535"));
        }
        if self.addr.is_some_and(|a| a.is_unspecified()) {
            return Err(Error::invalid(
                "addr",
                "must be an address, not 0.0.0.0 or ::",
            ));
        }
        Ok((count, Duration::from_secs_f64(seconds), every))
    }
}

/// One sampled decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    /// Nanoseconds since the trace began.
    pub at_ns: u64,
    /// Where the packet was met.
    pub hook: Hook,
    /// Interface it arrived on (name, or index when the name is unknown).
    pub iface: String,
    /// Bytes on the wire.
    pub len: u32,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `ipv6`, or the protocol number.
    pub proto: String,
    /// Source, as it arrived.
    pub src: Option<SocketAddr>,
    /// Destination, as it arrived.
    pub dst: Option<SocketAddr>,
    /// TCP flags (`S`, `SA`, `A`, `FA`, `R`, ...), empty for other protocols.
    pub flags: String,
    /// The reason counted for it (`fwd_nat`, `pass_not_vip`, ...).
    pub reason: String,
    /// Where it was sent, if it was forwarded or answered.
    pub sent_to: Option<SocketAddr>,
    /// The VIP it belongs to, if any.
    pub vip: Option<String>,
    /// The bytes captured, from the Ethernet header, hex (for `--pcap`).
    pub packet: String,
}

/// The answer of `POST /v1/trace`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceList {
    /// What was sampled, oldest first.
    pub records: Vec<TraceView>,
    /// How long the trace ran, seconds.
    pub seconds: f64,
    /// Wall-clock time the trace began, ns since the Unix epoch (for pcap timestamps).
    pub started_unix_ns: u64,
}
