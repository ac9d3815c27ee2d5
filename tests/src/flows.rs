//! Filling and emptying a flow table from userspace, as a scale test and the benchmark do:
//! synthetic flow keys, batch updates and deletes (`BPF_MAP_UPDATE_BATCH`,
//! `BPF_MAP_DELETE_BATCH`), and pinning to a CPU (an LRU table with a list per CPU gives each
//! CPU a share, and an insert takes room from the inserting CPU's).
use lb_common::{addr_words, ConnEntry, FlowKey, FAMILY_V4, PROTO_TCP};
use lb_userspace::sys::bpf_batch::{batch, BatchAttr, BatchCmd};

/// Keys written per batch syscall.
pub const BATCH: usize = 65_536;

/// The key of synthetic flow `i` to `vip`:80: client 10.64.0.0/10 + i / 64512, port
/// 1024 + i % 64512.
pub fn flow_key(i: u32, vip: std::net::Ipv4Addr) -> FlowKey {
    let host = 0x0a40_0000 + i / 64_512;
    let port = 1024 + (i % 64_512) as u16;
    FlowKey {
        src: addr_words(std::net::Ipv4Addr::from(host).into()),
        dst: addr_words(vip.into()),
        sport: port.to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Runs batch command `cmd` on the map behind `fd` over `keys` (and `values`, or none).
fn run_batch(cmd: BatchCmd, fd: i32, keys: &[FlowKey], values: Option<&[ConnEntry]>) {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.map_or(0, |v| v.as_ptr() as u64),
        count: keys.len() as u32,
        map_fd: fd as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `keys` (and `values`) hold `count` elements of the map's key and value types
    // and outlive the call; updates and deletes only read them.
    let done = unsafe { batch(cmd, &mut attr) };
    if let Err(e) = done {
        panic!("batch {cmd:?}: {e} after {} entries", attr.count);
    }
}

/// Writes every key of `keys` with `value` into the table behind `fd`, in batches.
pub fn insert_all(fd: i32, keys: &[FlowKey], value: &ConnEntry) {
    let values = vec![*value; BATCH.min(keys.len())];
    for chunk in keys.chunks(BATCH) {
        run_batch(BatchCmd::Update, fd, chunk, Some(&values[..chunk.len()]));
    }
}

/// Deletes every key of `keys` (each present) from the table behind `fd`, in batches.
pub fn delete_all(fd: i32, keys: &[FlowKey]) {
    for chunk in keys.chunks(BATCH) {
        run_batch(BatchCmd::Delete, fd, chunk, None);
    }
}

/// CPUs the kernel may bring up (`/sys/devices/system/cpu/possible`, e.g. `0-1`): the LRU
/// lists split a table among them.
pub fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let count = |r: &str| match r.split_once('-') {
        Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
        None => r.parse::<usize>().ok().map(|_| 1),
    };
    text.trim()
        .split(',')
        .map(|r| count(r).unwrap_or(1))
        .sum::<usize>()
        .max(1)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}
