//! The embedded lab: network namespaces for a client, the balancer and backend VMs, joined by
//! veth pairs, with addresses and routes; plus the client-side probes that tests and
//! `cargo xtask run` use. Everything is torn down when the [`Topology`] drops.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::{unique_name, Netns};

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
}

impl Topology {
    /// Creates the namespaces and links for `n` backends, dual-stack.
    pub fn build(n: usize) -> Result<Self> {
        let client = Netns::create(&unique_name("lbc"))?;
        let lb = Netns::create(&unique_name("lbl"))?;
        let mut topo = Topology {
            backends: Vec::new(),
            lb,
            client,
            servers: Vec::new(),
            hosts: Vec::new(),
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
        Ok(topo)
    }

    /// Adds another client host on a link of its own (before lbd starts, so lbd attaches to
    /// it); returns its index in `hosts`.
    pub fn add_host(&mut self) -> Result<usize> {
        let i = self.hosts.len();
        let ns = Netns::create(&unique_name("lbh"))?;
        ns.sysctl("net.ipv6.conf.default.accept_dad=0")?;
        self.link(&format!("h{i}"), &ns, 2 + i)?;
        self.hosts.push(ns);
        Ok(i)
    }

    /// A veth pair on subnet `net` (10.200.<net>.0/24 and fd00:200:<net>::/64): `lb_if` in the
    /// balancer (.1, ::1), `eth0` in `peer_ns` (.2, ::2) with default routes via the balancer.
    /// The peer gets GRO on (so frames redirected by XDP into the veth are received) and TX
    /// checksum offload off (so packets carry full checksums that the balancer can update
    /// incrementally).
    fn link(&self, lb_if: &str, peer_ns: &Netns, net: usize) -> Result<()> {
        let peer_name = peer_ns.name();
        self.lb.ip(&[
            "link", "add", lb_if, "type", "veth", "peer", "name", "eth0", "netns", peer_name,
        ])?;
        let v4 = |host: u8| format!("10.200.{net}.{host}");
        let v6 = |host: u8| format!("fd00:200:{net:x}::{host}");
        self.lb
            .ip(&["addr", "add", &format!("{}/24", v4(1)), "dev", lb_if])?;
        self.lb.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", v6(1)),
            "dev",
            lb_if,
            "nodad",
        ])?;
        self.lb.ip(&["link", "set", lb_if, "up"])?;
        peer_ns.ip(&["addr", "add", &format!("{}/24", v4(2)), "dev", "eth0"])?;
        peer_ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", v6(2)),
            "dev",
            "eth0",
            "nodad",
        ])?;
        peer_ns.ip(&["link", "set", "eth0", "up"])?;
        peer_ns.ip(&["route", "add", "default", "via", &v4(1)])?;
        peer_ns.ip(&["-6", "route", "add", "default", "via", &v6(1)])?;
        peer_ns.exec("ethtool", &["-K", "eth0", "gro", "on", "tx", "off"])
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
             metrics = \"{METRICS}\"\ndrain_timeout_s = 2\n",
            ifaces.join(", "),
            socket.display().to_string(),
            state_file(socket).display().to_string()
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
                      downinter_ms = 200\ntimeout_ms = 300\nrise = 2\nfall = 2\n";
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

    /// Starts every backend VM: the DSR VIPs on its loopback, `lb-decap` on `eth0`, and
    /// `lb-backend` serving the NAT port and the DSR VIP port; waits until each accepts. The
    /// client and the other hosts get `lb-decap` too, as their "XDP program on the peer": a
    /// veth delivers frames the balancer sends back with XDP_TX (ping answers, "fragmentation
    /// needed") only to a peer running one, and `lb_decap` passes what is not encapsulated.
    pub fn start_backends(&mut self, backend_bin: &Path, decap_bin: &Path) -> Result<()> {
        let decap = decap_bin.display().to_string();
        for ns in std::iter::once(&mut self.client).chain(self.hosts.iter_mut()) {
            let cmd = ns.command(&decap, &["--iface", "eth0"])?;
            ns.spawn(cmd)?;
        }
        for ns in &mut self.backends {
            ns.ip(&["addr", "add", &format!("{VIP_DSR}/32"), "dev", "lo"])?;
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{VIP6_DSR}/128"),
                "dev",
                "lo",
                "nodad",
            ])?;
            let decap = ns.command(&decap_bin.display().to_string(), &["--iface", "eth0"])?;
            ns.spawn(decap)?;
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

