//! Encoding of addresses and services into the map types, for the controller and the tests:
//! one place that knows that an address is stored as raw network-order words and ports in
//! network byte order.
use core::net::{IpAddr, SocketAddr};

use crate::{Backend, VipKey, FAMILY_V4, FAMILY_V6};

/// Raw network-order words of an address, as the maps store them (IPv4 in word 0).
pub fn addr_words(addr: IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// The address stored as `words` under `family` ([`FAMILY_V4`]: word 0 only).
pub fn words_addr(family: u8, words: &[u32; 4]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from(words[0].to_ne_bytes())
    } else {
        let mut a = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            a[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(a)
    }
}

/// The family tag of an address.
pub fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        FAMILY_V4
    } else {
        FAMILY_V6
    }
}

impl VipKey {
    /// The key of a service: `addr`, `port` (host order) and IP protocol `proto`.
    pub fn new(addr: IpAddr, port: u16, proto: u8) -> Self {
        VipKey {
            addr: addr_words(addr),
            port: port.to_be(),
            proto,
            family: family(addr),
        }
    }
}

impl Backend {
    /// The record of a backend listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Backend {
            addr: addr_words(addr.ip()),
            port: addr.port().to_be(),
            family: family(addr.ip()),
            _pad: 0,
        }
    }

    /// Where the backend of this record listens.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(words_addr(self.family, &self.addr), u16::from_be(self.port))
    }
}
