//! Tier 1: the shared map ABI has the sizes and offsets both sides rely on.
use core::mem::{offset_of, size_of};

use lb_common::*;

#[test]
fn vip_key_layout() {
    assert_eq!(size_of::<VipKey>(), 20);
    assert_eq!(offset_of!(VipKey, addr), 0);
    assert_eq!(offset_of!(VipKey, port), 16);
    assert_eq!(offset_of!(VipKey, proto), 18);
    assert_eq!(offset_of!(VipKey, family), 19);
}

#[test]
fn vip_meta_layout() {
    assert_eq!(size_of::<VipMeta>(), 20);
    assert_eq!(offset_of!(VipMeta, vip_id), 0);
    assert_eq!(offset_of!(VipMeta, ring), 4);
    assert_eq!(offset_of!(VipMeta, mode), 8);
    assert_eq!(offset_of!(VipMeta, base), 12);
}

#[test]
fn backend_layout() {
    assert_eq!(size_of::<Backend>(), 20);
    assert_eq!(offset_of!(Backend, addr), 0);
    assert_eq!(offset_of!(Backend, port), 16);
    assert_eq!(offset_of!(Backend, family), 18);
}

#[test]
fn flow_key_layout() {
    assert_eq!(size_of::<FlowKey>(), 40);
    assert_eq!(offset_of!(FlowKey, src), 0);
    assert_eq!(offset_of!(FlowKey, dst), 16);
    assert_eq!(offset_of!(FlowKey, sport), 32);
    assert_eq!(offset_of!(FlowKey, dport), 34);
    assert_eq!(offset_of!(FlowKey, proto), 36);
    assert_eq!(offset_of!(FlowKey, family), 37);
}

#[test]
fn conn_entry_layout() {
    assert_eq!(size_of::<ConnEntry>(), 36);
    assert_eq!(offset_of!(ConnEntry, backend_id), 0);
    assert_eq!(offset_of!(ConnEntry, vip_id), 4);
    assert_eq!(offset_of!(ConnEntry, last_seen), 8);
    assert_eq!(offset_of!(ConnEntry, nh), 12);
    assert_eq!(offset_of!(ConnEntry, dir), 32);
    assert_eq!(offset_of!(ConnEntry, flags), 33);
}

#[test]
fn next_hop_layout() {
    assert_eq!(size_of::<NextHop>(), 20);
    assert_eq!(offset_of!(NextHop, ifindex), 0);
    assert_eq!(offset_of!(NextHop, epoch), 4);
    assert_eq!(offset_of!(NextHop, mtu), 6);
    assert_eq!(offset_of!(NextHop, dmac), 8);
    assert_eq!(offset_of!(NextHop, smac), 14);
}

#[test]
fn reasons_are_dense_and_named_uniquely() {
    for (i, r) in Reason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{r:?} is out of order");
    }
    let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), NUM_REASONS as usize);
}

#[test]
fn ring_sizes_are_primes_up_to_over_a_million_and_slots_follow_the_live_buffer() {
    let prime = |n: u32| {
        n > 1
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    };
    assert!(
        RING_SIZES.iter().all(|&s| s <= RING_MAX && prime(s)),
        "{RING_SIZES:?}"
    );
    assert!(RING_SIZES.iter().any(|&s| s >= 1_000_000));
    const { assert!(MAX_VIPS >= 512) };
    let meta = VipMeta {
        base: [100, 5000],
        ..VipMeta::default()
    };
    assert_eq!(meta.slot(7), 107, "buffer 0 live");
    let flipped = VipMeta {
        ring: RING_BUF_BIT | 9,
        ..meta
    };
    assert_eq!(flipped.slot(7), 5007, "buffer 1 live");
}

#[test]
fn flow_hash_depends_on_seed_and_every_field() {
    let key = FlowKey {
        src: [1, 0, 0, 0],
        dst: [2, 0, 0, 0],
        sport: 3,
        dport: 4,
        proto: PROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let h = flow_hash(7, &key);
    assert_ne!(h, flow_hash(8, &key));
    assert_ne!(h, flow_hash(7, &FlowKey { sport: 5, ..key }));
    assert_ne!(
        h,
        flow_hash(
            7,
            &FlowKey {
                dst: [9, 0, 0, 0],
                ..key
            }
        )
    );
    assert_ne!(
        h,
        flow_hash(
            7,
            &FlowKey {
                proto: PROTO_UDP,
                ..key
            }
        )
    );
    assert_eq!(h, flow_hash(7, &key), "deterministic");
}
