//! The commit path: a VIP's new backend set is applied whole (new backend records, then the
//! ring swap in one atomic VIP update, then release of ids no VIP uses any more), the
//! prefilter bitmaps set before the entries they guard and cleared after; on error nothing the
//! data path reads has changed.
use std::net::SocketAddr;

use lb_common::{addr_words, filter, Backend, BACKEND_NONE, MAX_BACKENDS, RING_BUF_BIT};

use super::{ids::RingSpace, Controller, Vip};
use crate::{
    balance::{self, maglev::Member},
    model::{
        config::{BackendConfig, Mode},
        Error, Result,
    },
};

/// Prefilter bitmaps for a set of VIPs, where VIP `idx` has `backends` instead of its own.
pub(super) fn filter_bits(vips: &[Vip], idx: usize, backends: &[BackendConfig]) -> Vec<u64> {
    let mut words = vec![0u64; filter::TOTAL_WORDS as usize];
    let mut set = |map: u32, value: u16| {
        let (word, bit) = filter::locate(map, value);
        words[word as usize] |= bit;
    };
    for (i, vip) in vips.iter().enumerate() {
        set(filter::VIP_PORTS, vip.cfg.port);
        // ICMP has no ports: the ping entry of every VIP address is found under port 0.
        set(filter::VIP_PORTS, 0);
        set(filter::VIP_ADDRS, filter::fold(&addr_words(vip.cfg.addr)));
        let set_backends = if i == idx {
            backends
        } else {
            &vip.cfg.backends
        };
        // Only NAT replies come back through the balancer.
        if vip.cfg.mode == Mode::Nat {
            for b in set_backends {
                set(filter::BACKEND_PORTS, b.port);
            }
        }
    }
    words
}

impl Controller {
    /// Makes `backends` the backend set of VIP `idx`: new backend records, then the ring swap
    /// (one atomic VIP update), then release of ids no VIP uses any more. On error nothing the
    /// data path reads has changed.
    pub(super) fn commit(&mut self, idx: usize, backends: Vec<BackendConfig>) -> Result<()> {
        let started = std::time::Instant::now();
        let name = self.vips[idx].cfg.name.clone();
        for b in &backends {
            let key = (name.clone(), b.socket_addr());
            if b.weight == 0 {
                self.drain_started.entry(key).or_insert(started);
            } else {
                self.drain_started.remove(&key);
            }
        }
        self.commit_timed(idx, backends)?;
        let took = started.elapsed().as_secs_f64();
        self.timings = (self.timings.0 + 1, self.timings.1 + took, took);
        Ok(())
    }

    fn commit_timed(&mut self, idx: usize, backends: Vec<BackendConfig>) -> Result<()> {
        // Filter bits are set before the entries they guard exist, cleared after they are gone.
        let next = filter_bits(&self.vips, idx, &backends);
        let union: Vec<u64> = self.filter.iter().zip(&next).map(|(a, b)| a | b).collect();
        self.dp.set_filter(&union);
        let mut created = Vec::new();
        let result = self.commit_inner(idx, &backends, &mut created);
        if result.is_err() {
            self.dp.set_filter(&self.filter);
            for addr in created {
                if let Some((id, _)) = self.ids.by_addr.remove(&addr) {
                    let _ = self.dp.clear_backend(id);
                }
            }
            return result;
        }
        let old = std::mem::replace(&mut self.vips[idx].cfg.backends, backends);
        for b in &self.vips[idx].cfg.backends {
            if let Some(entry) = self.ids.by_addr.get_mut(&b.socket_addr()) {
                entry.1 += 1;
            }
        }
        for b in old {
            self.release(b.socket_addr())?;
        }
        self.dp.set_filter(&next);
        self.filter = next;
        self.save();
        Ok(())
    }

