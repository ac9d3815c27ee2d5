//! Prometheus text exposition of the data-path counters, served on a TCP address (loopback by
//! default) at `/metrics`.
use std::{fmt::Write as _, net::SocketAddr};

use anyhow::{bail, Context, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};

use crate::{
    api::{StatsView, VipView},
    controller::{Command, Handle},
    pool::{self, PoolView, Pools},
};

/// Renders the metrics page from the controller's views and the VM pools.
pub fn render(vips: &[VipView], stats: &StatsView, pools: &[PoolView]) -> String {
    let mut out = String::from(
        "# HELP lb_packets_total Packets by data-path verdict reason.\n\
         # TYPE lb_packets_total counter\n",
    );
    for (reason, n) in &stats.counters {
        let _ = writeln!(out, "lb_packets_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = write!(
        out,
        "# HELP lb_controller_changes_total Ring changes applied.\n\
         # TYPE lb_controller_changes_total counter\n\
         lb_controller_changes_total {}\n\
         # HELP lb_controller_change_seconds_total Seconds spent applying ring changes.\n\
         # TYPE lb_controller_change_seconds_total counter\n\
         lb_controller_change_seconds_total {}\n\
         # HELP lb_controller_last_change_seconds Seconds the last ring change took.\n\
         # TYPE lb_controller_last_change_seconds gauge\n\
         lb_controller_last_change_seconds {}\n",
        stats.changes, stats.change_seconds_total, stats.last_change_seconds
    );
    type Field = (&'static str, &'static str, &'static str);
    let vip_fields: [Field; 3] = [
        ("lb_vip_packets_total", "Packets to the VIP.", "counter"),
        ("lb_vip_bytes_total", "Bytes to the VIP.", "counter"),
        (
            "lb_vip_new_flows_total",
            "Flows balanced for the VIP.",
            "counter",
        ),
    ];
    for (i, (name, help, kind)) in vip_fields.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for v in vips {
            let value = [v.packets, v.bytes, v.new_flows][i];
            let _ = writeln!(out, "{name}{{vip=\"{}\"}} {value}", v.name);
        }
    }
    let backend_fields: [Field; 5] = [
        (
            "lb_backend_packets_total",
            "Packets sent to the backend.",
            "counter",
        ),
        (
            "lb_backend_bytes_total",
            "Bytes sent to the backend.",
            "counter",
        ),
        (
            "lb_backend_new_flows_total",
            "Flows balanced to the backend.",
            "counter",
        ),
        (
            "lb_backend_active_flows",
            "Open flows on the backend.",
            "gauge",
        ),
        (
            "lb_backend_weight",
            "Ring weight of the backend (0 = draining).",
            "gauge",
        ),
    ];
    for (i, (name, help, kind)) in backend_fields.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for v in vips {
            for b in &v.backends {
                let value = [
                    b.packets,
                    b.bytes,
                    b.new_flows,
                    b.active_flows,
                    u64::from(b.weight),
                ][i];
                let addr = b.socket_addr();
                let _ = writeln!(
                    out,
                    "{name}{{vip=\"{}\",backend=\"{addr}\",state=\"{}\"}} {value}",
                    v.name, b.state
                );
            }
        }
    }
    render_pools(&mut out, pools);
    out
}

fn render_pools(out: &mut String, pools: &[PoolView]) {
    if pools.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP lb_pool_vms VMs of a pool by state.\n# TYPE lb_pool_vms gauge"
    );
    for p in pools {
        let mut by_state: std::collections::BTreeMap<&str, u64> = Default::default();
        for v in &p.vms {
            *by_state.entry(v.state.as_str()).or_default() += 1;
        }
        for (state, n) in by_state {
            let _ = writeln!(
                out,
                "lb_pool_vms{{vip=\"{}\",state=\"{state}\"}} {n}",
                p.vip
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_pool_utilisation Mean agent-reported CPU use of a pool's active VMs (share of \
         their limits).\n# TYPE lb_pool_utilisation gauge"
    );
    for p in pools {
        if let Some(u) = p.utilisation {
            let _ = writeln!(out, "lb_pool_utilisation{{vip=\"{}\"}} {u}", p.vip);
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_pool_decisions_total VMs created or drained, by reason.\n\
         # TYPE lb_pool_decisions_total counter"
    );
    for p in pools {
        for (kind, n) in &p.decisions {
            let _ = writeln!(
                out,
                "lb_pool_decisions_total{{vip=\"{}\",kind=\"{kind}\"}} {n}",
                p.vip
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP lb_vm_serving_seconds Seconds from a VM's creation to its joining the ring.\n\
         # TYPE lb_vm_serving_seconds gauge"
    );
    for p in pools {
        for v in &p.vms {
            if let Some(ms) = v.serving_after_ms {
                let secs = ms as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "lb_vm_serving_seconds{{vip=\"{}\",vm=\"{}\"}} {secs}",
                    p.vip, v.name
                );
            }
        }
    }
}

async fn metrics(State((h, pools)): State<(Handle, Pools)>) -> impl IntoResponse {
    let page = async {
        let vips = h.call(Command::Vips).await?;
        let stats = h.call(Command::Stats).await??;
        anyhow::Ok(render(&vips, &stats, &pool::snapshot(&pools)))
    };
    match page.await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("metrics unavailable: {e:#}\n"),
        )
            .into_response(),
    }
}

/// Binds the metrics address; only loopback addresses are accepted (the page is unauthenticated).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        bail!("lbd.metrics: {addr} is not a loopback address (the page has no authentication)");
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics on {addr}"))
}

/// Serves `/metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    pools: Pools,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state((handle, pools));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics server")
}
