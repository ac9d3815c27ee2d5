//! Reading the flow tables (the connection table and the probation table): active flows per
//! backend for drain-complete and least-connections, and every flow for `lbctl conn list`,
//! read in batches (`BPF_MAP_LOOKUP_BATCH`) where the kernel has them.
use aya::maps::{HashMap, MapData};
use lb_common::{ConnEntry, FlowKey, CONN_F_CLOSED, DIR_FORWARD, PROTO_UDP};

use super::Dataplane;
use crate::sys::{
    bpf_batch::{batch, BatchAttr, BatchCmd},
    error::{fail, Context, Result},
};

/// A flow table: key and entry as the data path keeps them.
type FlowTable = HashMap<MapData, FlowKey, ConnEntry>;

impl Dataplane {
    /// Flows per backend id that are still active: forward entries of the connection table
    /// whose client has not closed them (TCP) or that are not idle past the timeout (UDP).
    /// Reads the table in batches (one syscall per [`CONN_BATCH`] entries), falling back to a
    /// walk of two syscalls per entry where the kernel lacks batch lookups.
    pub fn active_flows(&self) -> Result<std::collections::HashMap<u32, u64>> {
        let now = coarse_now()?;
        let mut active = std::collections::HashMap::new();
        let mut count = |key: &FlowKey, entry: &ConnEntry| {
            let open = if key.proto == PROTO_UDP {
                now.wrapping_sub(entry.last_seen) <= self.udp_idle
            } else {
                entry.flags & CONN_F_CLOSED == 0
            };
            if entry.dir == DIR_FORWARD && open {
                *active.entry(entry.backend_id).or_insert(0) += 1;
            }
        };
        each_entry(&self.conns, &mut count);
        Ok(active)
    }

    /// Calls `f` on every entry of the connection table and then of the probation table
    /// (`true` for those).
    pub fn each_flow(&self, mut f: impl FnMut(&FlowKey, &ConnEntry, bool)) {
        each_entry(&self.conns, &mut |k, e| f(k, e, false));
        each_entry(&self.probation, &mut |k, e| f(k, e, true));
    }

    /// The data path's clock now, in its time units (2^`TIME_UNIT_SHIFT` ns).
    pub fn clock(&self) -> Result<u32> {
        coarse_now()
    }

    /// The UDP idle timeout, in data-path time units.
    pub fn udp_idle(&self) -> u32 {
        self.udp_idle
    }
}

/// Calls `f` on every entry of `table`: in batches, or a walk of two syscalls per entry where
/// the kernel lacks batch lookups (an entry evicted during the walk is skipped).
fn each_entry(table: &FlowTable, f: &mut impl FnMut(&FlowKey, &ConnEntry)) {
    if each_batched(table, &mut *f).is_err() {
        for (key, entry) in table.iter().flatten() {
            f(&key, &entry);
        }
    }
}

/// Calls `f` on every entry of `table`, read with `BPF_MAP_LOOKUP_BATCH`. An error
/// means the kernel refused batches before any entry was seen.
fn each_batched(table: &FlowTable, mut f: impl FnMut(&FlowKey, &ConnEntry)) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = aya::maps::IterableMap::map(table).fd().as_fd().as_raw_fd();
    let mut keys = vec![FlowKey::default(); CONN_BATCH];
    let mut values = vec![ConnEntry::default(); CONN_BATCH];
    // Hash maps use a u32 bucket index as the batch token; u64 leaves room.
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::addr_of_mut!(token_in) as u64
            },
            out_batch: std::ptr::addr_of_mut!(token_out) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CONN_BATCH as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `keys` and `values` hold `count` elements of the map's key and value types
        // (sizes asserted in lb-common), and the tokens outlive the call.
        let done = match unsafe { batch(BatchCmd::Lookup, &mut attr) } {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if first => return Err(fail("batch lookup of a flow table", e)),
            // A later failure (the table changed under us): what was read stands.
            Err(_) => return Ok(()),
        };
        let n = (attr.count as usize).min(CONN_BATCH);
        for (k, v) in keys[..n].iter().zip(&values[..n]) {
            f(k, v);
        }
        if done {
            return Ok(());
        }
        token_in = token_out;
        first = false;
    }
}

/// Flow-table entries read per batch syscall.
const CONN_BATCH: usize = 4096;

/// `CLOCK_MONOTONIC_COARSE` (the clock of `bpf_ktime_get_coarse_ns`) in data-path time units.
fn coarse_now() -> Result<u32> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .context("reading CLOCK_MONOTONIC_COARSE")?;
    let ns = t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64;
    Ok((ns >> lb_common::TIME_UNIT_SHIFT) as u32)
}
