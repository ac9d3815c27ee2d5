//! A minimal HTTP/1.1 client for the API socket (what `lbctl` uses; `curl --unix-socket` works
//! just as well).
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Sends one request and returns the HTTP status and the JSON body.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => anyhow!(
            "lbd is not running (no API socket at {}); start it with `lbd --config FILE`",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "permission denied on {}: the API is root-only, run lbctl as root",
            socket.display()
        ),
        _ => anyhow!("cannot connect to {}: {e}", socket.display()),
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: lbd\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("reading the API response")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed API response"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed API status line"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let payload = if chunked {
        dechunk(payload)?
    } else {
        payload.to_string()
    };
    let value = if payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&payload).context("API response is not JSON")?
    };
    Ok((status, value))
}

/// Like [`request`], but a non-2xx status becomes an error carrying the API's message.
pub fn call(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let (status, value) = request(socket, method, path, body)?;
    if !(200..300).contains(&status) {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        bail!("{msg} (HTTP {status})");
    }
    Ok(value)
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").ok_or_else(|| anyhow!("bad chunk"))?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).ok_or_else(|| anyhow!("short chunk"))?);
        s = rest.get(n + 2..).unwrap_or("");
    }
}
