//! The map ABI shared by the XDP programs (`lb-ebpf`) and the controller (`lb-userspace`), and
//! the single home of the protocol constants both sides use.
//!
//! Every key and value is `#[repr(C)]`, has explicit padding fields (always written as zero, so
//! hash keys compare byte-for-byte), holds only integers, and has a compile-time size assertion.
//! Addresses are stored as `[u32; 4]` whose words hold the raw packet bytes (network byte order in
//! memory): an IPv4 address fills word 0 and leaves words 1..3 zero. Ports are network byte order.
#![no_std]

mod abi;
pub mod bench;
mod encode;
mod hash;
mod names;
mod proto;
mod reason;
mod trace;

pub use abi::*;
pub use encode::{addr_words, family, words_addr};
pub use hash::*;
pub use names::*;
pub use proto::*;
pub use reason::*;
pub use trace::*;

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map type, so the controller can read and write them.
    // SAFETY: each type is `#[repr(C)]`, made only of integers, with explicit padding fields, so
    // every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VipMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NextHop {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrafficStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TraceCtl {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TraceRecord {}
}
