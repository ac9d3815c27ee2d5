//! The declarative TOML config of `lbd`: parsing and validation, with errors that name the
//! offending field.
use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use lb_common::{MAX_BACKENDS, MAX_VIPS, RING_SIZES};
use serde::{Deserialize, Serialize};

/// Default flow hash seed: any value works, but every balancer host of a fleet needs the same.
pub const DEFAULT_HASH_SEED: u32 = 0x4c42_5344;
/// Largest backend weight accepted.
pub const MAX_WEIGHT: u32 = 65_535;

/// A config problem: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Path of the field, e.g. `vip[1].backend[0].port`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    /// Instance name: maps are pinned under /sys/fs/bpf/<instance>/.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Interfaces `lb_xdp` attaches to (client-facing and backend-facing).
    #[serde(default)]
    pub interfaces: Vec<String>,
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
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            instance: default_instance(),
            interfaces: Vec::new(),
            hash_seed: DEFAULT_HASH_SEED,
            socket: None,
            state_file: None,
            metrics: None,
            drain_timeout_s: default_drain_timeout(),
            udp_idle_timeout_s: default_udp_idle(),
            max_new_flows_per_cpu: default_new_flow_limit(),
        }
    }
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
    RING_SIZES[0]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Maglev table size, one of `lb_common::RING_SIZES`.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
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
    /// Milliseconds a check may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Good checks in a row that bring a backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failed checks in a row that take a backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
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
fn default_timeout() -> u64 {
    1000
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
            max_moved: default_max_moved(),
            slow_start_s: 0,
        }
    }
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
}

