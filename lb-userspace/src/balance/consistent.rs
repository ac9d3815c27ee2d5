//! A consistent table (`table = "consistent"`): rendezvous hashing over Maglev's permutations.
//! Each backend walks its own pseudo-random permutation of the slots, as in Maglev, but a slot
//! goes to whichever backend's permutation reaches it first (ties by a fixed order), however
//! full the table is. The owner of a slot is then a function of the slot and the backend set
//! alone, so adding or removing a backend moves exactly the slots it gains or loses: the
//! minimum, 1/N of the table. The price is balance: shares are binomial, about ±√(N/M) of
//! the mean (1.5% at 1,000 backends and 4,194,301 slots), where Maglev's are exact. Weights
//! are virtual backends: [`VIRTUAL_PER_UNIT`] per unit of configured weight, each with a
//! permutation of its own, so a weight change moves only that backend's slots. Pure and
//! deterministic, integers only: every host builds the same table.
use lb_common::BACKEND_NONE;

use super::{maglev::Member, weights::SCALE};

/// Virtual backends per unit of configured weight (ring weight `SCALE`): weights resolve to
/// 1/32 of a unit.
pub const VIRTUAL_PER_UNIT: u64 = 32;
/// Most virtual backends in one table; past it every count is halved until they fit.
const MAX_VIRTUAL: u64 = 1 << 20;

/// One virtual backend: its permutation (offset and step) and the id it writes.
struct Walker {
    id: u32,
    offset: u64,
    skip: u64,
}

