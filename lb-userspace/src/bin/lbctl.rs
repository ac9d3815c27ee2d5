//! `lbctl`: the operator's CLI for a running `lbd`.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use lb_userspace::{
    face::{api, client, render},
    model::wire::{Plan, PoolView, StatsView, StatusView, VipView},
};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "lbctl",
    version,
    about = "Control a running lbd",
    after_help = "Examples:\n  lbctl backend list\n  lbctl backend add --vip web 10.0.0.5:8080 --weight 2\n  lbctl backend remove --vip web 10.0.0.5:8080\n  lbctl stats --json"
)]
struct Cli {
    /// lbd instance (socket /run/lbd/<instance>.sock).
    #[arg(long, global = true, default_value = "lb")]
    instance: String,
    /// API socket path (overrides --instance).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Instance, interfaces, counts.
    Status,
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
        /// Apply the change after planning it.
        #[arg(long)]
        apply: bool,
        #[command(subcommand)]
        op: PlanCmd,
    },
    /// Backend VMs of pooled VIPs: list (state, load, weight, scaling decisions), create,
    /// delete (drains first).
    #[command(subcommand)]
    Vm(VmCmd),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum VmCmd {
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

#[derive(Subcommand, Debug)]
enum PlanCmd {
    /// Add a backend (or change its weight).
    Add {
        /// Backend ADDR:PORT.
        #[arg(value_parser = parse_addr)]
        backend: SocketAddr,
        /// Relative weight, 0-65535.
        #[arg(long, default_value_t = 1)]
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
        weight: u32,
    },
}

#[derive(Subcommand, Debug)]
enum VipCmd {
    /// List VIPs.
    List,
    /// Add a VIP (then add backends with `backend add`).
    #[command(
        after_help = "Example:\n  lbctl vip add --name api --addr 192.0.2.10 --port 443 --proto tcp --mode dsr"
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
    },
    /// Remove a VIP (new packets to it pass to the host's stack).
    #[command(after_help = "Example:\n  lbctl vip remove api")]
    Remove {
        /// VIP name or ADDR:PORT/PROTO.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum BackendCmd {
    /// List backends of every VIP (or of one).
    List {
        /// Only this VIP (name or ADDR:PORT/PROTO).
        #[arg(long)]
        vip: Option<String>,
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
        #[arg(long, default_value_t = 1)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| api::default_socket(&cli.instance));
    let get = |path: &str| client::call(&socket, "GET", path, None);
    match cli.cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lbctl", &mut std::io::stdout());
        }
        Cmd::Vm(VmCmd::List { pool }) => {
            let v = get("/v1/vms")?;
            let pools = named(
                serde_json::from_value::<Vec<PoolView>>(v)?,
                pool.as_deref(),
                |p| &p.vip,
                "pool: no pool",
            )?;
            if cli.json {
                return print_json(&serde_json::to_value(&pools)?);
            }
            print!("{}", render::pools(&pools, 8));
        }
        Cmd::Vm(VmCmd::Create { pool, cpu_limit }) => {
            let body = json!({ "pool": pool, "cpu_limit": cpu_limit });
            let v = client::call(&socket, "POST", "/v1/vms", Some(&body))?;
            println!(
                "created {} in pool {pool}",
                v["created"].as_str().unwrap_or("?")
            );
        }
        Cmd::Vm(VmCmd::Delete { pool, name }) => {
            let body = json!({ "pool": pool, "name": name });
            client::call(&socket, "DELETE", "/v1/vms", Some(&body))?;
            println!("draining {name}: it is deleted once its flows are done (see vm list)");
        }
        Cmd::Status => {
            let v = get("/v1/status")?;
            if cli.json {
                return print_json(&v);
            }
            let s: StatusView = serde_json::from_value(v)?;
            print!("{}", render::status(&s));
        }
        Cmd::Vip(VipCmd::Add {
            name,
            addr,
            port,
            proto,
            mode,
        }) => {
            let body =
                json!({"name": name, "addr": addr, "port": port, "proto": proto, "mode": mode});
            client::call(&socket, "POST", "/v1/vips", Some(&body))?;
            println!("added VIP {name} ({addr} port {port}/{proto}, {mode})");
        }
        Cmd::Vip(VipCmd::Remove { name }) => {
            client::call(
                &socket,
                "DELETE",
                "/v1/vips",
                Some(&json!({ "name": name })),
            )?;
            println!("removed VIP {name}");
        }
        Cmd::Vip(VipCmd::List) => {
            let v = get("/v1/vips")?;
            if cli.json {
                return print_json(&v);
            }
            let vips: Vec<VipView> = serde_json::from_value(v)?;
            print!("{}", render::vips(&vips));
        }
        Cmd::Backend(BackendCmd::List { vip }) => {
            let v = get("/v1/vips")?;
            let vips = named(
                serde_json::from_value::<Vec<VipView>>(v)?,
                vip.as_deref(),
                |x| &x.name,
                "vip: no VIP",
            )?;
            if cli.json {
                return print_json(&serde_json::to_value(&vips)?);
            }
            print!("{}", render::backends(&vips));
        }
        Cmd::Backend(BackendCmd::Add {
            vip,
            backend,
            weight,
        }) => {
            let body =
                json!({"vip": vip, "addr": backend.ip(), "port": backend.port(), "weight": weight});
            let v = client::call(&socket, "POST", "/v1/backends", Some(&body))?;
            report_change(cli.json, "added", &backend, v)?;
        }
        Cmd::Backend(BackendCmd::Weight {
            vip,
            backend,
            weight,
        }) => {
            set_weight(&socket, cli.json, &vip, &backend, weight, "reweighted")?;
        }
        Cmd::Backend(BackendCmd::Drain { vip, backend }) => {
            set_weight(&socket, cli.json, &vip, &backend, 0, "draining")?;
        }
        Cmd::Backend(BackendCmd::Remove { vip, backend }) => {
            let body = json!({"vip": vip, "addr": backend.ip(), "port": backend.port()});
            let v = client::call(&socket, "DELETE", "/v1/backends", Some(&body))?;
            report_change(cli.json, "removed", &backend, v)?;
        }
        Cmd::Plan { vip, apply, op } => {
            let (op, backend, weight) = match op {
                PlanCmd::Add { backend, weight } => ("add", backend, Some(weight)),
                PlanCmd::Remove { backend } => ("remove", backend, None),
                PlanCmd::Weight { backend, weight } => ("weight", backend, Some(weight)),
            };
            let body = json!({"vip": vip, "op": op, "addr": backend.ip(), "port": backend.port(),
                "weight": weight, "apply": apply});
            let v = client::call(&socket, "POST", "/v1/plan", Some(&body))?;
            if cli.json {
                return print_json(&v);
            }
            let p: Plan = serde_json::from_value(v)?;
            print!("{}", render::plan(op, &backend, &p));
        }
        Cmd::Stats {
            watch: true,
            interval,
            count,
        } => watch(&socket, interval, count)?,
        Cmd::Stats { .. } => {
            let v = get("/v1/stats")?;
            if cli.json {
                return print_json(&v);
            }
            let s: StatsView = serde_json::from_value(v)?;
            print!("{}", render::stats(&s));
        }
    }
    Ok(())
}