/// Settings of a pool lab: one NAT VIP (`web` on [`VIP`]:80) served by a `netns` pool.
#[derive(Clone, Debug)]
pub struct PoolLab {
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
    /// The lbd config of the pool lab for the balancer interfaces of `topo`.
    pub fn config_toml(&self, topo: &Topology, instance: &str, socket: &Path) -> String {
        let ifaces: Vec<String> = topo
            .lb_interfaces()
            .iter()
            .map(|i| format!("{i:?}"))
            .collect();
        format!(
            "[lbd]\ninstance = {instance:?}\ninterfaces = [{}]\nsocket = {:?}\nstate_file = {:?}\n\
             metrics = \"{METRICS}\"\ndrain_timeout_s = 20\n\n\
             [[vip]]\nname = \"web\"\naddr = \"{VIP}\"\nport = {VIP_PORT}\nproto = \"tcp\"\n\
             [vip.health]\nkind = \"agent\"\nagent_port = {AGENT_PORT}\ninter_ms = 300\n\
             fastinter_ms = 100\ndowninter_ms = 300\ntimeout_ms = 800\nrise = 2\nfall = 3\n\
             [vip.weights]\npolicy = {:?}\nslow_start_s = {}\n\
             [vip.pool]\nprovider = \"netns\"\nmin = {}\nmax = {}\ntarget_utilisation = {}\n\
             scale_out_cooldown_s = {}\nscale_in_cooldown_s = {}\ncpu_limit = {}\nwork_us = {}\n\
             port = {BACKEND_PORT}\nnetwork = \"{POOL_NETWORK}\"\n",
            ifaces.join(", "),
            socket.display().to_string(),
            state_file(socket).display().to_string(),
            self.policy,
            self.slow_start_s,
            self.min,
            self.max,
            self.target,
            self.cooldowns_s.0,
            self.cooldowns_s.1,
            self.cpu_limit,
            self.work_us,
        )
    }
}

/// One HTTP request on a new connection (`Connection: close`); returns the `X-Backend` that
/// answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .context("reading the answer")?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("bad answer: {:?}", text.lines().next().unwrap_or(""));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .map(|n| n.trim().to_string())
        .ok_or_else(|| anyhow!("answer without X-Backend"))
}

/// Opens a keep-alive HTTP connection and makes one request: the name of the backend that
/// answered, and the open stream (for more requests with [`http_keepalive`]).
pub fn http_session(addr: SocketAddr) -> Result<(String, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let name = http_keepalive(&mut stream)?;
    Ok((name, stream))
}

/// A keep-alive HTTP request on `stream`; the backend's name from the body.
pub fn http_keepalive(stream: &mut TcpStream) -> Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < 16 * 1024 {
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if !head.starts_with("HTTP/1.1 200") {
                bail!("answer {:?}", head.lines().next().unwrap_or(""));
            }
            if body.ends_with('\n') {
                return Ok(body.trim().to_string());
            }
        }
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            bail!("connection closed");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Err(anyhow!("answer too long"))
}

