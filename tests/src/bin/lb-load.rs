//! `lb-load`: the HTTP load generator of `cargo xtask bench e2e`. One thread (optionally pinned
//! to a CPU) drives N connections for a bounded time, either keep-alive (many requests per
//! connection) or one request per new connection, and prints one JSON line: requests, errors,
//! latency percentiles (µs) and the answers per backend (`X-Backend`).
use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::timeout,
};

#[derive(Parser)]
#[command(
    name = "lb-load",
    about = "Bounded HTTP/1.1 load generator (one thread)"
)]
struct Args {
    /// Server to load (repeatable: connections are spread over the targets in turn).
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to run, seconds (at most 600).
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// `keepalive`: requests back to back on each connection; `close`: one request per connection.
    #[arg(long, value_enum, default_value_t = Mode::Keepalive)]
    mode: Mode,
    /// Source address of every connection (default: the route's).
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Pin the generator to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Keepalive,
    Close,
}

/// How long one connect or one answer may take before it counts as an error.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer accepted, bytes.
const MAX_ANSWER: usize = 16 * 1024;

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    errors: u64,
    connections: u64,
    backends: BTreeMap<String, u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(args.duration_s > 0.0 && args.duration_s <= 600.0) {
        bail!("--duration-s must be in (0, 600]");
    }
    if args.connections == 0 || args.connections > 10_000 {
        bail!("--connections must be 1..=10000");
    }
    if let Some(cpu) = args.cpu {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).context("CPU number")?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .context("pinning to the CPU")?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stats = Rc::new(RefCell::new(Stats::default()));
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration_s);
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for i in 0..args.connections {
            let target = args.target[i % args.target.len()];
            tasks.push(tokio::task::spawn_local(worker(
                target,
                args.bind,
                args.mode,
                deadline.into(),
                stats.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut s = stats.take();
    s.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        if s.latencies_us.is_empty() {
            return 0;
        }
        let i = ((s.latencies_us.len() as f64 * p).ceil() as usize).clamp(1, s.latencies_us.len());
        s.latencies_us[i - 1]
    };
    let requests = s.latencies_us.len() as u64;
    println!(
        "{}",
        json!({
            "requests": requests,
            "errors": s.errors,
            "connections": s.connections,
            "seconds": elapsed,
            "rps": requests as f64 / elapsed,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "backends": s.backends,
        })
    );
    Ok(())
}

async fn worker(
    target: SocketAddr,
    bind: Option<std::net::IpAddr>,
    mode: Mode,
    deadline: tokio::time::Instant,
    stats: Rc<RefCell<Stats>>,
) {
    let request: &[u8] = match mode {
        Mode::Keepalive => b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
        Mode::Close => b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
    };
    let mut buf = vec![0u8; MAX_ANSWER];
    while tokio::time::Instant::now() < deadline {
        let begun = Instant::now();
        let mut stream = match timeout(IO_TIMEOUT, connect(target, bind)).await {
            Ok(Ok(s)) => s,
            _ => {
                stats.borrow_mut().errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.borrow_mut().connections += 1;
        let mut first = Some(begun);
        loop {
            let t0 = first.take().unwrap_or_else(Instant::now);
            match timeout(IO_TIMEOUT, exchange(&mut stream, request, &mut buf)).await {
                Ok(Ok(backend)) => {
                    let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    let mut s = stats.borrow_mut();
                    s.latencies_us.push(us);
                    *s.backends.entry(backend).or_default() += 1;
                }
                _ => {
                    stats.borrow_mut().errors += 1;
                    break;
                }
            }
            if mode == Mode::Close || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        if mode == Mode::Close {
            // The server closes first (Connection: close); wait for it so the TIME_WAIT
            // state stays on the server's side and client ports are not used up.
            let _ = timeout(IO_TIMEOUT, stream.read(&mut buf)).await;
        }
    }
}

/// Connects to `target`, from `bind` when given.
async fn connect(target: SocketAddr, bind: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = bind else {
        return TcpStream::connect(target).await;
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(target).await
}

/// Sends one request and reads one full answer; returns its `X-Backend`.
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> Result<String> {
    stream.write_all(request).await?;
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..]).await?;
        if n == 0 {
            bail!("closed before a full answer");
        }
        have += n;
        let Some(head_end) = find(&buf[..have], b"\r\n\r\n") else {
            if have == buf.len() {
                bail!("answer head too long");
            }
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).context("answer head")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("answer {:?}", head.lines().next().unwrap_or(""));
        }
        let mut length = 0usize;
        let mut backend = String::new();
        for line in head.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().context("Content-Length")?;
                } else if k.eq_ignore_ascii_case("x-backend") {
                    backend = v.trim().to_string();
                }
            }
        }
        let total = head_end + 4 + length;
        if total > buf.len() {
            bail!("answer too long");
        }
        while have < total {
            let n = stream.read(&mut buf[have..total]).await?;
            if n == 0 {
                bail!("closed inside the body");
            }
            have += n;
        }
        return Ok(backend);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
