//! Layer 5 face, the HTTP/JSON API of `lbd` on a root-only Unix socket (and, for a group that
//! may only read, a second socket serving GET requests only). Its wire types are the model's;
//! every error is `{"error": "..."}` naming the field and the problem, its kind picking the
//! status. Each connection has a bounded time to send its request head, connections are
//! bounded in number, and every change is an audit line naming the peer's uid.
mod routes;

use std::{
    future::Future,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::UnixListener, sync::Semaphore, task::JoinSet};
use tower::ServiceExt;

use crate::{
    controller::Handle,
    model::{config::Daemon, Error, ErrorKind},
    sys::error::{Context, Result},
    workers::{pool::Pools, reload::Source},
};

/// How long a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once per socket; more are closed at once (lbd raises its file
/// limit well above this).
const MAX_CONNECTIONS: usize = 512;
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiContext {
    /// The controller.
    pub handle: Handle,
    /// The VM pools.
    pub pools: Pools,
    /// Where the config comes from (reload, diff).
    pub source: Source,
    /// The daemon settings lbd runs with.
    pub running: Daemon,
}

/// Who sent a request: the uid of the peer of its connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<u32>);

/// An API error: HTTP status and message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The status of an error of `kind`.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(status_of(e.kind), e.to_string())
    }
}

/// Default socket path of an instance.
pub fn default_socket(instance: &str) -> PathBuf {
    PathBuf::from(format!("/run/lbd/{instance}.sock"))
}

/// The read-only socket beside `socket`: `<socket>.ro`.
pub fn read_only_socket(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".ro");
    PathBuf::from(name)
}

fn bind_mode(path: &Path, mode: u32) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by a killed lbd would make bind fail; the instance lock is ours, so
    // nothing else listens on it.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
    Ok(listener)
}

/// Binds the API socket (mode 0600, owned by the caller, which is root).
pub fn bind(path: &Path) -> Result<UnixListener> {
    bind_mode(path, 0o600)
}

/// Binds the read-only socket (mode 0660, group `group`).
pub fn bind_read_only(path: &Path, group: &str) -> Result<UnixListener> {
    let gid = nix::unistd::Group::from_name(group)
        .with_context(|| format!("looking up group {group:?}"))?
        .with_context(|| format!("group {group:?} (lbd.read_group)"))?
        .gid;
    let listener = bind_mode(path, 0o660)?;
    std::os::unix::fs::chown(path, None, Some(gid.as_raw()))
        .with_context(|| format!("chgrp {group} {}", path.display()))?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` resolves (then waits briefly for requests
/// in flight). With `read_only`, only GET requests are served.
pub async fn serve(
    listener: UnixListener,
    ctx: ApiContext,
    read_only: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = routes::router(ctx);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: the API stays up and tries again shortly.
                tracing::warn!("API: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("API: {MAX_CONNECTIONS} connections open; refusing one more");
            continue;
        };
        let peer = Peer(stream.peer_cred().ok().map(|c| c.uid()));
        let app = app.clone();
        connections.spawn(async move {
            let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(peer);
                let app = app.clone();
                async move {
                    if read_only && req.method() != Method::GET {
                        let refused = ApiError(
                            StatusCode::FORBIDDEN,
                            "socket: this socket is read-only (GET only); changes go through \
                             the root-only socket"
                                .into(),
                        );
                        return Ok(refused.into_response());
                    }
                    app.oneshot(req).await
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!("API connection: {e}");
            }
            drop(slot);
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.shutdown().await;
    }
    Ok(())
}

/// Writes an audit line for a change: who (the peer's uid), what, and what it moved.
pub fn audit(peer: Peer, action: &str, detail: &str, moved_share: Option<f64>) {
    let uid = peer.0.map_or("unknown".to_string(), |u| u.to_string());
    let moved = moved_share.map_or("-".to_string(), |m| format!("{:.2}%", m * 100.0));
    tracing::info!(target: "audit", uid = %uid, action = %action, moved = %moved, "{detail}");
}
