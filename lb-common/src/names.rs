//! Names of maps, programs and load-time globals in the object files: the strings both sides
//! look them up by.

/// Map names, as they appear in the object file and under `/sys/fs/bpf/<instance>/`.
pub mod map_names {
    /// `HashMap<VipKey, VipMeta>`.
    pub const VIPS: &str = "LB_VIPS";
    /// `Array<VipKey>` indexed by vip id: the reverse of `LB_VIPS`, for reply rewriting.
    pub const VIP_ADDRS: &str = "LB_VIP_ADDRS";
    /// `Array<Backend>` indexed by backend id.
    pub const BACKENDS: &str = "LB_BACKENDS";
    /// `Array<[u32; 2]>`, mmap-able: backend ids, two ring slots an element; each VIP owns two
    /// buffers of its ring size, where its `VipMeta::base` says.
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
    /// `ProgramArray`, pinned: the same two slots for the tc programs (`lb_tc_icmp`,
    /// `lb_tc_too_big`).
    pub const TC_PROGS: &str = "LB_TC_PROGS";
    /// `PerCpuArray<TrafficStats>` indexed by vip id: traffic to each VIP.
    pub const VIP_STATS: &str = "LB_VIP_STATS";
    /// `PerCpuArray<TrafficStats>` indexed by backend id: traffic sent to each backend.
    pub const BACKEND_STATS: &str = "LB_BACKEND_STATS";
    /// `Array<u32>` with one element: next-hop cache epoch; bumping it makes every flow look
    /// its next hop up again on its next packet.
    pub const NH_EPOCH: &str = "LB_NH_EPOCH";

    /// `Array<TraceCtl>`, one element: what `lbctl trace` samples (off when zero).
    pub const TRACE_CTL: &str = "LB_TRACE_CTL";
    /// `RingBuf` of `TraceRecord`s: sampled decisions, read by lbd while someone traces.
    pub const TRACE: &str = "LB_TRACE";
    /// `PerCpuArray<TraceScratch>`, one element: a record being staged.
    pub const TRACE_SCRATCH: &str = "LB_TRACE_SCRATCH";

    /// Every map the object must define.
    pub const ALL: [&str; 17] = [
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
        TC_PROGS,
        TRACE_CTL,
        TRACE,
        TRACE_SCRATCH,
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
    /// The balancer at tc (clsact ingress), for virtual interfaces: the same pipeline.
    pub const LB_TC: &str = "lb_tc";
    /// `lb_icmp` at tc (slot 0 of `LB_TC_PROGS`).
    pub const LB_TC_ICMP: &str = "lb_tc_icmp";
    /// `lb_too_big` at tc (slot 1 of `LB_TC_PROGS`).
    pub const LB_TC_TOO_BIG: &str = "lb_tc_too_big";
    /// Bench object: restores the original frame, then tail-calls the program under test.
    pub const LB_BENCH: &str = "lb_bench";
    /// Bench object: `return XDP_PASS`; the harness tail-calling it is the floor every figure
    /// is net of.
    pub const LB_PASS: &str = "lb_pass";
    /// Bench object: `return XDP_TX`, the raw forwarding ceiling of `bench e2e`.
    pub const LB_TX: &str = "lb_tx";
    /// Decap object: strips DSR encapsulation on backend hosts.
    pub const LB_DECAP: &str = "lb_decap";
    /// Decap object: `lb_decap` at tc (clsact ingress).
    pub const LB_DECAP_TC: &str = "lb_decap_tc";
    /// Bench object: the tc harness (restores the buffer, tail-calls the tc program under test).
    pub const LB_BENCH_TC: &str = "lb_bench_tc";
    /// Bench object: `return TC_ACT_OK`, the tc floor.
    pub const LB_PASS_TC: &str = "lb_pass_tc";
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
