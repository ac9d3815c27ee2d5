//! Layer 5 face, human tables: what `lbctl` prints and the lab shows, from the API's views.
use std::{collections::HashMap, fmt::Write as _, net::SocketAddr};

use crate::model::{
    diff::Change,
    wire::{
        ApplyReport, BackendHealth, BackendView, ConnList, HealthDetail, Plan, PoolView, StatsView,
        StatusView, VipView,
    },
};

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `lbctl status`.
pub fn status(s: &StatusView) -> String {
    let changes = match s.runtime_changes {
        Some(0) => "none (the running state is the config's)".to_string(),
        Some(n) => format!("{n} against the config (`lbctl diff`; a reload drops them)"),
        None => "unknown (the config file cannot be read)".to_string(),
    };
    format!(
        "instance    {}\ninterfaces  {}\nmaps        {}\nconfig      {}\nvips        {}\nbackends    {}\nruntime     {changes}\n",
        s.instance,
        s.attached
            .iter()
            .map(|a| format!("{} ({}: {})", a.iface, a.hook.name(), a.why))
            .collect::<Vec<_>>()
            .join(", "),
        s.pin_dir,
        s.config,
        s.vips,
        s.backends
    )
}

/// `lbctl diff`: the runtime changes, VIP by VIP.
pub fn changes(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no runtime changes: the running state is the config's\n".into();
    }
    let mut out = String::new();
    for c in changes {
        let _ = writeln!(out, "{:<16} {}", c.vip, c.what);
    }
    out
}

/// `lbctl apply` and `lbctl reload`: what changes per VIP, with the share of new flows it
/// moves, every difference, and what needs a restart.
pub fn apply(r: &ApplyReport) -> String {
    let verb = if r.applied {
        "applied"
    } else {
        "would apply (not applied)"
    };
    if r.vips.is_empty() && r.restart_needed.is_empty() {
        return "no change: the desired state is the running one\n".into();
    }
    let mut out = format!("{verb}: {} VIP(s) change\n", r.vips.len());
    if !r.vips.is_empty() {
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:>10} {:>10}",
            "VIP", "ACTION", "BACKENDS", "MOVES"
        );
        for v in &r.vips {
            let _ = writeln!(
                out,
                "{:<16} {:<8} {:>4} -> {:<4} {:>9.2}%",
                v.vip,
                format!("{:?}", v.action).to_lowercase(),
                v.backends.0,
                v.backends.1,
                v.moved_share * 100.0
            );
        }
    }
    for c in &r.changes {
        let _ = writeln!(out, "  {}: {}", c.vip, c.what);
    }
    if !r.restart_needed.is_empty() {
        let _ = writeln!(
            out,
            "not applied until lbd restarts: {}",
            r.restart_needed.join(", ")
        );
    }
    out
}

/// A backend's health in a few words: `no check` without one, else its state and last
/// result.
fn check_word(checked: bool, h: Option<&HealthDetail>) -> String {
    let Some(h) = h.filter(|_| checked) else {
        return "no check".into();
    };
    let state = if h.up { "up" } else { "down" };
    match &h.last {
        None => format!("{state}, not checked yet"),
        Some(l) if l.ok => format!("{state}, ok {:.0}ms", l.duration_ms),
        Some(l) => format!(
            "{state}, {} {}/{}",
            l.reason, h.consecutive_failed, h.checks
        ),
    }
}

/// `lbctl backend show`: one backend in detail, with its health checking from `health`.
pub fn backend(vip: &str, b: &BackendView, health: &[BackendHealth]) -> String {
    let mut out = format!(
        "vip          {vip}\nbackend      {}\nid           {}\nstate        {}\nweight       {} (in the ring: {})\npackets      {}\nnew flows    {}\nactive flows {}\n",
        b.socket_addr(),
        b.id,
        b.state.name(),
        b.weight,
        b.ring_weight,
        b.packets,
        b.new_flows,
        b.active_flows
    );
    if let Some(cpu) = b.cpu {
        let _ = writeln!(out, "agent cpu    {:.0}%", cpu * 100.0);
    }
    let Some(h) = detail(health, vip, b).filter(|_| b.checked) else {
        out += "check        none (the VIP has no health check: the backend counts as up)\n";
        return out;
    };
    let since = if h.since_ms == 0 {
        "-".to_string()
    } else {
        format!(
            "{:.1}s",
            now_ms().saturating_sub(h.since_ms) as f64 / 1000.0
        )
    };
    let _ = writeln!(
        out,
        "check        {:?}, {} for {since}",
        h.kind,
        if h.up { "up" } else { "down" }
    );
    match &h.last {
        Some(l) => {
            let ago = now_ms().saturating_sub(l.at_ms) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "last check   {} ({:.1} ms, {ago:.1}s ago)",
                if l.ok {
                    "ok".to_string()
                } else {
                    format!("failed: {}", l.reason)
                },
                l.duration_ms
            );
        }
        None => out += "last check   none yet\n",
    }
    let _ = writeln!(
        out,
        "streaks      {} ok, {} failed in a row; {} checks",
        h.consecutive_ok, h.consecutive_failed, h.checks
    );
    if !h.failures.is_empty() {
        let f: Vec<String> = h.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "failures     {}", f.join(", "));
    }
    out
}

