//! A balancer loaded in its own network namespace for BPF_PROG_TEST_RUN: `bpf_fib_lookup` and
//! the redirect map then see a known topology (two veths with fixed MACs and permanent
//! neighbours) instead of the machine's. The namespace and the pins go away on drop. Packets
//! run through `lb_xdp` or `lb_tc`: [`hook_tests!`](crate::hook_tests) runs each scenario at
//! both hooks.
use std::{
    cell::Cell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use aya::{
    maps::{HashMap, Map, MapData},
    programs::{TestRun, TestRunOptions},
};
use lb_common::{ConnEntry, FlowKey, Reason};
use lb_lab::netns::{unique_name, Netns};
use lb_userspace::sys::{link, Context};
use lb_userspace::{
    controller::Controller,
    dataplane::{self, object::LoadOptions, Dataplane},
    model::config::{
        BackendConfig, Hook, Mode, Policy, Proto, TableKind, VipConfig, WeightsConfig,
    },
};
use rtnetlink::{LinkUnspec, LinkVeth};

use crate::packet::{Frame, SYN};

/// The VIP of packet tests.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 10);
/// The client of packet tests (reachable through `t1`).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
/// The IPv6 VIP of packet tests.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x10);
/// The IPv6 client of packet tests (reachable through `t1`).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 2);
/// MAC of the balancer's backend-side interface `t0`.
pub const T0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the balancer's client-side interface `t1`.
pub const T1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// MAC of every backend (permanent neighbour entries on `t0`).
pub const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
/// MAC of the client (permanent neighbour entry on `t1`).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];
/// Number of backend addresses with neighbour entries.
pub const BACKENDS: u8 = 8;
/// UDP idle timeout of packet tests, in seconds.
pub const UDP_IDLE_S: u32 = 30;
/// Flows the connection table of packet tests holds (262,144 entries).
pub const MAX_FLOWS: u32 = 131_072;
/// Ring slots of packet tests (room for a few VIPs of the largest ring size).
pub const RING_SLOTS: u32 = 1 << 24;
/// Flow hash seed of packet tests.
pub const SEED: u32 = 0x5eed;

/// Address of backend `i` (0-based), on `t0`'s subnet.
pub fn backend(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 10, 2 + i)
}

/// IPv6 address of backend `i` (0-based), on `t0`'s subnet.
pub fn backend6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x200, 0x10, 0, 0, 0, 0, 2 + u16::from(i))
}

