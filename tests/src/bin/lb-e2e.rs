//! `lb-e2e` (run by `cargo xtask bench e2e`): the balancer end to end against what operators
//! run today. One topology (a client, the balancer namespace, 4 backend VMs serving HTTP), one
//! load generator, and five setups run interleaved: a direct client-to-backend ceiling,
//! nftables DNAT (kube-proxy's nftables way), HAProxy in TCP mode, and ours in `nat` and `dsr`
//! mode. Then the raw forwarding rate of `lb_xdp` against `return XDP_TX` on the same veth
//! (BPF_PROG_TEST_RUN live frames). Prints tables, writes JSON.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, ProgramArray},
    programs::{loaded_programs, TestRun, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf,
};
use lb_common::{
    bench::{BenchFrame, FRAME_LEN, FRAME_MAP, TARGET_MAP},
    prog_names, xdp_action, Reason,
};
use lb_lab::{
    self as lab, backend_addr, http_get,
    netns::{unique_name, Netns},
    wait_until, TempFile, Topology, BACKEND_PORT, VIP, VIP_DSR, VIP_PORT,
};
use lb_userspace::{
    model::config::Proto,
    sys::ethtool::{self, Offload},
};
use serde_json::{json, Value};
use tests::{
    harness::{Harness, CLIENT, VIP as HARNESS_VIP},
    median,
    packet::Frame,
};

/// Backend VMs.
const BACKENDS: usize = 4;
/// Interleaved rounds; the table shows medians over them.
const ROUNDS: usize = 3;
/// Seconds of load per setup, mode and round.
const SECONDS: f64 = 4.0;
/// Concurrent client connections.
const CONNECTIONS: usize = 64;
/// The CPU the load generator runs on; everything else (servers, balancer processes) gets the
/// other one. Softirq work (XDP, nftables, forwarding) runs on the CPU that sent the packet.
const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;
/// nftables' VIP (our XDP program does not know it).
const NFT_VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 30);
/// HAProxy's listening address, on the balancer's loopback.
const HAPROXY_VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 40);
/// Live frames per raw-rate run, and runs of each program.
const RAW_FRAMES: u32 = 2_000_000;
const RAW_RUNS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Setup {
    Direct,
    Nftables,
    Haproxy,
    OursNat,
    OursDsr,
    /// The direct run again with lbd's `lb_xdp` attached (passing it by): what XDP on a veth
    /// costs by itself, so the gap between ours and the kernel's paths can be read.
    DirectXdp,
}

impl Setup {
    const ALL: [Setup; 6] = [
        Setup::Direct,
        Setup::Nftables,
        Setup::Haproxy,
        Setup::OursNat,
        Setup::OursDsr,
        Setup::DirectXdp,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::Direct => "direct (ceiling)",
            Setup::Nftables => "nftables DNAT",
            Setup::Haproxy => "HAProxy (tcp, roundrobin)",
            Setup::OursNat => "xlb nat",
            Setup::OursDsr => "xlb dsr",
            Setup::DirectXdp => "direct, lb_xdp attached",
        }
    }

    /// The client address this setup's connections come from: each setup has its own, so a
    /// port reused by the next setup never meets the TIME_WAIT state the last one left on a
    /// backend (PAWS would refuse its SYN, its timestamps being offset per address pair).
    fn source(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, 1, 10 + self as u8)
    }

    fn targets(self) -> Vec<SocketAddr> {
        match self {
            Setup::Direct | Setup::DirectXdp => (0..BACKENDS)
                .map(|i| SocketAddr::from((backend_addr(i), BACKEND_PORT)))
                .collect(),
            Setup::Nftables => vec![SocketAddr::from((NFT_VIP, VIP_PORT))],
            Setup::Haproxy => vec![SocketAddr::from((HAPROXY_VIP, VIP_PORT))],
            Setup::OursNat => vec![SocketAddr::from((VIP, VIP_PORT))],
            Setup::OursDsr => vec![SocketAddr::from((VIP_DSR, VIP_PORT))],
        }
    }
}