/// `lbctl vip list`.
pub fn vips(vips: &[VipView]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<5} {:<5} {:>8} {:<10} {:>8}\n",
        "NAME", "ADDRESS", "PROTO", "MODE", "RING", "TABLE", "BACKENDS"
    );
    for vip in vips {
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:<5} {:<5} {:>8} {:<10} {:>8}",
            vip.name,
            SocketAddr::new(vip.addr, vip.port),
            format!("{:?}", vip.proto).to_lowercase(),
            format!("{:?}", vip.mode).to_lowercase(),
            vip.ring_size,
            format!("{:?}", vip.table).to_lowercase(),
            vip.backends.len()
        );
    }
    out
}

/// The health detail of backend `b` of VIP `vip` in `health`.
fn detail<'a>(health: &'a [BackendHealth], vip: &str, b: &BackendView) -> Option<&'a HealthDetail> {
    health
        .iter()
        .find(|h| h.vip == vip && h.backend == b.socket_addr())
        .map(|h| &h.detail)
}

/// `lbctl backend list`, with each backend's check from `health`.
pub fn backends(vips: &[VipView], health: &[BackendHealth]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:>5} {:>7} {:>12} {:>10} {:>8}  {:<9} CHECK\n",
        "VIP", "BACKEND", "ID", "WEIGHT", "PACKETS", "NEW FLOWS", "ACTIVE", "STATE"
    );
    for vip in vips {
        for b in &vip.backends {
            let _ = writeln!(
                out,
                "{:<16} {:<24} {:>5} {:>7} {:>12} {:>10} {:>8}  {:<9} {}",
                vip.name,
                b.socket_addr(),
                b.id,
                b.weight,
                b.packets,
                b.new_flows,
                b.active_flows,
                b.state.name(),
                check_word(b.checked, detail(health, &vip.name, b))
            );
        }
    }
    out
}

/// `lbctl plan`: what `op` on `backend` moves, overall and per backend (those whose share
/// changes, or `all`).
pub fn plan(op: &str, backend: &SocketAddr, p: &Plan, all: bool) -> String {
    let mut out = format!(
        "{op} {backend} on {}: moves {:.2}% of new flows{}\n",
        p.vip,
        100.0 * p.moved_share,
        if p.applied {
            " (applied)"
        } else {
            " (not applied; add --apply)"
        }
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>11} {:>9}",
        "BACKEND", "BEFORE", "AFTER", "MOVES AWAY", "MOVES IN"
    );
    let shown: Vec<_> = p
        .backends
        .iter()
        .filter(|b| all || b.moves_away > 0.0 || b.moves_in > 0.0)
        .collect();
    for b in &shown {
        let _ = writeln!(
            out,
            "{:<24} {:>7.2}% {:>7.2}% {:>10.2}% {:>8.2}%",
            b.backend,
            100.0 * b.share_before,
            100.0 * b.share_after,
            100.0 * b.moves_away,
            100.0 * b.moves_in
        );
    }
    let hidden = p.backends.len() - shown.len();
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({hidden} backends whose share does not change; --all lists them)"
        );
    }
    out
}

/// `lbctl conn list`: one line per flow, as `ipvsadm -Lnc`, and how many matched in all.
pub fn conns(l: &ConnList) -> String {
    let mut out = format!(
        "{:<4} {:<12} {:>6}  {:<26} {:<26} {:<26} VIP\n",
        "PRO", "STATE", "AGE", "SOURCE", "VIRTUAL", "DESTINATION"
    );
    for c in &l.conns {
        let _ = writeln!(
            out,
            "{:<4} {:<12} {:>5}s  {:<26} {:<26} {:<26} {}",
            format!("{:?}", c.proto).to_uppercase(),
            c.state,
            c.age_s,
            c.client.to_string(),
            c.service.to_string(),
            c.backend.to_string(),
            c.vip
        );
    }
    let _ = writeln!(
        out,
        "{} of {} matching flows shown",
        l.conns.len(),
        l.matched
    );
    out
}