/// What a [`Load`] has seen: requests answered (by backend) and failed.
#[derive(Default)]
pub struct Tally {
    /// Requests answered with 200.
    pub ok: AtomicU64,
    /// Requests that failed (connect, timeout, bad answer).
    pub failed: AtomicU64,
    /// Answers per backend name.
    pub by_backend: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    /// Answers per backend so far.
    pub fn backends(&self) -> BTreeMap<String, u64> {
        self.by_backend
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Client load: worker threads in a namespace, each making one HTTP request per new
/// connection, together at `rate` requests per second (changeable while running). Stops and
/// joins its threads on drop.
pub struct Load {
    /// Offered requests per second, shared by the workers.
    pub rate: Arc<AtomicU64>,
    /// What the workers saw.
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` threads in `ns` sending to `addr` at `rate` requests/s in all.
    pub fn start(ns: &Netns, addr: SocketAddr, rate: u64, workers: usize) -> Result<Self> {
        let rate = Arc::new(AtomicU64::new(rate));
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let file = std::fs::File::open(format!("/run/netns/{}", ns.name()))?;
            let (rate, tally, stop) = (rate.clone(), tally.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                if nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    let r = rate.load(Ordering::Relaxed);
                    if r == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let started = Instant::now();
                    match http_get(addr, "/") {
                        Ok(name) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut m) = tally.by_backend.lock() {
                                *m.entry(name).or_default() += 1;
                            }
                        }
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let gap = Duration::from_secs_f64(workers as f64 / r as f64);
                    if let Some(rest) = gap.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest.min(Duration::from_millis(500)));
                    }
                }
            }));
        }
        Ok(Load {
            rate,
            tally,
            stop,
            workers: handles,
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Starts `lbd --config CONFIG` in namespace `lb` and waits for its API socket; returns its pid.
pub fn start_lbd_in(lb: &mut Netns, bin: &Path, config: &Path, socket: &Path) -> Result<u32> {
    let config = config.display().to_string();
    let cmd = lb.command(&bin.display().to_string(), &["--config", &config])?;
    let pid = lb.spawn(cmd)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        lb.check_children().context("lbd did not come up")?;
        if crate::client::request(socket, "GET", "/v1/status", None).is_ok() {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("lbd did not answer on {} within 10 s", socket.display())
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 0..self.backends.len() {
            let _ = std::fs::remove_file(self.agent_state_file(i));
        }
    }
}

/// Calls `ready` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("not ready after {limit:?}")
}

/// Opens a TCP connection and returns the name the backend greets with.
pub fn tcp_hello(addr: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    read_greeting(stream)
}

/// Like [`tcp_hello`] from a fixed local port, closing with a reset so the same 4-tuple can
/// be used again at once.
pub fn tcp_hello_from(local: SocketAddrV4, addr: SocketAddr) -> Result<String> {
    // The previous connection on this 4-tuple may still be tearing down: retry briefly.
    let mut last = None;
    for _ in 0..10 {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.bind(&SocketAddr::V4(local).into())?;
        match sock.connect_timeout(&addr.into(), PROBE_TIMEOUT) {
            Ok(()) => {
                sock.set_linger(Some(Duration::ZERO))?;
                return read_greeting(sock.into());
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| anyhow!("no attempt made"), Into::into))
}

/// Reads the greeting line (the backend's name); the connection stays open.
fn greeting(stream: &mut TcpStream) -> Result<String> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        if stream.read(&mut byte).context("reading the greeting")? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let name = String::from_utf8_lossy(&line).trim().to_string();
    if name.is_empty() {
        bail!("connection closed without a greeting");
    }
    Ok(name)
}

/// Reads the greeting and closes the connection (the client closes first).
fn read_greeting(mut stream: TcpStream) -> Result<String> {
    greeting(&mut stream)
}

/// Opens a long-lived connection: the backend's name and the open stream, which echoes.
pub fn tcp_session(addr: SocketAddr) -> Result<(String, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    let name = greeting(&mut stream)?;
    Ok((name, stream))
}

/// Sends `msg` on a session and returns what came back (the backend echoes).
pub fn echo(stream: &mut TcpStream, msg: &str) -> Result<String> {
    stream.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).context("reading the echo")?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Sends one datagram from `socket` to `addr` and returns the name in the answer.
pub fn udp_hello(socket: &UdpSocket, addr: SocketAddr) -> Result<String> {
    socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
    socket.send_to(b"hello", addr)?;
    let mut buf = [0u8; 256];
    let (n, from) = socket
        .recv_from(&mut buf)
        .context("waiting for the UDP answer")?;
    if from != addr {
        return Err(anyhow!("UDP answer came from {from}, not {addr}"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
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
