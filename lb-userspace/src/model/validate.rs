//! Validation of the desired state: everything the config types cannot express, with errors
//! that name the offending field. Every way into the desired state (config file, state file,
//! API, CLI) passes through here.
use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use lb_common::{MAX_BACKENDS, MAX_VIPS, RING_SIZES};

use super::{
    config::{
        BackendConfig, CheckKind, Config, Daemon, HealthConfig, Mode, Policy, PoolConfig,
        ProviderKind, VipConfig, WeightsConfig, MAX_POOL_VMS, MAX_WEIGHT,
    },
    error::Error,
};

fn err(field: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::invalid(field, problem)
}

impl PoolConfig {
    fn validate(&self, at: &str, vip: &VipConfig) -> Result<(), Error> {
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
        let engine = |present: bool, table: &str| {
            if present == (self.provider.name() == table) {
                Ok(())
            } else if present {
                Err(err(
                    format!("{at}.{table}"),
                    format!("set, but the provider is {}", self.provider.name()),
                ))
            } else {
                Err(err(
                    format!("{at}.{table}"),
                    format!("missing: a {table} pool needs [vip.pool.{table}]"),
                ))
            }
        };
        let engine_kind = matches!(self.provider, ProviderKind::Libvirt | ProviderKind::Docker);
        if engine_kind && vip.mode == Mode::Dsr {
            return Err(err(
                format!("{at}.provider"),
                "dsr pools run lb-decap beside each VM's server: use the netns provider",
            ));
        }
        engine(self.libvirt.is_some(), "libvirt")?;
        engine(self.docker.is_some(), "docker")?;
        if let Some(l) = &self.libvirt {
            l.validate(&format!("{at}.libvirt"))?;
        }
        if let Some(d) = &self.docker {
            d.validate(&format!("{at}.docker"))?;
        }
        match self.provider {
            ProviderKind::Netns | ProviderKind::Libvirt | ProviderKind::Docker => {
                if !vip.addr.is_ipv4() {
                    return Err(err(
                        format!("{at}.provider"),
                        format!("{} VMs are IPv4: use an IPv4 VIP", self.provider.name()),
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
    fn validate(&self, at: &str, vip: &VipConfig) -> Result<(), Error> {
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return Err(err(format!("{at}.interval_ms"), "must be 100-3600000 ms"));
        }
        for (name, v, range) in [
            ("damping", self.damping, 0.01..=1.0),
            ("max_step", self.max_step, 0.01..=4.0),
            ("min_change", self.min_change, 0.0..=1.0),
            ("dead_band", self.dead_band, 0.0..=1.0),
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

/// `text` as an error message shows it: quoted, and cut at 64 characters (a request may send
/// a name of any length; the answer does not echo it back whole).
pub fn shown(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head:?}... ({} bytes)", text.len())
}

/// Whether `addr` can be a service or backend address: unicast, not unspecified, not the
/// limited broadcast, not loopback (traffic to a loopback address never reaches an interface).
fn unicast(addr: IpAddr) -> Result<(), String> {
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    if addr.is_unspecified() || addr.is_multicast() || broadcast {
        return Err(format!("{addr} is not a unicast address"));
    }
    if addr.is_loopback() {
        return Err(format!(
            "{addr} is a loopback address: traffic to it never reaches an interface"
        ));
    }
    Ok(())
}

impl Daemon {
    /// Checks the daemon settings.
    pub fn validate(&self) -> Result<(), Error> {
        let inst = &self.instance;
        if inst.is_empty()
            || inst.len() > 32
            || !inst
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "lbd.instance",
                format!("{} must be 1-32 characters of [A-Za-z0-9_-]", shown(inst)),
            ));
        }
        let mut seen = HashSet::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
                return Err(err(
                    format!("lbd.interfaces[{i}]"),
                    format!(
                        "{} is not an interface name (1-15 characters, no / or space)",
                        shown(iface)
                    ),
                ));
            }
            if !seen.insert(iface) {
                return Err(err(
                    format!("lbd.interfaces[{i}]"),
                    format!("{iface:?} is listed twice"),
                ));
            }
        }
        if let Some(addr) = self.metrics {
            if !addr.ip().is_loopback() {
                return Err(err(
                    "lbd.metrics",
                    format!("{addr} is not a loopback address (the page has no authentication)"),
                ));
            }
            if addr.port() == 0 {
                return Err(err("lbd.metrics", "port must be 1-65535"));
            }
        }
        if !(1..=86_400).contains(&self.udp_idle_timeout_s) {
            return Err(err("lbd.udp_idle_timeout_s", "must be 1-86400 seconds"));
        }
        if let Some(g) = &self.read_group {
            if g.is_empty()
                || g.len() > 32
                || !g
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(err(
                    "lbd.read_group",
                    format!("{} is not a group name", shown(g)),
                ));
            }
        }
        if !(1024..=(1 << 26)).contains(&self.max_flows) {
            return Err(err("lbd.max_flows", "must be 1024-67108864 flows"));
        }
        if !(2 * 65_537..=(1 << 28)).contains(&self.ring_slots)
            || !self.ring_slots.is_multiple_of(2)
        {
            return Err(err(
                "lbd.ring_slots",
                "must be an even 131074-268435456 slots (two buffers of 65537 at least)",
            ));
        }
        if self.drain_timeout_s > 86_400 {
            return Err(err("lbd.drain_timeout_s", "must be 0-86400 seconds"));
        }
        Ok(())
    }
}

impl Config {
    /// Checks everything the types cannot express: the daemon settings, the VIP set, and
    /// that the VIPs' ring buffers fit the ring memory.
    pub fn validate(&self) -> Result<(), Error> {
        self.lbd.validate()?;
        validate_vips(&self.vips)?;
        let slots: u64 = self.vips.iter().map(|v| 2 * u64::from(v.ring_size)).sum();
        if slots > u64::from(self.lbd.ring_slots) {
            return Err(err(
                "lbd.ring_slots",
                format!(
                    "{} slots: the VIPs' rings need {slots} (two buffers of each ring_size)",
                    self.lbd.ring_slots
                ),
            ));
        }
        Ok(())
    }

