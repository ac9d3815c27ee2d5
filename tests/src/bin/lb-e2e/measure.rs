//! What every setup is measured with: one `lb-load` run from the client's namespace, the
//! machine's busy CPU over it, and the balancer's own CPU (the BPF run time of its programs,
//! or a proxy process's CPU time).
use std::{net::SocketAddr, path::Path};

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::loaded_programs;
use lb_common::prog_names;
use lb_lab::netns::Netns;
use serde_json::Value;

use crate::{CLIENT_CPU, CONNECTIONS, SECONDS};

/// One measured run.
#[derive(Clone)]
pub struct Sample {
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub errors: u64,
    /// Busiest backend's answers over the mean.
    pub share: f64,
    /// CPU time of the whole machine per request, µs.
    pub machine_us: f64,
    /// CPU time of the balancer itself per request, µs (BPF run time, or a proxy's process).
    pub balancer_us: Option<f64>,
}

/// Whose CPU time counts as the balancer's in a run.
#[derive(Clone, Copy)]
pub enum Balancer {
    /// None (a direct run, or the kernel's nftables, whose softirq time has no owner).
    None,
    /// Our data path: the run time of `lb_xdp` and `lb_tc` (BPF run-time statistics).
    Ours,
    /// A proxy process.
    Process(u32),
}

/// Runs `lb-load` (`bin`) in `client` against `targets` from `source` in `mode`
/// (`keepalive` or `close`) with `backends` servers behind them.
pub fn load(
    bin: &Path,
    client: &Netns,
    targets: &[SocketAddr],
    source: std::net::Ipv4Addr,
    mode: &str,
    backends: usize,
    balancer: Balancer,
) -> Result<Sample> {
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let (conns, secs, cpu, source) = (
        CONNECTIONS.to_string(),
        SECONDS.to_string(),
        CLIENT_CPU.to_string(),
        source.to_string(),
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
    let ours0 = our_run_time_s();
    let proxy0 = match balancer {
        Balancer::Process(pid) => process_cpu_s(pid),
        _ => 0.0,
    };
    let out = client
        .command(&bin.display().to_string(), &args)?
        .output()
        .context("running lb-load")?;
    let machine = machine_busy_s()? - machine0;
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
    let balancer_us = match balancer {
        Balancer::None => None,
        Balancer::Ours => Some((our_run_time_s() - ours0) * 1e6 / requests),
        Balancer::Process(pid) => Some((process_cpu_s(pid) - proxy0) * 1e6 / requests),
    };
    Ok(Sample {
        rps: num("rps"),
        p50: num("p50_us"),
        p99: num("p99_us"),
        p999: num("p999_us"),
        errors: v["errors"].as_u64().unwrap_or(0),
        share: max / (requests / backends as f64),
        machine_us: machine * 1e6 / requests,
        balancer_us,
    })
}

/// Pins every thread of `pid` to `cpu`.
pub fn pin(pid: u32, cpu: usize) -> Result<()> {
    lb_lab::netns::run(std::process::Command::new("taskset").args([
        "-a",
        "-p",
        "-c",
        &cpu.to_string(),
        &pid.to_string(),
    ]))
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

/// Run time of every loaded balancer program (`lb_xdp`, `lb_tc`) so far, seconds (BPF run-time
/// stats on).
fn our_run_time_s() -> f64 {
    loaded_programs()
        .flatten()
        .filter(|p| {
            matches!(
                p.name_as_str(),
                Some(prog_names::LB_XDP | prog_names::LB_TC)
            )
        })
        .map(|p| p.run_time().as_secs_f64())
        .sum()
}

/// `<cpus> CPUs, kernel <release>`.
pub fn machine_description() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, kernel {}", release.trim())
}
