//! Views of the running state for the API, the CLI and the metrics: VIPs with their backends'
//! counters and states, the verdict counters, the instance's identity.
use std::collections::HashMap;

use lb_common::Reason;

use super::{Controller, Vip};
use crate::model::{
    wire::{
        BackendHealth, BackendState, BackendView, HealthDetail, StatsView, StatusView, VipView,
    },
    Result,
};

impl Controller {
    /// A VIP with its backends and their counters. `active` is [`crate::dataplane::Dataplane::active_flows`].
    fn vip_view(&self, vip: &Vip, active: &HashMap<u32, u64>) -> VipView {
        // Counters are informational: a failed read shows zeros rather than failing the call.
        let vt = self.dp.traffic(true, vip.id).unwrap_or_default();
        VipView {
            name: vip.cfg.name.clone(),
            addr: vip.cfg.addr,
            port: vip.cfg.port,
            proto: vip.cfg.proto,
            mode: vip.cfg.mode,
            ring_size: vip.cfg.ring_size,
            table: vip.cfg.table,
            packets: vt.packets,
            bytes: vt.bytes,
            new_flows: vt.new_flows,
            backends: vip
                .cfg
                .backends
                .iter()
                .map(|b| {
                    let id = self.ids.get(&b.socket_addr()).unwrap_or(0);
                    let bt = self.dp.traffic(false, id).unwrap_or_default();
                    let key = (vip.cfg.name.clone(), b.socket_addr());
                    let report = self.agent.get(&key);
                    BackendView {
                        checked: vip.cfg.health.is_some(),
                        ring_weight: self.effective_weight(&vip.cfg, b),
                        cpu: report.and_then(|r| r.cpu),
                        inflight: report.and_then(|r| r.inflight),
                        id,
                        addr: b.addr,
                        port: b.port,
                        weight: b.weight,
                        packets: bt.packets,
                        bytes: bt.bytes,
                        new_flows: bt.new_flows,
                        active_flows: active.get(&id).copied().unwrap_or(0),
                        state: if self.down.contains(&(vip.cfg.name.clone(), b.socket_addr())) {
                            BackendState::Down
                        } else {
                            let weight = self.effective_weight(&vip.cfg, b);
                            let key = (vip.cfg.name.clone(), b.socket_addr());
                            let overdue = self
                                .drain_started
                                .get(&key)
                                .is_some_and(|t| t.elapsed() >= self.drain_timeout);
                            let open = active.get(&id).copied().unwrap_or(0);
                            BackendState::of(weight, if overdue { 0 } else { open })
                        },
                    }
                })
                .collect(),
        }
    }

    pub(super) fn view_of(&self, idx: usize) -> VipView {
        let active = self.dp.active_flows().unwrap_or_default();
        self.vip_view(&self.vips[idx], &active)
    }

    /// Every VIP with its backends and counters.
    pub fn vips(&self) -> Vec<VipView> {
        let active = self.dp.active_flows().unwrap_or_default();
        self.vips
            .iter()
            .map(|v| self.vip_view(v, &active))
            .collect()
    }

    /// The health checking of every checked backend, VIP by VIP (a backend whose checker has
    /// not run yet shows the controller's state and no result).
    pub fn health(&self) -> Vec<BackendHealth> {
        let board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        self.vips
            .iter()
            .filter_map(|v| Some((v, v.cfg.health.as_ref()?)))
            .flat_map(|(v, h)| {
                let board = &board;
                v.cfg.backends.iter().map(move |b| {
                    let key = (v.cfg.name.clone(), b.socket_addr());
                    let detail = board.get(&key).cloned().unwrap_or(HealthDetail {
                        kind: h.kind,
                        up: !self.down.contains(&key),
                        since_ms: 0,
                        last: None,
                        consecutive_ok: 0,
                        consecutive_failed: 0,
                        checks: 0,
                        failures: Default::default(),
                    });
                    BackendHealth {
                        vip: key.0,
                        backend: key.1,
                        detail,
                    }
                })
            })
            .collect()
    }

    /// Data-path counters.
    pub fn stats(&self) -> Result<StatsView> {
        let counts = self.dp.stats()?;
        Ok(StatsView {
            counters: Reason::ALL
                .iter()
                .map(|r| (r.name().to_string(), counts[*r as usize]))
                .collect(),
            changes: self.timings.0,
            change_seconds_total: self.timings.1,
            last_change_seconds: self.timings.2,
        })
    }

    /// Identity and size of this instance.
    pub fn status(&self) -> StatusView {
        StatusView {
            instance: self.instance.clone(),
            interfaces: self.attached.iter().map(|a| a.iface.clone()).collect(),
            attached: self.attached.clone(),
            pin_dir: self.dp.pin_dir().display().to_string(),
            vips: self.vips.len(),
            backends: self.ids.by_addr.len(),
            config: String::new(),
            runtime_changes: None,
        }
    }
}
