//! The API's endpoints: views (status, stats, VIPs, VMs, the diff against the config), changes
//! (VIPs, backends, health checks, plans, whole desired states, reloads, VMs), each change an
//! audit line.
use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State},
    http::StatusCode,
    routing::{get, post, put},
    Extension, Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize};

use super::{audit, ApiContext, ApiError, Peer};
use crate::{
    controller::Command,
    model::{
        config::{Config, HealthConfig, VipConfig},
        diff::{diff, Change},
        shown,
        trace::{TraceList, TraceQuery},
        validate_vips,
        wire::{
            ApplyReport, ApplyRequest, BackendChange, BackendHealth, ChangeResult, ConnList,
            ConnQuery, Plan, PlanRequest, PoolView, StatsView, StatusView, VipName, VipView,
            VmRequest,
        },
        Error,
    },
    workers::{pool::PoolCommand, reload},
};

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;
/// Largest whole desired state `POST /v1/apply` accepts, in bytes.
const MAX_APPLY: usize = 16 << 20;

type Ctx = State<ApiContext>;
type Answer<T> = Result<Json<T>, ApiError>;

fn parse_body<T: DeserializeOwned>(body: &Bytes, limit: usize) -> Result<T, ApiError> {
    if body.len() > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {limit} bytes"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

/// The endpoints, over `ctx`.
pub(super) fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/stats", get(stats))
        .route("/v1/vips", get(vips).post(add_vip).delete(remove_vip))
        .route("/v1/vips/health", put(set_health))
        .route("/v1/backends", post(add_backend).delete(remove_backend))
        .route("/v1/plan", post(plan))
        .route(
            "/v1/apply",
            post(apply).layer(DefaultBodyLimit::max(MAX_APPLY + 1)),
        )
        .route("/v1/reload", post(reload_config))
        .route("/v1/diff", get(config_diff))
        .route("/v1/conns", get(conns))
        .route("/v1/trace", post(trace))
        .route("/v1/health", get(health))
        .route("/v1/vms", get(list_vms).post(create_vm).delete(delete_vm))
        .fallback(not_found)
        .with_state(ctx)
}

async fn status(State(c): Ctx) -> Answer<StatusView> {
    let mut s = c.handle.call(Command::Status).await?;
    s.config = c.source.path.display().to_string();
    s.runtime_changes = runtime_changes(&c).await.map(|d| d.len()).ok();
    Ok(Json(s))
}

/// What the running desired state has that the config file has not (runtime changes).
async fn runtime_changes(c: &ApiContext) -> Result<Vec<Change>, Error> {
    let (cfg, _) = c.source.load()?;
    let running = c.handle.call(Command::Desired).await?;
    Ok(diff(&cfg.vips, &running))
}

async fn config_diff(State(c): Ctx) -> Answer<Vec<Change>> {
    Ok(Json(runtime_changes(&c).await?))
}

async fn conns(State(c): Ctx, Query(q): Query<ConnQuery>) -> Answer<ConnList> {
    Ok(Json(c.handle.call(|tx| Command::Conns(q, tx)).await??))
}

async fn trace(State(c): Ctx, Extension(peer): Extension<Peer>, body: Bytes) -> Answer<TraceList> {
    let q: TraceQuery = parse_body(&body, MAX_BODY)?;
    audit(peer, "trace", &format!("{q:?}"), None);
    Ok(Json(crate::face::trace::collect(&c.handle, q).await?))
}

async fn health(State(c): Ctx) -> Answer<Vec<BackendHealth>> {
    Ok(Json(c.handle.call(Command::Health).await?))
}

async fn stats(State(c): Ctx) -> Answer<StatsView> {
    Ok(Json(c.handle.call(Command::Stats).await??))
}

async fn vips(State(c): Ctx) -> Answer<Vec<VipView>> {
    Ok(Json(c.handle.call(Command::Vips).await?))
}

async fn add_backend(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<ChangeResult> {
    let change: BackendChange = parse_body(&body, MAX_BODY)?;
    let what = format!(
        "vip {} backend {} weight {}",
        shown(&change.vip),
        std::net::SocketAddr::new(change.addr, change.port),
        change.weight.unwrap_or(1)
    );
    let done = c
        .handle
        .call(|tx| Command::AddBackend(change, tx))
        .await??;
    audit(peer, "backend add", &what, Some(done.moved_share));
    Ok(Json(done))
}

async fn remove_backend(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<ChangeResult> {
    let change: BackendChange = parse_body(&body, MAX_BODY)?;
    let what = format!(
        "vip {} backend {}",
        shown(&change.vip),
        std::net::SocketAddr::new(change.addr, change.port)
    );
    let done = c
        .handle
        .call(|tx| Command::RemoveBackend(change, tx))
        .await??;
    audit(peer, "backend remove", &what, Some(done.moved_share));
    Ok(Json(done))
}

async fn add_vip(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<Vec<VipView>> {
    let cfg: VipConfig = parse_body(&body, MAX_BODY)?;
    if cfg.pool.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "pool: a pooled VIP comes from the config file (its VM manager starts with it): \
             add it there and run `lbctl reload`"
                .into(),
        ));
    }
    let what = format!(
        "vip {} {}:{} {:?}",
        shown(&cfg.name),
        cfg.addr,
        cfg.port,
        cfg.proto
    );
    c.handle
        .call(|tx| Command::AddVip(Box::new(cfg), tx))
        .await??;
    audit(peer, "vip add", &what, None);
    Ok(Json(c.handle.call(Command::Vips).await?))
}

