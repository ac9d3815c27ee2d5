//! Internet checksums: incremental updates (RFC 1624: HC' = ~(~HC + ~m + m')) and sums of
//! fresh headers.

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum `check` (as stored, any byte order) after a 16-bit field changes from `old` to
/// `new` (same byte order as `check`).
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// Checksum `check` after a 32-bit field (raw packet bytes read as a native u32) changes.
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let check = replace2(check, old as u16, new as u16);
    replace2(check, (old >> 16) as u16, (new >> 16) as u16)
}

/// The checksum field (native order, to store as is) for a running sum.
#[inline(always)]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}
