//! What differs between two VIP sets (the running one and a config's), in words an operator
//! reads: VIPs added and removed, backends added, removed and reweighted, settings changed.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::VipConfig;

/// One difference, from `from` (running) to `to` (wanted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The VIP it is about.
    pub vip: String,
    /// What changes, e.g. `backend 10.0.0.5:8080 added (weight 2)`.
    pub what: String,
}

/// The changes that turn `from` into `to`, VIP by VIP in name order.
pub fn diff(from: &[VipConfig], to: &[VipConfig]) -> Vec<Change> {
    let a: BTreeMap<&str, &VipConfig> = from.iter().map(|v| (v.name.as_str(), v)).collect();
    let b: BTreeMap<&str, &VipConfig> = to.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut out = Vec::new();
    let mut say = |vip: &str, what: String| {
        out.push(Change {
            vip: vip.to_string(),
            what,
        })
    };
    for (name, old) in &a {
        let Some(new) = b.get(name) else {
            say(name, "VIP removed".into());
            continue;
        };
        let service = |v: &VipConfig| (v.addr, v.port, v.proto, v.mode, v.ring_size);
        if service(old) != service(new) {
            say(
                name,
                "address, port, protocol, mode or ring size changed".into(),
            );
        }
        if old.health != new.health {
            say(name, "health check changed".into());
        }
        if old.weights != new.weights {
            say(name, "weight policy changed".into());
        }
        if old.pool != new.pool {
            say(name, "pool settings changed".into());
        }
        // Pooled VIPs' backends are their VMs, which lbd owns: not a difference.
        if new.pool.is_some() {
            continue;
        }
        for ob in &old.backends {
            match new
                .backends
                .iter()
                .find(|nb| nb.socket_addr() == ob.socket_addr())
            {
                None => say(name, format!("backend {} removed", ob.socket_addr())),
                Some(nb) if nb.weight != ob.weight => say(
                    name,
                    format!(
                        "backend {} weight {} -> {}",
                        ob.socket_addr(),
                        ob.weight,
                        nb.weight
                    ),
                ),
                Some(_) => {}
            }
        }
        for nb in &new.backends {
            if !old
                .backends
                .iter()
                .any(|ob| ob.socket_addr() == nb.socket_addr())
            {
                say(
                    name,
                    format!("backend {} added (weight {})", nb.socket_addr(), nb.weight),
                );
            }
        }
    }
    for (name, new) in &b {
        if !a.contains_key(name) {
            say(
                name,
                format!("VIP added with {} backends", new.backends.len()),
            );
        }
    }
    out
}