/// One measured run.
#[derive(Clone)]
struct Sample {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// Busiest backend's answers over the mean.
    share: f64,
    /// CPU time of the whole machine per request, µs.
    machine_us: f64,
    /// CPU time of the balancer itself per request, µs (XDP run time, or HAProxy's process).
    balancer_us: Option<f64>,
}

/// The balancer namespace's state between setups.
struct Bench {
    topo: Topology,
    load_bin: PathBuf,
    /// lbd's config and state file guards, while it runs.
    lbd: Option<(TempFile, TempFile)>,
    haproxy: Option<(u32, TempFile)>,
}

fn main() -> Result<()> {
    let json_path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench/e2e.json".into()),
    );
    tests::require_root();
    // Run-time statistics of BPF programs, for the balancer's own CPU time (off again on drop).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF run-time stats")?;
    let mut bench = Bench::build()?;
    let mut samples: BTreeMap<(Setup, &str), Vec<Sample>> = BTreeMap::new();
    for round in 0..ROUNDS {
        for setup in Setup::ALL {
            bench.up(setup)?;
            for mode in ["keepalive", "close"] {
                let s = bench.measure(setup, mode)?;
                println!(
                    "[e2e] round {}/{ROUNDS} {:<26} {mode:<9} {:>8.0} req/s p99 {:>6.0} µs errors {}",
                    round + 1,
                    setup.name(),
                    s.rps,
                    s.p99,
                    s.errors
                );
                samples.entry((setup, mode)).or_default().push(s);
            }
            bench.down(setup)?;
        }
    }
    drop(bench);
    let raw = raw_rate()?;
    let doc = report(&samples, &raw);
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

impl Bench {
    /// The namespaces, the servers (pinned) and the addresses every setup needs.
    fn build() -> Result<Self> {
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
        for setup in Setup::ALL {
            topo.client.add_addr("eth0", setup.source().into(), 24)?;
        }
        topo.lb.add_addr("lo", HAPROXY_VIP.into(), 32)?;
        for i in 0..BACKENDS {
            let addr = SocketAddr::from((backend_addr(i), BACKEND_PORT));
            topo.client
                .enter(move || wait_until(Duration::from_secs(5), || http_get(addr, "/").is_ok()))?
                .with_context(|| format!("backend {i} does not answer HTTP"))?;
        }
        Ok(Bench {
            topo,
            load_bin: tests::bin("lb-load"),
            lbd: None,
            haproxy: None,
        })
    }

    fn up(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Direct => {}
            Setup::Nftables => {
                let rules = nft_rules();
                let file = TempFile::new(&format!("{}.nft", unique_name("e2e")), &rules)?;
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
            Setup::OursDsr | Setup::DirectXdp => {}
        }
        // Ready when every backend has answered through the setup.
        let targets = setup.targets();
        self.topo
            .client
            .enter(move || {
                let mut seen = std::collections::BTreeSet::new();
                let mut n = 0usize;
                wait_until(Duration::from_secs(10), || {
                    n += 1;
                    if let Ok(name) = http_get(targets[n % targets.len()], "/") {
                        seen.insert(name);
                    }
                    seen.len() == BACKENDS
                })
            })?
            .with_context(|| format!("{} does not reach every backend", setup.name()))
    }

    fn down(&mut self, setup: Setup) -> Result<()> {
        match setup {
            Setup::Direct | Setup::OursNat | Setup::OursDsr => {}
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
            Setup::DirectXdp => {
                // A clean stop detaches lb_xdp and unpins everything.
                self.topo.lb.kill_children();
                self.lbd = None;
            }
        }
        Ok(())
    }

