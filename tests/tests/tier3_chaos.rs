//! Tier 3 chaos: each scenario of the chaos suite with short phases (4 s faults), steady
//! client traffic through it, and its targets asserted. One at a time: the floods take a CPU.
use std::sync::Mutex;

use tests::chaos::{self, Phases, Scenario};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(scenario: Scenario) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = scenario(Phases::SHORT);
    assert!(
        r.counts.long_attempted > 0 || r.counts.short_attempted > 0 || r.name.contains("API"),
        "{}: no traffic ran: {r:?}",
        r.name
    );
    assert!(
        r.missed.is_empty(),
        "{}: missed {:?}\n{r:#?}",
        r.name,
        r.missed
    );
}

#[test]
fn lbd_sigkill_and_restart_breaks_nothing() {
    run(chaos::lbd_restart);
}

#[test]
fn draining_then_removing_a_backend_breaks_nothing() {
    run(chaos::drain_and_remove);
}

#[test]
fn a_weight_change_every_second_breaks_no_established_connection() {
    run(chaos::weight_churn);
}

#[test]
fn autoscaler_scale_in_breaks_nothing() {
    run(chaos::scale_in);
}

#[test]
fn a_killed_backend_breaks_only_its_own_connections() {
    run(chaos::backend_killed);
}

#[test]
fn a_spoofed_syn_flood_leaves_legitimate_clients_served() {
    run(chaos::syn_flood_scenario);
}

#[test]
fn malformed_frames_at_rate_are_all_counted_and_none_forwarded() {
    run(chaos::malformed_flood);
}

#[test]
fn health_flapping_causes_no_churn_beyond_rise_and_fall() {
    run(chaos::health_flapping);
}

#[test]
fn oversized_and_malformed_api_requests_are_refused_without_effect() {
    run(|_| chaos::api_abuse());
}
