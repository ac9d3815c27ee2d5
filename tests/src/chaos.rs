//! The chaos suite: steady client traffic (long-lived and short TCP connections, UDP flows)
//! through a running lab while one fault is injected, counting what was attempted, completed,
//! broken and failed. `cargo xtask chaos` runs every scenario with a table; the Tier 3 tests
//! run the same scenarios with shorter phases and assert their targets.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use lb_lab::{
    self as lab, backend_addr, backend_name, echo, netns::Netns, tcp_hello, tcp_session,
    BACKEND_PORT, VIP,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    lab::{PoolRunning, RunningLab},
    packet::{Frame, SYN},
};

/// How long each phase of a scenario lasts.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    /// Traffic before the fault.
    pub before: Duration,
    /// The fault itself (for faults that last: churn, floods, flapping).
    pub fault: Duration,
    /// Traffic after the fault.
    pub after: Duration,
}

impl Phases {
    /// What `cargo xtask chaos` runs: 20 s faults, as the suite's definition asks.
    pub const FULL: Phases = Phases {
        before: Duration::from_secs(2),
        fault: Duration::from_secs(20),
        after: Duration::from_secs(3),
    };
    /// What the Tier 3 tests run, to stay inside CI's time.
    pub const SHORT: Phases = Phases {
        before: Duration::from_secs(1),
        fault: Duration::from_secs(4),
        after: Duration::from_secs(2),
    };
}

/// Echoes per long-lived session, one every [`LONG_GAP`]: a session lasts about 2 s.
const LONG_ECHOES: u32 = 20;
const LONG_GAP: Duration = Duration::from_millis(100);
/// Datagrams per UDP flow, one every [`UDP_GAP`].
const UDP_PER_FLOW: u32 = 40;
const UDP_GAP: Duration = Duration::from_millis(50);
/// How long a UDP answer may take.
const UDP_TIMEOUT: Duration = Duration::from_millis(500);

/// What the client saw.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Long-lived connections opened.
    pub long_attempted: u64,
    /// Long-lived connections that ran all their echoes and closed cleanly.
    pub long_completed: u64,
    /// Long-lived connections that broke after opening, by the backend they were on.
    pub long_broken: BTreeMap<String, u64>,
    /// Short connections (one exchange each) attempted.
    pub short_attempted: u64,
    /// Short connections and long-lived opens that failed (connect, answer), each with when
    /// its attempt began (since traffic began).
    pub short_failed: Vec<Duration>,
    /// UDP datagrams sent.
    pub udp_sent: u64,
    /// UDP datagrams left unanswered.
    pub udp_failed: u64,
    /// UDP answers from a different backend than the flow's first.
    pub udp_moved: u64,
}

impl Counts {
    /// Long-lived connections broken, in all.
    pub fn broken(&self) -> u64 {
        self.long_broken.values().sum()
    }
}

/// How the TCP traffic talks: the lab's greeting-and-echo servers, or HTTP keep-alive
/// (pool VMs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Greeting line naming the backend, then echo.
    Greeting,
    /// HTTP/1.1; the answer's body names the backend.
    Http,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    udp_sent: AtomicU64,
}

/// One worker's loop, run on a thread inside the traffic's namespace.
type Work = Box<dyn FnOnce(&AtomicBool, &Shared) + Send>;

/// Client traffic running in a namespace until [`Traffic::stop`].
pub struct Traffic {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Traffic {
    /// Starts 4 long-lived and 2 short-connection workers to `tcp`, and a UDP worker to
    /// `udp` if given, all inside namespace `ns`.
    pub fn start(ns: &Netns, dialect: Dialect, tcp: SocketAddr, udp: Option<SocketAddr>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let mut threads = Vec::new();
        let mut spawn = |work: Work| {
            let (stop, shared) = (stop.clone(), shared.clone());
            let path = format!("/run/netns/{}", ns.name());
            threads.push(std::thread::spawn(move || {
                let entered = std::fs::File::open(&path).ok().is_some_and(|f| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                });
                if entered {
                    work(&stop, &shared);
                } else if let Ok(mut c) = shared.counts.lock() {
                    c.short_failed.push(Duration::ZERO);
                }
            }));
        };
        for _ in 0..4 {
            spawn(Box::new(move |stop, shared| {
                long_lived(stop, shared, dialect, tcp, started)
            }));
        }
        for _ in 0..2 {
            spawn(Box::new(move |stop, shared| {
                short(stop, shared, dialect, tcp, started)
            }));
        }
        if let Some(udp) = udp {
            spawn(Box::new(move |stop, shared| udp_flows(stop, shared, udp)));
        }
        Traffic {
            stop,
            shared,
            threads,
            started,
        }
    }

