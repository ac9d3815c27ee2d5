//! The lab's topology: network namespaces for a client, the balancer and backend VMs, joined
//! by veth pairs with addresses and routes (through the product's netlink and namespace code),
//! the configs lbd runs with there, and starting lbd in it. By default every host keeps its
//! default offloads and lbd attaches as `auto` says (tc, on these veths); a topology built
//! for forced XDP sets up its peers as lbd's XDP-on-veth warning says. Everything is torn down
//! when the [`Topology`] drops.
use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lb_userspace::{
    face::client,
    model::config::AttachMode,
    sys::{
        ethtool::{self, Offload},
        link::{self, End},
    },
};

use crate::{
    netns::{block_on, unique_name, Netns},
    probes::{tcp_hello, wait_until},
};

/// The VIP every lab serves.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 10);
/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x10);
/// The client's IPv6 address.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 2);
/// The DSR VIP (backends hold it on their loopback).
pub const VIP_DSR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 20);
/// The IPv6 DSR VIP.
pub const VIP6_DSR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x20);
/// The VIP port (TCP and UDP).
pub const VIP_PORT: u16 = 80;
/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
/// The port of the backend servers' agents (`lb-backend --agent`).
pub const AGENT_PORT: u16 = 9000;
/// The port backend servers listen on.
pub const BACKEND_PORT: u16 = 8080;
/// Where lbd serves metrics, inside the balancer's namespace.
pub const METRICS: &str = "127.0.0.1:9669";
/// How long a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Address of backend VM `i` (0-based).
pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 10 + i as u8, 2)
}

/// IPv6 address of backend VM `i` (0-based).
pub fn backend_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x200, 10 + i as u16, 0, 0, 0, 0, 2)
}

/// Name backend VM `i` answers with.
pub fn backend_name(i: usize) -> String {
    format!("vm{i}")
}

/// Client, balancer and backend namespaces wired together.
pub struct Topology {
    /// Backend VMs, each a namespace with `eth0` and a default route via the balancer.
    pub backends: Vec<Netns>,
    /// The balancer: `c0` towards the client, `b<i>` towards backend i, forwarding on.
    pub lb: Netns,
    /// The client: `eth0`, default route via the balancer.
    pub client: Netns,
    /// Pid of `lb-backend` in each backend VM.
    pub servers: Vec<u32>,
    /// Other client hosts, each on a link of its own (`h<i>` in the balancer, subnet
    /// 10.200.<2+i>.0/24), for instance an attacker that must not share the client's link.
    pub hosts: Vec<Netns>,
    /// How lbd attaches here (`lbd.attach`): `Auto` (tc on these veths, default offloads
    /// everywhere) or `Xdp` (forced, with the peers set up for it).
    pub attach: AttachMode,
}

impl Topology {
    /// Creates the namespaces and links for `n` backends, dual-stack, every host with its
    /// default offloads (lbd attaches at tc).
    pub fn build(n: usize) -> Result<Self> {
        Self::build_for(n, AttachMode::Auto)
    }

    /// The same, for lbd attaching with `attach`; with `Xdp`, each peer of the balancer's
    /// veths gets GRO on and TX checksum offload off, as lbd's warning for XDP on a veth
    /// says (a frame redirected into a veth is dropped unless its peer has GRO on or an XDP
    /// program; a locally sent packet's partial checksum cannot be finished by XDP).
    pub fn build_for(n: usize, attach: AttachMode) -> Result<Self> {
        let client = Netns::create(&unique_name("lbc"))?;
        let lb = Netns::create(&unique_name("lbl"))?;
        let mut topo = Topology {
            backends: Vec::new(),
            lb,
            client,
            servers: Vec::new(),
            hosts: Vec::new(),
            attach,
        };
        // Links come up at once: no duplicate address detection delaying the first packets.
        topo.client.sysctl("net.ipv6.conf.default.accept_dad=0")?;
        topo.lb.sysctl("net.ipv6.conf.default.accept_dad=0")?;
        topo.link("c0", &topo.client, 1)?;
        for i in 0..n {
            let vm = Netns::create(&unique_name("lbb"))?;
            vm.sysctl("net.ipv6.conf.default.accept_dad=0")?;
            topo.link(&format!("b{i}"), &vm, 10 + i)?;
            topo.backends.push(vm);
        }
        topo.lb.sysctl("net.ipv4.ip_forward=1")?;
        topo.lb.sysctl("net.ipv6.conf.all.forwarding=1")?;
        topo.check_routes()?;
        Ok(topo)
    }

