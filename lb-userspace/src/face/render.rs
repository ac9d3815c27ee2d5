//! Layer 5 face, human tables: what `lbctl` prints and the lab shows, from the API's views.
use std::{collections::HashMap, fmt::Write as _, net::SocketAddr};

use crate::model::wire::{Plan, PoolView, StatsView, StatusView, VipView};

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `lbctl status`.
pub fn status(s: &StatusView) -> String {
    format!(
        "instance    {}\ninterfaces  {}\nmaps        {}\nvips        {}\nbackends    {}\n",
        s.instance,
        s.interfaces.join(", "),
        s.pin_dir,
        s.vips,
        s.backends
    )
}

/// `lbctl vip list`.
pub fn vips(vips: &[VipView]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<5} {:<5} {:>6} {:>8}\n",
        "NAME", "ADDRESS", "PROTO", "MODE", "RING", "BACKENDS"
    );
    for vip in vips {
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:<5} {:<5} {:>6} {:>8}",
            vip.name,
            SocketAddr::new(vip.addr, vip.port),
            format!("{:?}", vip.proto).to_lowercase(),
            format!("{:?}", vip.mode).to_lowercase(),
            vip.ring_size,
            vip.backends.len()
        );
    }
    out
}

/// `lbctl backend list`.
pub fn backends(vips: &[VipView]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:>5} {:>7} {:>12} {:>10} {:>8}  STATE\n",
        "VIP", "BACKEND", "ID", "WEIGHT", "PACKETS", "NEW FLOWS", "ACTIVE"
    );
    for vip in vips {
        for b in &vip.backends {
            let _ = writeln!(
                out,
                "{:<16} {:<24} {:>5} {:>7} {:>12} {:>10} {:>8}  {}",
                vip.name,
                b.socket_addr(),
                b.id,
                b.weight,
                b.packets,
                b.new_flows,
                b.active_flows,
                b.state.name()
            );
        }
    }
    out
}

/// `lbctl plan`: what `op` on `backend` moves, overall and per backend.
pub fn plan(op: &str, backend: &SocketAddr, p: &Plan) -> String {
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
    for b in &p.backends {
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
        }
        let skip = p.events.len().saturating_sub(events);
        for e in &p.events[skip..] {
            let secs = (now_ms().saturating_sub(e.at_ms)) as f64 / 1000.0;
            let _ = writeln!(out, "  {:>6.1}s ago  {}", secs, e.what);
        }
    }
    out
}
