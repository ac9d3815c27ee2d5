//! The one-armed topology, as a user builds one: client, balancer and 4 backends on a Linux
//! bridge with their default offloads, the balancer's one interface both ways. Two of them:
//! one whose backends route the client via the balancer (NAT: nftables DNAT, the same with a
//! trivial XDP_PASS on the balancer's veth, xlb `nat` at tc and at forced XDP), and one whose
//! backends answer the client directly (a direct ceiling, xlb `dsr` at tc and at forced XDP).
//! Forced XDP gets the peer and offload settings lbd's warning names, for its runs only.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use aya::{
    programs::{Xdp, XdpMode},
    Ebpf,
};
use lb_common::prog_names;
use lb_lab::{
    arm_backend, http_get, netns::unique_name, start_lbd_in, state_file, wait_until, OneArmed,
    PinGuard, TempFile, ARM_CLIENTS, ARM_VIP, BACKEND_PORT, VIP_PORT,
};
use lb_userspace::model::config::AttachMode;

use crate::{
    measure::{self, pin, Balancer, Sample},
    Setup, Topo, BACKENDS, SERVER_CPU,
};

/// nftables' VIP on the NAT lab (routed to the balancer like the lab's VIP).
const NFT_VIP: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 30);

const SETUPS: [Setup; 7] = [
    Setup::Direct,
    Setup::Nftables,
    Setup::NftablesXdpPass,
    Setup::OursNat,
    Setup::OursDsr,
    Setup::OursNatXdp,
    Setup::OursDsrXdp,
];

/// The two one-armed labs between setups.
pub struct Bridge {
    nat: OneArmed,
    dsr: OneArmed,
    load_bin: PathBuf,
    /// The running lbd: its config, state file and pin guards.
    lbd: Option<(TempFile, TempFile, PinGuard)>,
    /// The XDP_PASS control's program, attached while it lives.
    pass: Option<Ebpf>,
}

/// The client address `setup`'s connections come from (10.210.0.101 + its index, past the
/// client's own): a fresh pair of addresses per setup keeps TIME_WAIT and PAWS out of the next
/// setup's way.
fn source(setup: Setup) -> Ipv4Addr {
    let base = u32::from(ARM_CLIENTS.0) + 5;
    Ipv4Addr::from(base + setup as u32)
}

/// Whether `setup` runs on the DSR lab.
fn on_dsr(setup: Setup) -> bool {
    matches!(setup, Setup::Direct | Setup::OursDsr | Setup::OursDsrXdp)
}

impl Bridge {
    /// Both labs, their servers pinned to the server CPU.
    pub fn build() -> Result<Self> {
        let mut bridge = Bridge {
            nat: OneArmed::build(BACKENDS, AttachMode::Auto, false)?,
            dsr: OneArmed::build(BACKENDS, AttachMode::Auto, true)?,
            load_bin: tests::bin("lb-load"),
            lbd: None,
            pass: None,
        };
        for arm in [&mut bridge.nat, &mut bridge.dsr] {
            start_servers(arm)?;
            arm.client
                .sysctl("net.ipv4.ip_local_port_range=1024 65000")?;
            arm.lb.sysctl("net.ipv4.conf.all.send_redirects=0")?;
            for setup in SETUPS {
                arm.client.add_addr("eth0", source(setup).into(), 24)?;
            }
        }
        Ok(bridge)
    }

    fn arm(&mut self, setup: Setup) -> &mut OneArmed {
        if on_dsr(setup) {
            &mut self.dsr
        } else {
            &mut self.nat
        }
    }

    fn targets(setup: Setup) -> Vec<SocketAddr> {
        match setup {
            Setup::Direct => (0..BACKENDS)
                .map(|i| SocketAddr::from((arm_backend(i), VIP_PORT)))
                .collect(),
            Setup::Nftables | Setup::NftablesXdpPass => vec![SocketAddr::from((NFT_VIP, VIP_PORT))],
            _ => vec![SocketAddr::from((ARM_VIP, VIP_PORT))],
        }
    }

    /// Starts lbd on `setup`'s lab attaching with `attach`.
    fn start_lbd(&mut self, setup: Setup, attach: AttachMode) -> Result<()> {
        let instance = unique_name("e2ea");
        let socket = std::env::temp_dir().join(format!("{instance}.sock"));
        let arm = self.arm(setup);
        arm.attach = attach;
        if attach == AttachMode::Xdp {
            arm.set_xdp_peers(true)?;
        }
        let config = TempFile::new(
            &format!("{instance}.toml"),
            &arm.config_toml(&instance, &socket),
        )?;
        let pid = start_lbd_in(&mut arm.lb, &tests::bin("lbd"), config.path(), &socket)?;
        pin(pid, SERVER_CPU)?;
        let state = TempFile::adopt(state_file(&socket));
        self.lbd = Some((config, state, PinGuard(instance)));
        Ok(())
    }
}

