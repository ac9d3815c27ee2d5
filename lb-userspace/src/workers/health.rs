//! Layer 4 worker, health checks with HAProxy semantics (inter, fastinter, downinter, timeout, rise, fall):
//! one checker task per (VIP, backend), kept in line with the controller's backends by a
//! manager task; state changes go to the controller, which takes a down backend out of the
//! ring (weight 0: its tracked flows are not cut) and puts it back when it is up again.
use std::{collections::HashMap, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::timeout,
};

use crate::{
    controller::{Command, Handle},
    model::{
        config::{CheckKind, HealthConfig},
        msg::AgentReport,
    },
};

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

/// Parses an agent's line (words separated by spaces or commas; unknown words are ignored).
pub fn parse_agent(line: &str) -> AgentReport {
    let mut report = AgentReport::UP;
    for word in line
        .split([' ', ',', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        match word.as_str() {
            "down" | "fail" | "stopped" | "maint" => report.down = true,
            "drain" => report.percent = 0,
            "up" | "ready" => report.down = false,
            _ if word.contains('=') => {
                let (key, value) = word.split_once('=').unwrap_or_default();
                let number = value.trim_end_matches('%').parse::<f64>().ok();
                let number = number.filter(|n| n.is_finite() && *n >= 0.0);
                match key {
                    "cpu" => report.cpu = number.map(|n| n / 100.0),
                    "inflight" => report.inflight = number.map(|n| n as u64),
                    "capacity" => report.capacity = number.filter(|n| *n > 0.0),
                    _ => {}
                }
            }
            _ => {
                if let Some(p) = word.strip_suffix('%').and_then(|p| p.parse::<u32>().ok()) {
                    report.percent = p.min(256);
                }
            }
        }
    }
    report
}

/// One check of `addr`: a TCP connection, an HTTP GET answered with the expected status, or
/// the agent's report, within the timeout. `None` means the check failed.
pub async fn probe(addr: SocketAddr, cfg: &HealthConfig) -> Option<AgentReport> {
    let up = AgentReport::UP;
    let check = async {
        if cfg.kind == CheckKind::Agent {
            let mut stream = TcpStream::connect(SocketAddr::new(addr.ip(), cfg.agent_port)).await?;
            let mut line = [0u8; 128];
            let n = stream.read(&mut line).await?;
            return Ok::<_, std::io::Error>(Some(parse_agent(&String::from_utf8_lossy(
                &line[..n],
            ))));
        }
        let mut stream = TcpStream::connect(addr).await?;
        if cfg.kind == CheckKind::Tcp {
            return Ok(Some(up));
        }
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: lbd-health\r\n\r\n",
            cfg.path
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok());
        Ok((status == Some(cfg.expect_status)).then_some(up))
    };
    match timeout(Duration::from_millis(cfg.timeout_ms), check).await {
        Ok(Ok(report)) => report,
        _ => None,
    }
}

async fn checker(handle: Handle, vip: String, addr: SocketAddr, cfg: HealthConfig, up: bool) {
    let mut state = HealthState::new(up);
    loop {
        let report = probe(addr, &cfg).await;
        // An agent's weight and load apply at once; reachability and `down` go through
        // rise/fall.
        if let Some(report) = report.filter(|r| !r.down && cfg.kind == CheckKind::Agent) {
            let cmd = Command::SetAgentReport {
                vip: vip.clone(),
                addr,
                report,
            };
            if handle.send(cmd).await.is_err() {
                return;
            }
        }
        let ok = report.is_some_and(|r| !r.down);
        if let Some(up) = state.record(ok, &cfg) {
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

/// Keeps one checker per (VIP, backend) with health checks, as the backends change; runs
/// until the controller stops or the task is aborted (which stops every checker with it).
pub async fn run(handle: Handle) {
    let mut checkers: HashMap<(String, SocketAddr), Checker> = HashMap::new();
    while let Ok(targets) = handle.call(Command::HealthTargets).await {
        let wanted: Vec<(String, SocketAddr)> =
            targets.iter().map(|t| (t.vip.clone(), t.addr)).collect();
        checkers.retain(|key, _| wanted.contains(key));
        for t in targets {
            let key = (t.vip.clone(), t.addr);
            if checkers
                .get(&key)
                .is_some_and(|c| c.cfg == t.cfg && c.generation == t.generation)
            {
                continue;
            }
            let task = tokio::spawn(checker(handle.clone(), t.vip, t.addr, t.cfg.clone(), t.up));
            let generation = t.generation;
            checkers.insert(
                key,
                Checker {
                    cfg: t.cfg,
                    generation,
                    task,
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_words_are_read_like_haproxy() {
        assert_eq!(parse_agent("up 100%\n"), AgentReport::UP);
        assert_eq!(parse_agent("75%").percent, 75);
        assert_eq!(parse_agent("drain").percent, 0);
        assert!(!parse_agent("drain").down);
        assert!(parse_agent("down #maintenance").down);
        assert_eq!(parse_agent("ready,50%").percent, 50);
        assert_eq!(parse_agent("garbage"), AgentReport::UP);
    }

    #[test]
    fn load_words_are_read_and_bad_ones_ignored() {
        let r = parse_agent("up 100% cpu=42.5% inflight=3 capacity=0.50\n");
        assert_eq!(r.percent, 100);
        assert_eq!(r.cpu, Some(0.425));
        assert_eq!(r.inflight, Some(3));
        assert_eq!(r.capacity, Some(0.5));
        let bad = parse_agent("cpu=-3% inflight=x capacity=0 cpu=nan");
        assert_eq!(bad, AgentReport::UP, "negative, non-numeric, zero: ignored");
    }

    fn cfg() -> HealthConfig {
        HealthConfig {
            kind: CheckKind::Tcp,
            path: "/".into(),
            expect_status: 200,
            agent_port: 0,
            inter_ms: 1000,
            fastinter_ms: 100,
            downinter_ms: 3000,
            timeout_ms: 500,
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
}
