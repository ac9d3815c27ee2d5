//! The map ABI shared by the XDP programs (`lb-ebpf`) and the controller (`lb-userspace`).
//!
//! Every key and value is `#[repr(C)]`, has explicit padding fields (always written as zero, so
//! hash keys compare byte-for-byte), holds only integers, and has a compile-time size assertion.
//! Addresses are stored as `[u32; 4]` whose words hold the raw packet bytes (network byte order in
//! memory): an IPv4 address fills word 0 and leaves words 1..3 zero. Ports are network byte order.
#![no_std]

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

/// DSR outer source addresses: IPv4 `172.16.X.Y` and IPv6 `fd00:0:0:ffff::XY`, where the low
/// 16 bits are [`encap_source_low`] of the flow, so receivers spreading by outer addresses
/// (RSS) spread flows while one flow stays on one queue.
pub const ENCAP_SRC_V4_PREFIX: [u8; 2] = [172, 16];
/// First 14 bytes of the IPv6 DSR outer source (the last two are per flow).
pub const ENCAP_SRC_V6_PREFIX: [u8; 14] = [0xfd, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0];

/// The per-flow low 16 bits of a DSR outer source: a fold of the client address and port.
#[inline(always)]
pub const fn encap_source_low(key: &FlowKey) -> u16 {
    let x = key.src[0] ^ key.src[1] ^ key.src[2] ^ key.src[3];
    ((x ^ (x >> 16)) as u16) ^ key.sport
}

/// Map names, as they appear in the object file and under `/sys/fs/bpf/<instance>/`.
pub mod map_names {
    /// `HashMap<VipKey, VipMeta>`.
    pub const VIPS: &str = "LB_VIPS";
    /// `Array<VipKey>` indexed by vip id: the reverse of `LB_VIPS`, for reply rewriting.
    pub const VIP_ADDRS: &str = "LB_VIP_ADDRS";
    /// `Array<Backend>` indexed by backend id.
    pub const BACKENDS: &str = "LB_BACKENDS";
    /// `Array<u32>` of backend ids: per VIP two ring buffers of `RING_MAX` slots each.
    pub const RINGS: &str = "LB_RINGS";
    /// `LruHashMap<FlowKey, ConnEntry>`: forward and reply directions of every tracked flow.
    pub const CONNS: &str = "LB_CONNS";
    /// `LruHashMap<FlowKey, ConnEntry>`: flows met past the new-flow limit, until their second
    /// forward packet moves them to `LB_CONNS` (see [`crate::NEW_FLOW_LIMIT_GLOBAL`]).
    pub const PROBATION: &str = "LB_PROBATION";
    /// `PerCpuArray<u64>` indexed by [`crate::Reason`] values.
    pub const STATS: &str = "LB_STATS";
    /// `DevMapHash` keyed by ifindex: the interfaces `lb_xdp` may redirect to.
    pub const TX_PORTS: &str = "LB_TX_PORTS";
    /// `Array<NextHop>` indexed by backend id: the next hop towards each backend.
    pub const BACKEND_NH: &str = "LB_BACKEND_NH";
    /// `Array<u64>`, mmap-able: the prefilter bitmaps (see [`crate::filter`]).
    pub const FILTER: &str = "LB_FILTER";
    /// `ProgramArray`, pinned (a prog array is emptied when no user reference is left): slot 0
    /// holds `lb_icmp`, which `lb_xdp` tail-calls for ICMP to a VIP address, slot 1
    /// `lb_too_big`, tail-called for a DSR packet too big to encapsulate; each gets a stack of
    /// its own.
    pub const PROGS: &str = "LB_PROGS";
    /// `PerCpuArray<TrafficStats>` indexed by vip id: traffic to each VIP.
    pub const VIP_STATS: &str = "LB_VIP_STATS";
    /// `PerCpuArray<TrafficStats>` indexed by backend id: traffic sent to each backend.
    pub const BACKEND_STATS: &str = "LB_BACKEND_STATS";
    /// `Array<u32>` with one element: next-hop cache epoch; bumping it makes every flow look
    /// its next hop up again on its next packet.
    pub const NH_EPOCH: &str = "LB_NH_EPOCH";

    /// Every map the object must define.
    pub const ALL: [&str; 13] = [
        VIPS,
        VIP_ADDRS,
        BACKENDS,
        RINGS,
        CONNS,
        STATS,
        TX_PORTS,
        BACKEND_NH,
        NH_EPOCH,
        FILTER,
        VIP_STATS,
        BACKEND_STATS,
        PROGS,
    ];
}

