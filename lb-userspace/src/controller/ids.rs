//! Data-path ids: backend ids shared by every VIP that uses the same address:port (id 0 is
//! "none"), and VIP ids, both reusing what adopted maps held so tracked flows keep theirs.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
};

use lb_common::MAX_BACKENDS;

/// Backend ids by address, with how many VIPs use each.
#[derive(Default)]
pub(super) struct BackendIds {
    pub(super) by_addr: HashMap<SocketAddr, (u32, u32)>,
}

impl BackendIds {
    /// The id of the backend at `addr`, if it has one.
    pub(super) fn get(&self, addr: &SocketAddr) -> Option<u32> {
        self.by_addr.get(addr).map(|(id, _)| *id)
    }

    /// A free id, skipping `reserved` ones (pinned records not yet claimed or released).
    pub(super) fn free_id(&self, reserved: &HashMap<SocketAddr, u32>) -> Option<u32> {
        let used: HashSet<u32> = self
            .by_addr
            .values()
            .map(|(id, _)| *id)
            .chain(reserved.values().copied())
            .collect();
        (1..MAX_BACKENDS).find(|id| !used.contains(id))
    }
}
