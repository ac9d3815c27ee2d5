//! Layer 5 face, the API's client over its Unix socket (what `lbctl`, the lab and the tests
//! use; `curl --unix-socket` works just as well): HTTP/1.1 through hyper, one request per
//! connection, bounded in time.
use std::{path::Path, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one request may take, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("lbd is not running (no API socket at {0}); start it with `lbd --config FILE`")]
    NotRunning(String),
    /// The socket is root-only.
    #[error("permission denied on {0}: the API is root-only, run lbctl as root")]
    PermissionDenied(String),
    /// Connecting failed otherwise.
    #[error("cannot connect to {socket}: {cause}")]
    Connect {
        /// The socket path.
        socket: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The HTTP exchange failed or took longer than its bound.
    #[error("API request: {0}")]
    Http(String),
    /// The answer was not JSON.
    #[error("API response is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The API refused the request: its message and status.
    #[error("{message} (HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's `error` message.
        message: String,
    },
}

/// Sends one request and returns the HTTP status and the JSON body (`Null` when empty).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Http(format!("starting a runtime: {e}")))?;
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, exchange(socket, method, path, body))
            .await
            .map_err(|_| ClientError::Http(format!("no answer within {TIMEOUT:?}")))?
    })
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let shown = socket.display().to_string();
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning(shown.clone())
            }
            std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(shown.clone()),
            _ => ClientError::Connect {
                socket: shown.clone(),
                cause: e,
            },
        })?;
    let http = |e: hyper::Error| ClientError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lbd")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let answer = sender.send_request(req).await.map_err(http)?;
    let status = answer.status().as_u16();
    let bytes = answer.into_body().collect().await.map_err(http)?.to_bytes();
    driver.abort();
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(ClientError::NotJson)?
    };
    Ok((status, value))
}

/// Like [`request`], but a non-2xx status becomes [`ClientError::Refused`] with the API's
/// message.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, ClientError> {
    let (status, value) = request(socket, method, path, body)?;
    if !(200..300).contains(&status) {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        return Err(ClientError::Refused { status, message });
    }
    Ok(value)
}
