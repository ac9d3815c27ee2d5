//! `lb-backend`: the server a backend VM runs. TCP: greets each connection with the VM's name
//! and closes; UDP: answers each datagram with the name.
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
    /// Address and port to serve on (TCP and UDP).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
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
    let tcp = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("TCP bind {}", args.listen))?;
    let udp = UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("UDP bind {}", args.listen))?;
    let greeting = format!("{}\n", args.name);
    let udp_greeting = greeting.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(udp_greeting.as_bytes(), from).await;
        }
    });
    loop {
        let (mut stream, _) = tcp.accept().await.context("accept")?;
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let _ = stream.write_all(greeting.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