async fn remove_vip(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<Vec<VipView>> {
    let req: VipName = parse_body(&body, MAX_BODY)?;
    let what = format!("vip {}", shown(&req.name));
    c.handle
        .call(|tx| Command::RemoveVip(req.name, tx))
        .await??;
    audit(peer, "vip remove", &what, None);
    Ok(Json(c.handle.call(Command::Vips).await?))
}

/// Body of `PUT /v1/vips/health`: a VIP's health check (none: no check).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthChange {
    vip: String,
    #[serde(default)]
    health: Option<HealthConfig>,
}

async fn set_health(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<ApplyReport> {
    let req: HealthChange = parse_body(&body, MAX_BODY)?;
    let mut vips = c.handle.call(Command::Desired).await?;
    let vip = vips
        .iter_mut()
        .find(|v| v.name == req.vip)
        .ok_or_else(|| Error::not_found("vip", format!("no VIP named {}", shown(&req.vip))))?;
    vip.health = req.health;
    let what = format!(
        "vip {} health {}",
        shown(&req.vip),
        vip.health
            .as_ref()
            .map_or("none".into(), |h| format!("{:?}", h.kind).to_lowercase())
    );
    let cfg = Config {
        lbd: c.running.clone(),
        vips,
    };
    let report = reload::apply(&c.handle, &c.pools, cfg, None, None, false).await?;
    audit(peer, "vip health", &what, None);
    Ok(Json(report))
}

async fn plan(State(c): Ctx, Extension(peer): Extension<Peer>, body: Bytes) -> Answer<Plan> {
    let req: PlanRequest = parse_body(&body, MAX_BODY)?;
    let what = format!(
        "vip {} {:?} {}",
        shown(&req.vip),
        req.op,
        std::net::SocketAddr::new(req.addr, req.port)
    );
    let p = c.handle.call(|tx| Command::Plan(req, tx)).await??;
    if p.applied {
        audit(peer, "plan apply", &what, Some(p.moved_share));
    }
    Ok(Json(p))
}

async fn apply(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<ApplyReport> {
    let req: ApplyRequest = parse_body(&body, MAX_APPLY)?;
    let has_lbd = toml::from_str::<toml::Table>(&req.config)
        .map(|t| t.contains_key("lbd"))
        .unwrap_or(false);
    let mut cfg = Config::from_toml(&req.config)?;
    if has_lbd {
        c.source.replace(&mut cfg.lbd);
        cfg.lbd.validate()?;
    } else {
        cfg.lbd = c.running.clone();
    }
    if !req.prune {
        // The VIPs the text does not name stay as they run.
        let running = c.handle.call(Command::Desired).await?;
        let named: Vec<String> = cfg.vips.iter().map(|v| v.name.clone()).collect();
        let kept = running.into_iter().filter(|v| !named.contains(&v.name));
        cfg.vips = kept.chain(cfg.vips).collect();
    }
    validate_vips(&cfg.vips)?;
    let running = has_lbd.then_some(&c.running);
    let report = reload::apply(&c.handle, &c.pools, cfg, running, None, req.dry_run).await?;
    if report.applied {
        audit(peer, "apply", &reload::summary(&report), None);
    }
    Ok(Json(report))
}

/// Body of `POST /v1/reload`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    #[serde(default)]
    dry_run: bool,
}

async fn reload_config(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<ApplyReport> {
    let req: ReloadRequest = if body.is_empty() {
        ReloadRequest::default()
    } else {
        parse_body(&body, MAX_BODY)?
    };
    let report = reload::reload(&c.source, &c.running, &c.handle, &c.pools, req.dry_run).await?;
    if report.applied {
        audit(peer, "reload", &reload::summary(&report), None);
    }
    Ok(Json(report))
}

async fn list_vms(State(c): Ctx) -> Json<Vec<PoolView>> {
    Json(c.pools.snapshot())
}

async fn pool_call<T>(
    c: &ApiContext,
    pool: &str,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> PoolCommand,
) -> Result<T, ApiError> {
    let tx = c.pools.sender(pool)?;
    let (reply, wait) = tokio::sync::oneshot::channel();
    let gone = || ApiError::from(Error::busy("pool", "its manager stopped"));
    tx.send(make(reply)).await.map_err(|_| gone())?;
    wait.await.map_err(|_| gone())
}

async fn create_vm(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<serde_json::Value> {
    let req: VmRequest = parse_body(&body, MAX_BODY)?;
    if let Some(cpu) = req.cpu_limit.filter(|c| !(0.01..=64.0).contains(c)) {
        return Err(Error::invalid("cpu_limit", format!("{cpu} must be 0.01-64 cores")).into());
    }
    let name = pool_call(&c, &req.pool, |r| PoolCommand::Create(req.cpu_limit, r)).await??;
    audit(
        peer,
        "vm create",
        &format!("pool {} vm {name}", shown(&req.pool)),
        None,
    );
    Ok(Json(serde_json::json!({ "created": name })))
}

async fn delete_vm(
    State(c): Ctx,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Answer<serde_json::Value> {
    let req: VmRequest = parse_body(&body, MAX_BODY)?;
    let name = req.name.ok_or_else(|| Error::invalid("name", "required"))?;
    pool_call(&c, &req.pool, |r| PoolCommand::Delete(name.clone(), r)).await??;
    audit(
        peer,
        "vm delete",
        &format!("pool {} vm {}", shown(&req.pool), shown(&name)),
        None,
    );
    Ok(Json(serde_json::json!({ "draining": name })))
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "path: no such endpoint (see GET /v1/status, /v1/stats, /v1/diff, GET|POST|DELETE \
         /v1/vips, PUT /v1/vips/health, POST|DELETE /v1/backends, POST /v1/plan, /v1/apply, \
         /v1/reload, GET /v1/conns, /v1/health, GET|POST|DELETE /v1/vms)"
            .into(),
    )
}