    /// One load run against `setup` in `mode`, with the CPU time it cost.
    fn measure(&mut self, setup: Setup, mode: &str) -> Result<Sample> {
        let targets: Vec<String> = setup.targets().iter().map(|t| t.to_string()).collect();
        let load = self.load_bin.display().to_string();
        let (conns, secs, cpu, source) = (
            CONNECTIONS.to_string(),
            SECONDS.to_string(),
            CLIENT_CPU.to_string(),
            setup.source().to_string(),
        );
        let mut args = vec![
            "--connections",
            &conns,
            "--duration-s",
            &secs,
            "--mode",
            mode,
            "--cpu",
            &cpu,
            "--bind",
            &source,
        ];
        for t in &targets {
            args.extend(["--target", t]);
        }
        let machine0 = machine_busy_s()?;
        let xdp0 = xdp_run_time_s();
        let haproxy0 = self.haproxy.as_ref().map(|(pid, _)| process_cpu_s(*pid));
        let out = self
            .topo
            .client
            .command(&load, &args)?
            .output()
            .context("running lb-load")?;
        let machine = machine_busy_s()? - machine0;
        let xdp = xdp_run_time_s() - xdp0;
        if !out.status.success() {
            bail!("lb-load: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("lb-load's JSON")?;
        let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
        let requests = num("requests").max(1.0);
        let counts: Vec<f64> = v["backends"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let max = counts.iter().copied().fold(0.0, f64::max);
        let balancer_us = match setup {
            Setup::OursNat | Setup::OursDsr => Some(xdp * 1e6 / requests),
            Setup::Haproxy => haproxy0
                .zip(self.haproxy.as_ref())
                .map(|(before, (pid, _))| (process_cpu_s(*pid) - before) * 1e6 / requests),
            Setup::Direct | Setup::Nftables | Setup::DirectXdp => None,
        };
        Ok(Sample {
            rps: num("rps"),
            p50: num("p50_us"),
            p99: num("p99_us"),
            p999: num("p999_us"),
            errors: v["errors"].as_u64().unwrap_or(0),
            share: max / (requests / BACKENDS as f64),
            machine_us: machine * 1e6 / requests,
            balancer_us,
        })
    }
}

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: usize) -> Result<()> {
    lb_lab::netns::run(std::process::Command::new("taskset").args([
        "-a",
        "-p",
        "-c",
        &cpu.to_string(),
        &pid.to_string(),
    ]))
}

/// kube-proxy's nftables mode in miniature: DNAT the VIP to a backend picked by `numgen`.
fn nft_rules() -> String {
    let map: Vec<String> = (0..BACKENDS)
        .map(|i| format!("{i} : {} . {BACKEND_PORT}", backend_addr(i)))
        .collect();
    format!(
        "table ip e2e {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat;\n    \
         ip daddr {NFT_VIP} tcp dport {VIP_PORT} dnat ip addr . port to numgen random mod \
         {BACKENDS} map {{ {} }}\n  }}\n}}\n",
        map.join(", ")
    )
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

/// Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat).
fn machine_busy_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: f64 =
        f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    Ok(busy / ticks_per_s())
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) process `pid` has used.
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which ends at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3 (state, not a number).
    (f.get(10).unwrap_or(&0.0) + f.get(11).unwrap_or(&0.0)) / ticks_per_s()
}

/// Run time of every loaded `lb_xdp` so far, seconds (BPF run-time stats on).
fn xdp_run_time_s() -> f64 {
    loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some(prog_names::LB_XDP))
        .map(|p| p.run_time().as_secs_f64())
        .sum()
}

