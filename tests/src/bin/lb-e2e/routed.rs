//! The routed topology: a client, the balancer namespace routing between its links, and 4
//! backend VMs each on a link of its own, every host with its default offloads (so lbd
//! attaches at tc). Setups: a direct client-to-backend ceiling, nftables DNAT (kube-proxy's
//! nftables way), HAProxy in TCP mode, ours in `nat` and `dsr` mode, and a control: the direct
//! run with the balancer attached, passing it by.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result};
use lb_lab::{
    self as lab, backend_addr, http_get, netns::unique_name, wait_until, TempFile, Topology,
    BACKEND_PORT, VIP, VIP_DSR, VIP_PORT,
};

use crate::{
    measure::{self, pin, Balancer, Sample},
    Setup, Topo, BACKENDS, SERVER_CPU,
};

/// nftables' VIP (our data path does not know it).
const NFT_VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 30);
/// HAProxy's listening address, on the balancer's loopback.
const HAPROXY_VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 40);

/// The routed lab between setups.
pub struct Routed {
    topo: Topology,
    load_bin: PathBuf,
    /// lbd's config and state file guards, while it runs.
    lbd: Option<(TempFile, TempFile)>,
    haproxy: Option<(u32, TempFile)>,
}

/// The client address `setup`'s connections come from: each setup has its own, so a port
/// reused by the next setup never meets the TIME_WAIT state the last one left on a backend
/// (PAWS would refuse its SYN, its timestamps being offset per address pair).
fn source(setup: Setup) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 1, 10 + setup as u8)
}

const SETUPS: [Setup; 6] = [
    Setup::Direct,
    Setup::Nftables,
    Setup::Haproxy,
    Setup::OursNat,
    Setup::OursDsr,
    Setup::DirectAttached,
];

impl Routed {
    /// The namespaces, the servers (pinned) and the addresses every setup needs.
    pub fn build() -> Result<Self> {
        let mut topo = Topology::build(BACKENDS)?;
        let backend = tests::bin("lb-backend").display().to_string();
        let decap = tests::bin("lb-decap").display().to_string();
        for i in 0..BACKENDS {
            let ns = &mut topo.backends[i];
            ns.add_addr("lo", VIP_DSR.into(), 32)?;
            ns.spawn(ns.command(&decap, &["--iface", "eth0"])?)?;
            let name = lab::backend_name(i);
            let nat = format!("[::]:{BACKEND_PORT}");
            let dsr = format!("[::]:{VIP_PORT}");
            let args = ["--name", &name, "--http", &nat, "--http", &dsr];
            let pid = ns.spawn(ns.command(&backend, &args)?)?;
            pin(pid, SERVER_CPU)?;
        }
        // Connections per second leave many sockets behind: room for them.
        topo.client
            .sysctl("net.ipv4.ip_local_port_range=1024 65000")?;
        for setup in SETUPS {
            topo.client.add_addr("eth0", source(setup).into(), 24)?;
        }
        topo.lb.add_addr("lo", HAPROXY_VIP.into(), 32)?;
        for i in 0..BACKENDS {
            let addr = SocketAddr::from((backend_addr(i), BACKEND_PORT));
            topo.client
                .enter(move || wait_until(Duration::from_secs(5), || http_get(addr, "/").is_ok()))?
                .with_context(|| format!("backend {i} does not answer HTTP"))?;
        }
        Ok(Routed {
            topo,
            load_bin: tests::bin("lb-load"),
            lbd: None,
            haproxy: None,
        })
    }

    fn targets(setup: Setup) -> Vec<SocketAddr> {
        match setup {
            Setup::Nftables => vec![SocketAddr::from((NFT_VIP, VIP_PORT))],
            Setup::Haproxy => vec![SocketAddr::from((HAPROXY_VIP, VIP_PORT))],
            Setup::OursNat => vec![SocketAddr::from((VIP, VIP_PORT))],
            Setup::OursDsr => vec![SocketAddr::from((VIP_DSR, VIP_PORT))],
            _ => (0..BACKENDS)
                .map(|i| SocketAddr::from((backend_addr(i), BACKEND_PORT)))
                .collect(),
        }
    }
}