/// Program names in the object files.
pub mod prog_names {
    /// The balancer program, attached to every interface of the balancer host.
    pub const LB_XDP: &str = "lb_xdp";
    /// ICMP to VIP addresses, tail-called by `lb_xdp` (slot 0 of `LB_PROGS`).
    pub const LB_ICMP: &str = "lb_icmp";
    /// "Fragmentation needed" / "packet too big" for a DSR packet that would exceed the MTU
    /// once encapsulated, tail-called by `lb_xdp` (slot 1 of `LB_PROGS`).
    pub const LB_TOO_BIG: &str = "lb_too_big";
    /// Bench object: restores the original frame, then tail-calls the program under test.
    pub const LB_BENCH: &str = "lb_bench";
    /// Bench object: `return XDP_PASS`, the floor every figure is compared with.
    pub const LB_PASS: &str = "lb_pass";
    /// Bench object: grows the frame by 20 bytes and passes (harness calibration).
    pub const LB_GROW: &str = "lb_grow";
    /// Bench object: `return XDP_TX`, the raw forwarding ceiling of `bench e2e`.
    pub const LB_TX: &str = "lb_tx";
    /// Decap object: strips DSR encapsulation on backend hosts.
    pub const LB_DECAP: &str = "lb_decap";
}

/// Maps of the bench object (`lb-bench`), which measures `lb_xdp` with BPF_PROG_TEST_RUN.
pub mod bench {
    /// Length of every bench frame, in bytes (frames are padded to it).
    pub const FRAME_LEN: usize = 128;
    /// `Array<BenchFrame>` with one element: the frame each iteration starts from.
    pub const FRAME_MAP: &str = "BENCH_FRAME";
    /// `ProgramArray` with one slot: the program under test.
    pub const TARGET_MAP: &str = "BENCH_TARGET";
    /// `PerCpuArray<u32>` with one element: iteration counter for varied source ports.
    pub const SEQ_MAP: &str = "BENCH_SEQ";

    /// The value of `BENCH_FRAME`. 136 bytes.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
    pub struct BenchFrame {
        /// Byte offset of a 16-bit field (a source port) that gets the iteration counter,
        /// network byte order, so each iteration is a new flow; 0 = leave the frame as is.
        pub vary_off: u32,
        /// Always zero.
        pub _pad: u32,
        /// The frame.
        pub bytes: [u8; FRAME_LEN],
    }
    const _: () = assert!(core::mem::size_of::<BenchFrame>() == 136);

    #[cfg(feature = "user")]
    // SAFETY: `#[repr(C)]`, integers and a byte array only, no implicit padding.
    unsafe impl aya::Pod for BenchFrame {}
}

/// Read-only global (`u32`) of `lb_xdp`: how long a UDP flow may be idle before its next
/// datagram is balanced afresh, in units of 2^[`TIME_UNIT_SHIFT`] ns.
pub const UDP_IDLE_GLOBAL: &str = "LB_UDP_IDLE";

/// Read-only global (`u32`) of `lb_xdp`: the most new flows one CPU records in the connection
/// table per time unit (2^[`TIME_UNIT_SHIFT`] ns). Past it, new flows are recorded in the
/// probation table instead (counted as [`Reason::FwdProbation`]) and move to the connection
/// table with their second forward packet (TCP: the handshake's ACK; UDP: the next datagram),
/// which spoofed sources never send: a flood cannot evict established flows. 0 = no limit.
pub const NEW_FLOW_LIMIT_GLOBAL: &str = "LB_NEW_FLOW_LIMIT";

/// Read-only global (`u32`) of `lb_xdp`: the flow hash seed, set at load time. Every balancer
/// host of a fleet must use the same seed so they all pick the same backend for a flow.
pub const HASH_SEED_GLOBAL: &str = "LB_HASH_SEED";