/// Live-frame forwarding rate (packets/s) of `lb_xdp` on an established UDP flow and of
/// `return XDP_TX`, both sending out of a veth whose peer receives (GRO on), run interleaved.
fn raw_rate() -> Result<Value> {
    let harness = Harness::new();
    let ns: &Netns = harness.ns();
    ns.enter(|| -> Result<()> {
        for dev in ["t0", "t1"] {
            ethtool::set(dev, Offload::Gro, true)?;
        }
        Ok(())
    })??;
    // t0 and t1 are each other's peers: frames delivered to the stack must not be forwarded
    // back around the pair. (Forwarding itself stays on: bpf_fib_lookup needs it.)
    let rules = TempFile::new(
        &format!("{}.nft", unique_name("raw")),
        "table ip raw {\n  chain forward {\n    type filter hook forward priority 0; policy drop;\n  }\n}\n",
    )?;
    ns.exec("nft", &["-f", &rules.path().display().to_string()])?;
    harness.run(|lb| -> Result<Value> {
        lb.add_vip("raw", Proto::Udp, 9, &[(0, 9, 1), (1, 9, 1), (2, 9, 1), (3, 9, 1)]);
        let mut udp = Frame::udp(CLIENT, 40000, HARNESS_VIP, 9);
        udp.payload = vec![0x5a; FRAME_LEN - 14 - 20 - 8];
        let frame = udp.bytes();
        // The first packet makes the flow; every later one is an established forward.
        let (action, _) = lb.run(&frame);
        if action != xdp_action::REDIRECT {
            bail!("the raw-rate frame is not forwarded (action {action})");
        }
        // Live frames reuse their pages, rewritten by the last run: the bench harness restores
        // the frame, then tail-calls the program measured (its cost is in both figures).
        let mut bench = Ebpf::load(lb_lab::BENCH_OBJECT)?;
        for name in [prog_names::LB_BENCH, prog_names::LB_TX] {
            let p: &mut Xdp = bench
                .program_mut(name)
                .ok_or_else(|| anyhow!("no {name}"))?
                .try_into()?;
            p.load()?;
        }
        let mut bytes = [0u8; FRAME_LEN];
        bytes.copy_from_slice(&frame);
        let take = |b: &mut Ebpf, name: &str| b.take_map(name).ok_or_else(|| anyhow!("no {name}"));
        Array::<_, BenchFrame>::try_from(take(&mut bench, FRAME_MAP)?)?.set(
            0,
            BenchFrame {
                vary_off: 0,
                _pad: 0,
                bytes,
            },
            0,
        )?;
        let mut targets = ProgramArray::try_from(take(&mut bench, TARGET_MAP)?)?;
        let program = |name: &str| -> Result<&Xdp> {
            Ok(bench
                .program(name)
                .ok_or_else(|| anyhow!("no {name}"))?
                .try_into()?)
        };
        let harness = program(prog_names::LB_BENCH)?;
        let tx_fd = program(prog_names::LB_TX)?.fd()?.try_clone()?;
        let lb_fd = lb.ctl.dataplane().program()?.fd()?.try_clone()?;
        let ingress = lb_userspace::dataplane::ifindex("t1")?;
        let mut ours = Vec::new();
        let mut ceiling = Vec::new();
        for _ in 0..RAW_RUNS {
            targets.set(0, &lb_fd, 0)?;
            let before = lb.count(Reason::FwdNat);
            ours.push(live_rate(harness, &frame, ingress)?);
            let forwarded = lb.count(Reason::FwdNat) - before;
            if forwarded < u64::from(RAW_FRAMES) {
                bail!("lb_xdp forwarded {forwarded} of {RAW_FRAMES} live frames");
            }
            targets.set(0, &tx_fd, 0)?;
            ceiling.push(live_rate(harness, &frame, ingress)?);
        }
        let (o, c) = (median(&ours), median(&ceiling));
        println!();
        println!("raw forwarding, live frames through one veth ({RAW_FRAMES} per run, {RAW_RUNS} runs interleaved)");
        println!("{:<34} {:>14} {:>14}", "program", "median pkt/s", "vs XDP_TX");
        println!("{:<34} {:>14.0} {:>13.0}%", "return XDP_TX (ceiling)", c, 100.0);
        println!("{:<34} {:>14.0} {:>13.0}%", "lb_xdp, established UDP NAT", o, 100.0 * o / c);
        Ok(json!({"frames_per_run": RAW_FRAMES, "runs": RAW_RUNS,
                  "xdp_tx_pps": ceiling, "lb_xdp_pps": ours,
                  "median_xdp_tx_pps": c, "median_lb_xdp_pps": o, "ratio": o / c}))
    })
}