impl Topo for Routed {
    fn title(&self) -> String {
        format!(
            "routed: a client, the balancer and {BACKENDS} backend VMs on links of their own, \
             default offloads (lbd attaches at tc)"
        )
    }

    fn setups(&self) -> &[Setup] {
        &SETUPS
    }

    fn up(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Nftables => {
                let file = TempFile::new(&format!("{}.nft", unique_name("e2e")), &nft_rules())?;
                self.topo
                    .lb
                    .exec("nft", &["-f", &file.path().display().to_string()])?;
            }
            Setup::Haproxy => {
                let cfg = TempFile::new(
                    &format!("{}.haproxy.cfg", unique_name("e2e")),
                    &haproxy_config(),
                )?;
                let path = cfg.path().display().to_string();
                let lb = &mut self.topo.lb;
                let pid = lb.spawn(lb.command("haproxy", &["-f", &path, "-db"])?)?;
                pin(pid, SERVER_CPU)?;
                self.haproxy = Some((pid, cfg));
            }
            Setup::OursNat => {
                let (_, _, config, state, pid) =
                    tests::lab::launch(&mut self.topo, "e2e", |t, i, s| t.config_toml(i, s));
                pin(pid, SERVER_CPU)?;
                self.lbd = Some((config, state));
            }
            // Share lbd with `nat` (both VIPs are in its config).
            _ => {}
        }
        // Ready when every backend has answered through the setup.
        let targets = Self::targets(setup);
        self.topo
            .client
            .enter(move || crate::reaches_every_backend(&targets))?
            .with_context(|| format!("{} does not reach every backend", setup.name()))
    }

    fn measure(&mut self, setup: Setup, mode: &str) -> Result<Sample> {
        let balancer = match setup {
            Setup::OursNat | Setup::OursDsr => Balancer::Ours,
            Setup::Haproxy => self
                .haproxy
                .as_ref()
                .map_or(Balancer::None, |(pid, _)| Balancer::Process(*pid)),
            _ => Balancer::None,
        };
        measure::load(
            &self.load_bin,
            &self.topo.client,
            &Self::targets(setup),
            source(setup),
            mode,
            BACKENDS,
            balancer,
        )
    }

    fn down(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Nftables => self
                .topo
                .lb
                .exec("nft", &["delete", "table", "ip", "e2e"])?,
            Setup::Haproxy => {
                if let Some((pid, _cfg)) = self.haproxy.take() {
                    self.topo
                        .lb
                        .signal_child(pid, nix::sys::signal::Signal::SIGKILL)?;
                }
            }
            Setup::DirectAttached => {
                // A clean stop detaches the balancer and unpins everything.
                self.topo.lb.kill_children();
                self.lbd = None;
            }
            _ => {}
        }
        Ok(())
    }
}

/// kube-proxy's nftables mode in miniature: DNAT the VIP to a backend picked by `numgen`.
fn nft_rules() -> String {
    let map: Vec<String> = (0..BACKENDS)
        .map(|i| format!("{i} : {} . {BACKEND_PORT}", backend_addr(i)))
        .collect();
    crate::nft_dnat(NFT_VIP, &map)
}

/// HAProxy in TCP mode, round robin, one thread (as the balancer gets one CPU).
fn haproxy_config() -> String {
    let mut s = format!(
        "global\n  nbthread 1\n  maxconn 5000\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  \
         timeout client 30s\n  timeout server 30s\n\nfrontend vip\n  bind {HAPROXY_VIP}:{VIP_PORT}\n  \
         default_backend vms\n\nbackend vms\n  balance roundrobin\n"
    );
    for i in 0..BACKENDS {
        s += &format!("  server vm{i} {}:{BACKEND_PORT}\n", backend_addr(i));
    }
    s
}
