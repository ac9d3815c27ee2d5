//! What moves ring weights besides the operator: health verdicts, agents' reports, and the
//! telemetry rounds of the weight policies (damped, slow-start, at most `max_moved` of the
//! table per rebuild).
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{Controller, Vip};
use crate::{
    balance::{
        self,
        weights::{self, Telemetry},
    },
    model::{
        config::{BackendConfig, Policy, VipConfig},
        msg::{AgentReport, HealthTarget},
        Result,
    },
};

impl Controller {
    /// Applies a health check's verdict: a down backend leaves the ring (its tracked flows
    /// stay, as when draining) and an up one returns with its weight.
    pub fn set_health(&mut self, vip: &str, addr: SocketAddr, up: bool) -> Result<()> {
        let Some(idx) = self.vip_with_backend(vip, addr)? else {
            return Ok(());
        };
        let key = (vip.to_string(), addr);
        let changed = if up {
            self.down.remove(&key)
        } else {
            self.down.insert(key)
        };
        if changed {
            tracing::info!(
                "{vip}: backend {addr} is {}",
                if up { "up" } else { "down" }
            );
            if up {
                self.up_since
                    .insert((vip.to_string(), addr), Instant::now());
            }
            self.rebuild(idx)?;
        }
        Ok(())
    }

    /// Records an agent's report: its weight percentage (0 = drain) scales the backend's
    /// configured weight at once; its load feeds the `resource` policy.
    pub fn set_agent_report(
        &mut self,
        vip: &str,
        addr: SocketAddr,
        report: AgentReport,
    ) -> Result<()> {
        let Some(idx) = self.vip_with_backend(vip, addr)? else {
            return Ok(());
        };
        let old = self.agent.insert((vip.to_string(), addr), report);
        if old.map_or(100, |r| r.percent) != report.percent {
            tracing::info!("{vip}: agent of {addr} reports {}%", report.percent);
            self.rebuild(idx)?;
        }
        Ok(())
    }

    /// One telemetry round: for every VIP whose update interval has passed, moves each
    /// backend's weight factor toward its policy's target and advances slow-start, then
    /// rebuilds the ring if a weight moved enough to matter, shortening the step until the
    /// rebuild moves at most `max_moved` of the table.
    pub fn update_weights(&mut self) -> Result<()> {
        let due = |v: &Vip| {
            let w = &v.cfg.weights;
            // Static weights without slow-start never move on their own.
            (w.policy != Policy::Static || w.slow_start_s > 0)
                && v.weights_updated.elapsed() >= Duration::from_millis(w.interval_ms)
        };
        // Walking the connection table is the expensive part: only for least-conn.
        let active = if self
            .vips
            .iter()
            .any(|v| due(v) && v.cfg.weights.policy == Policy::LeastConn)
        {
            self.dp.active_flows().unwrap_or_default()
        } else {
            HashMap::new()
        };
        for idx in 0..self.vips.len() {
            if !due(&self.vips[idx]) {
                continue;
            }
            let vip = &self.vips[idx];
            let w = &vip.cfg.weights;
            let name = vip.cfg.name.clone();
            let telemetry: Vec<Telemetry> = vip
                .cfg
                .backends
                .iter()
                .map(|b| {
                    let report = self.agent.get(&(name.clone(), b.socket_addr()));
                    let id = self.ids.get(&b.socket_addr()).unwrap_or(0);
                    Telemetry {
                        weight: b.weight,
                        active_flows: active.get(&id).copied().unwrap_or(0),
                        cpu: report.and_then(|r| r.cpu),
                        capacity: report.and_then(|r| r.capacity),
                    }
                })
                .collect();
            let measured = weights::targets(w.policy, &telemetry);
            let mut targets = Vec::with_capacity(measured.len());
            let mut before = Vec::with_capacity(measured.len());
            for (b, m) in vip.cfg.backends.iter().zip(&measured) {
                let key = (name.clone(), b.socket_addr());
                // A backend new to telemetry starts at its target: slow-start, not the
                // damping, eases it in.
                let factor = *self.factor.get(&key).unwrap_or(m);
                let (smoothed, aim) =
                    weights::settle(self.smoothed.get(&key).copied(), *m, factor, w.dead_band);
                self.smoothed.insert(key, smoothed);
                targets.push(aim);
                before.push(factor);
            }
            let cfg = w.clone();
            let mut scale = 1.0;
            for _ in 0..6 {
                let next: Vec<f64> = before
                    .iter()
                    .zip(&targets)
                    .map(|(f, t)| f + (weights::step(*f, *t, &cfg) - f) * scale)
                    .collect();
                for (b, f) in self.vips[idx].cfg.backends.clone().iter().zip(&next) {
                    self.factor.insert((name.clone(), b.socket_addr()), *f);
                }
                let weights = self.ring_weights(idx);
                if !weights::worth_rebuild(&self.vips[idx].ring_weights, &weights, cfg.min_change) {
                    break;
                }
                let moved = self.moved_share(idx);
                if moved == 0.0 {
                    // The same table (a lone live backend, say): nothing to swap.
                    self.vips[idx].ring_weights = weights;
                    break;
                }
                if moved <= cfg.max_moved || scale < 0.05 {
                    tracing::info!(
                        "{name}: {:?} weights {:?} (moves {:.1}% of the table)",
                        cfg.policy,
                        weights,
                        moved * 100.0
                    );
                    self.rebuild(idx)?;
                    break;
                }
                scale /= 2.0;
            }
            self.vips[idx].weights_updated = Instant::now();
        }
        Ok(())
    }

