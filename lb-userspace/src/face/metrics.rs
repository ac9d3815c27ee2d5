//! Layer 5 face, Prometheus metrics at `/metrics` on a TCP address (loopback only): the
//! controller's views encoded by `prometheus-client` (OpenMetrics text) on every scrape.
use std::{fmt::Write as _, net::SocketAddr};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
    },
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    controller::{Command, Handle},
    model::wire::{BackendHealth, BackendState, BackendView, PoolView, StatsView, VipView},
    sys::error::{fail, Context, Result},
    workers::pool::Pools,
};

/// A label value with `\`, `"` and line feeds escaped, as the exposition format requires
/// (the encoder writes label values as they are).
#[derive(Clone, Debug)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Label pairs of one sample.
type Labels = Vec<(&'static str, Escaped)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (*k, Escaped((*v).to_string())))
        .collect()
}

/// What one scrape shows: the views it was made from.
#[derive(Debug)]
struct Page {
    vips: Vec<VipView>,
    health: Vec<BackendHealth>,
    stats: StatsView,
    pools: Vec<PoolView>,
}

/// A sample's value: counts stay integers on the page.
#[derive(Clone, Copy)]
enum Num {
    Count(u64),
    Real(f64),
}

/// A metric family: name (counters without their `_total`), help, and its samples.
enum Family {
    Counter(&'static str, &'static str, Vec<(Labels, Num)>),
    Gauge(&'static str, &'static str, Vec<(Labels, Num)>),
}

