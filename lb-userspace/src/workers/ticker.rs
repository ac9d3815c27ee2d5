//! Periodic commands to the controller: next-hop refreshes and telemetry rounds.
use std::time::Duration;

use crate::controller::{Command, Handle};

/// How often cached next hops (route + neighbour per backend and per reply flow) are looked up
/// again, so a changed MAC or route is picked up within this time.
pub const NEXT_HOP_REFRESH: Duration = Duration::from_secs(5);

/// How often the controller looks at telemetry; each VIP updates its weights at its own
/// `weights.interval_ms`.
pub const WEIGHTS_TICK: Duration = Duration::from_millis(250);

/// Sends the controller `make()` every `period` until it stops.
pub async fn every(period: Duration, handle: Handle, make: impl Fn() -> Command) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        if handle.send(make()).await.is_err() {
            return;
        }
    }
}