    /// Checks, before any traffic, that the client reaches every VIP through its own link to
    /// the balancer and the balancer reaches each backend through that backend's link.
    pub fn check_routes(&self) -> Result<()> {
        let vips: [IpAddr; 4] = [VIP.into(), VIP6.into(), VIP_DSR.into(), VIP6_DSR.into()];
        self.client.check_routes(&vips, "eth0")?;
        for i in 0..self.backends.len() {
            let targets: [IpAddr; 2] = [backend_addr(i).into(), backend_addr6(i).into()];
            self.lb.check_routes(&targets, &format!("b{i}"))?;
        }
        Ok(())
    }

    /// Adds another client host on a link of its own (before lbd starts, so lbd attaches to
    /// it); returns its index in `hosts`.
    pub fn add_host(&mut self) -> Result<usize> {
        let i = self.hosts.len();
        let ns = Netns::create(&unique_name("lbh"))?;
        ns.sysctl("net.ipv6.conf.default.accept_dad=0")?;
        self.link(&format!("h{i}"), &ns, 2 + i)?;
        ns.check_routes(&[VIP.into(), VIP_DSR.into()], "eth0")?;
        self.hosts.push(ns);
        Ok(i)
    }

    /// A veth pair on subnet `net` (10.200.<net>.0/24 and fd00:200:<net>::/64): `lb_if` in the
    /// balancer (.1, ::1), `eth0` in `peer_ns` (.2, ::2) with default routes via the balancer.
    /// For forced XDP the peer gets GRO on and TX checksum offload off (see [`Self::build_for`]).
    fn link(&self, lb_if: &str, peer_ns: &Netns, net: usize) -> Result<()> {
        let v4 = |host: u8| IpAddr::from(Ipv4Addr::new(10, 200, net as u8, host));
        let v6 =
            |host: u16| IpAddr::from(Ipv6Addr::new(0xfd00, 0x200, net as u16, 0, 0, 0, 0, host));
        let lb_end = End {
            ns: Some(self.lb.name().to_string()),
            name: lb_if.to_string(),
            addrs: vec![(v4(1), 24), (v6(1), 64)],
            ..End::default()
        };
        let peer_end = End {
            ns: Some(peer_ns.name().to_string()),
            name: "eth0".into(),
            addrs: vec![(v4(2), 24), (v6(2), 64)],
            gateways: vec![v4(1), v6(1)],
            ..End::default()
        };
        block_on(link::veth(&lb_end, &peer_end))??;
        if self.attach != AttachMode::Xdp {
            return Ok(());
        }
        peer_ns.enter(|| -> Result<()> {
            ethtool::set("eth0", Offload::Gro, true)?;
            Ok(ethtool::set("eth0", Offload::TxChecksum, false)?)
        })?
    }

    /// The balancer's interfaces, for `lbd --iface`.
    pub fn lb_interfaces(&self) -> Vec<String> {
        let mut v = vec!["c0".to_string()];
        v.extend((0..self.backends.len()).map(|i| format!("b{i}")));
        v.extend((0..self.hosts.len()).map(|i| format!("h{i}")));
        v
    }