fn encode_family(encoder: &mut DescriptorEncoder, family: Family) -> std::fmt::Result {
    let (name, help, samples, counter) = match family {
        Family::Counter(n, h, s) => (n, h, s, true),
        Family::Gauge(n, h, s) => (n, h, s, false),
    };
    let kind = if counter {
        ConstCounter::new(0u64).metric_type()
    } else {
        ConstGauge::new(0u64).metric_type()
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    let value = |sample: MetricEncoder, v: Num| match (counter, v) {
        (true, Num::Count(n)) => ConstCounter::new(n).encode(sample),
        (true, Num::Real(x)) => ConstCounter::new(x).encode(sample),
        (false, Num::Count(n)) => ConstGauge::new(n).encode(sample),
        (false, Num::Real(x)) => ConstGauge::new(x).encode(sample),
    };
    match samples.as_slice() {
        // A lone sample without labels is written without braces.
        [(l, v)] if l.is_empty() => value(metric, *v),
        _ => {
            for (l, v) in samples {
                value(metric.encode_family(&l)?, v)?;
            }
            Ok(())
        }
    }
}

impl Page {
    fn families(&self) -> Vec<Family> {
        let mut out = vec![
            Family::Counter(
                "lb_packets",
                "Packets by data-path verdict reason.",
                self.stats
                    .counters
                    .iter()
                    .map(|(r, n)| (labels(&[("reason", r)]), Num::Count(*n)))
                    .collect(),
            ),
            Family::Counter(
                "lb_controller_changes",
                "Ring changes applied.",
                vec![(Vec::new(), Num::Count(self.stats.changes))],
            ),
            Family::Counter(
                "lb_controller_change_seconds",
                "Seconds spent applying ring changes.",
                vec![(Vec::new(), Num::Real(self.stats.change_seconds_total))],
            ),
            Family::Gauge(
                "lb_controller_last_change_seconds",
                "Seconds the last ring change took.",
                vec![(Vec::new(), Num::Real(self.stats.last_change_seconds))],
            ),
        ];
        let vip = |f: fn(&VipView) -> u64| {
            self.vips
                .iter()
                .map(|v| (labels(&[("vip", &v.name)]), Num::Count(f(v))))
                .collect::<Vec<_>>()
        };
        out.push(Family::Counter(
            "lb_vip_packets",
            "Packets to the VIP.",
            vip(|v| v.packets),
        ));
        out.push(Family::Counter(
            "lb_vip_bytes",
            "Bytes to the VIP.",
            vip(|v| v.bytes),
        ));
        out.push(Family::Counter(
            "lb_vip_new_flows",
            "Flows balanced for the VIP.",
            vip(|v| v.new_flows),
        ));
        // Per-backend series keep fixed labels (VIP, backend): a state change must not
        // start new series. The state is a gauge of its own, one series per state.
        let each = |f: &dyn Fn(&BackendView) -> Option<Num>| {
            self.vips
                .iter()
                .flat_map(|v| {
                    v.backends.iter().filter_map(move |b| {
                        let addr = b.socket_addr().to_string();
                        Some((labels(&[("vip", &v.name), ("backend", &addr)]), f(b)?))
                    })
                })
                .collect::<Vec<_>>()
        };
        let count = |f: fn(&BackendView) -> u64| each(&|b| Some(Num::Count(f(b))));
        out.push(Family::Counter(
            "lb_backend_packets",
            "Packets sent to the backend.",
            count(|b| b.packets),
        ));
        out.push(Family::Counter(
            "lb_backend_bytes",
            "Bytes sent to the backend.",
            count(|b| b.bytes),
        ));
        out.push(Family::Counter(
            "lb_backend_new_flows",
            "Flows balanced to the backend.",
            count(|b| b.new_flows),
        ));
        out.push(Family::Gauge(
            "lb_backend_active_flows",
            "Open flows on the backend.",
            count(|b| b.active_flows),
        ));
        out.push(Family::Gauge(
            "lb_backend_weight",
            "Configured weight of the backend (0 = draining).",
            count(|b| u64::from(b.weight)),
        ));
        let states = self
            .vips
            .iter()
            .flat_map(|v| {
                v.backends.iter().flat_map(move |b| {
                    let addr = b.socket_addr().to_string();
                    BackendState::ALL.into_iter().map(move |s| {
                        let l =
                            labels(&[("vip", &v.name), ("backend", &addr), ("state", s.name())]);
                        (l, Num::Count(u64::from(b.state == s)))
                    })
                })
            })
            .collect();
        out.push(Family::Gauge(
            "lb_backend_state",
            "1 for the state the backend is in (active, draining, drained, down), 0 for the others.",
            states,
        ));
        let checked = |f: &dyn Fn(&BackendHealth) -> Option<Num>| {
            self.health
                .iter()
                .filter_map(|h| {
                    let addr = h.backend.to_string();
                    Some((labels(&[("vip", &h.vip), ("backend", &addr)]), f(h)?))
                })
                .collect::<Vec<_>>()
        };
        out.push(Family::Gauge(
            "lb_backend_check_up",
            "1 while the backend's health checks have it up, 0 while down (checked backends only).",
            checked(&|h| Some(Num::Count(u64::from(h.detail.up)))),
        ));
        out.push(Family::Gauge(
            "lb_backend_check_duration_seconds",
            "How long the backend's last health check took.",
            checked(&|h| Some(Num::Real(h.detail.last.as_ref()?.duration_ms / 1000.0))),
        ));
        let failures = self
            .health
            .iter()
            .flat_map(|h| {
                let addr = h.backend.to_string();
                h.detail.failures.iter().map(move |(reason, n)| {
                    let l = labels(&[("vip", &h.vip), ("backend", &addr), ("reason", reason)]);
                    (l, Num::Count(*n))
                })
            })
            .collect();
        out.push(Family::Counter(
            "lb_backend_check_failures",
            "Failed health checks of the backend, by reason.",
            failures,
        ));
        if !self.pools.is_empty() {
            out.extend(self.pool_families());
        }
        out
    }

    fn pool_families(&self) -> Vec<Family> {
        let mut vms = Vec::new();
        let mut utilisation = Vec::new();
        let mut decisions = Vec::new();
        let mut errors = Vec::new();
        let mut serving = Vec::new();
        for p in &self.pools {
            let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
            for v in &p.vms {
                *by_state.entry(v.state.name()).or_default() += 1;
                if let Some(ms) = v.serving_after_ms {
                    let l = labels(&[("vip", &p.vip), ("vm", &v.name)]);
                    serving.push((l, Num::Real(ms as f64 / 1000.0)));
                }
            }
            for (state, n) in by_state {
                vms.push((labels(&[("vip", &p.vip), ("state", state)]), Num::Count(n)));
            }
            if let Some(u) = p.utilisation {
                utilisation.push((labels(&[("vip", &p.vip)]), Num::Real(u)));
            }
            for (kind, n) in &p.decisions {
                decisions.push((labels(&[("vip", &p.vip), ("kind", kind)]), Num::Count(*n)));
            }
            for (kind, n) in &p.errors {
                errors.push((labels(&[("vip", &p.vip), ("kind", kind)]), Num::Count(*n)));
            }
        }
        vec![
            Family::Gauge("lb_pool_vms", "VMs of a pool by state.", vms),
            Family::Gauge(
                "lb_pool_utilisation",
                "Mean agent-reported CPU use of a pool's active VMs (share of their limits).",
                utilisation,
            ),
            Family::Counter(
                "lb_pool_decisions",
                "VMs created or drained, by reason.",
                decisions,
            ),
            Family::Counter(
                "lb_pool_provider_errors",
                "Failures of a pool's VM provider, by kind (engine_unreachable, image_missing, \
                 quota_refused, engine, system, ...).",
                errors,
            ),
            Family::Gauge(
                "lb_vm_serving_seconds",
                "Seconds from a VM's creation to its joining the ring.",
                serving,
            ),
        ]
    }
}

impl Collector for Page {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for family in self.families() {
            encode_family(&mut encoder, family)?;
        }
        Ok(())
    }
}

