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

/// The slots of `LB_RINGS` and which are taken: each VIP holds two buffers of its ring size.
pub(super) struct RingSpace {
    slots: u32,
    /// Taken ranges (first slot, length), in order.
    taken: Vec<(u32, u32)>,
}

impl RingSpace {
    /// `slots` free slots.
    pub(super) fn new(slots: u32) -> Self {
        RingSpace {
            slots,
            taken: Vec::new(),
        }
    }

    /// Takes `len` slots from `start` if they are free.
    pub(super) fn reserve(&mut self, start: u32, len: u32) -> bool {
        let end = u64::from(start) + u64::from(len);
        if end > u64::from(self.slots) {
            return false;
        }
        let at = self.taken.partition_point(|(s, _)| *s < start);
        let clear_before = at == 0 || {
            let (s, l) = self.taken[at - 1];
            u64::from(s) + u64::from(l) <= u64::from(start)
        };
        let clear_after = self.taken.get(at).is_none_or(|(s, _)| u64::from(*s) >= end);
        if !(clear_before && clear_after) {
            return false;
        }
        self.taken.insert(at, (start, len));
        true
    }

    /// The first free range of `len` slots, taken.
    pub(super) fn alloc(&mut self, len: u32) -> Option<u32> {
        let mut start = 0u32;
        for (s, l) in &self.taken {
            if s.saturating_sub(start) >= len {
                break;
            }
            start = start.max(s + l);
        }
        self.reserve(start, len).then_some(start)
    }

    /// Gives back the range that starts at `start`.
    pub(super) fn free(&mut self, start: u32) {
        self.taken.retain(|(s, _)| *s != start);
    }

    /// Slots free in all.
    pub(super) fn free_slots(&self) -> u64 {
        u64::from(self.slots) - self.taken.iter().map(|(_, l)| u64::from(*l)).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::RingSpace;

    #[test]
    fn ranges_are_allocated_first_fit_freed_and_never_overlap() {
        let mut r = RingSpace::new(100);
        assert_eq!(r.alloc(30), Some(0));
        assert_eq!(r.alloc(30), Some(30));
        assert_eq!(r.alloc(50), None, "only 40 left");
        r.free(0);
        assert_eq!(r.alloc(20), Some(0), "first fit reuses the hole");
        assert_eq!(r.alloc(10), Some(20));
        assert_eq!(r.alloc(40), Some(60));
        assert_eq!(r.free_slots(), 0);
        assert!(!r.reserve(25, 1), "taken");
        r.free(30);
        assert!(r.reserve(30, 30));
        assert!(!r.reserve(95, 10), "past the end");
    }
}
