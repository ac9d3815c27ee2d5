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
    /// New DSR flows one CPU records per second before forwarding by hash alone (0 = no
    /// limit); keeps a flood of new flows from evicting established ones.
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