/// 64-bit FNV-1a and a SplitMix64 finaliser over an address, a port and a salt.
fn hash(m: &Member, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let bytes: Vec<u8> = match m.addr {
        std::net::SocketAddr::V4(a) => a.ip().octets().to_vec(),
        std::net::SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    for b in bytes.iter().chain(&m.addr.port().to_be_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `base^exp mod m`.
fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1u64;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    acc
}

/// Virtual backends per member: its ring weight at [`VIRTUAL_PER_UNIT`] per unit, at least
/// one while the weight is above zero, all halved until the total fits [`MAX_VIRTUAL`].
fn virtual_counts(members: &[Member]) -> Vec<u64> {
    let mut counts: Vec<u64> = members
        .iter()
        .map(|m| {
            let scaled = u64::from(m.weight) * VIRTUAL_PER_UNIT;
            if m.weight == 0 {
                0
            } else {
                ((scaled + SCALE as u64 / 2) / SCALE as u64).max(1)
            }
        })
        .collect();
    while counts.iter().sum::<u64>() > MAX_VIRTUAL {
        for c in &mut counts {
            if *c > 1 {
                *c = c.div_ceil(2);
            }
        }
    }
    counts
}

/// Builds a consistent table of `size` slots (a prime) from `members` (ring weights, at
/// `SCALE` per unit of configured weight). Every slot holds a member id, or
/// [`BACKEND_NONE`] everywhere if no member has a weight.
pub fn build(members: &[Member], size: u32) -> Vec<u32> {
    fill(members, size, None)
}

/// [`build`], settling directly once `direct_below` slots are left (default: the table size
/// over the number of walkers, where the two ways cost about the same).
fn fill(members: &[Member], size: u32, direct_below: Option<u64>) -> Vec<u32> {
    let m = u64::from(size);
    let mut table = vec![BACKEND_NONE; size as usize];
    if size < 2 {
        return table;
    }
    let mut walkers: Vec<(u64, Walker)> = Vec::new();
    for (member, count) in members.iter().zip(virtual_counts(members)) {
        for j in 0..count {
            let rank = hash(member, 3 * j);
            walkers.push((
                rank,
                Walker {
                    id: member.id,
                    offset: hash(member, 3 * j + 1) % m,
                    skip: hash(member, 3 * j + 2) % (m - 1) + 1,
                },
            ));
        }
    }
    if walkers.is_empty() {
        return table;
    }
    // The turn order within a round: fixed by identity, not by the caller's order.
    walkers.sort_by_key(|(rank, w)| (*rank, w.offset, w.skip, w.id));
    let walkers: Vec<Walker> = walkers.into_iter().map(|(_, w)| w).collect();
    // Round r: every walker proposes the r-th slot of its permutation and takes it if free.
    // A slot thus goes to the walker with the smallest (position, turn). Once few slots are
    // left, they are settled directly, walker by walker.
    let left_for_direct = direct_below.unwrap_or((m / walkers.len() as u64).max(1));
    let mut next: Vec<u64> = walkers.iter().map(|w| w.offset).collect();
    let mut unfilled = m;
    let mut rounds = 0u64;
    while unfilled > left_for_direct && rounds < m {
        for (w, slot) in walkers.iter().zip(next.iter_mut()) {
            let s = *slot as usize;
            if table[s] == BACKEND_NONE {
                table[s] = w.id;
                unfilled -= 1;
            }
            *slot += w.skip;
            if *slot >= m {
                *slot -= m;
            }
        }
        rounds += 1;
    }
    if unfilled == 0 {
        return table;
    }
    // Position of slot s in a walker's permutation: (s - offset) / skip mod m.
    let inverse: Vec<u64> = walkers.iter().map(|w| pow_mod(w.skip, m - 2, m)).collect();
    for (s, owner) in table.iter_mut().enumerate() {
        if *owner != BACKEND_NONE {
            continue;
        }
        let s = s as u64;
        let mut best = (u64::MAX, 0u32);
        for (w, inv) in walkers.iter().zip(&inverse) {
            let pos = (s + m - w.offset) % m * inv % m;
            if pos < best.0 {
                best = (pos, w.id);
            }
        }
        *owner = best.1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::maglev::{
        moved_share,
        tests::{members, shares},
    };
    use std::net::SocketAddr;

    /// Rounds and direct settling are two ways to the same table: filled by rounds alone,
    /// settled directly alone, or both, every slot goes to the first walker to reach it.
    #[test]
    fn every_slot_goes_to_the_first_walker_to_reach_it() {
        let ms = members(7, |i| 100 * i);
        let table = build(&ms, 4093);
        assert!(table.iter().all(|&id| id != BACKEND_NONE));
        assert_eq!(table, fill(&ms, 4093, Some(0)), "rounds alone");
        assert_eq!(table, fill(&ms, 4093, Some(4093)), "directly alone");
        let mut a = ms.clone();
        a.reverse();
        assert_eq!(table, build(&a, 4093), "order does not matter");
    }

    /// The disruption target at 1,000 backends, at the ring size the README recommends for
    /// them: a removal or an addition moves at most 1.05 × 1/N of the table.
    #[test]
    fn removing_or_adding_one_of_a_thousand_moves_its_share_only() {
        let size = 4_194_301;
        let all = members(1000, |_| 100);
        let before = build(&all, size);
        let max = *shares(&before).values().max().unwrap() as f64;
        let mean = f64::from(size) / 1000.0;
        assert!(
            max / mean <= 1.05,
            "balance at this size: max/mean {}",
            max / mean
        );
        for k in [0usize, 999] {
            let mut rest = all.clone();
            rest.remove(k);
            let moved = moved_share(&before, &build(&rest, size)) * 1000.0;
            assert!(
                (0.9..=1.05).contains(&moved),
                "remove {k}: moved {moved:.3}/N"
            );
        }
        let mut more = all.clone();
        more.push(Member {
            id: 1001,
            addr: SocketAddr::from(([10, 99, 99, 2], 8080)),
            weight: 100,
        });
        let moved = moved_share(&before, &build(&more, size)) * 1001.0;
        assert!((0.9..=1.05).contains(&moved), "add: moved {moved:.3}/(N+1)");
    }

    #[test]
    fn shares_are_binomial_and_weights_proportional() {
        let s = shares(&build(&members(100, |_| 100), 1_048_573));
        let mean = 1_048_573.0 / 100.0;
        let max = *s.values().max().unwrap() as f64;
        assert!(max / mean <= 1.05, "max/mean {}", max / mean);
        let ms = members(3, |i| [200, 300, 500][i as usize - 1]);
        let s = shares(&build(&ms, 262_139));
        for m in &ms {
            let want = 262_139.0 * f64::from(m.weight) / 1000.0;
            let got = s[&m.id] as f64;
            assert!((got - want).abs() / want <= 0.02, "{m:?}: {got} vs {want}");
        }
    }

    #[test]
    fn a_weight_change_moves_slots_to_or_from_that_backend_only() {
        let mut ms = members(50, |_| 100);
        let before = build(&ms, 65537);
        ms[7].weight = 200;
        let after = build(&ms, 65537);
        for (a, b) in before.iter().zip(&after) {
            assert!(
                a == b || *b == ms[7].id,
                "a slot moved between two other backends"
            );
        }
        assert!(moved_share(&before, &after) > 0.01);
    }

    #[test]
    fn drained_backends_take_no_slots() {
        let mut ms = members(4, |_| 100);
        ms[0].weight = 0;
        assert!(!build(&ms, 4093).contains(&ms[0].id));
        let drained = members(4, |_| 0);
        assert!(build(&drained, 4093).iter().all(|&id| id == BACKEND_NONE));
    }
}
