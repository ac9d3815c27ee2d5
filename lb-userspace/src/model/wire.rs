//! What the API carries (JSON, shared by `lbd`, `lbctl` and the tests): views of the running
//! state, change requests, and the states of backends and VMs as enums (serialised as the
//! lowercase words operators see).
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use super::config::{Hook, Mode, Proto, TableKind};

/// Where a backend stands in its VIP's ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// In the ring with a weight above 0.
    Active,
    /// Weight 0 (drained by the operator or an agent), flows still open.
    Draining,
    /// Weight 0 and no flow left, or the drain deadline passed: safe to remove.
    Drained,
    /// Failing its health checks: out of the ring (its tracked flows stay).
    Down,
}

impl BackendState {
    /// Every state.
    pub const ALL: [BackendState; 4] = [
        BackendState::Active,
        BackendState::Draining,
        BackendState::Drained,
        BackendState::Down,
    ];

    /// The state of a backend that is not down, from its ring weight and its open flows
    /// (`open` counts as 0 once the drain deadline has passed).
    pub fn of(weight: u32, open: u64) -> Self {
        match (weight, open) {
            (0, 0) => BackendState::Drained,
            (0, _) => BackendState::Draining,
            _ => BackendState::Active,
        }
    }

    /// The word the CLI and metrics show.
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Drained => "drained",
            BackendState::Down => "down",
        }
    }
}

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
    /// Where it stands in the ring.
    pub state: BackendState,
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
    /// Whether its VIP health-checks it (the detail is `GET /v1/health`'s).
    #[serde(default)]
    pub checked: bool,
}

impl BackendView {
    /// Address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
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
    /// Table size, slots.
    pub ring_size: u32,
    /// Table kind.
    #[serde(default)]
    pub table: TableKind,
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

/// One backend's part in a planned change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackendPlan {
    /// The backend.
    pub backend: SocketAddr,
    /// Share of the table it owns now.
    pub share_before: f64,
    /// Share it would own after the change.
    pub share_after: f64,
    /// Share of the table it would lose to other backends.
    pub moves_away: f64,
    /// Share of the table it would take from other backends.
    pub moves_in: f64,
}

/// A planned change of one VIP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// The VIP.
    pub vip: String,
    /// Table size.
    pub ring_size: u32,
    /// Share of the table whose backend would change.
    pub moved_share: f64,
    /// Per backend, in address order.
    pub backends: Vec<BackendPlan>,
    /// Whether the change was applied.
    pub applied: bool,
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
    /// Interfaces the balancer is attached to.
    pub interfaces: Vec<String>,
    /// The hook on each of them (VMs' interfaces included), and why.
    #[serde(default)]
    pub attached: Vec<AttachedView>,
    /// Where the maps are pinned.
    pub pin_dir: String,
    /// Number of VIPs.
    pub vips: usize,
    /// Number of distinct backends.
    pub backends: usize,
    /// The config file lbd runs from (its reloads read it).
    #[serde(default)]
    pub config: String,
    /// Runtime changes: differences of the running desired state from the config file
    /// (`lbctl diff` lists them; none if the file cannot be read now).
    #[serde(default)]
    pub runtime_changes: Option<usize>,
}

/// Where the balancer runs on one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedView {
    /// Interface name.
    pub iface: String,
    /// The hook it runs at.
    pub hook: Hook,
    /// Why that hook (`configured`, or auto's reading of the driver).
    pub why: String,
}

/// Body of `DELETE /v1/vips`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipName {
    /// VIP name or `ADDR:PORT/PROTO`.
    pub name: String,
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

/// Whether a VM is serving, as its provider sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    /// Made, server not started.
    Created,
    /// Its server is running.
    Running,
    /// Its server has exited (crashed or stopped).
    Stopped,
    /// It no longer exists.
    Missing,
}

/// Where a pool's VM stands, as `lbctl vm list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Created, not yet `rise` good checks.
    Joining,
    /// Serving in the ring.
    Active,
    /// Being drained before its deletion.
    Draining,
    /// Drained: about to be deleted.
    Drained,
    /// Failing its health checks.
    Down,
    /// Its backend is not in the VIP (it was just removed).
    Missing,
}

impl VmState {
    /// The state of a VM whose backend is in `backend` (none: missing), `joined` or not yet.
    pub fn of(backend: Option<BackendState>, joined: bool) -> Self {
        match backend {
            None => VmState::Missing,
            Some(BackendState::Down) if !joined => VmState::Joining,
            Some(BackendState::Down) => VmState::Down,
            Some(BackendState::Active) => VmState::Active,
            Some(BackendState::Draining) => VmState::Draining,
            Some(BackendState::Drained) => VmState::Drained,
        }
    }

    /// The word the CLI and metrics show.
    pub fn name(self) -> &'static str {
        match self {
            VmState::Joining => "joining",
            VmState::Active => "active",
            VmState::Draining => "draining",
            VmState::Drained => "drained",
            VmState::Down => "down",
            VmState::Missing => "missing",
        }
    }
}

/// A VM as `lbctl vm list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmView {
    /// Name (`<pool>-<slot>`).
    pub name: String,
    /// Address:port the VIP sends it flows on.
    pub backend: SocketAddr,
    /// Provider status.
    pub status: VmStatus,
    /// Where it stands in the pool.
    pub state: VmState,
    /// Ring weight now (see `BackendView::ring_weight`).
    pub ring_weight: u32,
    /// CPU use against its limit, from its agent.
    pub cpu: Option<f64>,
    /// CPU limit in cores.
    pub cpu_limit: f64,
    /// Requests in flight, from its agent.
    pub inflight: Option<u64>,
    /// Open flows in the connection table.
    pub active_flows: u64,
    /// Flows balanced to it so far.
    pub new_flows: u64,
    /// Seconds since it was created.
    pub age_s: f64,
    /// Milliseconds from create to serving (joined the ring), once it has; none for a VM
    /// adopted from an earlier lbd.
    pub serving_after_ms: Option<u64>,
    /// The hypervisor or engine it runs on (a libvirt URI), where the provider has several.
    #[serde(default)]
    pub host: Option<String>,
}

