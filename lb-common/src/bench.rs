//! Maps of the bench object (`lb-bench`), which measures `lb_xdp` and `lb_tc` with
//! BPF_PROG_TEST_RUN.
/// Length of every bench frame, in bytes (frames are padded to it).
pub const FRAME_LEN: usize = 128;
/// `Array<BenchFrame>` with one element: the frame each iteration starts from.
pub const FRAME_MAP: &str = "BENCH_FRAME";
/// `ProgramArray` with one slot: the program under test.
pub const TARGET_MAP: &str = "BENCH_TARGET";
/// `ProgramArray` with one slot: the tc program under test.
pub const TC_TARGET_MAP: &str = "BENCH_TC_TARGET";
/// `PerCpuArray<u32>` with one element: iteration counter for varied source addresses.
pub const SEQ_MAP: &str = "BENCH_SEQ";

/// The value of `BENCH_FRAME`. 136 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BenchFrame {
    /// Byte offset of a 32-bit field (an IPv4 source address) that gets the iteration
    /// counter, network byte order, so each iteration is a new flow from a new source; 0 =
    /// leave the frame as is.
    pub vary_off: u32,
    /// Always zero.
    pub _pad: u32,
    /// The frame.
    pub bytes: [u8; FRAME_LEN],
}
const _: () = assert!(core::mem::size_of::<BenchFrame>() == 136);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integers and a byte array only, no implicit padding.
unsafe impl aya::Pod for BenchFrame {}