    /// Checks that lbd can run this config: valid, with an interface to attach to (a
    /// document of VIPs alone is valid, not runnable).
    pub fn validate_runnable(&self) -> Result<(), Error> {
        self.validate()?;
        if self.lbd.interfaces.is_empty() {
            return Err(err(
                "lbd.interfaces",
                "empty: list the interfaces the balancer attaches to (or give lbd --iface)",
            ));
        }
        if let Some(iface) = self
            .lbd
            .attach_per_interface
            .keys()
            .find(|i| !self.lbd.interfaces.contains(i))
        {
            return Err(err(
                format!("lbd.attach_per_interface.{iface}"),
                format!("{} is not in lbd.interfaces", shown(iface)),
            ));
        }
        Ok(())
    }
}

/// Checks a whole set of VIPs, as the desired state holds it: each VIP, and what must hold
/// across them (unique names and services, no VIP on a backend's address and port, the
/// data path's limits).
pub fn validate_vips(vips: &[VipConfig]) -> Result<(), Error> {
    if vips.len() > MAX_VIPS as usize {
        return Err(err("vip", format!("at most {MAX_VIPS} VIPs are supported")));
    }
    let mut names = HashSet::new();
    let mut services = HashSet::new();
    let mut all_backends = HashSet::new();
    for (i, vip) in vips.iter().enumerate() {
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
                format!(
                    "{} {:?} is defined twice (another VIP serves it)",
                    SocketAddr::new(vip.addr, vip.port),
                    vip.proto
                ),
            ));
        }
        all_backends.extend(vip.backends.iter().map(BackendConfig::socket_addr));
    }
    for (i, vip) in vips.iter().enumerate() {
        let service = SocketAddr::new(vip.addr, vip.port);
        if all_backends.contains(&service) {
            return Err(err(
                format!("vip[{i}].addr"),
                format!("{service} is a backend's address and port: a VIP cannot be one"),
            ));
        }
    }
    if all_backends.len() >= MAX_BACKENDS as usize {
        return Err(err(
            "vip",
            format!(
                "{} distinct backends: at most {} are supported",
                all_backends.len(),
                MAX_BACKENDS - 1
            ),
        ));
    }
    Ok(())
}

impl VipConfig {
    /// Checks one VIP; `at` is its field path.
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                format!("{at}.name"),
                format!(
                    "{} must be 1-64 characters of [A-Za-z0-9_.-]",
                    shown(&self.name)
                ),
            ));
        }
        unicast(self.addr).map_err(|p| err(format!("{at}.addr"), p))?;
        if self.port == 0 {
            return Err(err(format!("{at}.port"), "must be 1-65535"));
        }
        if let Some(h) = &self.health {
            h.validate(&format!("{at}.health"))?;
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

impl HealthConfig {
    /// Checks a health check; `at` is its field path.
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        for (name, ms) in [
            ("inter_ms", self.inter_ms),
            ("fastinter_ms", self.fastinter_ms),
            ("downinter_ms", self.downinter_ms),
            ("timeout_ms", self.timeout_ms.unwrap_or(self.inter_ms)),
        ] {
            if !(10..=3_600_000).contains(&ms) {
                return Err(err(format!("{at}.{name}"), "must be 10-3600000 ms"));
            }
        }
        if let Some(t) = self.timeout_ms.filter(|t| *t > self.inter_ms) {
            return Err(err(
                format!("{at}.timeout_ms"),
                format!(
                    "{t} ms is longer than inter_ms ({} ms): a check must end before the next",
                    self.inter_ms
                ),
            ));
        }
        for (name, n) in [("rise", self.rise), ("fall", self.fall)] {
            if !(1..=100).contains(&n) {
                return Err(err(format!("{at}.{name}"), "must be 1-100"));
            }
        }
        if self.kind == CheckKind::Http {
            if !self.path.starts_with('/') || self.path.len() > 1024 {
                return Err(err(
                    format!("{at}.path"),
                    "must start with / (1024 bytes at most)",
                ));
            }
            if !(100..=599).contains(&self.expect_status) {
                return Err(err(format!("{at}.expect_status"), "must be 100-599"));
            }
        }
        if self.kind == CheckKind::Agent && self.agent_port == 0 {
            return Err(err(
                format!("{at}.agent_port"),
                "required for kind agent (1-65535)",
            ));
        }
        Ok(())
    }
}

/// Checks a backend of `vip`; `at` is its field path.
pub fn validate_backend(at: &str, vip: &VipConfig, b: &BackendConfig) -> Result<(), Error> {
    if b.addr.is_ipv4() != vip.addr.is_ipv4() {
        return Err(err(
            format!("{at}.addr"),
            format!(
                "{} is not the same address family as the VIP {}",
                b.addr, vip.addr
            ),
        ));
    }
    unicast(b.addr).map_err(|p| err(format!("{at}.addr"), p))?;
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
            format!("{} is over the limit: must be 0-{MAX_WEIGHT}", b.weight),
        ));
    }
    Ok(())
}