/// `lbctl stats`: the verdict counters.
pub fn stats(s: &StatsView) -> String {
    let mut out = format!("{:<18} {:>14}\n", "COUNTER", "PACKETS");
    for (name, n) in &s.counters {
        let _ = writeln!(out, "{name:<18} {n:>14}");
    }
    out
}

/// Packets and new flows of every backend, by (VIP, backend), to take rates from.
pub type Sample = HashMap<(String, SocketAddr), (u64, u64)>;

/// One frame of `lbctl stats --watch`: per-backend rates against `prev` (taken `interval`
/// seconds earlier; backends new to it show 0), which is updated to this sample.
pub fn watch_frame(vips: &[VipView], prev: &mut Sample, interval: f64) -> String {
    let mut out = format!(
        "lbctl stats --watch (every {interval} s, Ctrl-C to stop)\n\n{:<14} {:<24} {:<9} {:>6} {:>10} {:>9} {:>8}\n",
        "VIP", "BACKEND", "STATE", "WEIGHT", "PKTS/S", "NEW/S", "ACTIVE"
    );
    for vip in vips {
        for b in &vip.backends {
            let key = (vip.name.clone(), b.socket_addr());
            let (p0, n0) = prev.get(&key).copied().unwrap_or((b.packets, b.new_flows));
            let _ = writeln!(
                out,
                "{:<14} {:<24} {:<9} {:>6} {:>10.1} {:>9.1} {:>8}",
                vip.name,
                key.1,
                b.state.name(),
                b.weight,
                b.packets.saturating_sub(p0) as f64 / interval,
                b.new_flows.saturating_sub(n0) as f64 / interval,
                b.active_flows
            );
            prev.insert(key, (b.packets, b.new_flows));
        }
    }
    out
}

/// The pools as a text table: per pool a header, its VMs, and its last `events` decisions.
pub fn pools(pools: &[PoolView], events: usize) -> String {
    let mut out = String::new();
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
    for p in pools {
        let _ = writeln!(
            out,
            "pool {} ({}): {} VMs (min {}, max {}), cpu {} (target {:.0}%)",
            p.vip,
            p.provider,
            p.vms.len(),
            p.min,
            p.max,
            pct(p.utilisation),
            p.target_utilisation * 100.0
        );
        let _ = writeln!(
            out,
            "  {:<10} {:<18} {:<9} {:>5} {:>6} {:>7} {:>9} {:>7} {:>7}",
            "VM", "BACKEND", "STATE", "CPU", "LIMIT", "WEIGHT", "NEW FLOWS", "ACTIVE", "SERVING"
        );
        for v in &p.vms {
            let _ = writeln!(
                out,
                "  {:<10} {:<18} {:<9} {:>5} {:>6.2} {:>7} {:>9} {:>7} {:>7}",
                v.name,
                v.backend.to_string(),
                v.state.name(),
                pct(v.cpu),
                v.cpu_limit,
                v.ring_weight,
                v.new_flows,
                v.active_flows,
                v.serving_after_ms
                    .map_or("-".to_string(), |ms| format!("{ms}ms"))
            );
            if let Some(host) = &v.host {
                let _ = writeln!(out, "  {:<10} on {host}", "");
            }
        }
        if let Some(e) = &p.last_error {
            let secs = (now_ms().saturating_sub(e.at_ms)) as f64 / 1000.0;
            let counts: Vec<String> = p.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                out,
                "  provider errors: {} (last {secs:.1}s ago: {})",
                counts.join(", "),
                e.what
            );
        }
        let skip = p.events.len().saturating_sub(events);
        for e in &p.events[skip..] {
            let secs = (now_ms().saturating_sub(e.at_ms)) as f64 / 1000.0;
            let _ = writeln!(out, "  {:>6.1}s ago  {}", secs, e.what);
        }
    }
    out
}

/// `lbctl trace`: one line a packet: time, hook, interface, endpoints and flags as it
/// arrived, the reason counted, where it went, its VIP.
pub fn trace(list: &crate::model::trace::TraceList) -> String {
    let mut out = String::new();
    let shown = |a: Option<SocketAddr>| a.map_or("-".to_string(), |a| a.to_string());
    for r in &list.records {
        let to = r.sent_to.map(|t| format!(" -> {t}")).unwrap_or_default();
        let vip = r
            .vip
            .as_deref()
            .map(|v| format!(" [{v}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>10.6} {:<3} {:<8} {} > {} {} {:<3} {:>5}  {}{to}{vip}",
            r.at_ns as f64 / 1e9,
            r.hook.name(),
            r.iface,
            shown(r.src),
            shown(r.dst),
            r.proto,
            r.flags,
            r.len,
            r.reason,
        );
    }
    let _ = writeln!(
        out,
        "{} packets sampled in {:.1} s",
        list.records.len(),
        list.seconds
    );
    out
}
