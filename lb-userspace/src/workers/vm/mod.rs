//! Layer 4 worker parts, backend VMs: the [`VmProvider`] trait the pool manager drives, the VM
//! record it keeps, and the providers: `netns` (a namespace, a veth, cgroup limits and
//! `lb-backend` inside), `libvirt` (QEMU/KVM domains), `docker` (containers through the Docker
//! Engine API) and `static` (addresses someone else runs).
pub mod docker;
pub mod fixed;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod netns;

use std::{
    collections::BTreeMap,
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

pub use crate::model::wire::VmStatus;
use crate::{
    model::{
        config::{AttachMode, Mode, ProviderKind, VipConfig},
        Error, ErrorKind,
    },
    sys::SysError,
};

/// What a provider is asked to make.
#[derive(Clone, Debug, PartialEq)]
pub struct VmSpec {
    /// Pool (VIP) the VM serves.
    pub pool: String,
    /// Slot within the pool (0-based): picks the VM's name and address.
    pub slot: u32,
    /// CPU limit in cores.
    pub cpu_limit: f64,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Port the VM's server listens on.
    pub port: u16,
    /// Whether the VIP is UDP (the server then echoes datagrams instead of serving HTTP).
    pub udp: bool,
    /// Port of the VM's agent (load reports and agent checks).
    pub agent_port: u16,
    /// CPU microseconds per HTTP request (synthetic load).
    pub work_us: u64,
}

/// A VM as the pool manager tracks it; persisted by the provider so a restarted lbd adopts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// Display name: `<pool>-<slot>`.
    pub name: String,
    /// Pool (VIP) it serves.
    pub pool: String,
    /// Slot within the pool.
    pub slot: u32,
    /// Address the balancer sends its flows to.
    pub addr: IpAddr,
    /// Port its server listens on.
    pub port: u16,
    /// CPU limit in cores.
    pub cpu_limit: f64,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Provider details (namespace, interface, pid, cgroup paths...).
    pub meta: BTreeMap<String, String>,
}

impl Vm {
    /// A VM of `spec` at `addr`, named `<pool>-<slot>` and created now, reached over the link
    /// `iface` whose near end is `host`: those and the agent's settings go in `meta`, beside
    /// the provider's own `extra` details (keys are persisted: adoption reads them back).
    pub fn new(
        spec: &VmSpec,
        addr: Ipv4Addr,
        host: Ipv4Addr,
        iface: String,
        extra: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Vm {
        let mut meta = BTreeMap::from([
            ("iface".to_string(), iface),
            ("host_addr".to_string(), host.to_string()),
            ("agent_port".to_string(), spec.agent_port.to_string()),
            ("work_us".to_string(), spec.work_us.to_string()),
        ]);
        meta.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        Vm {
            name: format!("{}-{}", spec.pool, spec.slot),
            pool: spec.pool.clone(),
            slot: spec.slot,
            addr: addr.into(),
            port: spec.port,
            cpu_limit: spec.cpu_limit,
            created_ms: now_ms(),
            meta,
        }
    }

    /// The address and port the VIP sends its flows to.
    pub fn backend(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

/// What went wrong with a VM operation.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The pool has no free slot or address.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// A system call or tool failed.
    #[error("{what}: {cause}")]
    System {
        /// What was being done.
        what: String,
        /// Why it failed.
        cause: SysError,
    },
    /// The VM's record cannot be used (missing field, bad file).
    #[error("bad VM record {0}")]
    BadRecord(String),
    /// The engine (libvirtd, the Docker Engine API) cannot be reached.
    #[error("engine unreachable: {0}")]
    EngineUnreachable(String),
    /// What the VM boots or runs (kernel, initramfs, disk, container image) is not there.
    #[error("image missing: {0}")]
    ImageMissing(String),
    /// The engine refused a limit or a resource (CPU, memory).
    #[error("quota refused: {0}")]
    QuotaRefused(String),
    /// The engine failed otherwise.
    #[error("engine error: {0}")]
    Engine(String),
}

impl VmError {
    /// Wraps a failure of `what`.
    pub fn system(what: impl Into<String>, cause: SysError) -> Self {
        VmError::System {
            what: what.into(),
            cause,
        }
    }
}

impl VmError {
    /// Its kind, as metrics and `lbctl vm list` count it.
    pub fn kind(&self) -> &'static str {
        match self {
            VmError::NoCapacity(_) => "no_capacity",
            VmError::System { .. } => "system",
            VmError::BadRecord(_) => "bad_record",
            VmError::EngineUnreachable(_) => "engine_unreachable",
            VmError::ImageMissing(_) => "image_missing",
            VmError::QuotaRefused(_) => "quota_refused",
            VmError::Engine(_) => "engine",
        }
    }
}

impl From<VmError> for Error {
    fn from(e: VmError) -> Self {
        let kind = match e {
            VmError::NoCapacity(_) | VmError::QuotaRefused(_) => ErrorKind::Conflict,
            VmError::EngineUnreachable(_) => ErrorKind::Busy,
            VmError::ImageMissing(_) => ErrorKind::NotFound,
            VmError::System { .. } | VmError::BadRecord(_) | VmError::Engine(_) => {
                ErrorKind::Internal
            }
        };
        Error::new(kind, "vm", e.to_string())
    }
}

/// The (balancer side, VM side) addresses of `slot`'s /30 in `network`.
pub fn link_addrs(network: (Ipv4Addr, u8), slot: u32) -> Result<(Ipv4Addr, Ipv4Addr), VmError> {
    let room = 1u32 << (30 - u32::from(network.1));
    if slot >= room {
        return Err(VmError::NoCapacity(format!(
            "slot {slot}: the network has room for {room} VMs"
        )));
    }
    let base = u32::from(network.0) + 4 * slot;
    Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)))
}

