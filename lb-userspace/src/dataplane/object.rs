//! The embedded `lb-ebpf` object and how it is loaded.
use std::path::Path;

use crate::sys::error::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use lb_common::{map_names, HASH_SEED_GLOBAL, NEW_FLOW_LIMIT_GLOBAL, UDP_IDLE_GLOBAL};

/// The `lb-ebpf` ELF object, built by this crate's build script.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf.o"));

/// The decap object (`lb_decap`) that backend hosts of DSR VIPs attach.
pub static DECAP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap.o"));

/// Settings fixed when the program is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Flow hash seed (the same on every balancer host of a fleet).
    pub hash_seed: u32,
    /// UDP flows idle longer than this many seconds are balanced afresh.
    pub udp_idle_timeout_s: u32,
    /// New flows one CPU records in the connection table per second (0 = no limit); past it
    /// they go on probation until their second packet.
    pub max_new_flows_per_cpu: u32,
    /// Flows the connection table holds (NAT flows take two entries of `LB_CONNS`, so it gets
    /// twice as many; the probation table a quarter of that).
    pub max_flows: u32,
    /// Slots of `LB_RINGS` (every VIP takes two buffers of its ring size).
    pub ring_slots: u32,
}

impl LoadOptions {
    /// Entries of `LB_CONNS`.
    pub fn conns_entries(&self) -> u32 {
        self.max_flows.saturating_mul(2)
    }

    /// Entries of `LB_PROBATION`.
    pub fn probation_entries(&self) -> u32 {
        (self.conns_entries() / 4).max(lb_common::MAX_PROBATION)
    }
}

/// `seconds` in the data path's time unit (2^`TIME_UNIT_SHIFT` ns), rounded up.
pub fn time_units(seconds: u32) -> u32 {
    let unit = 1u64 << lb_common::TIME_UNIT_SHIFT;
    (u64::from(seconds) * 1_000_000_000).div_ceil(unit) as u32
}

/// A per-second rate as a count per data-path time unit (2^`TIME_UNIT_SHIFT` ns), rounded up.
fn per_time_unit(per_second: u32) -> u32 {
    let unit = 1u64 << lb_common::TIME_UNIT_SHIFT;
    (u64::from(per_second) * unit).div_ceil(1_000_000_000) as u32
}

/// Loads the object with its maps pinned under `pin_dir` (existing pins are adopted, so a
/// restarted controller keeps the flow table) and the load-time settings.
pub fn load(pin_dir: &Path, opts: LoadOptions) -> Result<Ebpf> {
    ensure_bpffs()?;
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("creating pin directory {}", pin_dir.display()))?;
    EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries(map_names::CONNS, opts.conns_entries())
        .map_max_entries(map_names::PROBATION, opts.probation_entries())
        .map_max_entries(map_names::RINGS, opts.ring_slots / 2)
        .override_global(HASH_SEED_GLOBAL, &opts.hash_seed, true)
        .override_global(UDP_IDLE_GLOBAL, &time_units(opts.udp_idle_timeout_s), true)
        .override_global(
            NEW_FLOW_LIMIT_GLOBAL,
            &per_time_unit(opts.max_new_flows_per_cpu),
            true,
        )
        .load(OBJECT)
        .context("loading the lb-ebpf object (needs root: CAP_BPF and CAP_NET_ADMIN)")
}

/// Mounts the BPF filesystem at /sys/fs/bpf if it is not there yet.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        "/sys/fs/bpf",
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("mounting bpffs at /sys/fs/bpf")
}
