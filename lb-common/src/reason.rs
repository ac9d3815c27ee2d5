//! Verdict reasons: one per-CPU counter each, each implying one XDP action.

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