    /// Share of VIP `idx`'s live table that rebuilding it from current weights would move.
    pub(super) fn moved_share(&self, idx: usize) -> f64 {
        let members = self.members(idx);
        let vip = &self.vips[idx];
        let table = balance::table(vip.cfg.table, &members, vip.cfg.ring_size);
        let moved = table.iter().zip(&vip.table).filter(|(a, b)| a != b).count();
        moved as f64 / table.len().max(1) as f64
    }

    /// The index of VIP `vip` if `addr` is one of its backends (a checker's verdict can arrive
    /// just after the backend was removed).
    pub(super) fn vip_with_backend(&self, vip: &str, addr: SocketAddr) -> Result<Option<usize>> {
        let idx = self.vip_index(vip)?;
        let has = self.vips[idx]
            .cfg
            .backends
            .iter()
            .any(|b| b.socket_addr() == addr);
        Ok(has.then_some(idx))
    }

    /// The weight a backend of `vip` has in the ring: 0 while its health checks say down,
    /// else its configured weight scaled by its agent's percentage, its telemetry factor and
    /// slow-start (see [`weights::ring_weight`]).
    pub(super) fn effective_weight(&self, vip: &VipConfig, b: &BackendConfig) -> u32 {
        let key = (vip.name.clone(), b.socket_addr());
        if self.down.contains(&key) {
            return 0;
        }
        let percent = self.agent.get(&key).map_or(100, |r| r.percent);
        let factor = self.factor.get(&key).copied().unwrap_or(1.0);
        let ramp = Duration::from_secs(vip.weights.slow_start_s);
        let slow = self
            .up_since
            .get(&key)
            .map_or(1.0, |t| weights::slow_start(t.elapsed(), ramp));
        weights::ring_weight(b.weight, percent, factor, slow)
    }

    /// What the health checkers should check, and whether each backend is up now.
    pub fn health_targets(&self) -> Vec<HealthTarget> {
        self.vips
            .iter()
            .filter_map(|v| Some((v, v.cfg.health.clone()?)))
            .flat_map(|(v, h)| {
                v.cfg.backends.iter().map(move |b| {
                    let key = (v.cfg.name.clone(), b.socket_addr());
                    HealthTarget {
                        up: !self.down.contains(&key),
                        generation: self.generation.get(&key).copied().unwrap_or(0),
                        vip: key.0,
                        addr: key.1,
                        cfg: h.clone(),
                    }
                })
            })
            .collect()
    }
}
