//! `lbctl`'s command line.
use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lbctl",
    version,
    about = "Control a running lbd",
    after_help = "Examples:\n  lbctl backend list\n  lbctl backend add --vip web 10.0.0.5:8080 --weight 2\n  lbctl backend remove --vip web 10.0.0.5:8080\n  lbctl apply -f /etc/lbd.toml --dry-run\n  lbctl reload\n  lbctl stats --json"
)]
pub struct Cli {
    /// lbd instance (socket /run/lbd/<instance>.sock).
    #[arg(long, global = true, default_value = "lb")]
    pub instance: String,
    /// API socket path (overrides --instance).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Instance, interfaces, counts, runtime changes against the config.
    Status,
    /// What the running state has that the config file has not (runtime changes, which a
    /// reload or an edit of the config drops).
    Diff,
    /// Read the config file again and apply it: validated whole first (an invalid config
    /// changes nothing), each VIP's moved share reported.
    Reload {
        /// Only show what the reload would do.
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply the VIPs of FILE in one batch (each added or replaced whole, one ring rebuild
    /// per changed VIP), after the same whole validation as a config file; with --prune,
    /// FILE is the whole desired state and VIPs it lacks are removed.
    #[command(
        after_help = "Examples:\n  lbctl apply -f web.toml --dry-run\n  lbctl apply -f web.toml\n  lbctl apply -f /etc/lbd.toml --prune"
    )]
    Apply {
        /// A config file (its `[[vip]]` tables; an `[lbd]` table is compared with the running
        /// daemon's, whose changes need a restart).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Only show what applying it would do.
        #[arg(long)]
        dry_run: bool,
        /// Remove the running VIPs FILE does not have.
        #[arg(long)]
        prune: bool,
    },
    /// Virtual services.
    #[command(subcommand)]
    Vip(VipCmd),
    /// Backends of virtual services.
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Data-path packet counters; with --watch, a live view of per-backend rates.
    Stats {
        /// Refresh in place: packets/s and new flows/s per backend, active flows, state.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes (with --watch).
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Stop after this many refreshes (with --watch; default: until Ctrl-C).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Before changing a backend: the share of new flows the change would move, overall and
    /// per backend (from the two Maglev tables); `--apply` then makes exactly that change.
    #[command(
        after_help = "Examples:\n  lbctl plan --vip web add 10.0.0.5:8080 --weight 2\n  lbctl plan --vip web remove 10.0.0.5:8080 --apply"
    )]
    Plan {
        /// VIP name or ADDR:PORT/PROTO.
        #[arg(long)]
        vip: String,
        /// Apply the change after planning it (before or after the operation).
        #[arg(long, global = true)]
        apply: bool,
        /// List every backend, not only those whose share changes.
        #[arg(long, global = true)]
        all: bool,
        #[command(subcommand)]
        op: PlanCmd,
    },
    /// Backend VMs of pooled VIPs: list (state, load, weight, scaling decisions), create,
    /// delete (drains first).
    #[command(subcommand)]
    Vm(VmCmd),
    /// The flows the data path tracks, as `ipvsadm -Lnc` lists them.
    #[command(subcommand)]
    Conn(ConnCmd),
    /// A live sample of the data path's decisions: each packet as it arrived, the reason
    /// counted for it, where it went; bounded by a count and a time, filtered, optionally
    /// written as pcap. Sampling is off (one array read per packet) when nobody traces.
    #[command(after_help = "Examples:
  lbctl trace --vip web --count 20
  lbctl trace --addr 10.0.0.7 --seconds 10 --pcap /tmp/web.pcap
  lbctl trace --every 100 --count 1000 --json")]
    Trace {
        /// Only packets to or from this VIP's address and port.
        #[arg(long)]
        vip: Option<String>,
        /// Only packets from or to this address.
        #[arg(long)]
        addr: Option<std::net::IpAddr>,
        /// Only packets from or to this port.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// Stop after this many packets (at most 10,000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
        /// Stop after this many seconds (at most 20).
        #[arg(long, default_value_t = 5.0, value_parser = parse_trace_seconds)]
        seconds: f64,
        /// Sample one packet in this many of those the filters let through.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        every: u32,
        /// Also write what was sampled to FILE, as pcap (Ethernet, the first 128 bytes).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand, Debug)]
pub enum ConnCmd {
    /// Tracked flows (client, VIP, backend, state, age), filtered; bounded, with the count of
    /// all that match.
    #[command(
        after_help = "Examples:\n  lbctl conn list --vip web\n  lbctl conn list --client 10.200.1.2 --limit 20"
    )]
    List {
        /// Only flows to this VIP.
        #[arg(long)]
        vip: Option<String>,
        /// Only flows to this backend ADDR:PORT.
        #[arg(long)]
        backend: Option<String>,
        /// Only flows from this client ADDR or ADDR:PORT.
        #[arg(long)]
        client: Option<String>,
        /// Most flows to list (1-10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum VmCmd {
    /// Every pool: its VMs and latest scaling decisions.
    List {
        /// Only this pool (its VIP's name).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Create one VM in a pool now.
    #[command(after_help = "Example:\n  lbctl vm create --pool web --cpu-limit 0.25")]
    Create {
        /// The pool (its VIP's name).
        #[arg(long)]
        pool: String,
        /// CPU limit in cores (default: the pool's).
        #[arg(long)]
        cpu_limit: Option<f64>,
    },
    /// Drain a VM (no new flows; open ones finish), then delete it.
    #[command(after_help = "Example:\n  lbctl vm delete --pool web web-3")]
    Delete {
        /// The pool (its VIP's name).
        #[arg(long)]
        pool: String,
        /// VM name, as `vm list` shows it.
        name: String,
    },
}

/// A backend weight: 0-65535.
fn weight() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=65_535)
}

