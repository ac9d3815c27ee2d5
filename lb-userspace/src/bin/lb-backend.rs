//! `lb-backend`: the server a backend VM runs. TCP: greets each connection with the VM's name,
//! then echoes; UDP: answers each datagram with the name; optionally an agent-check port.
use std::{net::SocketAddr, process::ExitCode};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, UdpSocket},
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
    /// Address and port to serve on, TCP and UDP (repeatable; `[::]:PORT` is dual-stack).
    #[arg(long, default_value = "[::]:8080")]
    listen: Vec<SocketAddr>,
    /// Serve the load-balancer agent check here: each connection gets one line in HAProxy's
    /// agent-check words (`up`, `down`, `drain`, `75%`...).
    #[arg(long, value_name = "ADDR")]
    agent: Option<SocketAddr>,
    /// File whose first line is the agent's answer (re-read for every check); default
    /// `up 100%` when absent.
    #[arg(long, value_name = "FILE", requires = "agent")]
    agent_state: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
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

async fn serve(args: Args) -> Result<()> {
    let greeting = format!("{}\n", args.name);
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
    if let Some(addr) = args.agent {
        let agent = TcpListener::bind(addr)
            .await
            .with_context(|| format!("agent bind {addr}"))?;
        servers.spawn(serve_agent(agent, args.agent_state));
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

/// Answers every agent-check connection with one line, then closes it.
async fn serve_agent(agent: TcpListener, state: Option<std::path::PathBuf>) -> Result<()> {
    loop {
        let (mut stream, _) = agent.accept().await.context("agent accept")?;
        let answer = match &state {
            Some(path) => tokio::fs::read_to_string(path)
                .await
                .ok()
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_else(|| "up 100%".into()),
            None => "up 100%".into(),
        };
        tokio::spawn(async move {
            let _ = stream.write_all(format!("{answer}\n").as_bytes()).await;
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
