//! What a change of a VIP's backend set would do to its table, before it is made: the share of
//! the table (so of new flows) that would move, overall and per backend.
use std::{collections::BTreeMap, net::SocketAddr};

use super::{maglev::Member, weights::SCALE};
use crate::model::{
    config::{BackendConfig, TableKind},
    wire::{BackendPlan, Plan},
};

/// Builds the `kind` table of a backend set at its configured weights (as ring weights),
/// labelling members by their index in `all`.
fn table(kind: TableKind, set: &[BackendConfig], all: &[SocketAddr], size: u32) -> Vec<u32> {
    let members: Vec<Member> = set
        .iter()
        .map(|b| Member {
            id: all.iter().position(|a| *a == b.socket_addr()).unwrap_or(0) as u32 + 1,
            addr: b.socket_addr(),
            weight: b.weight.saturating_mul(SCALE as u32),
        })
        .collect();
    super::table(kind, &members, size)
}

/// Compares the `kind` tables of `before` and `after` (the same VIP, `size` slots).
pub fn plan(
    vip: &str,
    kind: TableKind,
    before: &[BackendConfig],
    after: &[BackendConfig],
    size: u32,
) -> Plan {
    let mut all: Vec<SocketAddr> = before
        .iter()
        .chain(after)
        .map(BackendConfig::socket_addr)
        .collect();
    all.sort();
    all.dedup();
    let old = table(kind, before, &all, size);
    let new = table(kind, after, &all, size);
    let n = f64::from(size);
    let mut stats: BTreeMap<u32, [u32; 4]> = BTreeMap::new();
    for (o, w) in old.iter().zip(&new) {
        stats.entry(*o).or_default()[0] += 1;
        stats.entry(*w).or_default()[1] += 1;
        if o != w {
            stats.entry(*o).or_default()[2] += 1;
            stats.entry(*w).or_default()[3] += 1;
        }
    }
    let backends = all
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let s = stats.get(&(i as u32 + 1)).copied().unwrap_or_default();
            BackendPlan {
                backend: *addr,
                share_before: f64::from(s[0]) / n,
                share_after: f64::from(s[1]) / n,
                moves_away: f64::from(s[2]) / n,
                moves_in: f64::from(s[3]) / n,
            }
        })
        .collect();
    Plan {
        vip: vip.to_string(),
        ring_size: size,
        moved_share: super::maglev::moved_share(&old, &new),
        backends,
        applied: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: u8, weight: impl Fn(u8) -> u32) -> Vec<BackendConfig> {
        (1..=n)
            .map(|i| BackendConfig {
                addr: std::net::IpAddr::from([10, 0, 0, i]),
                port: 8080,
                weight: weight(i),
            })
            .collect()
    }

    #[test]
    fn moved_share_equals_the_table_difference() {
        let before = set(10, |_| 1);
        let after = set(11, |_| 1);
        let p = plan("web", TableKind::Maglev, &before, &after, 4093);
        let old = table(
            TableKind::Maglev,
            &before,
            &after.iter().map(|b| b.socket_addr()).collect::<Vec<_>>(),
            4093,
        );
        let new = table(
            TableKind::Maglev,
            &after,
            &after.iter().map(|b| b.socket_addr()).collect::<Vec<_>>(),
            4093,
        );
        let differing = old.iter().zip(&new).filter(|(a, b)| a != b).count();
        assert_eq!(p.moved_share, differing as f64 / 4093.0);
        let away: f64 = p.backends.iter().map(|b| b.moves_away).sum();
        let gained: f64 = p.backends.iter().map(|b| b.moves_in).sum();
        assert!((away - p.moved_share).abs() < 1e-12 && (gained - p.moved_share).abs() < 1e-12);
        let newcomer = p
            .backends
            .iter()
            .find(|b| b.backend.ip() == std::net::IpAddr::from([10, 0, 0, 11]))
            .unwrap();
        assert_eq!(newcomer.share_before, 0.0);
        assert!((newcomer.share_after - 1.0 / 11.0).abs() < 0.01);
    }

    #[test]
    fn draining_moves_exactly_the_drained_backends_share() {
        let before = set(4, |_| 1);
        let after = set(4, |i| u32::from(i != 4));
        let p = plan("web", TableKind::Maglev, &before, &after, 4093);
        let drained = &p.backends[3];
        assert_eq!(drained.share_after, 0.0);
        assert_eq!(drained.moves_away, drained.share_before);
        assert!(p.moved_share >= drained.share_before);
    }

    #[test]
    fn no_change_moves_nothing() {
        let before = set(5, u32::from);
        let p = plan("web", TableKind::Maglev, &before, &before, 1021);
        assert_eq!(p.moved_share, 0.0);
        assert!(p
            .backends
            .iter()
            .all(|b| b.moves_in == 0.0 && b.moves_away == 0.0));
    }
}