/// Capacity of `LB_VIPS` and `LB_VIP_ADDRS`; vip ids are `0..MAX_VIPS`.
pub const MAX_VIPS: u32 = 64;
/// Capacity of `LB_BACKENDS`; backend ids are `1..MAX_BACKENDS`, id 0 is reserved for "none".
pub const MAX_BACKENDS: u32 = 4096;
/// Backend id meaning "no backend" (an empty ring slot).
pub const BACKEND_NONE: u32 = 0;
/// Largest ring (Maglev table) size, in slots; each VIP owns `2 * RING_MAX` slots of `LB_RINGS`.
pub const RING_MAX: u32 = 65537;
/// Ring sizes a VIP may use: primes, so Maglev's permutations cover every slot.
pub const RING_SIZES: [u32; 4] = [65537, 16381, 4093, 1021];
/// Capacity of `LB_CONNS`, in entries (each flow uses two: forward and reply).
pub const MAX_CONNS: u32 = 262_144;
/// Capacity of `LB_PROBATION`, in entries (NAT flows use two, DSR flows one).
pub const MAX_PROBATION: u32 = 65_536;
/// `BPF_F_NO_COMMON_LRU`: `LB_CONNS` and `LB_PROBATION` keep one LRU list per CPU, so inserts on different
/// CPUs never contend for a shared lock (flows are steered to one CPU by RSS anyway).
pub const CONNS_MAP_FLAGS: u32 = 1 << 1;
/// Capacity of `LB_TX_PORTS`, in interfaces.
pub const MAX_TX_PORTS: u32 = 64;

/// `BPF_F_MMAPABLE`: `LB_RINGS` and `LB_FILTER` are created mmap-able so the controller writes a whole ring with
/// plain stores instead of one syscall per slot.
pub const RINGS_MAP_FLAGS: u32 = 1 << 10;
/// Bytes between two slots of `LB_RINGS` in its mmap-ed memory (the kernel rounds array values
/// up to 8 bytes); each slot holds a `u32` backend id, host byte order, in its first 4 bytes.
pub const RING_SLOT_STRIDE: usize = 8;

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

/// Index of the first slot of buffer `buf` (0 or 1) of VIP `vip_id` in `LB_RINGS`.
pub const fn ring_base(vip_id: u32, buf: u32) -> u32 {
    (vip_id * 2 + buf) * RING_MAX
}

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

/// Value of `LB_VIPS`. 12 bytes, host byte order.
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
}
const _: () = assert!(core::mem::size_of::<VipMeta>() == 12);

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

/// Why a packet got its verdict: the index of its counter in `LB_STATS`. Each reason implies
/// exactly one XDP action ([`Reason::action`]), so one counter per packet tells both.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Neither IPv4 nor IPv6 (ARP, LLDP, ...): handed to the stack.
    PassNotIp = 0,
    /// IP but not TCP/UDP to a VIP, and not a tracked NAT reply: handed to the stack.
    PassNotVip = 1,
    /// Frame carries an 802.1Q/802.1ad tag: handed to the stack untouched (VLANs unsupported).
    PassVlan = 2,
    /// IPv4 fragment: ports unknown, handed to the stack untouched.
    PassFragment = 3,
    /// TTL / hop limit would expire: handed to the stack, which answers time exceeded.
    PassTtl = 4,
    /// Rewritten, but the next hop's MAC is not resolved yet: the stack forwards it (and
    /// resolves the neighbour for the next packets).
    PassNoNeigh = 5,
    /// Rewritten, but the egress interface is not one `lb_xdp` redirects to: the stack forwards.
    PassSlowPath = 6,
    /// Client -> VIP packet rewritten (NAT) or encapsulated (DSR) to its backend and redirected.
    FwdNat = 7,
    /// Backend reply rewritten back to VIP:port and redirected.
    FwdReply = 8,
    /// Header truncated or invalid (bad version, IHL < 5, total length too small or too large).
    DropMalformed = 9,
    /// The VIP has no backend in its ring.
    DropNoBackend = 10,
    /// The route to the backend or client is blackholed, unreachable or prohibited.
    DropNoRoute = 11,
    /// The connection table refused an insert (should not happen with an LRU map).
    DropConnTable = 12,
    /// IPv6 with an extension header before the transport header: handed to the stack.
    PassIpv6ExtHeader = 13,
    /// No headroom to encapsulate (the driver gave less than the outer header needs).
    DropNoHeadroom = 14,
    /// ICMP / ICMPv6 echo request to a VIP address, answered by the balancer itself.
    IcmpEchoReply = 15,
    /// New flow forwarded and recorded in the probation table, not the connection table: this
    /// CPU is past its new-flow limit (a flood). Its second forward packet promotes it.
    FwdProbation = 16,
    /// ICMP error about a VIP flow, sent to the backend that owns the flow: encapsulated (DSR)
    /// or translated to the packet the backend sent (NAT).
    FwdIcmpError = 17,
    /// A DSR packet that would exceed the egress MTU once encapsulated: answered from the VIP
    /// with ICMP "fragmentation needed" (IPv4, whatever its DF bit says: XDP cannot fragment)
    /// or ICMPv6 "packet too big", quoting its first 64 bytes, sent back with XDP_TX.
    IcmpTooBig = 18,
}

