//! The declarative TOML config of `lbd` (and the desired state lbd keeps in its state file):
//! the types, their defaults, and parsing; `validate` checks what the types cannot express.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::error::Error;
/// Default flow hash seed: any value works, but every balancer host of a fleet needs the same.
pub const DEFAULT_HASH_SEED: u32 = 0x4c42_5344;
/// Largest backend weight accepted.
pub const MAX_WEIGHT: u32 = 65_535;

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon settings.
    #[serde(default)]
    pub lbd: Daemon,
    /// Virtual services.
    #[serde(default, rename = "vip")]
    pub vips: Vec<VipConfig>,
}

/// `[lbd]`: daemon settings.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    /// Instance name: maps are pinned under /sys/fs/bpf/<instance>/.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Interfaces the balancer attaches to (client-facing and backend-facing).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The hook the balancer runs at on every interface it attaches to (listed ones and the
    /// pools' VM interfaces): `auto` (default) = tc on virtual interfaces (veth, tap, bridge
    /// ports, ...), native XDP on NICs.
    #[serde(default)]
    pub attach: AttachMode,
    /// Per-interface exceptions to `attach`, by interface name (each must be listed in
    /// `interfaces`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attach_per_interface: std::collections::BTreeMap<String, AttachMode>,
    /// Flow hash seed, identical on every balancer host of a fleet.
    #[serde(default = "default_seed")]
    pub hash_seed: u32,
    /// API socket path; default /run/lbd/<instance>.sock.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Where lbd keeps the desired state, rewritten after every change (CLI included) and
    /// restored from on start; default /var/lib/lbd/<instance>.toml.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Loopback address to serve Prometheus metrics on (`/metrics`); none = off.
    #[serde(default)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds after which a draining backend counts as drained even with flows still open.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_s: u64,
    /// Seconds a UDP flow may be idle before its next datagram is balanced afresh.
    #[serde(default = "default_udp_idle")]
    pub udp_idle_timeout_s: u32,
    /// New flows one CPU records in the connection table per second (0 = no limit). Past it
    /// they are still forwarded but kept on probation until their second packet (TCP: the
    /// handshake's ACK), so a flood of spoofed SYNs cannot evict established flows.
    #[serde(default = "default_new_flow_limit")]
    pub max_new_flows_per_cpu: u32,
    /// Flows the connection table holds: a NAT flow takes two entries (forward and reply), a
    /// DSR flow one, about 112 bytes each in the kernel, so the default 1,048,576 takes
    /// 235 MB. The LRU lists are per CPU: each CPU holds its share.
    #[serde(default = "default_max_flows")]
    pub max_flows: u32,
    /// Slots of the Maglev ring memory, 4 bytes each: every VIP takes two buffers of its ring
    /// size (default 16,777,216 = 64 MiB: 128 VIPs at 65537 slots, or 8 at 1048573).
    #[serde(default = "default_ring_slots")]
    pub ring_slots: u32,
    /// What a stop (SIGTERM, Ctrl-C, a service manager's stop) does to the data path: `keep`
    /// (default) leaves it forwarding, pinned for the next lbd, and the pools' VMs serving, so
    /// a restart breaks no flow; `remove` detaches and unpins it and deletes the VMs.
    #[serde(default)]
    pub on_stop: OnStop,
    /// A group whose members may read (never change) the state: lbd then also serves the API,
    /// GET requests only, on `<socket>.ro` (mode 0660, this group).
    #[serde(default)]
    pub read_group: Option<String>,
}

/// Where the balancer runs on an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// tc on virtual interfaces, native XDP on NICs (decided by the interface's driver).
    #[default]
    Auto,
    /// Native XDP (on a veth: its peer needs an XDP program or GRO on, and local senders
    /// need TX checksum offload off).
    Xdp,
    /// tc clsact ingress: the kernel's checksum state is kept, nothing to set on peers.
    Tc,
}

impl std::str::FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "xdp" => Ok(AttachMode::Xdp),
            "tc" => Ok(AttachMode::Tc),
            _ => Err(format!("{s:?} is not an attach mode (auto, xdp, tc)")),
        }
    }
}

/// A hook the balancer runs at on an interface (what [`AttachMode`] resolves to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// Native XDP, in the driver.
    Xdp,
    /// tc clsact ingress (a TCX link).
    Tc,
}

impl Hook {
    /// `xdp` or `tc`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
        }
    }
}