    /// An lbd config with every backend behind each VIP: NAT on `VIP` (TCP `web`, UDP
    /// `web-udp`) and `VIP6` (`web6`), DSR on `VIP_DSR` (`web-dsr`) and `VIP6_DSR` (`web6-dsr`).
    /// `web` has fast TCP health checks.
    pub fn config_toml(&self, instance: &str, socket: &Path) -> String {
        let ifaces: Vec<String> = self
            .lb_interfaces()
            .iter()
            .map(|i| format!("{i:?}"))
            .collect();
        let mut s = format!(
            "[lbd]\ninstance = {instance:?}\ninterfaces = [{}]\nsocket = {:?}\nstate_file = {:?}\n\
             metrics = \"{METRICS}\"\ndrain_timeout_s = 2\non_stop = \"remove\"\nmax_flows = 65536\nring_slots = 2097152\n{}",
            ifaces.join(", "),
            socket.display().to_string(),
            state_file(socket).display().to_string(),
            self.attach_line(),
        );
        let vips: [(&str, IpAddr, &str, &str); 5] = [
            ("web", VIP.into(), "tcp", "nat"),
            ("web-udp", VIP.into(), "udp", "nat"),
            ("web6", VIP6.into(), "tcp", "nat"),
            ("web-dsr", VIP_DSR.into(), "tcp", "dsr"),
            ("web6-dsr", VIP6_DSR.into(), "tcp", "dsr"),
        ];
        for (name, addr, proto, mode) in vips {
            s += &format!(
                "\n[[vip]]\nname = {name:?}\naddr = \"{addr}\"\nport = {VIP_PORT}\nproto = {proto:?}\nmode = {mode:?}\n"
            );
            let port = if mode == "dsr" {
                VIP_PORT
            } else {
                BACKEND_PORT
            };
            if name == "web" {
                s += "[vip.health]\nkind = \"tcp\"\ninter_ms = 200\nfastinter_ms = 100\n\
                      downinter_ms = 200\ntimeout_ms = 200\nrise = 2\nfall = 2\n";
            }
            for i in 0..self.backends.len() {
                let b: IpAddr = if addr.is_ipv4() {
                    backend_addr(i).into()
                } else {
                    backend_addr6(i).into()
                };
                s += &format!("[[vip.backend]]\naddr = \"{b}\"\nport = {port}\n");
            }
        }
        s
    }

    /// The `[lbd]` line that forces this topology's attach mode (none for `Auto`).
    pub fn attach_line(&self) -> &'static str {
        match self.attach {
            AttachMode::Auto => "",
            AttachMode::Xdp => "attach = \"xdp\"\n",
            AttachMode::Tc => "attach = \"tc\"\n",
        }
    }

    /// Starts every backend VM: the DSR VIPs on its loopback, `lb-decap` on `eth0` (at the
    /// hook `auto` picks: tc here, or XDP for forced XDP), and `lb-backend` serving the NAT
    /// port and the DSR VIP port; waits until each accepts. For forced XDP the client and the
    /// other hosts get `lb-decap` at XDP too, as their "XDP program on the peer": a veth
    /// delivers frames the balancer sends back with XDP_TX (ping answers, "fragmentation
    /// needed") only to a peer running one, and `lb_decap` passes what is not encapsulated.
    pub fn start_backends(&mut self, backend_bin: &Path, decap_bin: &Path) -> Result<()> {
        let decap = decap_bin.display().to_string();
        let hook = match self.attach {
            AttachMode::Xdp => "xdp",
            _ => "auto",
        };
        let args = ["--iface", "eth0", "--attach", hook];
        if self.attach == AttachMode::Xdp {
            for ns in std::iter::once(&mut self.client).chain(self.hosts.iter_mut()) {
                let cmd = ns.command(&decap, &args)?;
                ns.spawn(cmd)?;
            }
        }
        for ns in &mut self.backends {
            ns.add_addr("lo", VIP_DSR.into(), 32)?;
            ns.add_addr("lo", VIP6_DSR.into(), 128)?;
            let cmd = ns.command(&decap, &args)?;
            ns.spawn(cmd)?;
        }
        for i in 0..self.backends.len() {
            let pid = self.start_server(i, backend_bin)?;
            self.servers.push(pid);
        }
        Ok(())
    }

    /// Starts `lb-backend` in backend VM `i` (serving the NAT port and the DSR VIP port) and
    /// waits until it accepts; returns its pid.
    pub fn start_server(&mut self, i: usize, bin: &Path) -> Result<u32> {
        let state = self.agent_state_file(i).display().to_string();
        let ns = &mut self.backends[i];
        // Dual-stack: IPv4 clients arrive as v4-mapped addresses.
        let nat = format!("[::]:{BACKEND_PORT}");
        let dsr = format!("[::]:{VIP_PORT}");
        let name = backend_name(i);
        let agent = format!("[::]:{AGENT_PORT}");
        let args = [
            "--name",
            &name,
            "--listen",
            &nat,
            "--listen",
            &dsr,
            "--agent",
            &agent,
            "--agent-state",
            &state,
        ];
        let pid = ns.spawn(ns.command(&bin.display().to_string(), &args)?)?;
        let addr = SocketAddr::from((backend_addr(i), BACKEND_PORT));
        ns.enter(move || wait_until(Duration::from_secs(5), || tcp_hello(addr).is_ok()))??;
        ns.check_children().context("backend VM processes")?;
        if let Some(slot) = self.servers.get_mut(i) {
            *slot = pid;
        }
        Ok(pid)
    }

    /// The file whose first line backend VM `i`'s agent answers with (absent: `up 100%`).
    pub fn agent_state_file(&self, i: usize) -> PathBuf {
        std::env::temp_dir().join(format!("{}.agent", self.backends[i].name()))
    }

    /// Kills the server of backend VM `i` (SIGKILL), as a crash would.
    pub fn kill_server(&mut self, i: usize) -> Result<()> {
        let pid = self.servers[i];
        self.backends[i].signal_child(pid, nix::sys::signal::Signal::SIGKILL)
    }

    /// Starts `lbd --config CONFIG` in the balancer namespace and waits for its API socket;
    /// returns lbd's pid.
    pub fn start_lbd(&mut self, bin: &Path, config: &Path, socket: &Path) -> Result<u32> {
        start_lbd_in(&mut self.lb, bin, config, socket)
    }

    /// Runs `f` in the client namespace.
    pub fn as_client<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        self.client.enter(f)
    }
}

