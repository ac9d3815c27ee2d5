//! Layer 5 face, the HTTP/JSON API of `lbd` on a root-only Unix socket (its wire types are the
//! model's). Every error is `{"error": "..."}` naming the field and the problem; the error's
//! kind picks the status.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use crate::{
    controller::{Command, Handle},
    model::{
        config::VipConfig,
        wire::{
            BackendChange, Plan, PlanRequest, PoolView, StatsView, StatusView, VipName, VipView,
            VmRequest,
        },
        Error, ErrorKind,
    },
    sys::error::{Context, Result},
    workers::pool::{self, PoolCommand, Pools},
};

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;

/// An API error: HTTP status and message.
struct ApiError(StatusCode, String);

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

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {MAX_BODY} bytes"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

async fn vips(State(h): State<Handle>) -> Result<Json<Vec<VipView>>, ApiError> {
    Ok(Json(h.call(Command::Vips).await?))
}

async fn add_backend(State(h): State<Handle>, body: Bytes) -> Result<Json<VipView>, ApiError> {
    let change: BackendChange = parse_body(&body)?;
    Ok(Json(h.call(|tx| Command::AddBackend(change, tx)).await??))
}

async fn remove_backend(State(h): State<Handle>, body: Bytes) -> Result<Json<VipView>, ApiError> {
    let change: BackendChange = parse_body(&body)?;
    Ok(Json(
        h.call(|tx| Command::RemoveBackend(change, tx)).await??,
    ))
}

async fn add_vip(State(h): State<Handle>, body: Bytes) -> Result<Json<Vec<VipView>>, ApiError> {
    let cfg: VipConfig = parse_body(&body)?;
    if cfg.pool.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "pool: a pooled VIP comes from the config file (its VM manager starts with lbd): \
             add it there and restart lbd"
                .into(),
        ));
    }
    h.call(|tx| Command::AddVip(Box::new(cfg), tx)).await??;
    Ok(Json(h.call(Command::Vips).await?))
}

async fn remove_vip(State(h): State<Handle>, body: Bytes) -> Result<Json<Vec<VipView>>, ApiError> {
    let req: VipName = parse_body(&body)?;
    h.call(|tx| Command::RemoveVip(req.name, tx)).await??;
    Ok(Json(h.call(Command::Vips).await?))
}

async fn plan(State(h): State<Handle>, body: Bytes) -> Result<Json<Plan>, ApiError> {
    let req: PlanRequest = parse_body(&body)?;
    Ok(Json(h.call(|tx| Command::Plan(req, tx)).await??))
}

async fn stats(State(h): State<Handle>) -> Result<Json<StatsView>, ApiError> {
    Ok(Json(h.call(Command::Stats).await??))
}

async fn status(State(h): State<Handle>) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(h.call(Command::Status).await?))
}

/// What the API handlers share: the controller and the VM pools.
#[derive(Clone)]
struct AppState {
    handle: Handle,
    pools: Pools,
}

impl axum::extract::FromRef<AppState> for Handle {
    fn from_ref(s: &AppState) -> Handle {
        s.handle.clone()
    }
}

impl axum::extract::FromRef<AppState> for Pools {
    fn from_ref(s: &AppState) -> Pools {
        s.pools.clone()
    }
}

async fn list_vms(State(pools): State<Pools>) -> Json<Vec<PoolView>> {
    Json(pool::snapshot(&pools))
}

fn pool_sender(
    pools: &Pools,
    name: &str,
) -> Result<tokio::sync::mpsc::Sender<PoolCommand>, ApiError> {
    let pools = pools.lock().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "pools: lock poisoned".into(),
        )
    })?;
    pools.get(name).map(|(_, tx)| tx.clone()).ok_or_else(|| {
        let known: Vec<&str> = pools.keys().map(String::as_str).collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!("pool: no pool {name:?} (pooled VIPs: {})", known.join(", ")),
        )
    })
}

async fn pool_call<T>(
    tx: tokio::sync::mpsc::Sender<PoolCommand>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> PoolCommand,
) -> Result<T, ApiError> {
    let (reply, wait) = tokio::sync::oneshot::channel();
    let gone = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "pool: manager stopped".into(),
        )
    };
    tx.send(make(reply)).await.map_err(|_| gone())?;
    wait.await.map_err(|_| gone())
}

async fn create_vm(
    State(pools): State<Pools>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: VmRequest = parse_body(&body)?;
    if let Some(c) = req.cpu_limit.filter(|c| !(0.01..=64.0).contains(c)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("cpu_limit: {c} must be 0.01-64 cores"),
        ));
    }
    let tx = pool_sender(&pools, &req.pool)?;
    let name = pool_call(tx, |r| PoolCommand::Create(req.cpu_limit, r)).await??;
    Ok(Json(serde_json::json!({ "created": name })))
}

async fn delete_vm(
    State(pools): State<Pools>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: VmRequest = parse_body(&body)?;
    let name = req
        .name
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "name: required".into()))?;
    let tx = pool_sender(&pools, &req.pool)?;
    pool_call(tx, |r| PoolCommand::Delete(name.clone(), r)).await??;
    Ok(Json(serde_json::json!({ "draining": name })))
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "path: no such endpoint (see GET /v1/status, /v1/stats, GET|POST|DELETE /v1/vips, \
         POST|DELETE /v1/backends, POST /v1/plan, GET|POST|DELETE /v1/vms)"
            .into(),
    )
}

/// Default socket path of an instance.
pub fn default_socket(instance: &str) -> PathBuf {
    PathBuf::from(format!("/run/lbd/{instance}.sock"))
}

/// Binds the API socket (mode 0600, owned by the caller, which is root).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by a killed lbd would make bind fail; nothing else listens on it.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    Ok(listener)
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    handle: Handle,
    pools: Pools,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/v1/vips", get(vips).post(add_vip).delete(remove_vip))
        .route(
            "/v1/backends",
            axum::routing::post(add_backend).delete(remove_backend),
        )
        .route("/v1/plan", axum::routing::post(plan))
        .route("/v1/stats", get(stats))
        .route("/v1/status", get(status))
        .route("/v1/vms", get(list_vms).post(create_vm).delete(delete_vm))
        .fallback(not_found)
        .with_state(AppState { handle, pools });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("API server")
}
