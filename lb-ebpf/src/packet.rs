//! The only module that touches raw packet pointers: bounds-checked access to the packet of
//! either hook (an XDP frame or a tc socket buffer), through [`Frame`].
use aya_ebpf::programs::{TcContext, XdpContext};
use lb_common::Reason;

/// Where a hook's packet data starts and ends (addresses the verifier tracks).
pub trait Frame {
    /// Address of the first byte.
    fn start(&self) -> usize;
    /// Address one past the last byte directly readable.
    fn end(&self) -> usize;
    /// Bytes of the whole packet as it goes on the wire (a tc buffer may hold more than its
    /// directly readable head).
    fn wire_len(&self) -> usize {
        self.end() - self.start()
    }
}

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.len() as usize
    }
}

/// Pointer to a `T` at byte `offset` of the packet, or `DropMalformed` if it does not fit.
#[inline(always)]
pub fn ptr_at<T, F: Frame>(ctx: &F, offset: usize) -> Result<*mut T, Reason> {
    let start = ctx.start();
    let end = ctx.end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Reason::DropMalformed);
    }
    Ok((start + offset) as *mut T)
}

/// Copy of the `T` at byte `offset` of the packet.
#[inline(always)]
pub fn load<T: Copy, F: Frame>(ctx: &F, offset: usize) -> Result<T, Reason> {
    let p = ptr_at::<T, F>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` lie inside the packet; the
    // read is unaligned because packet headers have no alignment guarantee.
    Ok(unsafe { core::ptr::read_unaligned(p) })
}

/// Overwrites the `T` at byte `offset` of the packet.
#[inline(always)]
pub fn store<T, F: Frame>(ctx: &F, offset: usize, value: T) -> Result<(), Reason> {
    let p = ptr_at::<T, F>(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable, and a tc program that
    // writes gets its buffer made writable by the kernel first; unaligned as above.
    unsafe { core::ptr::write_unaligned(p, value) };
    Ok(())
}

/// Bytes directly readable.
#[inline(always)]
pub fn len<F: Frame>(ctx: &F) -> usize {
    ctx.end() - ctx.start()
}
