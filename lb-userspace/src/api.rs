//! The HTTP/JSON API of `lbd` on a root-only Unix socket, and its wire types (shared with
//! `lbctl`). Every error is `{"error": "..."}` naming the field and the problem.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::net::UnixListener;

use crate::{
    config::{Mode, Proto, VipConfig},
    controller::{Command, Handle},
    plan::Plan,
    pool::{PoolCommand, PoolView, Pools},
};

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;

/// A backend of a VIP, as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackendView {
    /// Data-path id (1..).
    pub id: u32,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Packets sent to it.
    pub packets: u64,
    /// Bytes sent to it.
    pub bytes: u64,
    /// Flows balanced to it.
    pub new_flows: u64,
    /// Flows on it that are still open (from the connection table).
    pub active_flows: u64,
    /// `active` (weight > 0), `draining` (weight 0, flows still open), `drained` (weight 0,
    /// none left or the drain deadline passed: safe to remove) or `down` (failing its health
    /// checks: out of the ring).
    pub state: String,
    /// Weight in the ring now: configured weight × agent percentage × telemetry factor ×
    /// slow-start, at a scale of 100 per unit of configured weight.
    #[serde(default)]
    pub ring_weight: u32,
    /// CPU use its agent reported, as a share of its limit.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Requests in flight its agent reported.
    #[serde(default)]
    pub inflight: Option<u64>,
}

impl BackendView {
    /// Address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

/// The state of a backend from its weight and active flows.
pub fn backend_state(weight: u32, active_flows: u64) -> &'static str {
    match (weight, active_flows) {
        (0, 0) => "drained",
        (0, _) => "draining",
        _ => "active",
    }
}

/// A VIP with its backends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VipView {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Forwarding mode.
    pub mode: Mode,
    /// Maglev table size.
    pub ring_size: u32,
    /// Packets to the VIP.
    pub packets: u64,
    /// Bytes to the VIP.
    pub bytes: u64,
    /// Flows balanced.
    pub new_flows: u64,
    /// Backends.
    pub backends: Vec<BackendView>,
}

/// Body of `POST /v1/backends` (add or reweight) and `DELETE /v1/backends`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendChange {
    /// VIP name or `ADDR:PORT/PROTO`.
    pub vip: String,
    /// Backend address.
    pub addr: IpAddr,
    /// Backend port.
    pub port: u16,
    /// Weight (add only; default 1).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// What `POST /v1/plan` is asked: a change to one backend of a VIP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// VIP name or `ADDR:PORT/PROTO`.
    pub vip: String,
    /// `add`, `remove` or `weight`.
    pub op: PlanOp,
    /// Backend address.
    pub addr: IpAddr,
    /// Backend port.
    pub port: u16,
    /// Weight (`add`: default 1; `weight`: required).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Apply the change right after planning it (in one controller step).
    #[serde(default)]
    pub apply: bool,
}

/// The operation a plan is about.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlanOp {
    /// Add a backend (or change its weight if present).
    Add,
    /// Remove a backend.
    Remove,
    /// Change a backend's weight.
    Weight,
}

/// Data-path counters by name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsView {
    /// Packets per verdict reason, summed over CPUs.
    pub counters: BTreeMap<String, u64>,
    /// Ring changes the controller applied (backend records, ring swap, VIP update).
    pub changes: u64,
    /// Seconds spent applying them, in all.
    pub change_seconds_total: f64,
    /// Seconds the last one took.
    pub last_change_seconds: f64,
}

/// Identity and size of the running instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusView {
    /// Instance name.
    pub instance: String,
    /// Interfaces `lb_xdp` is attached to.
    pub interfaces: Vec<String>,
    /// Where the maps are pinned.
    pub pin_dir: String,
    /// Number of VIPs.
    pub vips: usize,
    /// Number of distinct backends.
    pub backends: usize,
}

/// An API error: HTTP status and message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let msg = format!("{e:#}");
        let status = if msg.starts_with("vip: no VIP") || msg.contains("is not a backend of") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, msg)
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

/// Body of `DELETE /v1/vips`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipName {
    /// VIP name or `ADDR:PORT/PROTO`.
    pub name: String,
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

/// Body of `POST /v1/vms` (create one VM) and `DELETE /v1/vms` (drain and delete one).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRequest {
    /// The pool: its VIP's name.
    pub pool: String,
    /// VM name (delete only).
    #[serde(default)]
    pub name: Option<String>,
    /// CPU limit in cores (create only; default the pool's).
    #[serde(default)]
    pub cpu_limit: Option<f64>,
}

async fn list_vms(State(pools): State<Pools>) -> Json<Vec<PoolView>> {
    Json(crate::pool::snapshot(&pools))
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