/// A scaling decision or lifecycle event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened and why.
    pub what: String,
}

/// A pool as `lbctl vm list` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PoolView {
    /// VIP name.
    pub vip: String,
    /// Provider kind.
    pub provider: String,
    /// Fewest VMs.
    pub min: u32,
    /// Most VMs.
    pub max: u32,
    /// Target mean CPU use.
    pub target_utilisation: f64,
    /// Mean CPU use of the active VMs (None: no reports yet).
    pub utilisation: Option<f64>,
    /// The VMs.
    pub vms: Vec<VmView>,
    /// Latest decisions, oldest first.
    pub events: Vec<Event>,
    /// VMs created or drained so far, by reason: `scale_out`, `scale_in`, `min` (below
    /// min), `replace` (server died), `requested` (lbctl).
    pub decisions: BTreeMap<String, u64>,
    /// The provider's failures so far, by kind: `engine_unreachable`, `image_missing`,
    /// `quota_refused`, `engine`, `system`, `no_capacity`, `bad_record`.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// The last of them, with when.
    #[serde(default)]
    pub last_error: Option<Event>,
}

/// What applying a desired state does to one VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyAction {
    /// A new VIP.
    Added,
    /// A VIP that goes.
    Removed,
    /// Its backends or settings change (one ring rebuild).
    Changed,
}

/// One VIP's part in an applied (or previewed) desired state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VipApply {
    /// The VIP.
    pub vip: String,
    /// What happens to it.
    pub action: ApplyAction,
    /// Share of its table (so of new flows) whose backend changes: 1 for an added or removed
    /// VIP, or one whose address, port, protocol, mode or ring size changes.
    pub moved_share: f64,
    /// Backends before and after.
    pub backends: (usize, usize),
}

/// Body of `POST /v1/apply`: VIPs to make the desired state in one batch (the `[[vip]]`
/// tables of a config file): each added or replaced whole; with `prune`, the whole desired
/// state.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The config text whose VIPs become the desired state (its `[lbd]` table, if any, must
    /// equal the running daemon's settings).
    pub config: String,
    /// Only report what applying it would do.
    #[serde(default)]
    pub dry_run: bool,
    /// Remove the running VIPs the text does not have (without: they stay as they are).
    #[serde(default)]
    pub prune: bool,
}

/// What an apply (or a reload) did, or would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Whether the changes were made (false for a preview or when nothing differs).
    pub applied: bool,
    /// VIPs that change, in name order.
    pub vips: Vec<VipApply>,
    /// Every difference, in words.
    pub changes: Vec<super::diff::Change>,
    /// Daemon settings that differ but take effect only when lbd restarts.
    pub restart_needed: Vec<String>,
}

/// Body of `POST /v1/backends` and `DELETE /v1/backends` answers: the change made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeResult {
    /// The VIP.
    pub vip: String,
    /// Its backends now.
    pub backends: usize,
    /// Share of its table the change moved.
    pub moved_share: f64,
}

/// The last health check of a backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed (`refused`, `timeout`, `reset`, `status 503`, `agent: down`, ...), or
    /// `ok`.
    pub reason: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A backend's health checking, as HAProxy's `show servers state` tells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthDetail {
    /// `tcp`, `http` or `agent`.
    pub kind: super::config::CheckKind,
    /// Whether the checks have it up.
    pub up: bool,
    /// When it entered that state, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// The last check, once one ran.
    pub last: Option<CheckResult>,
    /// Checks in a row that passed.
    pub consecutive_ok: u32,
    /// Checks in a row that failed.
    pub consecutive_failed: u32,
    /// Checks run.
    pub checks: u64,
    /// Failed checks by reason.
    pub failures: BTreeMap<String, u64>,
}

/// Which flows `GET /v1/conns` lists (query parameters); every filter given must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnQuery {
    /// VIP name.
    #[serde(default)]
    pub vip: Option<String>,
    /// Backend `ADDR:PORT`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Client address, or `ADDR:PORT`.
    #[serde(default)]
    pub client: Option<String>,
    /// Most flows listed (default 100, at most 10,000); `matched` counts them all.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A flow the data path tracks, as `ipvsadm -Lnc` shows one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// `tcp` or `udp`.
    pub proto: super::config::Proto,
    /// The client.
    pub client: SocketAddr,
    /// The VIP's name.
    pub vip: String,
    /// The VIP's address and port.
    pub service: SocketAddr,
    /// The backend it goes to.
    pub backend: SocketAddr,
    /// `established`, `closing` (the client sent FIN or RST), `idle` (UDP past its idle
    /// timeout: its next datagram is balanced afresh) or `probation` (past the new-flow
    /// limit, before its second packet).
    pub state: String,
    /// Seconds since it was recorded (TCP) or last seen (UDP), to the data path's clock
    /// (about 1.07 s a tick).
    pub age_s: u64,
}

/// The answer of `GET /v1/conns`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnList {
    /// Flows matching the query (every one, however many are listed).
    pub matched: usize,
    /// The first `limit` of them.
    pub conns: Vec<ConnView>,
}

/// A checked backend's health detail (`GET /v1/health`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// The VIP.
    pub vip: String,
    /// The backend.
    pub backend: SocketAddr,
    /// Its checking.
    pub detail: HealthDetail,
}