    fn commit_inner(
        &mut self,
        idx: usize,
        backends: &[BackendConfig],
        created: &mut Vec<SocketAddr>,
    ) -> Result<()> {
        for b in backends {
            let addr = b.socket_addr();
            if self.ids.get(&addr).is_some() {
                continue;
            }
            let id = match self.pinned_backends.remove(&addr) {
                Some(id) => id,
                None => self.ids.free_id(&self.pinned_backends).ok_or_else(|| {
                    Error::conflict("backend", format!("all {MAX_BACKENDS} ids are in use"))
                })?,
            };
            let record = Backend::new(addr);
            self.dp.set_backend(id, &record)?;
            self.ids.by_addr.insert(addr, (id, 0));
            created.push(addr);
        }
        // A backend whose health checks failed takes no new flows, like a drained one. The
        // members are computed with the new set in place, then the old set is put back: the
        // caller installs the new one only if this commit succeeds.
        let old = std::mem::replace(&mut self.vips[idx].cfg.backends, backends.to_vec());
        let members = self.members(idx);
        let weights = self.ring_weights(idx);
        self.vips[idx].cfg.backends = old;
        let vip = &self.vips[idx];
        let table = balance::table(vip.cfg.table, &members, vip.cfg.ring_size);
        let live = table.iter().any(|&id| id != BACKEND_NONE);
        // Buffers of the ring size: the VIP's own, or a new pair (a new VIP, or a new size:
        // the live buffer stays untouched until the swap).
        let moved = vip.buf_len != vip.cfg.ring_size;
        let mut next = super::live_meta(vip);
        if moved {
            next.base = self.alloc_pair(vip.cfg.ring_size)?;
        }
        let ring = match self.dp.stage_ring(&next, &table) {
            Ok(ring) => ring,
            Err(e) => {
                if moved {
                    next.base.iter().for_each(|b| self.rings.free(*b));
                }
                return Err(e.into());
            }
        };
        next.ring = if live { ring } else { ring & RING_BUF_BIT };
        let vip = &self.vips[idx];
        let key = super::vip_key(&vip.cfg);
        if let Err(e) = self.dp.set_vip(&key, &next) {
            if moved {
                next.base.iter().for_each(|b| self.rings.free(*b));
            }
            return Err(e.into());
        }
        let old = super::live_meta(vip);
        self.dp.retire_ring(&old);
        if moved && vip.buf_len > 0 {
            old.base.iter().for_each(|b| self.rings.free(*b));
        }
        let v = &mut self.vips[idx];
        v.ring = next.ring;
        v.base = next.base;
        v.buf_len = v.cfg.ring_size;
        self.vips[idx].table = table;
        self.vips[idx].ring_weights = weights;
        Ok(())
    }

    /// Two free ring buffers of `len` slots each.
    fn alloc_pair(&mut self, len: u32) -> Result<[u32; 2]> {
        let full = |r: &RingSpace| {
            Error::conflict(
                "vip.ring_size",
                format!(
                    "{len} slots twice do not fit in the free ring memory ({} of lbd.ring_slots \
                     = {} free)",
                    r.free_slots(),
                    self.dp.ring_slots()
                ),
            )
        };
        let a = self.rings.alloc(len).ok_or_else(|| full(&self.rings))?;
        let Some(b) = self.rings.alloc(len) else {
            self.rings.free(a);
            return Err(full(&self.rings));
        };
        Ok([a, b])
    }

    /// Drops one reference to a backend id; the record is cleared when no VIP uses it.
    pub(super) fn release(&mut self, addr: SocketAddr) -> Result<()> {
        if let Some(entry) = self.ids.by_addr.get_mut(&addr) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                let id = entry.0;
                self.ids.by_addr.remove(&addr);
                self.dp.clear_backend(id)?;
            }
        }
        Ok(())
    }

    /// VIP `idx`'s backends as Maglev members with their ring weights (ids must exist).
    pub(super) fn members(&self, idx: usize) -> Vec<Member> {
        let vip = &self.vips[idx].cfg;
        vip.backends
            .iter()
            .map(|b| Member {
                id: self.ids.get(&b.socket_addr()).unwrap_or(0),
                addr: b.socket_addr(),
                weight: self.effective_weight(vip, b),
            })
            .collect()
    }

    /// The ring weight of every backend of VIP `idx`, in its `cfg.backends` order.
    pub(super) fn ring_weights(&self, idx: usize) -> Vec<u32> {
        let vip = &self.vips[idx].cfg;
        vip.backends
            .iter()
            .map(|b| self.effective_weight(vip, b))
            .collect()
    }

    /// Rebuilds VIP `idx`'s ring from its backends' effective weights.
    pub(super) fn rebuild(&mut self, idx: usize) -> Result<()> {
        let set = self.vips[idx].cfg.backends.clone();
        self.commit(idx, set)
    }
}