/// Packets/s of `prog` sending `frame` as live frames that arrive on interface `ingress`.
fn live_rate(prog: &Xdp, frame: &[u8], ingress: u32) -> Result<f64> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress.to_ne_bytes());
    let start = Instant::now();
    prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: RAW_FRAMES,
        attrs: TestRunAttrs::new().xdp_live_frames(64),
        ..TestRunOptions::default()
    })
    .context("BPF_PROG_TEST_RUN with live frames")?;
    Ok(f64::from(RAW_FRAMES) / start.elapsed().as_secs_f64())
}

/// Prints the table (medians over rounds, ratios to the best baseline) and builds the JSON.
fn report(samples: &BTreeMap<(Setup, &str), Vec<Sample>>, raw: &Value) -> Value {
    let med = |setup: Setup, mode: &str, f: fn(&Sample) -> f64| {
        samples
            .get(&(setup, mode))
            .map_or(0.0, |v| median(&v.iter().map(f).collect::<Vec<_>>()))
    };
    let machine = machine_description();
    println!();
    println!("end to end, {BACKENDS} backend VMs, {CONNECTIONS} connections, {SECONDS} s x {ROUNDS} rounds interleaved, medians ({machine})");
    let mut rows = Vec::new();
    for (mode, title) in [
        ("keepalive", "keep-alive requests"),
        ("close", "new connections (one request each)"),
    ] {
        let best = [Setup::Nftables, Setup::Haproxy]
            .into_iter()
            .map(|s| med(s, mode, |x| x.rps))
            .fold(0.0, f64::max);
        println!();
        println!("{title}");
        println!(
            "{:<26} {:>9} {:>8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>7}",
            "setup",
            "req/s",
            "vs best",
            "p50 µs",
            "p99 µs",
            "p999",
            "share",
            "errors",
            "cpu µs/r",
            "lb µs/r"
        );
        for setup in Setup::ALL {
            let Some(v) = samples.get(&(setup, mode)) else {
                continue;
            };
            let rps = med(setup, mode, |x| x.rps);
            let lb_us = {
                let b: Vec<f64> = v.iter().filter_map(|s| s.balancer_us).collect();
                (!b.is_empty()).then(|| median(&b))
            };
            let errors: u64 = v.iter().map(|s| s.errors).sum();
            println!(
                "{:<26} {:>9.0} {:>7.2}x {:>7.0} {:>7.0} {:>7.0} {:>6.2} {:>7} {:>8.1} {:>7}",
                setup.name(),
                rps,
                rps / best,
                med(setup, mode, |x| x.p50),
                med(setup, mode, |x| x.p99),
                med(setup, mode, |x| x.p999),
                med(setup, mode, |x| x.share),
                errors,
                med(setup, mode, |x| x.machine_us),
                lb_us.map_or("-".to_string(), |u| format!("{u:.2}")),
            );
            rows.push(json!({
                "setup": setup.name(), "mode": mode,
                "rps": v.iter().map(|s| s.rps).collect::<Vec<_>>(),
                "median_rps": rps, "ratio_to_best_baseline": rps / best,
                "median_p50_us": med(setup, mode, |x| x.p50),
                "median_p99_us": med(setup, mode, |x| x.p99),
                "median_p999_us": med(setup, mode, |x| x.p999),
                "median_share_max_over_mean": med(setup, mode, |x| x.share),
                "errors": errors,
                "median_machine_cpu_us_per_request": med(setup, mode, |x| x.machine_us),
                "median_balancer_cpu_us_per_request": lb_us,
            }));
        }
    }
    json!({"machine": machine, "backends": BACKENDS, "connections": CONNECTIONS,
           "seconds": SECONDS, "rounds": ROUNDS, "runs": rows, "raw_forwarding": raw})
}

/// `<cpus> CPUs, kernel <release>`.
fn machine_description() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, kernel {}", release.trim())
}
