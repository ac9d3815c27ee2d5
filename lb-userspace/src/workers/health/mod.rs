//! Layer 4 worker, health checks with HAProxy semantics (inter, fastinter, downinter, timeout, rise, fall):
//! one checker task per (VIP, backend), kept in line with the controller's backends by a
//! manager task; state changes go to the controller, which takes a down backend out of the
//! ring (weight 0: its tracked flows are not cut) and puts it back when it is up again.
//! The checks themselves are in `probe`.
mod probe;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use tokio::task::JoinHandle;

use crate::{
    controller::{Command, Handle},
    model::{
        config::{CheckKind, HealthConfig},
        msg::{HealthBoard, HealthTarget},
        wire::{CheckResult, HealthDetail},
    },
};

pub use probe::{parse_agent, probe};

/// The up/down state of one backend and the streak of results that disagree with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthState {
    /// Whether the backend is up.
    pub up: bool,
    streak: u32,
}

impl HealthState {
    /// A backend starting up or down.
    pub fn new(up: bool) -> Self {
        HealthState { up, streak: 0 }
    }

    /// Records one check result; returns the new state when it flips (after `fall` failures
    /// in a row while up, or `rise` successes in a row while down).
    pub fn record(&mut self, ok: bool, cfg: &HealthConfig) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { cfg.fall } else { cfg.rise };
        if self.streak < needed {
            return None;
        }
        self.up = !self.up;
        self.streak = 0;
        Some(self.up)
    }

    /// Time to the next check: `fastinter` while changing, `downinter` while down, else `inter`.
    pub fn next_interval(&self, cfg: &HealthConfig) -> Duration {
        Duration::from_millis(if self.streak > 0 {
            cfg.fastinter_ms
        } else if !self.up {
            cfg.downinter_ms
        } else {
            cfg.inter_ms
        })
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Records one check of (`vip`, `addr`) in `board`: its result, the streaks, the state.
fn record(
    board: &HealthBoard,
    key: &(String, SocketAddr),
    cfg: &HealthConfig,
    result: CheckResult,
    up: bool,
) {
    let mut board = board.lock().unwrap_or_else(|p| p.into_inner());
    let d = board.entry(key.clone()).or_insert_with(|| HealthDetail {
        kind: cfg.kind,
        up,
        since_ms: result.at_ms,
        last: None,
        consecutive_ok: 0,
        consecutive_failed: 0,
        checks: 0,
        failures: Default::default(),
    });
    d.kind = cfg.kind;
    if d.up != up {
        d.up = up;
        d.since_ms = result.at_ms;
    }
    d.checks += 1;
    if result.ok {
        d.consecutive_ok += 1;
        d.consecutive_failed = 0;
    } else {
        d.consecutive_failed += 1;
        d.consecutive_ok = 0;
        *d.failures.entry(result.reason.clone()).or_default() += 1;
    }
    d.last = Some(result);
}

async fn checker(handle: Handle, board: HealthBoard, target: HealthTarget) {
    let HealthTarget {
        vip, addr, cfg, up, ..
    } = target;
    let key = (vip.clone(), addr);
    let mut state = HealthState::new(up);
    loop {
        let started = std::time::Instant::now();
        let outcome = probe(addr, &cfg).await;
        let result = CheckResult {
            ok: outcome.is_ok(),
            reason: outcome
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "ok".into()),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            at_ms: now_ms(),
        };
        // An agent's weight and load apply at once; reachability and `down` go through
        // rise/fall.
        if let (Ok(report), CheckKind::Agent) = (&outcome, cfg.kind) {
            let cmd = Command::SetAgentReport {
                vip: vip.clone(),
                addr,
                report: *report,
            };
            if handle.send(cmd).await.is_err() {
                return;
            }
        }
        let flipped = state.record(result.ok, &cfg);
        record(&board, &key, &cfg, result, state.up);
        if let Some(up) = flipped {
            let cmd = Command::SetHealth {
                vip: vip.clone(),
                addr,
                up,
            };
            if handle.send(cmd).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(state.next_interval(&cfg)).await;
    }
}

/// A running checker; dropping it stops the check (a dropped `JoinHandle` alone would not).
struct Checker {
    cfg: HealthConfig,
    generation: u64,
    task: JoinHandle<()>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one checker per (VIP, backend) with health checks, as the backends change, each
/// writing its results into the controller's health board; runs until the controller stops
/// or the task is aborted (which stops every checker with it).
pub async fn run(handle: Handle) {
    let Ok(board) = handle.call(Command::HealthBoard).await else {
        return;
    };
    let mut checkers: HashMap<(String, SocketAddr), Checker> = HashMap::new();
    while let Ok(targets) = handle.call(Command::HealthTargets).await {
        let wanted: HashSet<(String, SocketAddr)> =
            targets.iter().map(|t| (t.vip.clone(), t.addr)).collect();
        checkers.retain(|key, _| wanted.contains(key));
        board
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| wanted.contains(key));
        for t in targets {
            let key = (t.vip.clone(), t.addr);
            if checkers
                .get(&key)
                .is_some_and(|c| c.cfg == t.cfg && c.generation == t.generation)
            {
                continue;
            }
            // A fresh checker starts a fresh record.
            board.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            let (cfg, generation) = (t.cfg.clone(), t.generation);
            let task = tokio::spawn(checker(handle.clone(), board.clone(), t));
            checkers.insert(
                key,
                Checker {
                    cfg,
                    generation,
                    task,
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cfg() -> HealthConfig {
        HealthConfig {
            kind: CheckKind::Tcp,
            path: "/".into(),
            expect_status: 200,
            agent_port: 0,
            inter_ms: 1000,
            fastinter_ms: 100,
            downinter_ms: 3000,
            timeout_ms: Some(500),
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn goes_down_after_fall_failures_in_a_row() {
        let c = cfg();
        let mut s = HealthState::new(true);
        assert_eq!(s.record(false, &c), None);
        assert_eq!(
            s.next_interval(&c),
            Duration::from_millis(100),
            "fastinter while changing"
        );
        assert_eq!(s.record(false, &c), None);
        assert_eq!(s.record(false, &c), Some(false));
        assert_eq!(
            s.next_interval(&c),
            Duration::from_millis(3000),
            "downinter while down"
        );
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let c = cfg();
        let mut s = HealthState::new(true);
        s.record(false, &c);
        s.record(false, &c);
        assert_eq!(s.record(true, &c), None);
        assert_eq!(
            s.next_interval(&c),
            Duration::from_millis(1000),
            "inter when steady"
        );
        assert_eq!(s.record(false, &c), None, "the streak starts over");
        assert!(s.up);
    }

    #[test]
    fn comes_back_after_rise_successes() {
        let c = cfg();
        let mut s = HealthState::new(false);
        assert_eq!(s.record(true, &c), None);
        assert_eq!(s.record(true, &c), Some(true));
        assert_eq!(s.record(true, &c), None, "no flip while steady");
    }

    #[test]
    fn the_board_keeps_streaks_failures_and_when_the_state_changed() {
        let board = HealthBoard::default();
        let key = ("web".to_string(), SocketAddr::from(([10, 0, 0, 2], 80)));
        let c = cfg();
        let check = |ok: bool, reason: &str, at_ms: u64| CheckResult {
            ok,
            reason: reason.into(),
            duration_ms: 1.0,
            at_ms,
        };
        let seen = || board.lock().unwrap()[&key].clone();
        record(&board, &key, &c, check(false, "refused", 10), true);
        record(&board, &key, &c, check(false, "refused", 20), true);
        let d = seen();
        assert_eq!((d.up, d.since_ms, d.checks), (true, 10, 2));
        assert_eq!((d.consecutive_failed, d.consecutive_ok), (2, 0));
        record(&board, &key, &c, check(false, "timeout", 30), false);
        let d = seen();
        assert_eq!((d.up, d.since_ms, d.consecutive_failed), (false, 30, 3));
        assert_eq!(d.failures.get("refused"), Some(&2));
        assert_eq!(d.failures.get("timeout"), Some(&1));
        record(&board, &key, &c, check(true, "ok", 40), false);
        let d = seen();
        assert_eq!((d.up, d.since_ms, d.checks), (false, 30, 4));
        assert_eq!((d.consecutive_failed, d.consecutive_ok), (0, 1));
        assert_eq!(d.last.map(|l| l.at_ms), Some(40));
    }

    #[test]
    fn results_are_stamped_in_unix_milliseconds() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            now_ms().abs_diff(wall) < 1000,
            "results are stamped in Unix ms"
        );
    }
}