impl Daemon {
    /// The attach mode for interface `iface`.
    pub fn attach_for(&self, iface: &str) -> AttachMode {
        self.attach_per_interface
            .get(iface)
            .copied()
            .unwrap_or(self.attach)
    }
}

/// What a stop does to the data path (see [`Daemon::on_stop`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Leave the data path forwarding and pinned, and the VMs serving.
    #[default]
    Keep,
    /// Detach and unpin the data path, delete the VMs.
    Remove,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            instance: default_instance(),
            interfaces: Vec::new(),
            attach: AttachMode::Auto,
            attach_per_interface: Default::default(),
            hash_seed: DEFAULT_HASH_SEED,
            socket: None,
            state_file: None,
            metrics: None,
            drain_timeout_s: default_drain_timeout(),
            udp_idle_timeout_s: default_udp_idle(),
            max_new_flows_per_cpu: default_new_flow_limit(),
            max_flows: default_max_flows(),
            ring_slots: default_ring_slots(),
            on_stop: OnStop::Keep,
            read_group: None,
        }
    }
}

fn default_max_flows() -> u32 {
    1 << 20
}
fn default_ring_slots() -> u32 {
    lb_common::RING_SLOTS
}
fn default_instance() -> String {
    "lb".into()
}
fn default_drain_timeout() -> u64 {
    300
}
fn default_new_flow_limit() -> u32 {
    125_000
}
fn default_udp_idle() -> u32 {
    30
}
fn default_seed() -> u32 {
    DEFAULT_HASH_SEED
}
fn default_ring_size() -> u32 {
    65537
}
fn default_weight() -> u32 {
    1
}

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => lb_common::PROTO_TCP,
            Proto::Udp => lb_common::PROTO_UDP,
        }
    }
}

/// Forwarding mode of a VIP.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Destination NAT both ways; backends route replies through the balancer.
    #[default]
    Nat,
    /// Direct server return: packets are encapsulated to the backend, which holds the VIP on
    /// a loopback, runs `lb-decap` and answers clients directly.
    Dsr,
}

impl Mode {
    /// The data-path mode code.
    pub fn code(self) -> u8 {
        match self {
            Mode::Nat => lb_common::MODE_NAT,
            Mode::Dsr => lb_common::MODE_DSR,
        }
    }
}

/// `[[vip]]`: one virtual service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// Name used by the CLI and metrics.
    pub name: String,
    /// Address clients connect to.
    pub addr: IpAddr,
    /// Port clients connect to.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// `nat` (default) or `dsr`.
    #[serde(default)]
    pub mode: Mode,
    /// Table size, one of `lb_common::RING_SIZES` (default 65537; Maglev wants well over 100
    /// slots a backend, the consistent table a thousand or more for its balance).
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// How flows map to backends: `maglev` (default; exact balance, a change moves somewhat
    /// more than its share) or `consistent` (a change moves exactly its share, balance within
    /// about √(backends / ring_size)).
    #[serde(default, skip_serializing_if = "TableKind::is_maglev")]
    pub table: TableKind,
    /// Health checking of the backends (none: always considered up).
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// How ring weights follow telemetry (default: the configured weights, as they are).
    #[serde(default)]
    pub weights: WeightsConfig,
    /// Backend VMs the controller creates, scales and deletes for this VIP (then `backend`
    /// lists the pool's VMs, kept by lbd).
    #[serde(default)]
    pub pool: Option<PoolConfig>,
    /// Backends serving the VIP.
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
}

/// How a VIP's table maps flows to backends (see [`VipConfig::table`]).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// Weighted Maglev: exact shares.
    #[default]
    Maglev,
    /// Rendezvous over Maglev's permutations: minimal disruption.
    Consistent,
}

impl TableKind {
    /// The default (left out of saved state).
    pub fn is_maglev(&self) -> bool {
        *self == TableKind::Maglev
    }
}

/// How a health check probes a backend.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connection is accepted.
    #[default]
    Tcp,
    /// `GET <path>` answers with the expected HTTP status.
    Http,
    /// The backend's agent (on `agent_port`) answers with HAProxy agent-check words: `up`,
    /// `down`, `drain`, and a weight percentage such as `75%`.
    Agent,
}

