//! Tier 3: a topology xlb did not build for itself. A one-armed balancer on a Linux bridge
//! (client, balancer and backends on one subnet, the balancer's one interface both ways), NAT
//! and DSR: at tc (`attach = "auto"` on a veth) with every host's default offloads, and at
//! XDP (forced) with the peer and offload settings lbd's attach-time warning names.
use std::collections::BTreeMap;

use lb_lab::http_get;
use lb_userspace::model::config::AttachMode;
use tests::lab::ArmLab;

/// Connections through the VIP, one request each: answers per backend, and failures.
fn burst(lab: &ArmLab, n: usize) -> (BTreeMap<String, usize>, usize) {
    let vip = lab.arm.vip();
    lab.arm
        .client
        .enter(move || {
            let mut tally = BTreeMap::new();
            let mut failed = 0;
            for _ in 0..n {
                match http_get(vip, "/") {
                    Ok(name) => *tally.entry(name).or_insert(0) += 1,
                    Err(_) => failed += 1,
                }
            }
            (tally, failed)
        })
        .expect("client namespace")
}

/// Runs 60 connections through a 3-backend lab and checks every one was answered, by every
/// backend, through the balancer's data path.
fn serves_everyone(attach: AttachMode, dsr: bool) -> ArmLab {
    let lab = ArmLab::start(3, attach, dsr);
    let (tally, failed) = burst(&lab, 60);
    assert_eq!(failed, 0, "{tally:?}\n{}", lab.log());
    assert_eq!(tally.len(), 3, "every backend serves: {tally:?}");
    let c = lab.counters();
    assert!(
        c["fwd_nat"].as_u64().unwrap_or(0) >= 60,
        "every connection's packets went through the data path: {c}"
    );
    let replies = c["fwd_reply"].as_u64().unwrap_or(0);
    if dsr {
        assert_eq!(replies, 0, "DSR replies go to the client directly: {c}");
    } else {
        assert!(
            replies >= 60,
            "NAT replies come back through the balancer: {c}"
        );
    }
    lab
}

#[test]
fn nat_at_tc_with_default_offloads_serves_every_backend() {
    let lab = serves_everyone(AttachMode::Auto, false);
    let log = lab.log();
    assert!(
        log.contains("attached on eth0 at tc (auto: driver veth"),
        "{log}"
    );
    assert!(!log.contains("XDP on veth"), "no XDP warning at tc: {log}");
}

#[test]
fn dsr_at_tc_with_default_offloads_serves_every_backend() {
    serves_everyone(AttachMode::Auto, true);
}

#[test]
fn nat_at_forced_xdp_serves_every_backend_with_the_settings_lbd_names() {
    let lab = serves_everyone(AttachMode::Xdp, false);
    let log = lab.log();
    assert!(log.contains("attached on eth0 at xdp (configured"), "{log}");
    assert!(
        log.contains("XDP on veth eth0") && log.contains("gro on") && log.contains("tx off"),
        "lbd warns with the fix: {log}"
    );
}

#[test]
fn dsr_at_forced_xdp_serves_every_backend_with_the_settings_lbd_names() {
    serves_everyone(AttachMode::Xdp, true);
}
