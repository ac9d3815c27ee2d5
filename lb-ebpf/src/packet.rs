//! The only module that touches raw packet pointers: bounds-checked access to the frame.
use aya_ebpf::programs::XdpContext;
use lb_common::Reason;

/// Pointer to a `T` at byte `offset` of the frame, or `DropMalformed` if it does not fit.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Reason::DropMalformed);
    }
    Ok((start + offset) as *mut T)
}

/// Copy of the `T` at byte `offset` of the frame.
#[inline(always)]
pub fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, Reason> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` lie inside the frame; the
    // read is unaligned because packet headers have no alignment guarantee.
    Ok(unsafe { core::ptr::read_unaligned(p) })
}

/// Overwrites the `T` at byte `offset` of the frame.
#[inline(always)]
pub fn store<T>(ctx: &XdpContext, offset: usize, value: T) -> Result<(), Reason> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable; unaligned as above.
    unsafe { core::ptr::write_unaligned(p, value) };
    Ok(())
}

/// Length of the frame in bytes.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