/// The data path's key of a TCP flow from the test client's `sport` to VIP:80.
pub fn tcp_key(sport: u16) -> FlowKey {
    FlowKey {
        src: lb_common::addr_words(CLIENT.into()),
        dst: lb_common::addr_words(VIP.into()),
        sport: sport.to_be(),
        dport: 80u16.to_be(),
        proto: lb_common::PROTO_TCP,
        family: lb_common::FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Replaces the neighbour entry of `addr` on `dev` with a permanent one for `mac`, in the
/// calling thread's namespace (inside [`Harness::run`]).
pub fn replace_neighbour(dev: &str, addr: IpAddr, mac: [u8; 6]) -> anyhow::Result<()> {
    let dev = dev.to_string();
    lb_lab::netns::block_on(link::netlink(None, move |h| async move {
        h.neighbours()
            .add(link::index(&dev)?, addr)
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .with_context(|| format!("replacing neighbour {addr}"))
    }))??;
    Ok(())
}

thread_local! {
    /// The hook harnesses created on this thread run packets through (see [`with_hook`]).
    static HOOK: Cell<Hook> = const { Cell::new(Hook::Xdp) };
}

/// Runs `scenario` with every [`Harness`] it creates running packets through `hook`'s program
/// (`lb_xdp` or `lb_tc`), so one packet table checks both.
pub fn with_hook(hook: Hook, scenario: impl FnOnce()) {
    HOOK.with(|h| h.set(hook));
    scenario();
}

/// The hook packets run through on this thread (see [`with_hook`]).
pub fn current_hook() -> Hook {
    HOOK.with(Cell::get)
}

/// Declares each `fn name() { ... }` scenario as two tests, `name::xdp` and `name::tc`,
/// running it through `lb_xdp` and through `lb_tc` (their actions compared in XDP terms: a
/// tc redirect that answers back out of the receiving interface reads as `TX`).
#[macro_export]
macro_rules! hook_tests {
    ($(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn scenario() $body

            #[test]
            fn xdp() {
                $crate::harness::with_hook(lb_userspace::model::config::Hook::Xdp, scenario);
            }

            #[test]
            fn tc() {
                $crate::harness::with_hook(lb_userspace::model::config::Hook::Tc, scenario);
            }
        }
        $crate::hook_tests! { $($rest)* }
    };
    () => {};
}

/// The namespace of one packet test.
pub struct Harness {
    ns: Netns,
    /// The hook packets run through.
    hook: Hook,
    /// New flows per CPU per second the balancer records in its connection table (0 = no
    /// limit).
    new_flow_limit: u32,
    /// Flows its connection table holds.
    max_flows: u32,
}

impl Harness {
    /// Creates the namespace: `t0` (10.200.10.1/24, backends) and `t1` (10.200.1.1/24,
    /// client), forwarding on, permanent neighbours for the backends and the client.
    pub fn new() -> Self {
        crate::require_root();
        let ns = Netns::create(&unique_name("lbt")).expect("create namespace");
        ns.netlink(|h| async move {
            h.link()
                .add(LinkVeth::new("t0", "t1").build())
                .execute()
                .await
                .context("creating veth t0")?;
            let (t0, t1) = (link::index("t0")?, link::index("t1")?);
            for (idx, name, mac) in [(t0, "t0", T0_MAC), (t1, "t1", T1_MAC)] {
                h.link()
                    .set(
                        LinkUnspec::new_with_index(idx)
                            .address(mac.to_vec())
                            .build(),
                    )
                    .execute()
                    .await
                    .with_context(|| format!("setting the MAC of {name}"))?;
            }
            let addrs: [(u32, &str, IpAddr, u8); 4] = [
                (t0, "t0", Ipv4Addr::new(10, 200, 10, 1).into(), 24),
                (t1, "t1", Ipv4Addr::new(10, 200, 1, 1).into(), 24),
                (t0, "t0", "fd00:200:10::1".parse().expect("address"), 64),
                (t1, "t1", "fd00:200:1::1".parse().expect("address"), 64),
            ];
            for (idx, name, addr, len) in addrs {
                link::add_address(&h, idx, name, addr, len).await?;
            }
            link::set_up(&h, t0, "t0").await?;
            link::set_up(&h, t1, "t1").await?;
            // Permanent neighbours, so route lookups resolve without traffic.
            let mut neighbours: Vec<(u32, IpAddr, [u8; 6])> = Vec::new();
            for i in 0..BACKENDS {
                neighbours.push((t0, backend(i).into(), BACKEND_MAC));
                neighbours.push((t0, backend6(i).into(), BACKEND_MAC));
            }
            neighbours.push((t1, CLIENT.into(), CLIENT_MAC));
            neighbours.push((t1, CLIENT6.into(), CLIENT_MAC));
            for (idx, addr, mac) in neighbours {
                h.neighbours()
                    .add(idx, addr)
                    .link_layer_address(&mac)
                    .execute()
                    .await
                    .with_context(|| format!("adding neighbour {addr}"))?;
            }
            Ok(())
        })
        .expect("configure the namespace");
        ns.sysctl("net.ipv6.conf.all.forwarding=1")
            .expect("enable IPv6 forwarding");
        ns.sysctl("net.ipv4.ip_forward=1")
            .expect("enable forwarding");
        Harness {
            ns,
            hook: current_hook(),
            new_flow_limit: 0,
            max_flows: MAX_FLOWS,
        }
    }

    /// The same, with a connection table for `flows` flows (see `LoadOptions::max_flows`).
    pub fn with_max_flows(flows: u32) -> Self {
        Harness {
            max_flows: flows,
            ..Harness::new()
        }
    }

    /// The same, with a new-flow limit (see `LoadOptions::max_new_flows_per_cpu`).
    pub fn with_new_flow_limit(per_second: u32) -> Self {
        Harness {
            new_flow_limit: per_second,
            ..Harness::new()
        }
    }

    /// The namespace itself (for settings a benchmark changes).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Loads a balancer inside the namespace and runs `f` with it there.
    pub fn run<R: Send>(&self, f: impl FnOnce(&mut Balancer) -> R + Send) -> R {
        self.ns
            .enter(|| {
                let mut b = Balancer::open(self.hook, self.new_flow_limit, self.max_flows);
                f(&mut b)
            })
            .expect("run in namespace")
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// A loaded balancer (no interface attached: packets come from BPF_PROG_TEST_RUN).
pub struct Balancer {
    /// The controller, owning the data plane.
    pub ctl: Controller,
    /// The hook packets run through.
    pub hook: Hook,
    pin_dir: PathBuf,
}

impl Balancer {
    fn open(hook: Hook, new_flow_limit: u32, max_flows: u32) -> Self {
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(unique_name("lbtest"));
        let opts = LoadOptions {
            hash_seed: SEED,
            udp_idle_timeout_s: UDP_IDLE_S,
            max_new_flows_per_cpu: new_flow_limit,
            max_flows,
            ring_slots: RING_SLOTS,
        };
        let mut dp = Dataplane::open(&pin_dir, opts).expect("load lb_xdp");
        for iface in ["t0", "t1"] {
            let idx = dataplane::ifindex(iface).expect("ifindex");
            dp.add_tx_port(idx).expect("add tx port");
        }
        Balancer {
            ctl: Controller::new(dp, "test", &[]),
            hook,
            pin_dir,
        }
    }

    /// Adds a VIP `VIP:port/proto` with backends `(index, port, weight)`.
    pub fn add_vip(&mut self, name: &str, proto: Proto, port: u16, backends: &[(u8, u16, u32)]) {
        self.install(vip_config(name, false, proto, Mode::Nat, port, backends));
    }

    /// Adds a TCP NAT VIP on another address than `VIP`: `addr:port`.
    pub fn add_vip_at(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        port: u16,
        backends: &[(u8, u16, u32)],
    ) {
        let mut cfg = vip_config(name, false, Proto::Tcp, Mode::Nat, port, backends);
        cfg.addr = addr.into();
        self.install(cfg);
    }

    /// The VIP address and port that vip id `id` stands for in the data path now.
    pub fn vip_of_id(&self, id: u32) -> (IpAddr, u16) {
        let data = MapData::from_pin(self.pin_dir.join(lb_common::map_names::VIP_ADDRS))
            .expect("pinned VIP-id array");
        let ids: aya::maps::Array<MapData, lb_common::VipKey> =
            aya::maps::Array::try_from(Map::Array(data)).expect("an array");
        let key = ids.get(&id, 0).expect("vip id in range");
        (
            lb_common::words_addr(key.family, &key.addr),
            u16::from_be(key.port),
        )
    }

    /// Adds a TCP NAT VIP `VIP:port` whose table is `table` (Maglev or consistent).
    pub fn add_vip_table(
        &mut self,
        name: &str,
        port: u16,
        backends: &[(u8, u16, u32)],
        table: TableKind,
    ) {
        let mut cfg = vip_config(name, false, Proto::Tcp, Mode::Nat, port, backends);
        cfg.table = table;
        self.install(cfg);
    }

    /// Adds an IPv6 VIP `[VIP6]:port/proto` with IPv6 backends `(index, port, weight)`.
    pub fn add_vip6(&mut self, name: &str, proto: Proto, port: u16, backends: &[(u8, u16, u32)]) {
        self.install(vip_config(name, true, proto, Mode::Nat, port, backends));
    }

    /// Adds a DSR TCP VIP on `VIP` (or `VIP6`) with backends `index` on the VIP's port.
    pub fn add_dsr_vip(&mut self, name: &str, v6: bool, port: u16, backends: &[u8]) {
        let backends: Vec<(u8, u16, u32)> = backends.iter().map(|&i| (i, port, 1)).collect();
        self.install(vip_config(name, v6, Proto::Tcp, Mode::Dsr, port, &backends));
    }

    /// Adds a DSR UDP VIP on `VIP` with backends `index` on the VIP's port.
    pub fn add_dsr_udp_vip(&mut self, name: &str, port: u16, backends: &[u8]) {
        let backends: Vec<(u8, u16, u32)> = backends.iter().map(|&i| (i, port, 1)).collect();
        self.install(vip_config(
            name,
            false,
            Proto::Udp,
            Mode::Dsr,
            port,
            &backends,
        ));
    }

    /// Adds a TCP NAT VIP on `VIP` whose weights follow `policy`, updated every 100 ms (by
    /// `ctl.update_weights()`: the harness has no timer).
    pub fn add_vip_with_policy(
        &mut self,
        name: &str,
        port: u16,
        backends: &[(u8, u16, u32)],
        policy: Policy,
    ) {
        let mut cfg = vip_config(name, false, Proto::Tcp, Mode::Nat, port, backends);
        cfg.weights = WeightsConfig {
            policy,
            interval_ms: 100,
            ..WeightsConfig::default()
        };
        self.install(cfg);
    }

    fn install(&mut self, cfg: VipConfig) {
        self.ctl.add_vip(cfg).expect("add vip");
    }

    /// Runs one frame through the balancer at its hook: the action (in XDP terms) and the
    /// output frame. At tc, the action is the one of the reason the program counted, after
    /// checking that the tc verdict it returned is that reason's.
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_run(frame).unwrap_or_else(|| {
            panic!(
                "BPF_PROG_TEST_RUN at tc refuses {} bytes {frame:02x?}: a short L3 header",
                frame.len()
            )
        })
    }

    /// [`Balancer::run`], or None at tc for a frame whose IPv4 or IPv6 header is cut short:
    /// the kernel refuses to build a socket buffer of it for a test run (a NIC can still
    /// deliver one; XDP test runs take it, and [`short_l3`] tells which frames these are).
    pub fn try_run(&mut self, frame: &[u8]) -> Option<(u32, Vec<u8>)> {
        if self.hook == Hook::Xdp {
            return Some(self.run_at(Hook::Xdp, frame));
        }
        if short_l3(frame) {
            return None;
        }
        let before = self.ctl.dataplane().stats().expect("stats");
        let (code, out) = self.run_at(Hook::Tc, frame);
        let after = self.ctl.dataplane().stats().expect("stats");
        let counted: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| after[*r as usize] != before[*r as usize])
            .collect();
        let [reason] = counted[..] else {
            panic!("lb_tc counted {counted:?} for one packet, not one reason");
        };
        assert_eq!(
            code,
            tc_verdict(reason.action()),
            "lb_tc's verdict for {}",
            reason.name()
        );
        Some((reason.action(), out))
    }

    /// Runs one frame through `hook`'s program: its return code and the output frame.
    pub fn run_at(&mut self, hook: Hook, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        let dp = self.ctl.dataplane();
        let res = match hook {
            Hook::Xdp => dp.program().expect("lb_xdp").test_run(opts),
            Hook::Tc => dp.tc_program().expect("lb_tc").test_run(opts),
        }
        .unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN at {} of {} bytes {frame:02x?}: {e}",
                hook.name(),
                frame.len()
            )
        });
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    /// Where this balancer's maps are pinned.
    pub fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    /// A flow table of this balancer, opened from its pin: `map_names::CONNS` or `PROBATION`.
    pub fn flow_table(&self, name: &str) -> HashMap<MapData, FlowKey, ConnEntry> {
        let data = MapData::from_pin(self.pin_dir.join(name)).expect("pinned flow table");
        HashMap::try_from(Map::LruHashMap(data)).expect("an LRU hash map")
    }

    /// Sends SYNs from the client to VIP:80 from new ports until one goes on probation (needs
    /// a new-flow limit; bounded to 20): that flow's client port.
    pub fn syn_on_probation(&mut self) -> u16 {
        for sport in 41000..41020 {
            let before = self.count(Reason::FwdProbation);
            let (action, _) = self.run(&Frame::tcp(CLIENT, sport, VIP, 80, SYN).bytes());
            assert_eq!(action, lb_common::xdp_action::REDIRECT);
            if self.count(Reason::FwdProbation) > before {
                return sport;
            }
        }
        panic!("20 SYNs and none went on probation: is there a new-flow limit?");
    }

    /// Current value of one counter.
    pub fn count(&mut self, reason: Reason) -> u64 {
        self.ctl.dataplane().stats().expect("stats")[reason as usize]
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// A frame whose EtherType says IPv4 or IPv6 but too short for that header: the kernel refuses
/// to test-run a socket buffer of it.
pub fn short_l3(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() < 14 + 20,
        Some([0x86, 0xdd]) => frame.len() < 14 + 40,
        _ => false,
    }
}

/// The tc return code of an XDP action: pass is `TC_ACT_OK`, drop and abort are
/// `TC_ACT_SHOT`, redirect and transmit (back out of the receiving interface) are
/// `TC_ACT_REDIRECT`.
pub fn tc_verdict(xdp: u32) -> u32 {
    use lb_common::xdp_action;
    match xdp {
        xdp_action::PASS => 0,
        xdp_action::REDIRECT | xdp_action::TX => 7,
        _ => 2,
    }
}

/// A VIP `name` on `VIP` (or `VIP6`) with backends `(index, port, weight)`, static weights.
fn vip_config(
    name: &str,
    v6: bool,
    proto: Proto,
    mode: Mode,
    port: u16,
    backends: &[(u8, u16, u32)],
) -> VipConfig {
    let addr = |i: u8| -> IpAddr {
        if v6 {
            backend6(i).into()
        } else {
            backend(i).into()
        }
    };
    VipConfig {
        name: name.into(),
        addr: if v6 { VIP6.into() } else { VIP.into() },
        port,
        proto,
        mode,
        ring_size: 65537,
        table: TableKind::Maglev,
        health: None,
        weights: WeightsConfig::default(),
        pool: None,
        backends: backends
            .iter()
            .map(|&(i, port, weight)| BackendConfig {
                addr: addr(i),
                port,
                weight,
            })
            .collect(),
    }
}
