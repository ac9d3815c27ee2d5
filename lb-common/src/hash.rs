//! The seeded flow hash and the per-flow DSR outer source, shared so that tests and `lbctl
//! plan` predict the data path exactly.

use crate::FlowKey;

/// DSR outer source addresses: IPv4 `172.16.X.Y` and IPv6 `fd00:0:0:ffff::XY`, where the low
/// 16 bits are [`encap_source_low`] of the flow, so receivers spreading by outer addresses
/// (RSS) spread flows while one flow stays on one queue.
pub const ENCAP_SRC_V4_PREFIX: [u8; 2] = [172, 16];
/// First 14 bytes of the IPv6 DSR outer source (the last two are per flow).
pub const ENCAP_SRC_V6_PREFIX: [u8; 14] = [0xfd, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0];

/// The per-flow low 16 bits of a DSR outer source: a fold of the client address and port.
#[inline(always)]
pub const fn encap_source_low(key: &FlowKey) -> u16 {
    let x = key.src[0] ^ key.src[1] ^ key.src[2] ^ key.src[3];
    ((x ^ (x >> 16)) as u16) ^ key.sport
}

/// The flow hash: seeded MurmurHash3 (x86, 32-bit) over the key's ten 32-bit words. Shared by
/// the data path and the controller so tests and `lbctl plan` predict the data path exactly.
#[inline(always)]
pub fn flow_hash(seed: u32, key: &FlowKey) -> u32 {
    // Word by word, without building an array: the BPF stack is 512 bytes in all.
    #[inline(always)]
    fn mix(h: u32, word: u32) -> u32 {
        let k = word
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    }
    let mut h = seed;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, (u32::from(key.sport) << 16) | u32::from(key.dport));
    h = mix(h, u32::from(key.proto) | (u32::from(key.family) << 8));
    h ^= 40;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
