//! The pool's scaling decision, at most one per look (none that makes a VM for a while after
//! the provider failed to): below `min`, create; mean agent CPU
//! above target (after the scale-out cooldown, nothing joining), grow to bring it to the
//! target; below target × (1 − hysteresis) even without one VM (after the scale-in cooldown),
//! drain the least-loaded VM.
use std::time::{Duration, Instant};

use super::Manager;
use crate::model::{
    wire::{VmState, VmView},
    Error, Result,
};

impl Manager {
    /// Decides on `views`, the pool's VMs as this look found them, and acts.
    pub(super) async fn scale(&mut self, views: &[VmView]) -> Result<()> {
        let live: Vec<&VmView> = views
            .iter()
            .filter(|v| v.state != VmState::Draining && v.state != VmState::Drained)
            .collect();
        let active: Vec<&VmView> = live
            .iter()
            .copied()
            .filter(|v| v.state == VmState::Active)
            .collect();
        let reports: Vec<f64> = active.iter().filter_map(|v| v.cpu).collect();
        let utilisation =
            (!reports.is_empty()).then(|| reports.iter().sum::<f64>() / reports.len() as f64);
        let joining = live.iter().any(|v| v.state == VmState::Joining);
        self.publish(views, utilisation);
        let n = live.len() as u32;
        let since = |t: Option<Instant>| t.map_or(Duration::MAX, |t| t.elapsed());
        // After a failure of the provider, no VM is made for a while (drains still go on).
        let may_create = !self.backing_off();
        if n < self.cfg.min && may_create {
            let why = format!("{n} VMs, below min {}", self.cfg.min);
            self.create(None, &why).await?;
            self.decided("min");
            self.last_change = Some(Instant::now());
            return Ok(());
        }
        let Some(u) = utilisation else {
            return Ok(());
        };
        let target = self.cfg.target_utilisation;
        if u > target
            && may_create
            && n < self.cfg.max
            && !joining
            && since(self.last_out) >= Duration::from_secs(self.cfg.scale_out_cooldown_s)
        {
            // Enough VMs to bring the mean to the target, at least one more.
            let want = ((f64::from(n) * u / target).ceil() as u32).clamp(n + 1, self.cfg.max);
            let why = format!(
                "cpu {:.0}% > target {:.0}%: {n} -> {want} VMs",
                u * 100.0,
                target * 100.0
            );
            for _ in n..want {
                self.create(None, &why).await?;
                self.decided("scale_out");
            }
            self.last_out = Some(Instant::now());
            self.last_change = self.last_out;
            return Ok(());
        }
        let projected = if n > 1 {
            u * f64::from(n) / f64::from(n - 1)
        } else {
            f64::MAX
        };
        if n > self.cfg.min
            && !joining
            && projected < target * (1.0 - self.cfg.hysteresis)
            && since(self.last_change) >= Duration::from_secs(self.cfg.scale_in_cooldown_s)
        {
            // The least-loaded active VM: fewest open flows break nothing if it drains.
            let pick = active
                .iter()
                .min_by(|a, b| {
                    (a.active_flows, a.cpu.unwrap_or(0.0))
                        .partial_cmp(&(b.active_flows, b.cpu.unwrap_or(0.0)))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(|v| v.name.clone());
            if let Some(name) = pick {
                let i = self
                    .vms
                    .iter()
                    .position(|m| m.vm.name == name)
                    .ok_or_else(|| Error::not_found("vm", format!("{name} vanished")))?;
                let why = format!(
                    "cpu {:.0}%, {:.0}% on {} VMs < {:.0}%",
                    u * 100.0,
                    projected * 100.0,
                    n - 1,
                    target * (1.0 - self.cfg.hysteresis) * 100.0
                );
                self.drain(i, why).await?;
                self.decided("scale_in");
                self.last_change = Some(Instant::now());
            }
        }
        Ok(())
    }
}