/// `[vip.pool]`: a VIP's backend VMs, created, scaled and deleted by lbd.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `netns` (default) or `static`.
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
    /// `netns`: CPU limit of each VM, in cores.
    #[serde(default = "default_cpu_limit")]
    pub cpu_limit: f64,
    /// `netns`: memory limit of each VM, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// `netns`: IPv4 network the VMs' links are cut from (a /30 each).
    #[serde(default = "default_network")]
    pub network: String,
    /// `netns`: CPU microseconds each HTTP request costs the VM's server (load for labs).
    #[serde(default)]
    pub work_us: u64,
    /// `static`: the addresses the pool picks from.
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
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

    fn validate(&self, at: &str, vip: &VipConfig) -> Result<(), ConfigError> {
        if self.min > self.max || self.max == 0 || self.max > MAX_POOL_VMS {
            return Err(err(
                format!("{at}.min/max"),
                format!("need 0 <= min <= max, 1 <= max <= {MAX_POOL_VMS}"),
            ));
        }
        if !(0.05..=1.0).contains(&self.target_utilisation) {
            return Err(err(format!("{at}.target_utilisation"), "must be 0.05-1.0"));
        }
        if !(0.0..0.9).contains(&self.hysteresis) {
            return Err(err(format!("{at}.hysteresis"), "must be 0-0.9"));
        }
        if vip.health.is_none() {
            return Err(err(
                at.to_string(),
                "a pool needs [vip.health] (VMs join after `rise` good checks)",
            ));
        }
        if self.port == Some(0) {
            return Err(err(format!("{at}.port"), "must be 1-65535"));
        }
        if vip.mode == Mode::Dsr && self.backend_port(vip.mode, vip.port) != vip.port {
            return Err(err(
                format!("{at}.port"),
                "must equal the VIP port in dsr mode",
            ));
        }
        match self.provider {
            ProviderKind::Netns => {
                if !vip.addr.is_ipv4() {
                    return Err(err(
                        format!("{at}.provider"),
                        "netns VMs are IPv4: use an IPv4 VIP",
                    ));
                }
                if !(0.01..=64.0).contains(&self.cpu_limit) {
                    return Err(err(format!("{at}.cpu_limit"), "must be 0.01-64 cores"));
                }
                if !(16..=65_536).contains(&self.memory_mb) {
                    return Err(err(format!("{at}.memory_mb"), "must be 16-65536 MiB"));
                }
                let (_, len) = self
                    .network()
                    .map_err(|p| err(format!("{at}.network"), p))?;
                let room = 1u64 << (30 - u32::from(len));
                if room < u64::from(self.max) {
                    return Err(err(
                        format!("{at}.network"),
                        format!("has room for {room} VMs, max is {}", self.max),
                    ));
                }
            }
            ProviderKind::Static => {
                if self.addrs.len() < self.max as usize {
                    return Err(err(
                        format!("{at}.addrs"),
                        format!("lists {} addresses, max is {}", self.addrs.len(), self.max),
                    ));
                }
                if let Some(a) = self
                    .addrs
                    .iter()
                    .find(|a| a.is_ipv4() != vip.addr.is_ipv4())
                {
                    return Err(err(
                        format!("{at}.addrs"),
                        format!("{a} is not the VIP's address family"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl WeightsConfig {
    fn validate(&self, at: &str, vip: &VipConfig) -> Result<(), ConfigError> {
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return Err(err(format!("{at}.interval_ms"), "must be 100-3600000 ms"));
        }
        for (name, v, range) in [
            ("damping", self.damping, 0.01..=1.0),
            ("max_step", self.max_step, 0.01..=4.0),
            ("min_change", self.min_change, 0.0..=1.0),
            ("max_moved", self.max_moved, 0.01..=1.0),
        ] {
            if !range.contains(&v) {
                return Err(err(
                    format!("{at}.{name}"),
                    format!("must be {}-{}", range.start(), range.end()),
                ));
            }
        }
        if self.slow_start_s > 3600 {
            return Err(err(format!("{at}.slow_start_s"), "must be 0-3600 s"));
        }
        if self.policy == Policy::Resource
            && vip.health.as_ref().map(|h| h.kind) != Some(CheckKind::Agent)
        {
            return Err(err(
                format!("{at}.policy"),
                "resource needs health.kind = \"agent\" (agents report the load)",
            ));
        }
        Ok(())
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
    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("line {}", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_else(|| "config".into());
            err(field, e.message().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
    }

    /// Checks everything the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let inst = &self.lbd.instance;
        if inst.is_empty()
            || inst.len() > 32
            || !inst
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "lbd.instance",
                format!("{inst:?} must be 1-32 characters of [A-Za-z0-9_-]"),
            ));
        }
        for (i, iface) in self.lbd.interfaces.iter().enumerate() {
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
                return Err(err(
                    format!("lbd.interfaces[{i}]"),
                    format!("{iface:?} is not an interface name (1-15 characters, no / or space)"),
                ));
            }
        }
        if let Some(addr) = self.lbd.metrics {
            if !addr.ip().is_loopback() {
                return Err(err(
                    "lbd.metrics",
                    format!("{addr} is not a loopback address (the page has no authentication)"),
                ));
            }
        }
        if !(1..=86_400).contains(&self.lbd.udp_idle_timeout_s) {
            return Err(err("lbd.udp_idle_timeout_s", "must be 1-86400 seconds"));
        }
        if self.vips.len() > MAX_VIPS as usize {
            return Err(err("vip", format!("at most {MAX_VIPS} VIPs are supported")));
        }
        let mut names = HashSet::new();
        let mut services = HashSet::new();
        let mut all_backends = HashSet::new();
        for (i, vip) in self.vips.iter().enumerate() {
            let at = format!("vip[{i}]");
            vip.validate(&at)?;
            if !names.insert(vip.name.as_str()) {
                return Err(err(
                    format!("{at}.name"),
                    format!("{:?} is used twice", vip.name),
                ));
            }
            if !services.insert((vip.addr, vip.port, vip.proto)) {
                return Err(err(
                    &at,
                    format!("{}:{} {:?} is defined twice", vip.addr, vip.port, vip.proto),
                ));
            }
            all_backends.extend(vip.backends.iter().map(BackendConfig::socket_addr));
        }
        if all_backends.len() >= MAX_BACKENDS as usize {
            return Err(err(
                "vip",
                format!("at most {} distinct backends", MAX_BACKENDS - 1),
            ));
        }
        Ok(())
    }
}

impl VipConfig {
    /// Checks one VIP; `at` is its field path.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                format!("{at}.name"),
                format!("{:?} must be 1-64 characters of [A-Za-z0-9_.-]", self.name),
            ));
        }
        if self.addr.is_unspecified() || self.addr.is_multicast() {
            return Err(err(
                format!("{at}.addr"),
                format!("{} is not a unicast address", self.addr),
            ));
        }
        if self.port == 0 {
            return Err(err(format!("{at}.port"), "must be 1-65535"));
        }
        if let Some(h) = &self.health {
            let at = format!("{at}.health");
            for (name, ms) in [
                ("inter_ms", h.inter_ms),
                ("fastinter_ms", h.fastinter_ms),
                ("downinter_ms", h.downinter_ms),
                ("timeout_ms", h.timeout_ms),
            ] {
                if !(10..=3_600_000).contains(&ms) {
                    return Err(err(format!("{at}.{name}"), "must be 10-3600000 ms"));
                }
            }
            if !(1..=100).contains(&h.rise) || !(1..=100).contains(&h.fall) {
                return Err(err(format!("{at}.rise/fall"), "must be 1-100"));
            }
            if h.kind == CheckKind::Http && !h.path.starts_with('/') {
                return Err(err(format!("{at}.path"), "must start with /"));
            }
            if h.kind == CheckKind::Agent && h.agent_port == 0 {
                return Err(err(format!("{at}.agent_port"), "required for kind agent"));
            }
        }
        self.weights.validate(&format!("{at}.weights"), self)?;
        if let Some(pool) = &self.pool {
            pool.validate(&format!("{at}.pool"), self)?;
        }
        if !RING_SIZES.contains(&self.ring_size) {
            return Err(err(
                format!("{at}.ring_size"),
                format!("{} is not one of {RING_SIZES:?}", self.ring_size),
            ));
        }
        let mut seen = HashSet::new();
        for (j, b) in self.backends.iter().enumerate() {
            validate_backend(&format!("{at}.backend[{j}]"), self, b)?;
            if !seen.insert(b.socket_addr()) {
                return Err(err(
                    format!("{at}.backend[{j}]"),
                    format!("{} is listed twice", b.socket_addr()),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a backend of `vip`; `at` is its field path.
pub fn validate_backend(at: &str, vip: &VipConfig, b: &BackendConfig) -> Result<(), ConfigError> {
    if b.addr.is_ipv4() != vip.addr.is_ipv4() {
        return Err(err(
            format!("{at}.addr"),
            format!(
                "{} is not the same address family as the VIP {}",
                b.addr, vip.addr
            ),
        ));
    }
    if b.addr.is_unspecified() || b.addr.is_multicast() {
        return Err(err(
            format!("{at}.addr"),
            format!("{} is not a unicast address", b.addr),
        ));
    }
    if b.port == 0 {
        return Err(err(format!("{at}.port"), "must be 1-65535"));
    }
    if vip.mode == Mode::Dsr && b.port != vip.port {
        return Err(err(
            format!("{at}.port"),
            format!(
                "{} must equal the VIP port {} in dsr mode (DSR does not rewrite ports)",
                b.port, vip.port
            ),
        ));
    }
    if b.weight > MAX_WEIGHT {
        return Err(err(
            format!("{at}.weight"),
            format!("must be 0-{MAX_WEIGHT}"),
        ));
    }
    Ok(())
}