/// The items whose `key` is `name` (all of them without a name); none is an error that
/// starts with `missing` ("vip: no VIP") and names what was asked for.
fn named<T>(
    items: Vec<T>,
    name: Option<&str>,
    key: impl Fn(&T) -> &String,
    missing: &str,
) -> Result<Vec<T>> {
    let Some(name) = name else {
        return Ok(items);
    };
    let found: Vec<T> = items.into_iter().filter(|x| key(x) == name).collect();
    if found.is_empty() {
        anyhow::bail!("{missing} named {name:?}");
    }
    Ok(found)
}

/// Changes the weight of an existing backend (the API adds it if it is not there, so check).
fn set_weight(
    socket: &std::path::Path,
    json: bool,
    vip: &str,
    backend: &SocketAddr,
    weight: u32,
    what: &str,
) -> Result<()> {
    let vips: Vec<VipView> =
        serde_json::from_value(client::call(socket, "GET", "/v1/vips", None)?)?;
    let known = vips
        .iter()
        .filter(|v| v.name == vip)
        .flat_map(|v| &v.backends)
        .any(|b| b.socket_addr() == *backend);
    if !known {
        anyhow::bail!(
            "backend: {backend} is not a backend of {vip:?} (see `lbctl backend list`; add one \
             with `lbctl backend add --vip {vip} {backend}`)"
        );
    }
    let body = json!({"vip": vip, "addr": backend.ip(), "port": backend.port(), "weight": weight});
    let v = client::call(socket, "POST", "/v1/backends", Some(&body))?;
    report_change(json, what, backend, v)
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not 0.1-3600 seconds (example: --interval 2)"
        )),
    }
}

/// The live view: per-backend rates from two samples `interval` seconds apart.
fn watch(socket: &std::path::Path, interval: f64, count: Option<u32>) -> Result<()> {
    let mut prev = render::Sample::new();
    let mut shown = 0u32;
    loop {
        let vips: Vec<VipView> =
            serde_json::from_value(client::call(socket, "GET", "/v1/vips", None)?)?;
        print!(
            "\x1b[2J\x1b[H{}",
            render::watch_frame(&vips, &mut prev, interval)
        );
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
    }
}

fn report_change(json: bool, what: &str, backend: &SocketAddr, v: Value) -> Result<()> {
    if json {
        return print_json(&v);
    }
    let vip: VipView = serde_json::from_value(v).context("decoding the API answer")?;
    println!(
        "{what} {backend} on {}: {} backends now",
        vip.name,
        vip.backends.len()
    );
    Ok(())
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