#[derive(Subcommand, Debug)]
pub enum PlanCmd {
    /// Add a backend (or change its weight).
    Add {
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
        /// Relative weight, 0-65535.
        #[arg(long, default_value_t = 1, value_parser = weight())]
        weight: u32,
    },
    /// Remove a backend.
    Remove {
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
    },
    /// Change a backend's weight.
    Weight {
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
        /// Relative weight, 0-65535.
        #[arg(value_parser = weight())]
        weight: u32,
    },
}

/// A health check, as `vip add` and `vip health` take it (HAProxy semantics).
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Check kind: tcp (a connection is accepted), http (GET answered with the expected
    /// status), agent (HAProxy agent-check words on --agent-port).
    #[arg(long, value_parser = ["tcp", "http", "agent"])]
    pub check: Option<String>,
    /// http: the path to GET.
    #[arg(long, value_name = "PATH", requires = "check")]
    pub check_path: Option<String>,
    /// http: the status expected.
    #[arg(long, value_name = "STATUS", requires = "check")]
    pub check_status: Option<u16>,
    /// agent: the agent's port.
    #[arg(long, value_name = "PORT", requires = "check")]
    pub agent_port: Option<u16>,
    /// Milliseconds between checks of a steady backend.
    #[arg(long, value_name = "MS", requires = "check")]
    pub inter_ms: Option<u64>,
    /// Milliseconds a check may take.
    #[arg(long, value_name = "MS", requires = "check")]
    pub timeout_ms: Option<u64>,
    /// Good checks in a row that bring a backend up.
    #[arg(long, requires = "check")]
    pub rise: Option<u32>,
    /// Failed checks in a row that take it down.
    #[arg(long, requires = "check")]
    pub fall: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum VipCmd {
    /// List VIPs.
    List,
    /// Add a VIP (then add backends with `backend add`), with a health check if given.
    #[command(
        after_help = "Example:\n  lbctl vip add --name api --addr 192.0.2.10 --port 443 --proto tcp --mode dsr --check tcp"
    )]
    Add {
        /// Name used by the CLI and metrics.
        #[arg(long)]
        name: String,
        /// Address clients connect to.
        #[arg(long)]
        addr: std::net::IpAddr,
        /// Port clients connect to.
        #[arg(long)]
        port: u16,
        /// tcp or udp.
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        proto: String,
        /// nat or dsr.
        #[arg(long, default_value = "nat", value_parser = ["nat", "dsr"])]
        mode: String,
        /// Table size in slots: 1021, 4093, 16381, 65537, 262139, 1048573 or 4194301.
        #[arg(long, default_value_t = 65537)]
        ring_size: u32,
        /// maglev (exact shares) or consistent (a change moves exactly its share).
        #[arg(long, default_value = "maglev", value_parser = ["maglev", "consistent"])]
        table: String,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Set (or with --none, remove) a VIP's health check.
    #[command(
        after_help = "Examples:\n  lbctl vip health web --check http --check-path /healthz\n  lbctl vip health web --none"
    )]
    Health {
        /// VIP name.
        name: String,
        #[command(flatten)]
        check: CheckArgs,
        /// No health check: every backend counts as up.
        #[arg(long, conflicts_with = "check")]
        none: bool,
    },
    /// Remove a VIP (new packets to it pass to the host's stack).
    #[command(after_help = "Example:\n  lbctl vip remove api")]
    Remove {
        /// VIP name or ADDR:PORT/PROTO.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackendCmd {
    /// List backends of every VIP (or of one).
    List {
        /// Only this VIP (name or ADDR:PORT/PROTO).
        #[arg(long)]
        vip: Option<String>,
    },
    /// One backend in detail: traffic, weights, and its health checking (last result and
    /// reason, its duration, the streaks, time in state), as HAProxy's `show servers state`.
    #[command(after_help = "Example:\n  lbctl backend show --vip web 10.0.0.5:8080")]
    Show {
        /// VIP name.
        #[arg(long)]
        vip: String,
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
    },
    /// Add a backend to a VIP, or change its weight.
    #[command(after_help = "Example:\n  lbctl backend add --vip web 10.0.0.5:8080 --weight 2")]
    Add {
        /// VIP name or ADDR:PORT/PROTO.
        #[arg(long)]
        vip: String,
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
        /// Relative weight, 0-65535 (0: no new flows).
        #[arg(long, default_value_t = 1, value_parser = weight())]
        weight: u32,
    },
    /// Change a backend's weight (0 = drain).
    #[command(after_help = "Example:\n  lbctl backend weight --vip web 10.0.0.5:8080 3")]
    Weight {
        /// VIP name or ADDR:PORT/PROTO.
        #[arg(long)]
        vip: String,
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
        /// Relative weight, 0-65535.
        #[arg(value_parser = weight())]
        weight: u32,
    },
    /// Drain a backend: no new flows, established ones stay; `backend list` shows `drained`
    /// once none is left.
    #[command(after_help = "Example:\n  lbctl backend drain --vip web 10.0.0.5:8080")]
    Drain {
        /// VIP name or ADDR:PORT/PROTO.
        #[arg(long)]
        vip: String,
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
    },
    /// Remove a backend from a VIP.
    #[command(after_help = "Example:\n  lbctl backend remove --vip web 10.0.0.5:8080")]
    Remove {
        /// VIP name or ADDR:PORT/PROTO.
        #[arg(long)]
        vip: String,
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
    },
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not ADDR:PORT (example: 10.0.0.5:8080 or [fd00::5]:8080)"))
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not 0.1-3600 seconds (example: --interval 2)"
        )),
    }
}

/// Seconds a trace may run: more than 0, at most 20.
fn parse_trace_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if v > 0.0 && v <= 20.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 20] seconds"))
    }
}