/// What a pool lab's VMs are.
#[derive(Clone, Debug, Default)]
pub enum PoolEngine {
    /// Network namespaces (lbd's embedded default).
    #[default]
    Netns,
    /// libvirt domains booting `kernel` and `initrd` (software emulation: TCG).
    Libvirt {
        /// Guest kernel.
        kernel: PathBuf,
        /// Guest initramfs.
        initrd: PathBuf,
    },
    /// Containers of `image` on the Docker-API engine at `socket`.
    Docker {
        /// The engine's API socket.
        socket: PathBuf,
        /// The image.
        image: String,
    },
}

impl PoolEngine {
    /// The `provider` line and the engine's table of `[vip.pool]`.
    fn toml(&self) -> String {
        match self {
            PoolEngine::Netns => "provider = \"netns\"\n".into(),
            PoolEngine::Libvirt { kernel, initrd } => format!(
                "provider = \"libvirt\"\n[vip.pool.libvirt]\ndomain_type = \"qemu\"\n\
                 kernel = {:?}\ninitrd = {:?}\nshutdown_s = 2\n",
                kernel.display().to_string(),
                initrd.display().to_string()
            ),
            PoolEngine::Docker { socket, image } => format!(
                "provider = \"docker\"\n[vip.pool.docker]\nsocket = {:?}\nimage = {image:?}\n\
                 shutdown_s = 2\n",
                socket.display().to_string()
            ),
        }
    }
}

/// Settings of a pool lab: one NAT VIP (`web` on [`VIP`]:80) served by a pool.
#[derive(Clone, Debug)]
pub struct PoolLab {
    /// What the VMs are.
    pub engine: PoolEngine,
    /// Memory per VM, MiB.
    pub memory_mb: u64,
    /// `min`, `max` VMs.
    pub min: u32,
    /// Most VMs.
    pub max: u32,
    /// Target mean CPU use.
    pub target: f64,
    /// Weight policy (`static`, `round-robin`, `least-conn`, `resource`).
    pub policy: &'static str,
    /// Slow-start ramp, seconds.
    pub slow_start_s: u64,
    /// Scale-out and scale-in cooldowns, seconds.
    pub cooldowns_s: (u64, u64),
    /// CPU limit per VM, cores.
    pub cpu_limit: f64,
    /// CPU microseconds per HTTP request.
    pub work_us: u64,
}

impl Default for PoolLab {
    fn default() -> Self {
        PoolLab {
            engine: PoolEngine::Netns,
            memory_mb: 128,
            min: 2,
            max: 6,
            target: 0.5,
            policy: "resource",
            slow_start_s: 5,
            cooldowns_s: (3, 3),
            cpu_limit: 0.2,
            work_us: 2000,
        }
    }
}

/// Network the pool lab's VMs get their links from.
pub const POOL_NETWORK: &str = "10.201.0.0/24";

impl PoolLab {
    /// Two VMs of `engine` that stay two (no autoscaling, static weights, no slow-start, no
    /// synthetic work, a core and 256 MiB each: room for a guest kernel).
    pub fn fixed(engine: PoolEngine) -> Self {
        PoolLab {
            engine,
            memory_mb: 256,
            min: 2,
            max: 2,
            policy: "static",
            slow_start_s: 0,
            cooldowns_s: (3600, 3600),
            cpu_limit: 1.0,
            work_us: 0,
            ..PoolLab::default()
        }
    }

