//! `lbctl`: the operator's CLI for a running `lbd`: argument parsing, API calls, tables.
mod args;

use std::{net::SocketAddr, path::Path, process::ExitCode};

use anyhow::{bail, Context, Result};
use args::{BackendCmd, CheckArgs, Cli, Cmd, ConnCmd, PlanCmd, VipCmd, VmCmd};
use clap::{CommandFactory, Parser};
use lb_userspace::{
    face::{api, client, render, trace},
    model::{
        config::{CheckKind, HealthConfig},
        diff::Change,
        trace::TraceList,
        wire::{
            ApplyReport, BackendHealth, ChangeResult, ConnList, Plan, PoolView, StatsView,
            StatusView, VipView,
        },
    },
};
use serde_json::{json, Value};

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

/// Prints `v` as JSON if asked, else decodes it as `T` and prints `table(&T)`.
fn show<T: serde::de::DeserializeOwned>(
    json: bool,
    v: Value,
    table: impl Fn(&T) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let t: T = serde_json::from_value(v).context("decoding the API answer")?;
    print!("{}", table(&t));
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| api::default_socket(&cli.instance));
    let call = |method: &str, path: &str, body: Option<&Value>| -> Result<Value> {
        Ok(client::call(&socket, method, path, body)?)
    };
    let get = |path: &str| call("GET", path, None);
    let json = cli.json;
    match cli.cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lbctl", &mut std::io::stdout());
        }
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
        }
        Cmd::Status => show(json, get("/v1/status")?, |s: &StatusView| render::status(s))?,
        Cmd::Diff => show(json, get("/v1/diff")?, |d: &Vec<Change>| render::changes(d))?,
        Cmd::Reload { dry_run } => {
            let v = call("POST", "/v1/reload", Some(&json!({ "dry_run": dry_run })))?;
            show(json, v, |r: &ApplyReport| render::apply(r))?;
        }
        Cmd::Apply {
            file,
            dry_run,
            prune,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body = json!({ "config": text, "dry_run": dry_run, "prune": prune });
            show(
                json,
                call("POST", "/v1/apply", Some(&body))?,
                |r: &ApplyReport| render::apply(r),
            )?;
        }
        Cmd::Conn(ConnCmd::List {
            vip,
            backend,
            client,
            limit,
        }) => {
            let mut query = format!("/v1/conns?limit={limit}");
            for (key, value) in [("vip", vip), ("backend", backend), ("client", client)] {
                if let Some(v) = value {
                    query += &format!("&{key}={}", encode(&v));
                }
            }
            show(json, get(&query)?, |l: &ConnList| render::conns(l))?;
        }
        Cmd::Trace {
            vip,
            addr,
            port,
            count,
            seconds,
            every,
            pcap,
        } => {
            let body = json!({"vip": vip, "addr": addr, "port": port, "count": count,
                "seconds": seconds, "every": every});
            let v = call("POST", "/v1/trace", Some(&body))?;
            let list: TraceList = serde_json::from_value(v.clone())?;
            if let Some(path) = &pcap {
                std::fs::write(path, trace::pcap(&list))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            show(json, v, |l: &TraceList| render::trace(l))?;
            if let Some(path) = &pcap {
                eprintln!(
                    "{} packets written to {}",
                    list.records.len(),
                    path.display()
                );
            }
        }
        Cmd::Vm(VmCmd::List { pool }) => {
            let pools = named(
                serde_json::from_value::<Vec<PoolView>>(get("/v1/vms")?)?,
                pool.as_deref(),
                |p| &p.vip,
                "pool: no pool",
            )?;
            show(json, serde_json::to_value(&pools)?, |p: &Vec<PoolView>| {
                render::pools(p, 8)
            })?;
        }
        Cmd::Vm(VmCmd::Create { pool, cpu_limit }) => {
            let body = json!({ "pool": pool, "cpu_limit": cpu_limit });
            let v = call("POST", "/v1/vms", Some(&body))?;
            println!(
                "created {} in pool {pool}",
                v["created"].as_str().unwrap_or("?")
            );
        }
        Cmd::Vm(VmCmd::Delete { pool, name }) => {
            let body = json!({ "pool": pool, "name": name });
            call("DELETE", "/v1/vms", Some(&body))?;
            println!("draining {name}: it is deleted once its flows are done (see vm list)");
        }
        Cmd::Vip(VipCmd::Add {
            name,
            addr,
            port,
            proto,
            mode,
            ring_size,
            table,
            check,
        }) => {
            let mut body = json!({"name": name, "addr": addr, "port": port, "proto": proto,
                "mode": mode, "ring_size": ring_size, "table": table});
            if let Some(h) = health(&check)? {
                body["health"] = serde_json::to_value(h)?;
            }
            call("POST", "/v1/vips", Some(&body))?;
            println!("added VIP {name} ({addr} port {port}/{proto}, {mode})");
        }
        Cmd::Vip(VipCmd::Health { name, check, none }) => {
            let h = health(&check)?;
            if h.is_none() && !none {
                bail!("give a check (--check tcp|http|agent) or --none");
            }
            let body = json!({ "vip": name, "health": h });
            let v = call("PUT", "/v1/vips/health", Some(&body))?;
            show(json, v, |r: &ApplyReport| render::apply(r))?;
        }
        Cmd::Vip(VipCmd::Remove { name }) => {
            call("DELETE", "/v1/vips", Some(&json!({ "name": name })))?;
            println!("removed VIP {name}");
        }
        Cmd::Vip(VipCmd::List) => show(json, get("/v1/vips")?, |v: &Vec<VipView>| render::vips(v))?,
        Cmd::Backend(BackendCmd::List { vip }) => {
            let vips = named(
                serde_json::from_value::<Vec<VipView>>(get("/v1/vips")?)?,
                vip.as_deref(),
                |x| &x.name,
                "vip: no VIP",
            )?;
            let health: Vec<BackendHealth> = serde_json::from_value(get("/v1/health")?)?;
            show(json, serde_json::to_value(&vips)?, |v: &Vec<VipView>| {
                render::backends(v, &health)
            })?;
        }
        Cmd::Backend(BackendCmd::Show { vip, backend }) => {
            let vips: Vec<VipView> = serde_json::from_value(get("/v1/vips")?)?;
            let b = find_backend(&vips, &vip, &backend)?;
            let health: Vec<BackendHealth> = serde_json::from_value(get("/v1/health")?)?;
            if json {
                let h = health.iter().find(|h| h.vip == vip && h.backend == backend);
                let v = json!({ "backend": b, "health": h.map(|h| &h.detail) });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", render::backend(&vip, b, &health));
            }
        }
        Cmd::Backend(BackendCmd::Add {
            vip,
            backend,
            weight,
        }) => {
            let body =
                json!({"vip": vip, "addr": backend.ip(), "port": backend.port(), "weight": weight});
            let v = call("POST", "/v1/backends", Some(&body))?;
            report_change(json, "added", &backend, v)?;
        }
        Cmd::Backend(BackendCmd::Weight {
            vip,
            backend,
            weight,
        }) => set_weight(&socket, json, &vip, &backend, weight, "reweighted")?,
        Cmd::Backend(BackendCmd::Drain { vip, backend }) => {
            set_weight(&socket, json, &vip, &backend, 0, "draining")?
        }
        Cmd::Backend(BackendCmd::Remove { vip, backend }) => {
            let body = json!({"vip": vip, "addr": backend.ip(), "port": backend.port()});
            let v = call("DELETE", "/v1/backends", Some(&body))?;
            report_change(json, "removed", &backend, v)?;
        }
        Cmd::Plan {
            vip,
            apply,
            all,
            op,
        } => {
            let (op, backend, weight) = match op {
                PlanCmd::Add { backend, weight } => ("add", backend, Some(weight)),
                PlanCmd::Remove { backend } => ("remove", backend, None),
                PlanCmd::Weight { backend, weight } => ("weight", backend, Some(weight)),
            };
            let body = json!({"vip": vip, "op": op, "addr": backend.ip(), "port": backend.port(),
                "weight": weight, "apply": apply});
            show(json, call("POST", "/v1/plan", Some(&body))?, |p: &Plan| {
                render::plan(op, &backend, p, all)
            })?;
        }
        Cmd::Stats {
            watch: true,
            interval,
            count,
        } => watch(&socket, interval, count)?,
        Cmd::Stats { .. } => show(json, get("/v1/stats")?, |s: &StatsView| render::stats(s))?,
    }
    Ok(())
}

