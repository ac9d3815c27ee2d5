//! Tier 2: a backend removed and added again is a new join for the health checkers (a fresh
//! checker starting from "down"), while a weight change is not.
use lb_userspace::model::{config::Config, wire::BackendChange};
use tests::harness::{backend, Balancer, Harness, VIP};

fn change(weight: Option<u32>) -> BackendChange {
    BackendChange {
        vip: "web".into(),
        addr: backend(0).into(),
        port: 8080,
        weight,
    }
}

/// A VIP with TCP health checks and one backend, there from the start (so it is up).
fn checked_vip(lb: &mut Balancer) {
    let text = format!(
        "[[vip]]\nname = \"web\"\naddr = \"{VIP}\"\nport = 80\nproto = \"tcp\"\n\
         [vip.health]\nkind = \"tcp\"\n[[vip.backend]]\naddr = \"{}\"\nport = 8080\n",
        backend(0)
    );
    let cfg = Config::parse(&text).expect("config");
    lb.ctl.add_vip(cfg.vips[0].clone()).expect("add vip");
}

fn target(lb: &Balancer) -> (bool, u64) {
    let t = lb.ctl.health_targets();
    assert_eq!(t.len(), 1, "{t:?}");
    (t[0].up, t[0].generation)
}

#[test]
fn a_backend_added_again_is_a_new_join_that_starts_down() {
    Harness::new().run(|lb| {
        checked_vip(lb);
        let (up, first) = target(lb);
        assert!(up, "a configured backend starts up");
        lb.ctl.remove_backend(&change(None)).expect("remove");
        lb.ctl.add_backend(&change(Some(1))).expect("add again");
        let (up, again) = target(lb);
        assert!(!up, "it joins after `rise` good checks");
        assert_ne!(again, first, "a fresh checker is due");
    });
}

#[test]
fn a_weight_change_is_not_a_new_join() {
    Harness::new().run(|lb| {
        checked_vip(lb);
        let before = target(lb);
        lb.ctl.add_backend(&change(Some(3))).expect("reweight");
        assert_eq!(target(lb), before, "same checker, still up");
    });
}
