//! The map layouts: capacities, key and value types (`#[repr(C)]`, explicit padding, sizes
//! asserted at compile time), flags and the ring layout.

/// Capacity of `LB_VIPS` and `LB_VIP_ADDRS`; vip ids are `0..MAX_VIPS`.
pub const MAX_VIPS: u32 = 512;
/// Capacity of `LB_BACKENDS`; backend ids are `1..MAX_BACKENDS`, id 0 is reserved for "none".
pub const MAX_BACKENDS: u32 = 4096;
/// Backend id meaning "no backend" (an empty ring slot).
pub const BACKEND_NONE: u32 = 0;
/// Ring (Maglev table) sizes a VIP may use, in slots: primes, so Maglev's permutations cover
/// every slot. Each VIP holds two buffers of its size in `LB_RINGS` (4 bytes a slot); Maglev
/// wants a size well above 100 times the backend count.
pub const RING_SIZES: [u32; 7] = [1021, 4093, 16381, 65537, 262_139, 1_048_573, 4_194_301];
/// Largest ring size.
pub const RING_MAX: u32 = 4_194_301;
/// Default capacity of `LB_RINGS`, in slots (the loader sets it from `lbd.ring_slots`):
/// 64 MiB, two buffers of 65537 slots for 128 VIPs, or of 1048573 for 8.
pub const RING_SLOTS: u32 = 1 << 24;
/// Default capacity of `LB_CONNS`, in entries (the loader sets it from `lbd.max_flows`: each
/// NAT flow uses two, forward and reply; a DSR flow one).
pub const MAX_CONNS: u32 = 2 << 20;
/// Default capacity of `LB_PROBATION`, in entries (the loader sets it to a quarter of
/// `LB_CONNS`, at least this).
pub const MAX_PROBATION: u32 = 65_536;
/// `BPF_F_NO_COMMON_LRU`: `LB_CONNS` and `LB_PROBATION` keep one LRU list per CPU, so inserts on different
/// CPUs never contend for a shared lock (flows are steered to one CPU by RSS anyway).
pub const CONNS_MAP_FLAGS: u32 = 1 << 1;
/// Capacity of `LB_TX_PORTS`, in interfaces.
pub const MAX_TX_PORTS: u32 = 64;

/// `BPF_F_MMAPABLE`: `LB_RINGS` and `LB_FILTER` are created mmap-able so the controller writes a whole ring with
/// plain stores instead of one syscall per slot.
pub const RINGS_MAP_FLAGS: u32 = 1 << 10;
/// Bytes of one element of the mmap-ed arrays (`LB_FILTER`: a `u64`; `LB_RINGS`: two `u32`
/// slots, host byte order, so ring slot `s` is the `u32` at byte `4 * s`).
pub const MMAP_ELEM: usize = 8;

/// Prefilters that let traffic which is not ours skip hash lookups. `LB_FILTER` holds three
/// bitmaps of 65,536 bits (1,024 `u64` words each, host byte order). A clear bit proves the
/// packet is not ours; a set bit only means "look it up". The controller sets bits before the
/// maps they guard gain entries and clears them after the entries are gone.
pub mod filter {
    /// Words per bitmap.
    pub const WORDS: u32 = 1024;
    /// Bitmap of destination ports that some VIP uses (host byte order port numbers).
    pub const VIP_PORTS: u32 = 0;
    /// Bitmap of [`fold`] values of VIP addresses.
    pub const VIP_ADDRS: u32 = 1;
    /// Bitmap of source ports that some backend uses (NAT replies come from them).
    pub const BACKEND_PORTS: u32 = 2;
    /// Total words in `LB_FILTER`.
    pub const TOTAL_WORDS: u32 = 3 * WORDS;

    /// Word index and bit mask of `value` in bitmap `map`.
    #[inline(always)]
    pub const fn locate(map: u32, value: u16) -> (u32, u64) {
        (map * WORDS + (value as u32) / 64, 1u64 << (value % 64))
    }

    /// 16-bit fold of an address (raw network-order words), the key of [`VIP_ADDRS`].
    #[inline(always)]
    pub const fn fold(addr: &[u32; 4]) -> u16 {
        let x = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
        ((x >> 16) ^ x) as u16
    }
}

/// Bit of [`VipMeta::ring`] that selects which of the VIP's two ring buffers is live.
pub const RING_BUF_BIT: u32 = 1 << 31;

/// Key of `LB_VIPS`: what a client addresses. 20 bytes. Every VIP address also has an entry
/// with port 0 and proto [`PROTO_ICMP`] / [`PROTO_ICMPV6`], so the data path answers pings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VipKey {
    /// VIP address, raw network-order words (IPv4 in word 0, words 1..3 zero).
    pub addr: [u32; 4],
    /// VIP port, network byte order.
    pub port: u16,
    /// IP protocol ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

