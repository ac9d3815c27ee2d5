//! `lb-backend`: the server a backend VM runs. TCP: greets each connection with the VM's name,
//! then echoes; UDP: answers each datagram with the name; HTTP: answers each request (after a
//! configurable amount of CPU work) with an `X-Backend` header naming the VM; and an
//! agent-check port reporting the VM's load.
use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, UdpSocket},
};

#[derive(Parser, Debug)]
#[command(
    name = "lb-backend",
    version,
    about = "Backend VM server for the balancer's lab and tests"
)]
struct Args {
    /// Name this VM answers with.
    #[arg(long)]
    name: String,
    /// Address and port to serve on, TCP echo and UDP (repeatable; `[::]:PORT` is dual-stack).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Address and port to serve HTTP/1.1 on (keep-alive; repeatable).
    #[arg(long, value_name = "ADDR")]
    http: Vec<SocketAddr>,
    /// CPU time, in microseconds, each HTTP request burns before it is answered (a request's
    /// `?work_us=N` overrides it), so tests can create real load.
    #[arg(long, default_value_t = 0, value_name = "US")]
    work_us: u64,
    /// Serve the load-balancer agent check here: each connection gets one line in HAProxy's
    /// agent-check words (`up`, `down`, `drain`, `75%`...) followed by this VM's load
    /// (`cpu=NN%` of its limit, `inflight=N`, `capacity=CORES`).
    #[arg(long, value_name = "ADDR")]
    agent: Option<SocketAddr>,
    /// File whose first line is the agent's state words (re-read for every check); default
    /// `up 100%` when absent.
    #[arg(long, value_name = "FILE", requires = "agent")]
    agent_state: Option<std::path::PathBuf>,
    /// The VM's CPU limit in cores (what `cpu=` is measured against); default: every CPU.
    #[arg(long, value_name = "CORES")]
    cpu_limit: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.listen.is_empty() && args.http.is_empty() {
        eprintln!("lb-backend: nothing to serve: give --listen ADDR and/or --http ADDR");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lb-backend: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the agent reports: requests being served and CPU use over the last second.
#[derive(Default)]
struct Load {
    inflight: AtomicU64,
    /// CPU use of the last sampling window, in thousandths of the limit.
    cpu_permille: AtomicU64,
}

async fn serve(args: Args) -> Result<()> {
    let greeting = format!("{}\n", args.name);
    let load = Arc::new(Load::default());
    let mut servers = tokio::task::JoinSet::new();
    for addr in args.listen {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("TCP bind {addr}"))?;
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("UDP bind {addr}"))?;
        servers.spawn(serve_udp(udp, greeting.clone()));
        servers.spawn(serve_tcp(tcp, greeting.clone()));
    }
    for addr in args.http {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("HTTP bind {addr}"))?;
        servers.spawn(serve_http(
            tcp,
            args.name.clone(),
            args.work_us,
            load.clone(),
        ));
    }
    if let Some(addr) = args.agent {
        let agent = TcpListener::bind(addr)
            .await
            .with_context(|| format!("agent bind {addr}"))?;
        let limit = args.cpu_limit.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        });
        servers.spawn(sample_cpu(load.clone(), limit));
        servers.spawn(serve_agent(agent, args.agent_state, load, limit));
    }
    match servers.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(e.into()),
        None => Ok(()),
    }
}

/// Answers every datagram with the greeting.
async fn serve_udp(udp: UdpSocket, greeting: String) -> Result<()> {
    let mut buf = [0u8; 2048];
    loop {
        let (_, from) = udp.recv_from(&mut buf).await.context("UDP receive")?;
        let _ = udp.send_to(greeting.as_bytes(), from).await;
    }
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// Every second, records the CPU used in the last second as a share of `limit` cores.
async fn sample_cpu(load: Arc<Load>, limit: f64) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The first tick is immediate: the first window starts after it, so start-up work is not
    // divided by a near-zero wall time.
    tick.tick().await;
    let mut last = (Instant::now(), cpu_seconds());
    loop {
        tick.tick().await;
        let now = (Instant::now(), cpu_seconds());
        let wall = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        let share = (now.1 - last.1) / (wall * limit.max(0.01));
        load.cpu_permille
            .store((share * 1000.0).round() as u64, Ordering::Relaxed);
        last = now;
    }
}

