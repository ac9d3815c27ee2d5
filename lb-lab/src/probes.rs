//! Client-side probes the tests, the benches and `cargo xtask run` use: HTTP requests and
//! keep-alive sessions, greeting-and-echo TCP sessions, UDP hellos, a rate-controlled HTTP
//! load, and a bounded wait.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{netns::Netns, topology::PROBE_TIMEOUT};

/// One HTTP request on a new connection (`Connection: close`); returns the `X-Backend` that
/// answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .context("reading the answer")?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("bad answer: {:?}", text.lines().next().unwrap_or(""));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("X-Backend: "))
        .map(|n| n.trim().to_string())
        .ok_or_else(|| anyhow!("answer without X-Backend"))
}

/// Opens a keep-alive HTTP connection and makes one request: the name of the backend that
/// answered, and the open stream (for more requests with [`http_keepalive`]).
pub fn http_session(addr: SocketAddr) -> Result<(String, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let name = http_keepalive(&mut stream)?;
    Ok((name, stream))
}

/// A keep-alive HTTP request on `stream`; the backend's name from the body.
pub fn http_keepalive(stream: &mut TcpStream) -> Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < 16 * 1024 {
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if !head.starts_with("HTTP/1.1 200") {
                bail!("answer {:?}", head.lines().next().unwrap_or(""));
            }
            if body.ends_with('\n') {
                return Ok(body.trim().to_string());
            }
        }
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            bail!("connection closed");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Err(anyhow!("answer too long"))
}

/// What a [`Load`] has seen: requests answered (by backend) and failed.
#[derive(Default)]
pub struct Tally {
    /// Requests answered with 200.
    pub ok: AtomicU64,
    /// Requests that failed (connect, timeout, bad answer).
    pub failed: AtomicU64,
    /// Answers per backend name.
    pub by_backend: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    /// Answers per backend so far.
    pub fn backends(&self) -> BTreeMap<String, u64> {
        self.by_backend
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Client load: worker threads in a namespace, each making one HTTP request per new
/// connection, together at `rate` requests per second (changeable while running). Stops and
/// joins its threads on drop.
pub struct Load {
    /// Offered requests per second, shared by the workers.
    pub rate: Arc<AtomicU64>,
    /// What the workers saw.
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` threads in `ns` sending to `addr` at `rate` requests/s in all.
    pub fn start(ns: &Netns, addr: SocketAddr, rate: u64, workers: usize) -> Result<Self> {
        let rate = Arc::new(AtomicU64::new(rate));
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let file = std::fs::File::open(format!("/run/netns/{}", ns.name()))?;
            let (rate, tally, stop) = (rate.clone(), tally.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                if nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    let r = rate.load(Ordering::Relaxed);
                    if r == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let started = Instant::now();
                    match http_get(addr, "/") {
                        Ok(name) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut m) = tally.by_backend.lock() {
                                *m.entry(name).or_default() += 1;
                            }
                        }
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let gap = Duration::from_secs_f64(workers as f64 / r as f64);
                    if let Some(rest) = gap.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest.min(Duration::from_millis(500)));
                    }
                }
            }));
        }
        Ok(Load {
            rate,
            tally,
            stop,
            workers: handles,
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Calls `ready` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("not ready after {limit:?}")
}

/// Opens a TCP connection and returns the name the backend greets with.
pub fn tcp_hello(addr: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    read_greeting(stream)
}

/// Like [`tcp_hello`] from a fixed local port, closing with a reset so the same 4-tuple can
/// be used again at once.
pub fn tcp_hello_from(local: SocketAddrV4, addr: SocketAddr) -> Result<String> {
    // The previous connection on this 4-tuple may still be tearing down: retry briefly.
    let mut last = None;
    for _ in 0..10 {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.bind(&SocketAddr::V4(local).into())?;
        match sock.connect_timeout(&addr.into(), PROBE_TIMEOUT) {
            Ok(()) => {
                sock.set_linger(Some(Duration::ZERO))?;
                return read_greeting(sock.into());
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| anyhow!("no attempt made"), Into::into))
}

/// Reads the greeting line (the backend's name); the connection stays open.
fn greeting(stream: &mut TcpStream) -> Result<String> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        if stream.read(&mut byte).context("reading the greeting")? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let name = String::from_utf8_lossy(&line).trim().to_string();
    if name.is_empty() {
        bail!("connection closed without a greeting");
    }
    Ok(name)
}

/// Reads the greeting and closes the connection (the client closes first).
fn read_greeting(mut stream: TcpStream) -> Result<String> {
    greeting(&mut stream)
}

/// Opens a long-lived connection: the backend's name and the open stream, which echoes.
pub fn tcp_session(addr: SocketAddr) -> Result<(String, TcpStream)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    let name = greeting(&mut stream)?;
    Ok((name, stream))
}

/// Sends `msg` on a session and returns what came back (the backend echoes).
pub fn echo(stream: &mut TcpStream, msg: &str) -> Result<String> {
    stream.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).context("reading the echo")?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Sends one datagram from `socket` to `addr` and returns the name in the answer.
pub fn udp_hello(socket: &UdpSocket, addr: SocketAddr) -> Result<String> {
    socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
    socket.send_to(b"hello", addr)?;
    let mut buf = [0u8; 256];
    let (n, from) = socket
        .recv_from(&mut buf)
        .context("waiting for the UDP answer")?;
    if from != addr {
        return Err(anyhow!("UDP answer came from {from}, not {addr}"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}
