//! A one-armed topology on a Linux bridge, the way operators put a balancer in front of local
//! VMs and containers: a switch namespace holding `br0`, and a client, the balancer and backend
//! hosts each plugged into it by a veth, all on one subnet. The balancer has one interface and
//! sends what it balances back out of it. Every host keeps its default offloads unless lbd is
//! forced to XDP: then the balancer's bridge port gets GRO on and the senders TX checksum
//! offload off, as lbd's warning for XDP on a veth says.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::Result;
use lb_userspace::{
    model::config::AttachMode,
    sys::{
        ethtool::{self, Offload},
        link::{self, End},
    },
};

use crate::{
    netns::{block_on, unique_name, Netns},
    probes::{http_get, wait_until},
    topology::{BACKEND_PORT, METRICS, VIP_PORT},
};

/// The balancer's address on the bridge.
pub const ARM_LB: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 1);
/// The client's address on the bridge (the first of [`ARM_CLIENTS`]).
pub const ARM_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 100);
/// Addresses the client may send from (10.210.0.96/27): NAT backends route them via the
/// balancer.
pub const ARM_CLIENTS: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 210, 0, 96), 27);
/// The VIP of the one-armed lab (off the bridge's subnet, routed to the balancer).
pub const ARM_VIP: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 10);

/// Address of backend host `i` (0-based) on the bridge.
pub fn arm_backend(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 210, 0, 10 + i as u8)
}

/// The one-armed lab: a switch and the hosts on it.
pub struct OneArmed {
    /// Backend hosts, `eth0` on the bridge.
    pub backends: Vec<Netns>,
    /// The balancer, `eth0` on the bridge, forwarding on.
    pub lb: Netns,
    /// The client, `eth0` on the bridge, the VIP's prefix routed via the balancer.
    pub client: Netns,
    /// Whether the VIP is DSR (the backends hold it and answer the client directly) or NAT
    /// (the backends route the client via the balancer, so replies pass it).
    pub dsr: bool,
    /// How lbd attaches to its `eth0`.
    pub attach: AttachMode,
    /// The switch: `br0` and a port per host (dropped last).
    pub switch: Netns,
}

impl OneArmed {
    /// Builds the switch and `n` backend hosts, a client and the balancer on it.
    pub fn build(n: usize, attach: AttachMode, dsr: bool) -> Result<Self> {
        let switch = Netns::create(&unique_name("lbs"))?;
        switch.netlink(|h| async move { link::bridge(&h, "br0").await.map(|_| ()) })?;
        let lab = OneArmed {
            client: Netns::create(&unique_name("lbc"))?,
            lb: Netns::create(&unique_name("lbl"))?,
            backends: (0..n)
                .map(|_| Netns::create(&unique_name("lbb")))
                .collect::<Result<_>>()?,
            dsr,
            attach,
            switch,
        };
        let vip_net = IpAddr::from(Ipv4Addr::new(10, 211, 0, 0));
        lab.plug(&lab.lb, "plb", ARM_LB)?;
        lab.plug(&lab.client, "pc", ARM_CLIENT)?;
        lab.client.netlink(move |h| async move {
            link::route_via(&h, vip_net, 24, ARM_LB.into()).await
        })?;
        for (i, b) in lab.backends.iter().enumerate() {
            lab.plug(b, &format!("pb{i}"), arm_backend(i))?;
            if dsr {
                b.add_addr("lo", ARM_VIP.into(), 32)?;
            } else {
                // Replies to the client go back through the balancer, which rewrites them.
                let (net, len) = ARM_CLIENTS;
                b.netlink(move |h| async move {
                    link::route_via(&h, net.into(), len, ARM_LB.into()).await
                })?;
            }
        }
        lab.lb.sysctl("net.ipv4.ip_forward=1")?;
        if attach == AttachMode::Xdp {
            lab.set_xdp_peers(true)?;
        }
        lab.client.check_routes(&[ARM_VIP.into()], "eth0")?;
        let targets: Vec<IpAddr> = (0..n).map(|i| arm_backend(i).into()).collect();
        lab.lb.check_routes(&targets, "eth0")?;
        Ok(lab)
    }