/// Number of counters in `LB_STATS`.
pub const NUM_REASONS: u32 = 19;

/// XDP action codes (linux/bpf.h `enum xdp_action`).
pub mod xdp_action {
    /// Internal error.
    pub const ABORTED: u32 = 0;
    /// Drop the frame.
    pub const DROP: u32 = 1;
    /// Hand the frame to the kernel stack.
    pub const PASS: u32 = 2;
    /// Send the frame back out of the receiving interface.
    pub const TX: u32 = 3;
    /// Send the frame out of another interface.
    pub const REDIRECT: u32 = 4;
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; NUM_REASONS as usize] = [
        Reason::PassNotIp,
        Reason::PassNotVip,
        Reason::PassVlan,
        Reason::PassFragment,
        Reason::PassTtl,
        Reason::PassNoNeigh,
        Reason::PassSlowPath,
        Reason::FwdNat,
        Reason::FwdReply,
        Reason::DropMalformed,
        Reason::DropNoBackend,
        Reason::DropNoRoute,
        Reason::DropConnTable,
        Reason::PassIpv6ExtHeader,
        Reason::DropNoHeadroom,
        Reason::IcmpEchoReply,
        Reason::FwdProbation,
        Reason::FwdIcmpError,
        Reason::IcmpTooBig,
    ];

    /// The XDP action this reason implies. Redirect reasons return `REDIRECT` only when the
    /// redirect helper succeeded; the program then reports exactly this action.
    pub const fn action(self) -> u32 {
        match self {
            Reason::PassNotIp
            | Reason::PassNotVip
            | Reason::PassVlan
            | Reason::PassFragment
            | Reason::PassTtl
            | Reason::PassNoNeigh
            | Reason::PassSlowPath
            | Reason::PassIpv6ExtHeader => xdp_action::PASS,
            Reason::FwdNat | Reason::FwdReply | Reason::FwdProbation | Reason::FwdIcmpError => {
                xdp_action::REDIRECT
            }
            Reason::IcmpEchoReply | Reason::IcmpTooBig => xdp_action::TX,
            Reason::DropMalformed
            | Reason::DropNoBackend
            | Reason::DropNoRoute
            | Reason::DropConnTable
            | Reason::DropNoHeadroom => xdp_action::DROP,
        }
    }

    /// Stable snake_case name, used in CLI output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassNotVip => "pass_not_vip",
            Reason::PassVlan => "pass_vlan",
            Reason::PassFragment => "pass_fragment",
            Reason::PassTtl => "pass_ttl",
            Reason::PassNoNeigh => "pass_no_neigh",
            Reason::PassSlowPath => "pass_slow_path",
            Reason::FwdNat => "fwd_nat",
            Reason::FwdReply => "fwd_reply",
            Reason::DropMalformed => "drop_malformed",
            Reason::DropNoBackend => "drop_no_backend",
            Reason::DropNoRoute => "drop_no_route",
            Reason::DropConnTable => "drop_conn_table",
            Reason::PassIpv6ExtHeader => "pass_ipv6_ext_header",
            Reason::DropNoHeadroom => "drop_no_headroom",
            Reason::IcmpEchoReply => "icmp_echo_reply",
            Reason::FwdProbation => "fwd_probation",
            Reason::FwdIcmpError => "fwd_icmp_error",
            Reason::IcmpTooBig => "icmp_too_big",
        }
    }
}

/// The flow hash: seeded MurmurHash3 (x86, 32-bit) over the key's ten 32-bit words. Shared by
/// the data path and the controller so tests and `lbctl plan` predict the data path exactly.
#[inline(always)]
pub fn flow_hash(seed: u32, key: &FlowKey) -> u32 {
    // Word by word, without building an array: the BPF stack is 512 bytes in all.
    #[inline(always)]
    fn mix(h: u32, word: u32) -> u32 {
        let k = word
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    }
    let mut h = seed;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, (u32::from(key.sport) << 16) | u32::from(key.dport));
    h = mix(h, u32::from(key.proto) | (u32::from(key.family) << 8));
    h ^= 40;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map type, so the controller can read and write them.
    // SAFETY: each type is `#[repr(C)]`, made only of integers, with explicit padding fields, so
    // every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VipMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NextHop {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrafficStats {}
}
