//! The `static` provider: VMs someone else runs, at addresses listed in the pool config. lbd
//! only picks them, checks them and weights them; "creating" one takes the next free address
//! and "deleting" one gives it back.
use std::{collections::BTreeMap, net::IpAddr};

use super::{now_ms, Vm, VmError, VmProvider, VmSpec, VmStatus};

/// Hands out the pool's fixed addresses.
pub struct StaticProvider {
    addrs: Vec<IpAddr>,
}

impl StaticProvider {
    /// A provider over `addrs` (slot i is `addrs[i]`).
    pub fn new(addrs: Vec<IpAddr>) -> Self {
        StaticProvider { addrs }
    }
}

impl VmProvider for StaticProvider {
    async fn create(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        let addr = *self
            .addrs
            .get(spec.slot as usize)
            .ok_or_else(|| VmError::NoCapacity(format!("no address for slot {}", spec.slot)))?;
        Ok(Vm {
            name: format!("{}-{}", spec.pool, spec.slot),
            pool: spec.pool.clone(),
            slot: spec.slot,
            addr,
            port: spec.port,
            cpu_limit: spec.cpu_limit,
            created_ms: now_ms(),
            meta: BTreeMap::new(),
        })
    }

    async fn start(&self, _vm: &mut Vm) -> Result<(), VmError> {
        Ok(())
    }

    /// Always running as far as lbd can tell: health checks say whether it serves.
    async fn status(&self, _vm: &Vm) -> Result<VmStatus, VmError> {
        Ok(VmStatus::Running)
    }

    async fn stop(&self, _vm: &Vm) -> Result<(), VmError> {
        Ok(())
    }

    async fn delete(&self, _vm: &Vm) -> Result<(), VmError> {
        Ok(())
    }

    /// Nothing to adopt: the pool manager recognises its addresses among the VIP's backends.
    async fn list(&self, _pool: &str) -> Result<Vec<Vm>, VmError> {
        Ok(Vec::new())
    }
}