/// Value of `LB_VIPS`. 20 bytes, host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VipMeta {
    /// Index of this VIP in `LB_VIP_ADDRS` and of its ring buffers in `LB_RINGS`.
    pub vip_id: u32,
    /// Live ring: [`RING_BUF_BIT`] selects the buffer, the low 31 bits are the ring size in
    /// slots (0 = no backends). One 32-bit value, so a ring swap is a single atomic update.
    pub ring: u32,
    /// Forwarding mode ([`MODE_NAT`] or [`MODE_DSR`]).
    pub mode: u8,
    /// Always zero.
    pub _pad: [u8; 3],
    /// First `LB_RINGS` slot of each of the VIP's two ring buffers (buffer 0, buffer 1).
    pub base: [u32; 2],
}
const _: () = assert!(core::mem::size_of::<VipMeta>() == 20);

impl VipMeta {
    /// The `LB_RINGS` slot that ring position `pos` (below the live size) of this VIP is in.
    #[inline(always)]
    pub const fn slot(&self, pos: u32) -> u32 {
        self.base[(self.ring >> 31) as usize] + pos
    }
}

/// Value of `LB_BACKENDS`: where a backend listens. 20 bytes. A zero `family` marks a free id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Backend {
    /// Backend address, raw network-order words (IPv4 in word 0).
    pub addr: [u32; 4],
    /// Backend port, network byte order.
    pub port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`]; 0 = unused slot.
    pub family: u8,
    /// Always zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 20);

/// Key of `LB_CONNS`: a flow's 5-tuple as seen on the wire in one direction. 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlowKey {
    /// Source address, raw network-order words.
    pub src: [u32; 4],
    /// Destination address, raw network-order words.
    pub dst: [u32; 4],
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// [`ConnEntry::dir`]: the key is client -> VIP.
pub const DIR_FORWARD: u8 = 0;
/// [`ConnEntry::dir`]: the key is backend -> client (a NAT reply).
pub const DIR_REPLY: u8 = 1;

/// Per-CPU state of the new-flow limit (`LB_FLOW_RATE`, one element). 8 bytes, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlowRate {
    /// Time unit (2^[`TIME_UNIT_SHIFT`] ns) the count belongs to.
    pub window: u32,
    /// New flows recorded in that unit.
    pub count: u32,
}
const _: () = assert!(core::mem::size_of::<FlowRate>() == 8);

/// Per-CPU traffic counters of a VIP or a backend (forward direction). 24 bytes, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TrafficStats {
    /// Packets.
    pub packets: u64,
    /// Bytes, Ethernet frames as received.
    pub bytes: u64,
    /// Flows balanced afresh (connection table inserts).
    pub new_flows: u64,
}
const _: () = assert!(core::mem::size_of::<TrafficStats>() == 24);

/// A cached next hop: the result of `bpf_fib_lookup`, so packets skip the route lookup. Valid
/// while `epoch` equals the low 16 bits of `LB_NH_EPOCH`. 20 bytes; integers in host byte
/// order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NextHop {
    /// Egress interface index; 0 = nothing cached.
    pub ifindex: u32,
    /// Low 16 bits of `LB_NH_EPOCH` when this was looked up (the epoch moves every 5 s, so it
    /// wraps after 91 hours; a stale entry that old would only repeat its lookup's answer).
    pub epoch: u16,
    /// MTU of the egress interface, bytes (IP packet length); 0 = unknown.
    pub mtu: u16,
    /// Next hop MAC (Ethernet destination), wire order.
    pub dmac: [u8; 6],
    /// Egress interface MAC (Ethernet source), wire order.
    pub smac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<NextHop>() == 20);

/// [`ConnEntry::flags`]: the client sent FIN or RST; the flow no longer counts as active.
pub const CONN_F_CLOSED: u8 = 1;

/// Unit of [`ConnEntry::last_seen`]: 2^30 ns (about 1.07 s) of `bpf_ktime_get_coarse_ns`.
pub const TIME_UNIT_SHIFT: u32 = 30;

/// Value of `LB_CONNS`. 36 bytes, host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConnEntry {
    /// Backend chosen for the flow.
    pub backend_id: u32,
    /// VIP the flow was addressed to (index into `LB_VIP_ADDRS`).
    pub vip_id: u32,
    /// Monotonic time (units of 2^[`TIME_UNIT_SHIFT`] ns) the flow was created; UDP flows
    /// refresh it on every packet and are re-balanced when idle longer than the configured
    /// timeout.
    pub last_seen: u32,
    /// Reply entries: the next hop towards the client, filled by the first reply. Forward
    /// entries leave it empty: the next hop towards a backend is cached per backend in
    /// `LB_BACKEND_NH`.
    pub nh: NextHop,
    /// [`DIR_FORWARD`] or [`DIR_REPLY`].
    pub dir: u8,
    /// [`CONN_F_CLOSED`] bits.
    pub flags: u8,
    /// The VIP's forwarding mode ([`MODE_NAT`] or [`MODE_DSR`]), so an established flow is
    /// forwarded without looking its VIP up.
    pub mode: u8,
    /// Always zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<ConnEntry>() == 36);