/// Starts `lb-backend --http` on every backend of `arm` (and `lb-decap` on a DSR lab), pinned
/// to the server CPU, and waits until each answers.
fn start_servers(arm: &mut OneArmed) -> Result<()> {
    let backend = tests::bin("lb-backend").display().to_string();
    let decap = tests::bin("lb-decap").display().to_string();
    let port = if arm.dsr { VIP_PORT } else { BACKEND_PORT };
    for (i, ns) in arm.backends.iter_mut().enumerate() {
        if arm.dsr {
            ns.spawn(ns.command(&decap, &["--iface", "eth0"])?)?;
        }
        let name = format!("vm{i}");
        let listen = format!("[::]:{port}");
        let pid = ns.spawn(ns.command(&backend, &["--name", &name, "--http", &listen])?)?;
        pin(pid, SERVER_CPU)?;
        let addr = SocketAddr::from((arm_backend(i), port));
        arm.lb
            .enter(move || wait_until(Duration::from_secs(5), || http_get(addr, "/").is_ok()))?
            .with_context(|| format!("backend {i} does not answer HTTP"))?;
    }
    Ok(())
}

impl Topo for Bridge {
    fn title(&self) -> String {
        format!(
            "one-armed on a bridge: client, balancer and {BACKENDS} backends on one subnet, \
             default offloads (forced XDP runs with the settings lbd names)"
        )
    }

    fn setups(&self) -> &[Setup] {
        &SETUPS
    }

    fn up(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Nftables | Setup::NftablesXdpPass => {
                let map: Vec<String> = (0..BACKENDS)
                    .map(|i| format!("{i} : {} . {BACKEND_PORT}", arm_backend(i)))
                    .collect();
                let rules = crate::nft_dnat(NFT_VIP, &map);
                let file = TempFile::new(&format!("{}.nft", unique_name("e2ea")), &rules)?;
                self.nat
                    .lb
                    .exec("nft", &["-f", &file.path().display().to_string()])?;
                if setup == Setup::NftablesXdpPass {
                    self.pass = Some(self.nat.lb.enter(attach_pass)??);
                }
            }
            Setup::OursNat | Setup::OursDsr => self.start_lbd(setup, AttachMode::Auto)?,
            Setup::OursNatXdp | Setup::OursDsrXdp => self.start_lbd(setup, AttachMode::Xdp)?,
            _ => {}
        }
        let targets = Self::targets(setup);
        self.arm(setup)
            .client
            .enter(move || crate::reaches_every_backend(&targets))?
            .with_context(|| format!("{} does not reach every backend", setup.name()))
    }

    fn measure(&mut self, setup: Setup, mode: &str) -> Result<Sample> {
        let balancer = match setup {
            Setup::OursNat | Setup::OursDsr | Setup::OursNatXdp | Setup::OursDsrXdp => {
                Balancer::Ours
            }
            _ => Balancer::None,
        };
        let targets = Self::targets(setup);
        let load = self.load_bin.clone();
        let arm = self.arm(setup);
        measure::load(
            &load,
            &arm.client,
            &targets,
            source(setup),
            mode,
            BACKENDS,
            balancer,
        )
    }

    fn down(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Nftables | Setup::NftablesXdpPass => {
                self.pass = None;
                self.nat.lb.exec("nft", &["delete", "table", "ip", "e2e"])?;
            }
            Setup::OursNat | Setup::OursDsr | Setup::OursNatXdp | Setup::OursDsrXdp => {
                let arm = self.arm(setup);
                arm.lb.kill_children();
                if arm.attach == AttachMode::Xdp {
                    arm.set_xdp_peers(false)?;
                }
                self.lbd = None;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Attaches `return XDP_PASS` to `eth0` of the calling thread's namespace; detached when the
/// object drops.
fn attach_pass() -> Result<Ebpf> {
    let mut obj = Ebpf::load(lb_lab::BENCH_OBJECT)?;
    let prog: &mut Xdp = obj
        .program_mut(prog_names::LB_PASS)
        .ok_or_else(|| anyhow!("no {}", prog_names::LB_PASS))?
        .try_into()?;
    prog.load()?;
    prog.attach("eth0", XdpMode::Default)
        .context("attaching XDP_PASS to the balancer's veth")?;
    Ok(obj)
}
