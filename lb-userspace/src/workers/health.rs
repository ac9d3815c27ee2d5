//! Layer 4 worker, health checks with HAProxy semantics (inter, fastinter, downinter, timeout, rise, fall):
//! one checker task per (VIP, backend), kept in line with the controller's backends by a
//! manager task; state changes go to the controller, which takes a down backend out of the
//! ring (weight 0: its tracked flows are not cut) and puts it back when it is up again.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

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
        msg::{AgentReport, HealthBoard, HealthTarget},
        wire::{CheckResult, HealthDetail},
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

/// Why an I/O step of a check failed, in a word or two.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused".into(),
        ConnectionReset => "reset".into(),
        TimedOut => "timeout".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        UnexpectedEof => "closed".into(),
        _ => e.to_string(),
    }
}

/// One check of `addr`: a TCP connection, an HTTP GET answered with the expected status, or
/// the agent's report, within the timeout. A failure says why (`refused`, `timeout`,
/// `status 503`, `agent: down`, ...).
pub async fn probe(addr: SocketAddr, cfg: &HealthConfig) -> Result<AgentReport, String> {
    let check = async {
        let io = |e: std::io::Error| io_reason(&e);
        if cfg.kind == CheckKind::Agent {
            let mut stream = TcpStream::connect(SocketAddr::new(addr.ip(), cfg.agent_port))
                .await
                .map_err(io)?;
            let mut line = [0u8; 128];
            let n = stream.read(&mut line).await.map_err(io)?;
            let text = String::from_utf8_lossy(&line[..n]);
            let report = parse_agent(&text);
            if report.down {
                let word = text.split_whitespace().next().unwrap_or("down");
                return Err(format!("agent: {}", word.to_ascii_lowercase()));
            }
            return Ok(report);
        }
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        if cfg.kind == CheckKind::Tcp {
            return Ok(AgentReport::UP);
        }
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: lbd-health\r\n\r\n",
            cfg.path
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await.map_err(io)?;
        let line = String::from_utf8_lossy(&head[..n]);
        match line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
        {
            Some(status) if status == cfg.expect_status => Ok(AgentReport::UP),
            Some(status) => Err(format!("status {status}")),
            None if n == 0 => Err("closed".into()),
            None => Err("not HTTP".into()),
        }
    };
    match timeout(cfg.timeout(), check).await {
        Ok(result) => result,
        Err(_) => Err("timeout".into()),
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
        assert!(!parse_agent("down up").down, "the last state word wins");
        assert!(parse_agent("up down").down);
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
        for word in ["cpu=-3%", "cpu=inf", "cpu=nan"] {
            assert_eq!(parse_agent(word).cpu, None, "{word}");
        }
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

    /// A loopback server for one test: for each connection (at most 4) it reads what the
    /// client sends, if it is not an agent's, then writes `answer` and closes; `None` holds
    /// the connection 2 s without a word.
    async fn server(answer: Option<&'static [u8]>, agent: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                if !agent {
                    let _ = s.read(&mut [0u8; 512]).await;
                }
                match answer {
                    Some(a) => drop(s.write_all(a).await),
                    None => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
        });
        addr
    }

    fn of(kind: CheckKind) -> HealthConfig {
        HealthConfig { kind, ..cfg() }
    }

    #[tokio::test]
    async fn a_tcp_check_passes_on_accept_and_names_a_refusal() {
        let up = server(Some(b""), true).await;
        assert_eq!(probe(up, &of(CheckKind::Tcp)).await, Ok(AgentReport::UP));
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        assert_eq!(
            probe(gone, &of(CheckKind::Tcp)).await,
            Err("refused".into())
        );
    }

    #[tokio::test]
    async fn an_http_check_wants_the_expected_status() {
        let http = of(CheckKind::Http);
        for (answer, want) in [
            (Some(&b"HTTP/1.0 200 OK\r\n\r\n"[..]), Ok(AgentReport::UP)),
            (Some(b"HTTP/1.1 503 Busy\r\n\r\n"), Err("status 503")),
            (Some(b""), Err("closed")),
            (Some(b"SSH-2.0-OpenSSH\r\n"), Err("not HTTP")),
            (None, Err("timeout")),
        ] {
            let addr = server(answer, false).await;
            let got = probe(addr, &http).await;
            assert_eq!(got, want.map_err(String::from), "{answer:?}");
        }
        // A TCP check of a server that would fail the HTTP one passes.
        let addr = server(Some(b"HTTP/1.1 503 Busy\r\n\r\n"), false).await;
        assert_eq!(probe(addr, &of(CheckKind::Tcp)).await, Ok(AgentReport::UP));
    }

    #[tokio::test]
    async fn an_agent_check_reads_the_agents_port() {
        let agent = |port| HealthConfig {
            agent_port: port,
            ..of(CheckKind::Agent)
        };
        // The service port itself is closed: only the agent's is asked.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service = closed.local_addr().unwrap();
        drop(closed);
        let up = server(Some(b"up 75%\n"), true).await;
        let got = probe(service, &agent(up.port())).await.expect("up");
        assert_eq!(got.percent, 75);
        let down = server(Some(b"MAINT drain\n"), true).await;
        let got = probe(service, &agent(down.port())).await;
        assert_eq!(got, Err("agent: maint".into()));
    }

    #[test]
    fn io_failures_are_named_in_a_word_or_two() {
        use std::io::Error;
        // As the socket calls report them: errno values (asm-generic/errno.h).
        for (errno, word) in [
            (111, "refused"),
            (104, "reset"),
            (110, "timeout"),
            (113, "host unreachable"),
            (101, "network unreachable"),
        ] {
            assert_eq!(io_reason(&Error::from_raw_os_error(errno)), word);
        }
        assert_eq!(
            io_reason(&Error::from(std::io::ErrorKind::UnexpectedEof)),
            "closed"
        );
        assert_eq!(io_reason(&Error::other("odd")), "odd");
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
