//! What the XDP objects of this crate share: bounds-checked packet access, the panic handler.
#![no_std]

pub mod packet;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is never executed.
    loop {}
}