    /// Sets the hosts up for XDP on the balancer's veth (`on`), or back to the veth defaults
    /// (GRO off, TX checksum offload on): the
    /// balancer's bridge port gets GRO (frames XDP redirects into a veth need it, or an XDP
    /// program, on the peer) and the senders TX checksum offload off (XDP cannot finish a
    /// partial checksum).
    pub fn set_xdp_peers(&self, on: bool) -> Result<()> {
        self.switch
            .enter(|| ethtool::set("plb", Offload::Gro, on))??;
        for ns in std::iter::once(&self.client).chain(&self.backends) {
            ns.enter(|| ethtool::set("eth0", Offload::TxChecksum, !on))??;
        }
        Ok(())
    }

    /// Plugs `ns` into the bridge: `eth0` there with `addr`/24, the bridge's `port` in the
    /// switch.
    fn plug(&self, ns: &Netns, port: &str, addr: Ipv4Addr) -> Result<()> {
        let switch_end = End {
            ns: Some(self.switch.name().to_string()),
            name: port.to_string(),
            ..End::default()
        };
        let host_end = End {
            ns: Some(ns.name().to_string()),
            name: "eth0".into(),
            addrs: vec![(addr.into(), 24)],
            ..End::default()
        };
        block_on(link::veth(&switch_end, &host_end))??;
        let port = port.to_string();
        self.switch.netlink(move |h| async move {
            let br = link::index("br0")?;
            link::set_controller(&h, link::index(&port)?, &port, br).await
        })
    }

    /// The VIP's service address.
    pub fn vip(&self) -> SocketAddr {
        SocketAddr::from((ARM_VIP, VIP_PORT))
    }

    /// lbd's config: the balancer's one interface and one TCP VIP over every backend.
    pub fn config_toml(&self, instance: &str, socket: &Path) -> String {
        let (mode, port) = if self.dsr {
            ("dsr", VIP_PORT)
        } else {
            ("nat", BACKEND_PORT)
        };
        let attach = match self.attach {
            AttachMode::Auto => "auto",
            AttachMode::Xdp => "xdp",
            AttachMode::Tc => "tc",
        };
        let mut s = format!(
            "[lbd]\ninstance = {instance:?}\ninterfaces = [\"eth0\"]\nattach = {attach:?}\n\
             socket = {:?}\nstate_file = {:?}\nmetrics = \"{METRICS}\"\non_stop = \"remove\"\n\
             max_flows = 65536\nring_slots = 2097152\n\n\
             [[vip]]\nname = \"web\"\naddr = \"{ARM_VIP}\"\nport = {VIP_PORT}\nproto = \"tcp\"\n\
             mode = {mode:?}\n",
            socket.display().to_string(),
            crate::topology::state_file(socket).display().to_string(),
        );
        for i in 0..self.backends.len() {
            s += &format!(
                "[[vip.backend]]\naddr = \"{}\"\nport = {port}\n",
                arm_backend(i)
            );
        }
        s
    }

    /// Starts `lb-backend --http` on every backend host (and, for DSR, `lb-decap` at the hook
    /// `auto` picks), waiting until each answers on its own address.
    pub fn start_backends(&mut self, backend_bin: &Path, decap_bin: &Path) -> Result<()> {
        let port = if self.dsr { VIP_PORT } else { BACKEND_PORT };
        for (i, ns) in self.backends.iter_mut().enumerate() {
            if self.dsr {
                let cmd = ns.command(&decap_bin.display().to_string(), &["--iface", "eth0"])?;
                ns.spawn(cmd)?;
            }
            let name = format!("vm{i}");
            let listen = format!("[::]:{port}");
            let args = ["--name", name.as_str(), "--http", listen.as_str()];
            let cmd = ns.command(&backend_bin.display().to_string(), &args)?;
            ns.spawn(cmd)?;
            let addr = SocketAddr::from((arm_backend(i), port));
            self.lb.enter(move || {
                wait_until(Duration::from_secs(5), || http_get(addr, "/").is_ok())
            })??;
        }
        Ok(())
    }
}
