//! The kernel's batch commands on BPF maps (`BPF_MAP_LOOKUP_BATCH` and friends), which aya does
//! not wrap: many entries per `bpf` syscall.

/// A batch command of the `bpf` syscall (`enum bpf_cmd`, include/uapi/linux/bpf.h).
#[derive(Clone, Copy, Debug)]
pub enum BatchCmd {
    /// Reads up to `count` entries from the position `in_batch` names.
    Lookup = 24,
    /// Writes `count` keys with their values.
    Update = 26,
    /// Deletes `count` keys.
    Delete = 27,
}

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h): pointers as u64, host byte
/// order.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BatchAttr {
    /// The token to resume from (lookups; 0 = the start).
    pub in_batch: u64,
    /// Where the kernel writes the token to resume from (lookups).
    pub out_batch: u64,
    /// The keys buffer.
    pub keys: u64,
    /// The values buffer (0 for deletes).
    pub values: u64,
    /// Entries in the buffers; on return, entries the kernel handled.
    pub count: u32,
    /// The map.
    pub map_fd: u32,
    /// Flags per element (`BPF_F_LOCK`); 0 here.
    pub elem_flags: u64,
    /// Command flags; 0 here.
    pub flags: u64,
}

/// Runs `cmd` with `attr`; `attr.count` then says how many entries the kernel handled (also
/// on an error).
///
/// # Safety
/// `attr.keys` and `attr.values` (when not 0) point to buffers of at least `attr.count`
/// elements of the map's key and value types, and `in_batch`/`out_batch` (when not 0) to u64
/// tokens; all valid for the call, and writable where the kernel writes (lookups).
pub unsafe fn batch(cmd: BatchCmd, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is the kernel's layout and outlives the call; the buffers it points to
    // are the caller's promise above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