/// The name of a VM's link on lbd's side: `<prefix><hash of instance/pool><slot>`, short
/// enough for an interface name.
pub fn link_name(prefix: &str, instance: &str, pool: &str, slot: u32) -> String {
    let hash = crate::sys::link::short_hash(&format!("{instance}/{pool}")) & 0xff_ffff;
    format!("{prefix}{hash:06x}{slot}")
}

/// Makes, starts, watches and removes backend VMs. Ready for a hypervisor provider: `create`
/// may take as long as a boot (the pool manager measures create-to-serving), and `meta`
/// carries whatever it needs to find its VM again after a restart.
pub trait VmProvider: Send + Sync {
    /// Makes a VM (network, limits, record) without starting its server.
    fn create(&self, spec: &VmSpec) -> impl Future<Output = Result<Vm, VmError>> + Send;
    /// Starts its server.
    fn start(&self, vm: &mut Vm) -> impl Future<Output = Result<(), VmError>> + Send;
    /// Whether it is serving.
    fn status(&self, vm: &Vm) -> impl Future<Output = Result<VmStatus, VmError>> + Send;
    /// Stops its server.
    fn stop(&self, vm: &Vm) -> impl Future<Output = Result<(), VmError>> + Send;
    /// Removes it and everything made for it; removing a missing VM succeeds.
    fn delete(&self, vm: &Vm) -> impl Future<Output = Result<(), VmError>> + Send;
    /// The VMs this provider made for `pool` that still exist (adopted after a restart).
    fn list(&self, pool: &str) -> impl Future<Output = Result<Vec<Vm>, VmError>> + Send;
}

/// One of the providers, chosen per pool by the config.
pub enum Provider {
    /// Namespaces with `lb-backend`.
    Netns(netns::NetnsProvider),
    /// Operator-managed addresses.
    Static(fixed::StaticProvider),
    /// libvirt domains.
    #[cfg(feature = "libvirt")]
    Libvirt(libvirt::LibvirtProvider),
    /// Containers of a Docker-API engine.
    Docker(docker::DockerProvider),
}

macro_rules! each {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            Provider::Netns($p) => $e,
            Provider::Static($p) => $e,
            #[cfg(feature = "libvirt")]
            Provider::Libvirt($p) => $e,
            Provider::Docker($p) => $e,
        }
    };
}

impl VmProvider for Provider {
    async fn create(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        each!(self, p => p.create(spec).await)
    }
    async fn start(&self, vm: &mut Vm) -> Result<(), VmError> {
        each!(self, p => p.start(vm).await)
    }
    async fn status(&self, vm: &Vm) -> Result<VmStatus, VmError> {
        each!(self, p => p.status(vm).await)
    }
    async fn stop(&self, vm: &Vm) -> Result<(), VmError> {
        each!(self, p => p.stop(vm).await)
    }
    async fn delete(&self, vm: &Vm) -> Result<(), VmError> {
        each!(self, p => p.delete(vm).await)
    }
    async fn list(&self, pool: &str) -> Result<Vec<Vm>, VmError> {
        each!(self, p => p.list(pool).await)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where an instance keeps its VM records: beside its state file (`<state>.vms/`).
pub fn records_dir(state_file: &std::path::Path) -> PathBuf {
    state_file.with_extension("vms")
}

/// What the providers of one lbd share.
#[derive(Clone, Debug)]
pub struct Host {
    /// The lbd instance (VM names and namespaces carry it).
    pub instance: String,
    /// lbd's state file (VM records are kept beside it).
    pub state_file: PathBuf,
    /// Where the binaries VMs run (`lb-backend`, `lb-decap`) are.
    pub bin_dir: PathBuf,
    /// How lbd attaches to VMs' interfaces (`lbd.attach`): forced XDP needs the VMs' ends of
    /// their links set up for it.
    pub attach: AttachMode,
}

/// The VM provider of pooled VIP `vip` on `host`.
pub fn provider_for(vip: &VipConfig, host: &Host) -> Result<Provider, Error> {
    let pool = vip
        .pool
        .as_ref()
        .ok_or_else(|| Error::invalid("pool", format!("vip {:?} has no pool", vip.name)))?;
    let network = || {
        pool.network()
            .map_err(|p| Error::invalid("pool.network", p))
    };
    let dsr = (vip.mode == Mode::Dsr).then_some(vip.addr);
    Ok(match pool.provider {
        ProviderKind::Static => Provider::Static(fixed::StaticProvider::new(pool.addrs.clone())),
        ProviderKind::Netns => Provider::Netns(netns::NetnsProvider::new(host, network()?, dsr)),
        #[cfg(feature = "libvirt")]
        ProviderKind::Libvirt => {
            let cfg = pool
                .libvirt
                .clone()
                .ok_or_else(|| Error::invalid("pool.libvirt", "missing"))?;
            Provider::Libvirt(libvirt::LibvirtProvider::new(host, cfg, network()?))
        }
        #[cfg(not(feature = "libvirt"))]
        ProviderKind::Libvirt => {
            return Err(Error::invalid(
                "pool.provider",
                "this lbd was built without the libvirt provider (feature `libvirt`)",
            ))
        }
        ProviderKind::Docker => {
            let cfg = pool
                .docker
                .clone()
                .ok_or_else(|| Error::invalid("pool.docker", "missing"))?;
            Provider::Docker(docker::DockerProvider::new(host, cfg, network()?))
        }
    })
}