    /// The lbd config of the pool lab for the balancer interfaces of `topo`.
    pub fn config_toml(&self, topo: &Topology, instance: &str, socket: &Path) -> String {
        let ifaces: Vec<String> = topo
            .lb_interfaces()
            .iter()
            .map(|i| format!("{i:?}"))
            .collect();
        format!(
            "[lbd]\ninstance = {instance:?}\ninterfaces = [{}]\nsocket = {:?}\nstate_file = {:?}\n\
             metrics = \"{METRICS}\"\ndrain_timeout_s = 20\non_stop = \"remove\"\nmax_flows = 65536\nring_slots = 2097152\n{}\n\
             [[vip]]\nname = \"web\"\naddr = \"{VIP}\"\nport = {VIP_PORT}\nproto = \"tcp\"\n\
             [vip.health]\nkind = \"agent\"\nagent_port = {AGENT_PORT}\ninter_ms = 300\n\
             fastinter_ms = 100\ndowninter_ms = 300\ntimeout_ms = 300\nrise = 2\nfall = 3\n\
             [vip.weights]\npolicy = {:?}\nslow_start_s = {}\n\
             [vip.pool]\nmin = {}\nmax = {}\ntarget_utilisation = {}\n\
             scale_out_cooldown_s = {}\nscale_in_cooldown_s = {}\ncpu_limit = {}\nwork_us = {}\n\
             memory_mb = {}\nport = {BACKEND_PORT}\nnetwork = \"{POOL_NETWORK}\"\n{}",
            ifaces.join(", "),
            socket.display().to_string(),
            state_file(socket).display().to_string(),
            topo.attach_line(),
            self.policy,
            self.slow_start_s,
            self.min,
            self.max,
            self.target,
            self.cooldowns_s.0,
            self.cooldowns_s.1,
            self.cpu_limit,
            self.work_us,
            self.memory_mb,
            self.engine.toml(),
        )
    }
}

/// Starts `lbd --config CONFIG` in namespace `lb` and waits for its API socket; returns its pid.
pub fn start_lbd_in(lb: &mut Netns, bin: &Path, config: &Path, socket: &Path) -> Result<u32> {
    start_lbd_with(lb, bin, config, socket, &[])
}

/// Where a lab's lbd writes its log: next to its API socket.
pub fn lbd_log(socket: &Path) -> PathBuf {
    socket.with_extension("log")
}

/// Like [`start_lbd_in`], with more arguments for lbd; its log (stderr) is appended to
/// [`lbd_log`].
pub fn start_lbd_with(
    lb: &mut Netns,
    bin: &Path,
    config: &Path,
    socket: &Path,
    extra: &[&str],
) -> Result<u32> {
    let config = config.display().to_string();
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(extra);
    let mut cmd = lb.command(&bin.display().to_string(), &args)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lbd_log(socket))
        .context("opening lbd's log")?;
    cmd.stderr(log);
    let pid = lb.spawn(cmd)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        lb.check_children()
            .with_context(|| format!("lbd did not come up: {}", tail(&lbd_log(socket), 20)))?;
        if client::request(socket, "GET", "/v1/status", None).is_ok() {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("lbd did not answer on {} within 10 s", socket.display())
}

/// The last `n` lines of the text file at `path` (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes an instance's pin directory when dropped (after its lbd stopped): for labs whose
/// lbd leaves its data path pinned on stop.
pub struct PinGuard(pub String);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(lb_userspace::daemon::pin_dir(&self.0));
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 0..self.backends.len() {
            let _ = std::fs::remove_file(self.agent_state_file(i));
        }
    }
}

/// Where the lab's lbd keeps its state: next to its API socket.
pub fn state_file(socket: &Path) -> PathBuf {
    socket.with_extension("state.toml")
}

/// A file that is removed when the guard drops.
pub struct TempFile(PathBuf);

impl TempFile {
    /// Creates `/tmp/<name>` with `text`.
    pub fn new(name: &str, text: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(name);
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(TempFile(path))
    }

    /// Guards a file someone else creates (lbd's state file): removed when the guard drops.
    pub fn adopt(path: PathBuf) -> Self {
        TempFile(path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory that is removed, with everything in it, when the guard drops.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