/// `text` as a query parameter value (percent-encoded).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The health check `args` describe (none without `--check`), with HAProxy's defaults for
/// what they leave out.
fn health(args: &CheckArgs) -> Result<Option<HealthConfig>> {
    let Some(kind) = &args.check else {
        return Ok(None);
    };
    let mut h: HealthConfig = serde_json::from_value(json!({ "kind": kind }))?;
    if let Some(p) = &args.check_path {
        h.path = p.clone();
    }
    if let Some(s) = args.check_status {
        h.expect_status = s;
    }
    if let Some(p) = args.agent_port {
        h.agent_port = p;
    }
    if let Some(v) = args.inter_ms {
        h.inter_ms = v;
    }
    if let Some(v) = args.timeout_ms {
        h.timeout_ms = Some(v);
    }
    if let Some(v) = args.rise {
        h.rise = v;
    }
    if let Some(v) = args.fall {
        h.fall = v;
    }
    if h.kind == CheckKind::Agent && h.agent_port == 0 {
        bail!("--check agent needs --agent-port PORT");
    }
    Ok(Some(h))
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
        bail!("{missing} named {name:?}");
    }
    Ok(found)
}

/// Backend `backend` of VIP `vip`, or an error that says how to find one.
fn find_backend<'a>(
    vips: &'a [VipView],
    vip: &str,
    backend: &SocketAddr,
) -> Result<&'a lb_userspace::model::wire::BackendView> {
    vips.iter()
        .filter(|v| v.name == vip)
        .flat_map(|v| &v.backends)
        .find(|b| b.socket_addr() == *backend)
        .with_context(|| {
            format!(
                "backend: {backend} is not a backend of {vip:?} (see `lbctl backend list`; add \
                 one with `lbctl backend add --vip {vip} {backend}`)"
            )
        })
}

/// Changes the weight of an existing backend (the API adds it if it is not there, so check).
fn set_weight(
    socket: &Path,
    json: bool,
    vip: &str,
    backend: &SocketAddr,
    weight: u32,
    what: &str,
) -> Result<()> {
    let vips: Vec<VipView> =
        serde_json::from_value(client::call(socket, "GET", "/v1/vips", None)?)?;
    find_backend(&vips, vip, backend)?;
    let body = json!({"vip": vip, "addr": backend.ip(), "port": backend.port(), "weight": weight});
    let v = client::call(socket, "POST", "/v1/backends", Some(&body))?;
    report_change(json, what, backend, v)
}

/// The live view: per-backend rates from two samples `interval` seconds apart.
fn watch(socket: &Path, interval: f64, count: Option<u32>) -> Result<()> {
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
    show(json, v, |c: &ChangeResult| {
        format!(
            "{what} {backend} on {}: {} backends now, {:.2}% of new flows moved\n",
            c.vip,
            c.backends,
            c.moved_share * 100.0
        )
    })
}
