//! `lbctl trace`: the data path samples its decisions into a ring buffer while someone traces.
//! Off (one array read per packet) when nobody does.

/// Bytes of each sampled packet kept, from the start of its Ethernet header (as it arrived).
pub const TRACE_SNAP: usize = 128;

/// `LB_TRACE_CTL[0]`: what to sample. All zero (the state at load) means off. 32 bytes, host
/// byte order except where noted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TraceCtl {
    /// 1 while someone traces.
    pub on: u32,
    /// Sample one packet in this many (1 = every packet) of those the filter lets through.
    pub every: u32,
    /// Only packets from or to this address (raw network-order words, as in `FlowKey`);
    /// all zero = any.
    pub addr: [u32; 4],
    /// Only packets from or to this port, network byte order; 0 = any.
    pub port: u16,
    /// Always zero.
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<TraceCtl>() == 32);

/// One sampled decision, as `LB_TRACE` carries it (and `LB_TRACE_SCRATCH` stages it). 168
/// bytes, host byte order except where noted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TraceRecord {
    /// `CLOCK_MONOTONIC` time of the decision, ns.
    pub ns: u64,
    /// Interface the packet arrived on.
    pub ifindex: u32,
    /// Bytes of the packet on the wire.
    pub len: u32,
    /// The reason counted for it (a [`crate::Reason`] value).
    pub reason: u8,
    /// 0 = XDP, 1 = tc.
    pub hook: u8,
    /// Bytes of `bytes` that hold the packet.
    pub captured: u16,
    /// Where it was sent (a forwarded packet's new destination port, network byte order),
    /// 0 otherwise.
    pub out_port: u16,
    /// Always zero.
    pub _pad: u16,
    /// Where it was sent (a forwarded packet's new destination, or its outer destination
    /// when encapsulated, raw network-order words), zero otherwise.
    pub out_addr: [u32; 4],
    /// The packet as it arrived, from its Ethernet header.
    pub bytes: [u8; TRACE_SNAP],
}
const _: () = assert!(core::mem::size_of::<TraceRecord>() == 168);

/// `LB_TRACE_SCRATCH` value: the record being staged and this CPU's sampling counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TraceScratch {
    /// Packets the filter let through on this CPU.
    pub seen: u32,
    /// 1 while a record is staged.
    pub armed: u32,
    /// The record.
    pub record: TraceRecord,
}
const _: () = assert!(core::mem::size_of::<TraceScratch>() == 176);

/// Bytes of the `LB_TRACE` ring buffer (a power of two pages).
pub const TRACE_RING_BYTES: u32 = 1 << 20;