/// Answers every agent-check connection with one line, then closes it: the state words (from
/// the state file, default `up 100%`) and the load.
async fn serve_agent(
    agent: TcpListener,
    state: Option<std::path::PathBuf>,
    load: Arc<Load>,
    limit: f64,
) -> Result<()> {
    loop {
        let (mut stream, _) = agent.accept().await.context("agent accept")?;
        let words = match &state {
            Some(path) => tokio::fs::read_to_string(path)
                .await
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_else(|| "up 100%".into()),
            None => "up 100%".into(),
        };
        let answer = format!(
            "{words} cpu={:.1}% inflight={} capacity={limit:.2}\n",
            load.cpu_permille.load(Ordering::Relaxed) as f64 / 10.0,
            load.inflight.load(Ordering::Relaxed),
        );
        tokio::spawn(async move {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Greets every connection with the VM's name, then echoes what the client sends until the
/// client closes (so connections can be as long-lived as a test needs).
async fn serve_tcp(tcp: TcpListener, greeting: String) -> Result<()> {
    loop {
        let (mut stream, _) = tcp.accept().await.context("accept")?;
        let greeting = greeting.clone();
        tokio::spawn(async move {
            if stream.write_all(greeting.as_bytes()).await.is_ok() {
                let (mut rx, mut tx) = stream.split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            }
            let _ = stream.shutdown().await;
        });
    }
}

/// Serves HTTP/1.1 with keep-alive: every request is answered `200 OK` with the VM's name in
/// the body and in `X-Backend`, after its CPU work.
async fn serve_http(tcp: TcpListener, name: String, work_us: u64, load: Arc<Load>) -> Result<()> {
    loop {
        let (stream, _) = tcp.accept().await.context("HTTP accept")?;
        tokio::spawn(http_connection(stream, name.clone(), work_us, load.clone()));
    }
}

/// Longest request head accepted, in bytes.
const MAX_HEAD: usize = 8192;

/// One HTTP connection: requests until the client closes, asks to, or sends garbage.
async fn http_connection(stream: TcpStream, name: String, default_work: u64, load: Arc<Load>) {
    let _ = stream.set_nodelay(true);
    let (rx, mut tx) = stream.into_split();
    let mut rx = BufReader::new(rx);
    loop {
        let mut request_line = String::new();
        match rx.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut head = request_line.len();
        let mut close = request_line.ends_with("HTTP/1.0\r\n");
        loop {
            let mut line = String::new();
            match rx.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head += n,
            }
            if head > MAX_HEAD {
                let _ = tx
                    .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                close = lower.contains("close");
            }
        }
        let mut parts = request_line.split_whitespace();
        let (Some(_method), Some(target)) = (parts.next(), parts.next()) else {
            let _ = tx
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        };
        let work = target
            .split_once("work_us=")
            .and_then(|(_, v)| v.split('&').next()?.parse::<u64>().ok())
            .unwrap_or(default_work)
            .min(1_000_000);
        load.inflight.fetch_add(1, Ordering::Relaxed);
        if work > 0 {
            let _ = tokio::task::spawn_blocking(move || burn_cpu(work)).await;
        }
        load.inflight.fetch_sub(1, Ordering::Relaxed);
        let body = format!("{name}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if tx.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Spins until this thread has used `us` microseconds of CPU time (wall time can be longer
/// when the VM's CPU limit throttles it: that is the point).
fn burn_cpu(us: u64) {
    use nix::time::{clock_gettime, ClockId};
    let now = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
        })
    };
    let start = now();
    let mut x = 0u64;
    while now().saturating_sub(start) < us {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}