/// `[vip.health]`: HAProxy semantics. A backend goes down after `fall` failed checks in a row
/// and comes back after `rise` good ones; checks run every `inter_ms`, every `fastinter_ms`
/// while the state is changing, and every `downinter_ms` while down.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `tcp` (default) or `http`.
    #[serde(default)]
    pub kind: CheckKind,
    /// HTTP path (`http` only).
    #[serde(default = "default_path")]
    pub path: String,
    /// Expected HTTP status (`http` only).
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Port of the backend's agent (`agent` only).
    #[serde(default)]
    pub agent_port: u16,
    /// Milliseconds between checks of a steady backend.
    #[serde(default = "default_inter")]
    pub inter_ms: u64,
    /// Milliseconds between checks while the state is changing.
    #[serde(default = "default_fastinter")]
    pub fastinter_ms: u64,
    /// Milliseconds between checks of a down backend.
    #[serde(default = "default_inter")]
    pub downinter_ms: u64,
    /// Milliseconds a check may take (default: `inter_ms`, at most 1000; never more than
    /// `inter_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Good checks in a row that bring a backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failed checks in a row that take a backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

impl HealthConfig {
    /// How long a check may take: `timeout_ms`, or `inter_ms` up to one second.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(self.inter_ms.min(1000)))
    }
}

fn default_path() -> String {
    "/".into()
}
fn default_status() -> u16 {
    200
}
fn default_inter() -> u64 {
    2000
}
fn default_fastinter() -> u64 {
    500
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// Where a VIP's ring weights come from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The configured weights (scaled by agents' percentages).
    #[default]
    Static,
    /// Every backend the same weight, whatever is configured.
    RoundRobin,
    /// Fewer new flows to backends with more active flows (from the data path).
    LeastConn,
    /// Weights follow each backend's spare capacity as its agent reports it
    /// (`capacity` × (1 − `cpu`)); needs `health.kind = "agent"`.
    Resource,
}

/// `[vip.weights]`: telemetry-driven weights, damped and rate-limited.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    /// `static` (default), `round-robin`, `least-conn` or `resource`.
    #[serde(default)]
    pub policy: Policy,
    /// Milliseconds between weight updates.
    #[serde(default = "default_weights_interval")]
    pub interval_ms: u64,
    /// Share of the gap between a backend's weight and its target closed per update (0-1].
    #[serde(default = "default_damping")]
    pub damping: f64,
    /// Largest change of a backend's weight factor per update (factor 1 = configured weight).
    #[serde(default = "default_max_step")]
    pub max_step: f64,
    /// The ring is rebuilt only when some backend's weight moves by at least this share.
    #[serde(default = "default_min_change")]
    pub min_change: f64,
    /// A backend's measured target (smoothed over rounds) must differ from its current factor
    /// by more than this share before the factor moves: measurement noise at steady load
    /// leaves the ring alone.
    #[serde(default = "default_dead_band")]
    pub dead_band: f64,
    /// Largest share of the table one telemetry rebuild may move (steps are shortened).
    #[serde(default = "default_max_moved")]
    pub max_moved: f64,
    /// Seconds over which a backend that comes up ramps from 10% to its full weight (0: off).
    #[serde(default)]
    pub slow_start_s: u64,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig {
            policy: Policy::Static,
            interval_ms: default_weights_interval(),
            damping: default_damping(),
            max_step: default_max_step(),
            min_change: default_min_change(),
            dead_band: default_dead_band(),
            max_moved: default_max_moved(),
            slow_start_s: 0,
        }
    }
}

fn default_dead_band() -> f64 {
    0.2
}
fn default_weights_interval() -> u64 {
    1000
}
fn default_damping() -> f64 {
    0.5
}
fn default_max_step() -> f64 {
    0.5
}
fn default_min_change() -> f64 {
    0.05
}
fn default_max_moved() -> f64 {
    0.25
}

/// What makes a pool's VMs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A network namespace with a veth into lbd's namespace, CPU and memory limits through
    /// cgroups, and `lb-backend` inside.
    #[default]
    Netns,
    /// Addresses the operator manages (`addrs`); lbd only checks, weights and picks them.
    Static,
    /// QEMU/KVM domains through libvirt (`[vip.pool.libvirt]`), a tap each into lbd's
    /// namespace.
    Libvirt,
    /// Containers through the Docker Engine API (`[vip.pool.docker]`; podman serves it
    /// too), a veth each into lbd's namespace.
    Docker,
}

impl ProviderKind {
    /// `netns`, `static`, `libvirt` or `docker`.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Netns => "netns",
            ProviderKind::Static => "static",
            ProviderKind::Libvirt => "libvirt",
            ProviderKind::Docker => "docker",
        }
    }
}

