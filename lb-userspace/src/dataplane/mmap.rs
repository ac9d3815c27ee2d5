//! A `BPF_F_MMAPABLE` array map mapped into the controller's memory, so a whole ring or the
//! prefilter bitmaps are written with plain stores instead of one syscall per slot.
use std::{ffi::c_void, os::fd::AsFd, ptr::NonNull};

use aya::maps::MapData;
use lb_common::MMAP_ELEM;

use crate::sys::error::{fail, Context, Result};

/// The mmap-ed values of a `BPF_F_MMAPABLE` array map whose values take 8 bytes each
/// (`LB_RINGS`, `LB_FILTER`).
pub(super) struct MmapArray {
    base: NonNull<u8>,
    len: usize,
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory owned by this value; access goes through `&mut`.
unsafe impl Send for MmapArray {}

impl MmapArray {
    /// Maps the `entries` 8-byte elements of `data`.
    pub(super) fn map(data: MapData, entries: u32) -> Result<Self> {
        let len = entries as usize * MMAP_ELEM;
        // SAFETY: mapping a BPF_F_MMAPABLE array map's fd, shared and read-write, at an address
        // the kernel chooses; `len` is exactly the map's value area.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&data.fd().as_fd()),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(fail(
                "mmap of an array map",
                std::io::Error::last_os_error(),
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>()).context("mmap of an array map")?;
        Ok(MmapArray {
            base,
            len,
            _map: data,
        })
    }

    /// Stores `values` as consecutive `u32`s from the `first`-th (two to an element).
    pub(super) fn write_u32(&mut self, first: u32, values: &[u32]) {
        for (i, v) in values.iter().enumerate() {
            let off = (first as usize + i) * 4;
            assert!(off + 4 <= self.len, "mmap write out of bounds");
            // SAFETY: `off + 4 <= len` keeps the store inside the mapping; `u32`s are 4-aligned.
            unsafe { self.base.as_ptr().add(off).cast::<u32>().write_volatile(*v) };
        }
    }

    /// Stores `values` into consecutive 8-byte entries from 0; each store is one atomic
    /// 64-bit write.
    pub(super) fn write_u64(&mut self, values: &[u64]) {
        for (i, v) in values.iter().enumerate() {
            let off = i * MMAP_ELEM;
            assert!(off + 8 <= self.len, "mmap write out of bounds");
            // SAFETY: `off + 8 <= len` keeps the store inside the mapping; entries are 8-aligned.
            unsafe { self.base.as_ptr().add(off).cast::<u64>().write_volatile(*v) };
        }
    }
}

impl Drop for MmapArray {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `map` mapped; nothing refers to it afterwards.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}
