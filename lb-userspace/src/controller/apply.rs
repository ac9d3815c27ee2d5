//! Applying a whole desired state at once (`lbctl apply -f`, a reload): validated whole
//! before anything is touched, previewed with the share each VIP's change moves, then made
//! with one ring rebuild per changed VIP and one state-file write; if the kernel refuses a
//! step, the previous state is put back.
use super::{vip_key, Controller};
use crate::{
    balance::plan,
    model::{
        config::VipConfig,
        diff::diff,
        validate_vips,
        wire::{ApplyAction, ApplyReport, VipApply},
        Result,
    },
};

impl Controller {
    /// Makes `wanted` the desired state (or, with `dry_run`, only reports what that would
    /// do). Pooled VIPs keep their running backends (their VMs); `config_digest` becomes the
    /// state file's when given.
    pub fn apply(
        &mut self,
        wanted: Vec<VipConfig>,
        dry_run: bool,
        config_digest: Option<String>,
    ) -> Result<ApplyReport> {
        let wanted: Vec<VipConfig> = wanted
            .into_iter()
            .map(|mut v| {
                if v.pool.is_some() {
                    if let Some(running) = self.vips.iter().find(|r| r.cfg.name == v.name) {
                        v.backends = running.cfg.backends.clone();
                    }
                }
                v
            })
            .collect();
        validate_vips(&wanted)?;
        let running = self.desired();
        let mut report = ApplyReport {
            changes: diff(&running, &wanted),
            vips: plan_vips(&running, &wanted),
            ..ApplyReport::default()
        };
        if dry_run || report.vips.is_empty() {
            self.set_digest(config_digest);
            return Ok(report);
        }
        self.batch = true;
        let made = self.make(&wanted);
        if made.is_err() {
            // Put the previous state back as far as the kernel lets us.
            if let Err(e) = self.make(&running) {
                tracing::error!("restoring the previous state after a failed apply: {e}");
            }
        }
        self.batch = false;
        if made.is_ok() {
            self.set_digest(config_digest);
        }
        self.save();
        made?;
        report.applied = true;
        Ok(report)
    }

    fn set_digest(&mut self, digest: Option<String>) {
        if let (Some(p), Some(d)) = (&mut self.persist, digest) {
            p.config_digest = d;
        }
    }

    /// Makes the running VIPs those of `wanted` (validated): removals, then changes, then
    /// additions.
    fn make(&mut self, wanted: &[VipConfig]) -> Result<()> {
        let gone: Vec<String> = self
            .vips
            .iter()
            .filter(|v| {
                wanted
                    .iter()
                    .find(|w| w.name == v.cfg.name)
                    .is_none_or(|w| vip_key(w) != vip_key(&v.cfg) || w.mode != v.cfg.mode)
            })
            .map(|v| v.cfg.name.clone())
            .collect();
        for name in gone {
            self.remove_vip(&name)?;
        }
        for w in wanted {
            match self.vips.iter().position(|v| v.cfg.name == w.name) {
                Some(idx) if self.vips[idx].cfg != *w => {
                    let backends = w.backends.clone();
                    self.vips[idx].cfg = VipConfig {
                        backends: std::mem::take(&mut self.vips[idx].cfg.backends),
                        ..w.clone()
                    };
                    self.apply_set(idx, backends)?;
                }
                Some(_) => {}
                None => self.add_vip(w.clone())?,
            }
        }
        Ok(())
    }
}

/// What turning `running` into `wanted` does to each VIP that changes, in name order.
fn plan_vips(running: &[VipConfig], wanted: &[VipConfig]) -> Vec<VipApply> {
    let mut out = Vec::new();
    for r in running {
        match wanted.iter().find(|w| w.name == r.name) {
            None => out.push(VipApply {
                vip: r.name.clone(),
                action: ApplyAction::Removed,
                moved_share: 1.0,
                backends: (r.backends.len(), 0),
            }),
            Some(w) if w != r => {
                let same_table = vip_key(w) == vip_key(r)
                    && w.mode == r.mode
                    && w.ring_size == r.ring_size
                    && w.table == r.table;
                let moved_share = if same_table {
                    plan::plan(&r.name, r.table, &r.backends, &w.backends, r.ring_size).moved_share
                } else {
                    1.0
                };
                out.push(VipApply {
                    vip: r.name.clone(),
                    action: ApplyAction::Changed,
                    moved_share,
                    backends: (r.backends.len(), w.backends.len()),
                });
            }
            Some(_) => {}
        }
    }
    for w in wanted {
        if !running.iter().any(|r| r.name == w.name) {
            out.push(VipApply {
                vip: w.name.clone(),
                action: ApplyAction::Added,
                moved_share: 1.0,
                backends: (0, w.backends.len()),
            });
        }
    }
    out.sort_by(|a, b| a.vip.cmp(&b.vip));
    out
}
