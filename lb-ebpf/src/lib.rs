//! What the XDP objects of this crate share: bounds-checked packet access.
#![no_std]

pub mod packet;
