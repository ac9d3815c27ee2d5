//! Every pool of the daemon: its manager's channel and task, its latest view, and the VIP it
//! was started for, so a reload starts managers for new pooled VIPs, stops those of removed
//! ones (deleting their VMs) and restarts those whose pool settings changed (the new manager
//! adopts the VMs).
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{Manager, PoolCommand};
use crate::{
    controller::Handle,
    model::{config::VipConfig, wire::PoolView, Error, Result},
    workers::vm::Provider,
};

/// Makes the provider of a pooled VIP.
pub type ProviderFactory = Arc<dyn Fn(&VipConfig) -> Result<Provider> + Send + Sync>;

struct Entry {
    vip: VipConfig,
    view: PoolView,
    tx: mpsc::Sender<PoolCommand>,
    task: JoinHandle<()>,
}

/// The pools, shared by the daemon, the API and the managers (which publish their views).
#[derive(Clone)]
pub struct Pools {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    handle: Handle,
    make: ProviderFactory,
}

impl Pools {
    /// No pools yet; managers will talk to the controller through `handle` and get their
    /// providers from `make`.
    pub fn new(handle: Handle, make: ProviderFactory) -> Self {
        Pools {
            entries: Arc::default(),
            handle,
            make,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A manager that panicked while publishing leaves the map as it was.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest view of every pool.
    pub fn snapshot(&self) -> Vec<PoolView> {
        self.lock().values().map(|e| e.view.clone()).collect()
    }

    /// Records the latest view of pool `name` (its manager calls this every look).
    pub(super) fn publish(&self, name: &str, view: PoolView) {
        if let Some(e) = self.lock().get_mut(name) {
            e.view = view;
        }
    }

    /// The channel of pool `name`'s manager.
    pub fn sender(&self, name: &str) -> Result<mpsc::Sender<PoolCommand>> {
        let entries = self.lock();
        entries.get(name).map(|e| e.tx.clone()).ok_or_else(|| {
            let known: Vec<&str> = entries.keys().map(String::as_str).collect();
            Error::not_found(
                "pool",
                format!("no pool {name:?} (pooled VIPs: {})", known.join(", ")),
            )
        })
    }

    /// Starts a manager for pooled VIP `vip`.
    fn start(&self, vip: &VipConfig) -> Result<()> {
        let (tx, rx) = mpsc::channel(8);
        let manager = Manager::new(
            vip.clone(),
            (self.make)(vip)?,
            self.handle.clone(),
            self.clone(),
        )?;
        let view = PoolView {
            vip: vip.name.clone(),
            ..PoolView::default()
        };
        // Registered before it runs, so its first view has a place to go.
        let mut entries = self.lock();
        let task = tokio::spawn(manager.run(rx));
        entries.insert(
            vip.name.clone(),
            Entry {
                vip: vip.clone(),
                view,
                tx,
                task,
            },
        );
        Ok(())
    }

    /// Stops the managers of `names` (deleting their VMs if `delete`) and waits for them.
    async fn stop(&self, names: &[String], delete: bool) {
        let stopping: Vec<Entry> = {
            let mut entries = self.lock();
            names.iter().filter_map(|n| entries.remove(n)).collect()
        };
        for e in stopping {
            let (done, wait) = oneshot::channel();
            if e.tx.send(PoolCommand::Shutdown(delete, done)).await.is_ok() {
                let _ = wait.await;
            }
            let _ = e.task.await;
        }
    }

    /// Makes the running managers those `vips` need: new pooled VIPs get one, removed ones
    /// lose theirs (and their VMs), changed pool settings restart theirs (the new manager
    /// adopts the VMs). A pool that cannot start is reported; the others are not affected.
    pub async fn reconcile(&self, vips: &[VipConfig]) -> Result<()> {
        let wanted: Vec<&VipConfig> = vips.iter().filter(|v| v.pool.is_some()).collect();
        let (removed, changed): (Vec<String>, Vec<String>) = {
            let entries = self.lock();
            let removed = entries
                .keys()
                .filter(|n| !wanted.iter().any(|w| &w.name == *n))
                .cloned()
                .collect();
            let changed = entries
                .iter()
                .filter(|(n, e)| {
                    wanted
                        .iter()
                        .any(|w| &w.name == *n && !same_pool(w, &e.vip))
                })
                .map(|(n, _)| n.clone())
                .collect();
            (removed, changed)
        };
        self.stop(&removed, true).await;
        self.stop(&changed, false).await;
        let mut first_error = Ok(());
        for vip in wanted {
            let running = self.lock().contains_key(&vip.name);
            if !running {
                if let Err(e) = self.start(vip) {
                    tracing::error!("pool {}: {e}", vip.name);
                    first_error = first_error.and(Err(e));
                }
            }
        }
        first_error
    }

    /// Stops every manager, deleting their VMs if `delete`.
    pub async fn shutdown(&self, delete: bool) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        self.stop(&names, delete).await;
    }
}

/// Whether a running manager for `running` can go on managing `wanted`: the same pool on the
/// same service (its backends are its VMs, which may differ).
fn same_pool(wanted: &VipConfig, running: &VipConfig) -> bool {
    VipConfig {
        backends: Vec::new(),
        ..wanted.clone()
    } == VipConfig {
        backends: Vec::new(),
        ..running.clone()
    }
}
