//! One health check of one backend: a TCP connection, an HTTP status, or the agent's report
//! (HAProxy agent-check words), within the timeout; a failure says why in a word or two.
use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use crate::model::{
    config::{CheckKind, HealthConfig},
    msg::AgentReport,
};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::workers::health::tests::cfg;

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
}