    /// When the traffic began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the workers (each finishes its current exchange) and returns the counts.
    pub fn stop(mut self) -> Counts {
        self.halt();
        let mut c = self
            .shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        c.udp_sent = self.shared.udp_sent.load(Ordering::Relaxed);
        c
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One exchange on an open connection: the backend's name (HTTP) or the echo (greeting).
fn exchange(stream: &mut TcpStream, dialect: Dialect, name: &str, n: u32) -> Result<()> {
    match dialect {
        Dialect::Greeting => {
            let msg = format!("ping {n}\n");
            let got = echo(stream, &msg)?;
            if got != msg {
                bail!("echo {got:?} instead of {msg:?}");
            }
        }
        Dialect::Http => {
            let got = lab::http_keepalive(stream)?;
            if got != name {
                bail!("answered by {got}, not {name}");
            }
        }
    }
    Ok(())
}

/// Opens a long-lived connection: the backend's name and the stream.
fn open(dialect: Dialect, tcp: SocketAddr) -> Result<(String, TcpStream)> {
    match dialect {
        Dialect::Greeting => tcp_session(tcp),
        Dialect::Http => lab::http_session(tcp),
    }
}

/// Failures are timed by when their attempt began, relative to `t0` (the traffic's start).
fn long_lived(stop: &AtomicBool, shared: &Shared, dialect: Dialect, tcp: SocketAddr, t0: Instant) {
    while !stop.load(Ordering::Relaxed) {
        let began = t0.elapsed();
        let opened = open(dialect, tcp);
        let Ok(mut c) = shared.counts.lock() else {
            return;
        };
        c.long_attempted += 1;
        let Ok((name, mut stream)) = opened else {
            // A refused open is a failed short exchange, not a broken connection.
            c.short_failed.push(began);
            drop(c);
            std::thread::sleep(LONG_GAP);
            continue;
        };
        drop(c);
        let mut ok = true;
        for n in 0..LONG_ECHOES {
            std::thread::sleep(LONG_GAP);
            if exchange(&mut stream, dialect, &name, n).is_err() {
                ok = false;
                break;
            }
        }
        if let Ok(mut c) = shared.counts.lock() {
            if ok {
                c.long_completed += 1;
            } else {
                *c.long_broken.entry(name).or_default() += 1;
            }
        }
    }
}

fn short(stop: &AtomicBool, shared: &Shared, dialect: Dialect, tcp: SocketAddr, t0: Instant) {
    while !stop.load(Ordering::Relaxed) {
        let began = t0.elapsed();
        let ok = match dialect {
            Dialect::Greeting => tcp_hello(tcp).is_ok(),
            Dialect::Http => lab::http_get(tcp, "/").is_ok(),
        };
        if let Ok(mut c) = shared.counts.lock() {
            c.short_attempted += 1;
            if !ok {
                c.short_failed.push(began);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn udp_flows(stop: &AtomicBool, shared: &Shared, udp: SocketAddr) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
            return;
        };
        let _ = socket.set_read_timeout(Some(UDP_TIMEOUT));
        let mut first: Option<String> = None;
        for _ in 0..UDP_PER_FLOW {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            shared.udp_sent.fetch_add(1, Ordering::Relaxed);
            let answer = socket.send_to(b"hello", udp).ok().and_then(|_| {
                let mut buf = [0u8; 256];
                let (n, from) = socket.recv_from(&mut buf).ok()?;
                (from == udp).then(|| String::from_utf8_lossy(&buf[..n]).trim().to_string())
            });
            if let Ok(mut c) = shared.counts.lock() {
                match (&answer, &first) {
                    (None, _) => c.udp_failed += 1,
                    (Some(a), Some(f)) if a != f => c.udp_moved += 1,
                    _ => {}
                }
            }
            if first.is_none() {
                first = answer;
            }
            std::thread::sleep(UDP_GAP);
        }
    }
}

/// One scenario's outcome.
#[derive(Debug)]
pub struct Report {
    /// Scenario name.
    pub name: &'static str,
    /// What the client saw.
    pub counts: Counts,
    /// Scenario-specific figures (flood rate, rebuilds...).
    pub notes: Vec<String>,
    /// Targets missed; empty when the scenario met every one.
    pub missed: Vec<String>,
}

impl Report {
    fn new(name: &'static str, counts: Counts) -> Self {
        Report {
            name,
            counts,
            notes: Vec::new(),
            missed: Vec::new(),
        }
    }

    /// Records a target: `ok`, or `what` missed.
    fn target(&mut self, ok: bool, what: String) {
        if !ok {
            self.missed.push(what);
        }
    }

    /// The usual target: nothing broken, failed or moved.
    fn nothing_broken(&mut self) {
        let c = self.counts.clone();
        self.target(c.broken() == 0, format!("broken: {:?}", c.long_broken));
        self.target(
            c.short_failed.is_empty(),
            format!("{} short connections failed", c.short_failed.len()),
        );
        self.target(
            c.udp_failed == 0,
            format!("{} datagrams unanswered", c.udp_failed),
        );
        self.target(c.udp_moved == 0, format!("{} datagrams moved", c.udp_moved));
    }
}

fn vip_tcp() -> SocketAddr {
    SocketAddr::from((VIP, lab::VIP_PORT))
}

/// A lab with 4 backend VMs (and `hosts` more client hosts) and steady traffic from the
/// client on the NAT VIP (TCP and UDP).
fn lab_with_traffic(hosts: usize, lbd_settings: &str) -> (RunningLab, Traffic) {
    let lab = RunningLab::start_with(4, hosts, lbd_settings);
    let traffic = Traffic::start(
        &lab.topo.client,
        Dialect::Greeting,
        vip_tcp(),
        Some(vip_tcp()),
    );
    (lab, traffic)
}

fn backend(i: usize) -> String {
    format!("{}:{BACKEND_PORT}", backend_addr(i))
}

/// 1. lbd killed with SIGKILL and restarted: the pinned data path keeps forwarding.
pub fn lbd_restart(p: Phases) -> Report {
    let (mut lab, traffic) = lab_with_traffic(0, "");
    std::thread::sleep(p.before);
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    std::thread::sleep(p.after);
    let mut r = Report::new("lbd SIGKILL + restart", traffic.stop());
    r.nothing_broken();
    r
}

/// 2. A backend drained, then removed once it reports drained.
pub fn drain_and_remove(p: Phases) -> Report {
    let (lab, traffic) = lab_with_traffic(0, "");
    std::thread::sleep(p.before);
    lab.lbctl(&["backend", "drain", "--vip", "web", &backend(0)]);
    let start = Instant::now();
    // Long-lived sessions last about 2 s, so the drain completes on its own.
    let drained =
        lab::wait_until(Duration::from_secs(15), || lab.web_state(0) == "drained").is_ok();
    let waited = start.elapsed();
    lab.lbctl(&["backend", "remove", "--vip", "web", &backend(0)]);
    std::thread::sleep(p.after);
    let mut r = Report::new("drain, then remove a backend", traffic.stop());
    r.notes
        .push(format!("drained after {:.1} s", waited.as_secs_f64()));
    r.target(drained, "the backend never reported drained".into());
    r.nothing_broken();
    r
}

/// 3. A weight change every second for the fault phase.
pub fn weight_churn(p: Phases) -> Report {
    let (lab, traffic) = lab_with_traffic(0, "");
    std::thread::sleep(p.before);
    let start = Instant::now();
    let mut changes = 0;
    while start.elapsed() < p.fault {
        let i = changes % 4;
        let w = (changes / 4) % 4 + 1;
        lab.lbctl(&[
            "backend",
            "weight",
            "--vip",
            "web",
            &backend(i),
            &w.to_string(),
        ]);
        changes += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(p.after);
    let mut r = Report::new("weight change every second", traffic.stop());
    r.notes.push(format!("{changes} weight changes"));
    r.nothing_broken();
    r
}

/// 4. The autoscaler scales in: a pool of 2 grown to 4 by hand drains and deletes the extra
///    VMs while traffic runs.
pub fn scale_in(p: Phases) -> Report {
    let cfg = lab::PoolLab {
        min: 2,
        max: 4,
        cooldowns_s: (1, 1),
        work_us: 0,
        ..lab::PoolLab::default()
    };
    let lab = PoolRunning::start(&cfg);
    let serving =
        |n: usize| move |v: &lb_userspace::model::wire::PoolView| PoolRunning::active(v).len() == n;
    lab.wait_for(Duration::from_secs(15), "2 VMs serving", serving(2));
    let traffic = Traffic::start(&lab.topo.client, Dialect::Http, vip_tcp(), None);
    lab.lbctl(&["vm", "create", "--pool", "web"]);
    lab.lbctl(&["vm", "create", "--pool", "web"]);
    // Traffic ran while the two VMs joined; the autoscaler may start draining at once.
    lab.wait_for(Duration::from_secs(20), "4 VMs serving", serving(4));
    let start = Instant::now();
    let v = lab.wait_for(Duration::from_secs(60), "scaled in to 2", |v| {
        v.vms.len() == 2 && PoolRunning::active(v).len() == 2
    });
    let took = start.elapsed();
    std::thread::sleep(p.after);
    let mut r = Report::new("autoscaler scale-in", traffic.stop());
    let drains = v.decisions.get("scale_in").copied().unwrap_or(0);
    r.notes.push(format!(
        "4 -> 2 VMs {:.1} s after the 4th served ({drains} scale-in decisions)",
        took.as_secs_f64()
    ));
    r.target(drains >= 2, format!("{drains} scale-in decisions, not 2"));
    r.nothing_broken();
    r
}

/// 5. A backend VM's server killed: only its own connections may break, and new connections
///    fail only until health checks take it out.
pub fn backend_killed(p: Phases) -> Report {
    let mut lab = RunningLab::start(4);
    // No UDP here: the lab's UDP VIP has no health check, so a dead UDP server is not taken
    // out of its ring (and all its flows would count).
    let traffic = Traffic::start(&lab.topo.client, Dialect::Greeting, vip_tcp(), None);
    std::thread::sleep(p.before);
    let killed_at = traffic.started().elapsed();
    lab.topo.kill_server(1).expect("kill the server of vm1");
    std::thread::sleep(p.after.max(Duration::from_secs(3)));
    let c = traffic.stop();
    let mut r = Report::new("backend VM killed", c.clone());
    let victim = backend_name(1);
    let elsewhere: u64 = c
        .long_broken
        .iter()
        .filter(|(k, _)| **k != victim)
        .map(|(_, v)| v)
        .sum();
    // An attempt that began just before the kill may still be in flight on vm1 when it dies.
    let (from, to) = (
        killed_at.saturating_sub(Duration::from_millis(500)),
        killed_at + Duration::from_secs(2),
    );
    let late = c
        .short_failed
        .iter()
        .filter(|t| **t < from || **t > to)
        .count();
    r.notes.push(format!(
        "{} of vm1's connections broke; {} new connections failed before it left the ring",
        c.long_broken.get(&victim).copied().unwrap_or(0),
        c.short_failed.len()
    ));
    r.target(elsewhere == 0, format!("{elsewhere} broken on other VMs"));
    r.target(
        late == 0,
        format!("{late} new connections failed outside the 2 s detection window"),
    );
    r
}

/// Spoofed SYNs from random sources to `dst`, as fast as one thread can send, for `how_long`;
/// returns how many went out. Runs in the calling thread's namespace.
fn syn_flood(dst: SocketAddr, how_long: Duration) -> Result<u64> {
    let fd = raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let std::net::IpAddr::V4(dst_ip) = dst.ip() else {
        bail!("IPv4 only");
    };
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst_ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut rng = StdRng::seed_from_u64(0x005f_100d);
    Ok(blast(&fd, &to, how_long, || {
        // Spoofed sources in 100.64.0.0/10, which nothing in the lab routes.
        let src = Ipv4Addr::from(0x6440_0000 | (rng.random::<u32>() & 0x003f_ffff));
        let frame = Frame::tcp(src, rng.random_range(1024..65535), dst_ip, dst.port(), SYN);
        frame.bytes()[14..].to_vec()
    }))
}

/// A raw socket(2) of the given kind.
fn raw_socket(domain: i32, kind: i32, proto: i32) -> Result<std::os::fd::OwnedFd> {
    // SAFETY: plain socket(2) call; the descriptor is owned by the result from here on.
    let raw = unsafe { libc::socket(domain, kind, proto) };
    if raw < 0 {
        bail!("raw socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Sends what `next` makes to `to` on `fd` as fast as it can for `how_long`; returns how many
/// went out.
fn blast<A>(
    fd: &std::os::fd::OwnedFd,
    to: &A,
    how_long: Duration,
    mut next: impl FnMut() -> Vec<u8>,
) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < how_long {
        for _ in 0..256 {
            let packet = next();
            // SAFETY: `packet` and `to` (a sockaddr of `size_of::<A>()` bytes) are valid for
            // the whole call.
            let n = unsafe {
                libc::sendto(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (to as *const A).cast(),
                    std::mem::size_of::<A>() as libc::socklen_t,
                )
            };
            if n > 0 {
                sent += 1;
            }
        }
    }
    sent
}

/// 6. A SYN flood from random spoofed sources, sent by a host on a link of its own, beside
///    legitimate clients.
pub fn syn_flood_scenario(p: Phases) -> Report {
    // A new-flow limit the flood crosses many times over: legitimate flows then open on
    // probation too, and must still be served.
    let (lab, traffic) = lab_with_traffic(1, "max_new_flows_per_cpu = 2000\n");
    std::thread::sleep(p.before);
    let before = counters(&lab);
    let sent = lab.topo.hosts[0]
        .enter(|| syn_flood(vip_tcp(), p.fault))
        .and_then(|r| r)
        .unwrap_or(0);
    std::thread::sleep(p.after);
    let probation = counted_since(&before, &counters(&lab), &["fwd_probation"]);
    let c = traffic.stop();
    let mut r = Report::new("spoofed SYN flood", c.clone());
    let rate = sent as f64 / p.fault.as_secs_f64();
    let ok = c
        .short_attempted
        .saturating_sub(c.short_failed.len() as u64);
    let share = ok as f64 / c.short_attempted.max(1) as f64;
    r.notes.push(format!(
        "{sent} spoofed SYNs ({rate:.0}/s), {probation} flows put on probation (limit 2,000/s \
         per CPU); legitimate new connections {:.2}% ok",
        share * 100.0
    ));
    r.target(sent > 0, "the flood sent nothing".into());
    r.target(
        probation > sent / 2,
        format!("only {probation} of {sent} SYNs went on probation"),
    );
    r.target(
        share >= 0.999,
        format!(
            "only {:.2}% of legitimate connections succeeded",
            share * 100.0
        ),
    );
    r.target(c.broken() == 0, format!("broken: {:?}", c.long_broken));
    r.target(c.udp_moved == 0, format!("{} datagrams moved", c.udp_moved));
    r
}

/// Source address of the malformed frames (no legitimate traffic uses it).
const JUNK_SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 99);

/// A malformed or mutated frame (kind `k`) from `JUNK_SRC` to the VIP; none is a well-formed
/// packet, so `lb_xdp` must count each as malformed or as a fragment, and forward none.
fn junk_frame(rng: &mut StdRng, k: u32, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Frame::tcp(
        JUNK_SRC,
        rng.random_range(1024..65535),
        VIP,
        lab::VIP_PORT,
        SYN,
    );
    f.payload = (0..rng.random_range(0..32)).map(|_| rng.random()).collect();
    let mut b = f.bytes();
    b[0..6].copy_from_slice(&dst_mac);
    b[6..12].copy_from_slice(&src_mac);
    match k % 5 {
        // Cut inside the IPv4 or TCP header.
        0 => b.truncate(rng.random_range(15..14 + 20 + 20)),
        // IHL below 5.
        1 => b[14] = 0x40 | rng.random_range(0..5u8),
        // Total length past the frame's end.
        2 => {
            let tot = (b.len() - 14 + rng.random_range(1..1000)) as u16;
            b[16..18].copy_from_slice(&tot.to_be_bytes());
        }
        // Version not 4 under the IPv4 ethertype.
        3 => b[14] = (rng.random_range(5..16u8) << 4) | 5,
        // A fragment (more-fragments bit, or an offset).
        _ => b[20] |= if rng.random_bool(0.5) { 0x20 } else { 0x01 },
    }
    b
}

/// MAC address of `dev` in namespace `ns` (from netlink).
fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    use futures_util::TryStreamExt;
    use rtnetlink::packet_route::link::LinkAttribute;
    let name = dev.to_string();
    let attrs = ns.netlink(move |h| async move {
        let link = h
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
            .map_err(|e| lb_userspace::sys::error::fail(format!("reading link {name}"), e))?;
        Ok(link.map(|l| l.attributes).unwrap_or_default())
    })?;
    let mac = attrs
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no MAC for {dev}"))?;
    mac.try_into()
        .map_err(|m| anyhow!("{dev}: MAC {m:?} is not 6 bytes"))
}

/// Sends malformed frames out of `eth0` (AF_PACKET) for `how_long`; returns how many.
fn junk_flood(dst_mac: [u8; 6], src_mac: [u8; 6], how_long: Duration) -> Result<u64> {
    let ifindex = lb_userspace::dataplane::ifindex("eth0")?;
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let fd = raw_socket(libc::AF_PACKET, libc::SOCK_RAW, all)?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value before the fields are set.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&dst_mac);
    let mut rng = StdRng::seed_from_u64(0x0bad_f00d);
    let mut k = 0u32;
    Ok(blast(&fd, &to, how_long, || {
        k = k.wrapping_add(1);
        junk_frame(&mut rng, k, dst_mac, src_mac)
    }))
}

/// Counters of `lbd` by reason name.
fn counters(lab: &RunningLab) -> BTreeMap<String, u64> {
    serde_json::from_value(lab.stats()["counters"].clone()).unwrap_or_default()
}

/// How much the counters named `reasons` grew, together, from `before` to `after`.
fn counted_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    reasons: &[&str],
) -> u64 {
    let at = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    reasons
        .iter()
        .map(|k| at(after, k).saturating_sub(at(before, k)))
        .sum()
}

/// Packets from `JUNK_SRC` that reached backend VM `ns`'s IP layer (an nft counter).
fn junk_seen(ns: &Netns) -> u64 {
    let out = ns
        .command("nft", &["list", "chain", "ip", "chaos", "seen"])
        .and_then(|mut c| Ok(c.output()?));
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// 7. Malformed and mutated frames at rate: each counted, none forwarded, and the data path
///    healthy after.
pub fn malformed_flood(p: Phases) -> Report {
    let (lab, traffic) = lab_with_traffic(0, "");
    let rules = format!(
        "table ip chaos {{\n  chain seen {{\n    type filter hook prerouting priority -300;\n    \
         ip saddr {JUNK_SRC} counter\n  }}\n}}\n"
    );
    let file = lab::TempFile::new(&format!("{}.nft", lab.instance), &rules).expect("rules");
    for vm in &lab.topo.backends {
        vm.exec("nft", &["-f", &file.path().display().to_string()])
            .expect("count junk on the backend");
    }
    std::thread::sleep(p.before);
    let before = counters(&lab);
    let dst = mac_of(&lab.topo.lb, "c0").expect("c0's MAC");
    let src = mac_of(&lab.topo.client, "eth0").expect("eth0's MAC");
    let sent = lab
        .topo
        .client
        .enter(|| junk_flood(dst, src, p.fault))
        .and_then(|r| r)
        .unwrap_or(0);
    std::thread::sleep(p.after);
    let after = counters(&lab);
    let counted = counted_since(&before, &after, &["drop_malformed", "pass_fragment"]);
    let reached: u64 = lab.topo.backends.iter().map(junk_seen).sum();
    // The data path still serves new connections.
    let healthy = (0..50).all(|_| {
        lab.topo
            .client
            .enter(|| tcp_hello(vip_tcp()).is_ok())
            .unwrap_or(false)
    });
    let mut r = Report::new("malformed frames at rate", traffic.stop());
    r.notes.push(format!(
        "{sent} sent ({:.0}/s), {counted} counted malformed or fragment, {reached} reached a backend",
        sent as f64 / p.fault.as_secs_f64()
    ));
    r.target(sent > 0, "nothing sent".into());
    r.target(counted >= sent, format!("only {counted} of {sent} counted"));
    r.target(reached == 0, format!("{reached} reached a backend"));
    r.target(healthy, "new connections fail after the flood".into());
    r.nothing_broken();
    r
}

/// 8. Health flapping: backend vm2's health checks alternate between answered and dropped
///    faster than rise/fall (2 and 2 at 100-200 ms) can follow.
pub fn health_flapping(p: Phases) -> Report {
    let (lab, traffic) = lab_with_traffic(0, "");
    std::thread::sleep(p.before);
    let changes = |lab: &RunningLab| lab.stats()["changes"].as_u64().unwrap_or(0);
    let before = changes(&lab);
    // The checker's packets come from the balancer's address on vm2's link; clients' do not
    // (NAT keeps their source), so only the checks are dropped.
    let checker = Ipv4Addr::new(10, 200, 12, 1);
    let vm = &lab.topo.backends[2];
    let table =
        "table ip flap {\n  chain input {\n    type filter hook input priority 0;\n  }\n}\n";
    let file = lab::TempFile::new(&format!("{}.flap.nft", lab.instance), table).expect("rules");
    vm.exec("nft", &["-f", &file.path().display().to_string()])
        .expect("flap table");
    let rule = format!("ip saddr {checker} tcp dport {BACKEND_PORT} drop");
    let start = Instant::now();
    let mut flips = 0u32;
    while start.elapsed() < p.fault {
        let args: Vec<&str> = if flips.is_multiple_of(2) {
            let mut a = vec!["add", "rule", "ip", "flap", "input"];
            a.extend(rule.split(' '));
            a
        } else {
            vec!["flush", "chain", "ip", "flap", "input"]
        };
        let _ = vm.exec("nft", &args);
        flips += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    let _ = vm.exec("nft", &["delete", "table", "ip", "flap"]);
    std::thread::sleep(p.after);
    let churn = changes(&lab) - before;
    // Each ring change needs `rise` (or `fall`) = 2 results in a row, at best one check per
    // 100 ms (fastinter): a change at most every 200 ms.
    let allowed = (p.fault + p.after).as_millis() as u64 / 200;
    let mut r = Report::new("health flapping", traffic.stop());
    r.notes.push(format!(
        "{flips} flips; {churn} ring changes (rise/fall allow at most {allowed})"
    ));
    r.target(
        churn <= allowed,
        format!("{churn} ring changes > {allowed}"),
    );
    r.nothing_broken();
    r
}

/// An oversized and a malformed API request: each refused, neither changing anything.
pub fn api_abuse() -> Report {
    let lab = RunningLab::start(2);
    let before = lab.lbctl(&["backend", "list", "--json"]);
    let big = serde_json::json!({"vip": "web", "addr": "10.200.10.2", "port": 8080,
                                 "weight": 1, "pad": "x".repeat(1 << 20)});
    let oversized =
        lb_userspace::face::client::request(&lab.socket, "POST", "/v1/backends", Some(&big));
    let garbage = raw_api(&lab.socket, b"POST /v1/backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"vip\":[}");
    let after = lab.lbctl(&["backend", "list", "--json"]);
    let mut r = Report::new("oversized and malformed API requests", Counts::default());
    let refused = |s: &Result<u16>| s.as_ref().map_or(true, |c| *c >= 400);
    let big_status = oversized.map(|(s, _)| s).map_err(anyhow::Error::from);
    r.notes.push(format!(
        "1 MiB body: {:?}; malformed JSON: {:?}",
        big_status.as_ref().map_err(|e| e.to_string()),
        garbage.as_ref().map_err(|e| e.to_string())
    ));
    r.target(
        refused(&big_status),
        "the 1 MiB request was accepted".into(),
    );
    r.target(
        refused(&garbage),
        "the malformed request was accepted".into(),
    );
    r.target(before == after, "the backends changed".into());
    r.target(
        lab.lbctl(&["status"]).contains("instance"),
        "lbd stopped answering".into(),
    );
    r
}

/// Sends raw bytes to the API socket; the HTTP status of the answer.
fn raw_api(socket: &std::path::Path, bytes: &[u8]) -> Result<u16> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(bytes)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() < 65536 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {text:?}"))
}

/// A scenario: its phases in, its report out.
pub type Scenario = fn(Phases) -> Report;

/// Every scenario by name, in the suite's order.
pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("lbd-restart", lbd_restart),
    ("drain-remove", drain_and_remove),
    ("weight-churn", weight_churn),
    ("scale-in", scale_in),
    ("backend-killed", backend_killed),
    ("syn-flood", syn_flood_scenario),
    ("malformed", malformed_flood),
    ("health-flapping", health_flapping),
];