/// Renders the metrics page (OpenMetrics text) from the controller's views and the VM pools.
pub fn render(
    vips: &[VipView],
    health: &[BackendHealth],
    stats: &StatsView,
    pools: &[PoolView],
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Page {
        vips: vips.to_vec(),
        health: health.to_vec(),
        stats: stats.clone(),
        pools: pools.to_vec(),
    }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

async fn metrics(State((h, pools)): State<(Handle, Pools)>) -> impl IntoResponse {
    let page = async {
        let vips = h.call(Command::Vips).await?;
        let health = h.call(Command::Health).await?;
        let stats = h.call(Command::Stats).await??;
        Ok::<_, crate::model::Error>(render(&vips, &health, &stats, &pools.snapshot()))
    };
    match page.await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("metrics unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// Binds the metrics address; only loopback addresses are accepted (the page is unauthenticated).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(fail(
            "lbd.metrics",
            format!("{addr} is not a loopback address (the page has no authentication)"),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        config::{Mode, Proto},
        wire::{BackendState, BackendView},
    };

    fn page(name: &str) -> String {
        let vip = VipView {
            name: name.into(),
            addr: [192, 0, 2, 1].into(),
            port: 80,
            proto: Proto::Tcp,
            mode: Mode::Nat,
            ring_size: 4093,
            table: Default::default(),
            packets: 7,
            bytes: 700,
            new_flows: 3,
            backends: vec![BackendView {
                id: 1,
                addr: [10, 0, 0, 2].into(),
                port: 8080,
                weight: 2,
                packets: 5,
                bytes: 500,
                new_flows: 2,
                active_flows: 1,
                state: BackendState::Active,
                ring_weight: 200,
                cpu: None,
                inflight: None,
                checked: false,
            }],
        };
        let stats = StatsView {
            counters: [("fwd_nat".to_string(), 9)].into(),
            changes: 4,
            change_seconds_total: 0.5,
            last_change_seconds: 0.25,
        };
        render(&[vip], &[], &stats, &[])
    }

    #[test]
    fn counters_are_integers_with_total_suffixes_and_unlabelled_samples_have_no_braces() {
        let text = page("web");
        assert!(text.contains("# TYPE lb_packets counter"), "{text}");
        assert!(
            text.contains("lb_packets_total{reason=\"fwd_nat\"} 9\n"),
            "{text}"
        );
        assert!(text.contains("lb_controller_changes_total 4\n"), "{text}");
        assert!(
            text.contains("lb_controller_last_change_seconds 0.25\n"),
            "{text}"
        );
        assert!(
            text.contains("lb_backend_new_flows_total{vip=\"web\",backend=\"10.0.0.2:8080\""),
            "{text}"
        );
        assert!(
            text.contains("# TYPE lb_backend_active_flows gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let text = page("a\"b\\c\nd");
        assert!(
            text.contains("lb_vip_packets_total{vip=\"a\\\"b\\\\c\\nd\"} 7"),
            "{text}"
        );
    }
}