/// `[vip.pool]`: a VIP's backend VMs, created, scaled and deleted by lbd.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `netns` (default), `static`, `libvirt` or `docker`.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Fewest VMs.
    #[serde(default = "default_pool_min")]
    pub min: u32,
    /// Most VMs.
    #[serde(default = "default_pool_max")]
    pub max: u32,
    /// Mean CPU use (share of each VM's limit, from the agents) the autoscaler aims at.
    #[serde(default = "default_target")]
    pub target_utilisation: f64,
    /// Scale in only when the remaining VMs would run below target × (1 − hysteresis).
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Seconds after a scale-out before the next one.
    #[serde(default = "default_out_cooldown")]
    pub scale_out_cooldown_s: u64,
    /// Seconds after any scaling before a scale-in.
    #[serde(default = "default_in_cooldown")]
    pub scale_in_cooldown_s: u64,
    /// Port the VMs serve on (default: the VIP port in dsr mode, else 8080).
    #[serde(default)]
    pub port: Option<u16>,
    /// `netns`, `libvirt`, `docker`: CPU limit of each VM, in cores.
    #[serde(default = "default_cpu_limit")]
    pub cpu_limit: f64,
    /// `netns`, `libvirt`, `docker`: memory limit of each VM, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// `netns`, `libvirt`, `docker`: IPv4 network the VMs' links are cut from (a /30 each).
    #[serde(default = "default_network")]
    pub network: String,
    /// `netns`, `libvirt`, `docker`: CPU microseconds each HTTP request costs the VM's
    /// server (load for labs).
    #[serde(default)]
    pub work_us: u64,
    /// `static`: the addresses the pool picks from.
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
    /// `libvirt`: the hypervisors and the guest image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<super::provider::LibvirtConfig>,
    /// `docker`: the engine and the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<super::provider::DockerConfig>,
}

fn default_pool_min() -> u32 {
    2
}
fn default_pool_max() -> u32 {
    6
}
fn default_target() -> f64 {
    0.6
}
fn default_hysteresis() -> f64 {
    0.25
}
fn default_out_cooldown() -> u64 {
    10
}
fn default_in_cooldown() -> u64 {
    30
}
fn default_cpu_limit() -> f64 {
    0.5
}
fn default_memory_mb() -> u64 {
    128
}
fn default_network() -> String {
    "10.201.0.0/24".into()
}

/// Most VMs one pool may have.
pub const MAX_POOL_VMS: u32 = 64;

impl PoolConfig {
    /// The port the pool's VMs serve on, for a VIP in `mode` on `vip_port`.
    pub fn backend_port(&self, mode: Mode, vip_port: u16) -> u16 {
        match (self.port, mode) {
            (Some(p), _) => p,
            (None, Mode::Dsr) => vip_port,
            (None, Mode::Nat) => 8080,
        }
    }

    /// `netns`: the network's first address and prefix length.
    pub fn network(&self) -> Result<(std::net::Ipv4Addr, u8), String> {
        let (addr, len) = self
            .network
            .split_once('/')
            .ok_or_else(|| format!("{:?} is not ADDR/LEN", self.network))?;
        let addr: std::net::Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=29).contains(l))
            .ok_or_else(|| format!("prefix {len:?} must be 8-29 (room for a /30 per VM)"))?;
        let mask = u32::MAX << (32 - len);
        if u32::from(addr) & !mask != 0 {
            return Err(format!("{} has host bits set", self.network));
        }
        Ok((addr, len))
    }
}

/// `[[vip.backend]]`: one backend of a VIP.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend address.
    pub addr: IpAddr,
    /// Backend port.
    pub port: u16,
    /// Relative weight (0 = no new flows).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl BackendConfig {
    /// Address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

impl Config {
    /// Parses a TOML document, without validating it.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "config".into());
            Error::invalid(field, e.message())
        })
    }

    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let cfg = Self::from_toml(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a file, without validating it; errors name the file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::from_toml(&text).map_err(|e| in_file(path, e))
    }

    /// Reads, parses and validates a file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let cfg = Self::read(path)?;
        cfg.validate().map_err(|e| in_file(path, e))?;
        Ok(cfg)
    }
}

/// `e`, about a field of the file at `path`.
fn in_file(path: &Path, e: Error) -> Error {
    Error {
        field: format!("{}: {}", path.display(), e.field),
        ..e
    }
}
