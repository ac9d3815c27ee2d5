//! The `docker` provider: a VM is a container of the pool's image (its entrypoint
//! `lb-backend`) through the Docker Engine API, which podman serves too. Containers start with
//! no network (`NetworkMode: none`, the one mode both engines share that lets lbd wire them):
//! lbd makes a veth pair, moves one end into the container's namespace as `eth0` with the VM's
//! address, keeps the other with the balancer side of the VM's /30, and attaches the data path
//! there. CPU and memory limits go to the engine; labels carry lbd's record, so a restarted lbd
//! adopts its containers from the engine itself.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use bollard::{
    models::{ContainerCreateBody, ContainerStateStatusEnum, HostConfig, ResourcesUlimits},
    query_parameters::{
        CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
    },
    Docker, API_DEFAULT_VERSION,
};

use super::{link_addrs, link_name, Host, Vm, VmError, VmProvider, VmSpec, VmStatus};
use crate::{
    model::provider::DockerConfig,
    sys::{
        link::{self, End},
        netns,
    },
};

/// Label keys of lbd's record on a container.
const INSTANCE: &str = "xlb.instance";
const POOL: &str = "xlb.pool";

/// Keys of a VM's `meta` its container's labels carry (as `xlb.<key>`).
const META_KEYS: [&str; 5] = ["container", "iface", "host_addr", "agent_port", "work_us"];

/// Makes VMs as containers for one lbd instance.
pub struct DockerProvider {
    instance: String,
    cfg: DockerConfig,
    network: (Ipv4Addr, u8),
}

/// A Docker API error as ours: a missing image is a missing image, an unreachable socket an
/// unreachable engine, a refused limit a refused quota.
fn engine_error(what: &str, e: bollard::errors::Error) -> VmError {
    use bollard::errors::Error as E;
    let msg = format!("{what}: {e}");
    match &e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            let m = message.to_lowercase();
            if *status_code == 404 && m.contains("image") {
                VmError::ImageMissing(msg)
            } else if m.contains("cgroup") || m.contains("memory") || m.contains("cpu") {
                VmError::QuotaRefused(msg)
            } else {
                VmError::Engine(msg)
            }
        }
        E::SocketNotFoundError(_) | E::HyperResponseError { .. } | E::IOError { .. } => {
            VmError::EngineUnreachable(msg)
        }
        _ => VmError::Engine(msg),
    }
}

impl DockerProvider {
    /// A provider for `host`'s lbd with `cfg`, cutting VM links from `network`.
    pub fn new(host: &Host, cfg: DockerConfig, network: (Ipv4Addr, u8)) -> Self {
        DockerProvider {
            instance: host.instance.clone(),
            cfg,
            network,
        }
    }

    /// A client of the engine.
    fn engine(&self) -> Result<Docker, VmError> {
        let socket = self.cfg.socket.display().to_string();
        Docker::connect_with_unix(&socket, 60, API_DEFAULT_VERSION)
            .map_err(|e| engine_error(&format!("connecting to {socket}"), e))
    }

    /// The process that runs container `name` (its network namespace is the VM's).
    async fn pid(&self, name: &str) -> Result<Option<u32>, VmError> {
        let info = match self.engine()?.inspect_container(name, None).await {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(engine_error(&format!("inspecting {name}"), e)),
        };
        let state = info.state.unwrap_or_default();
        Ok(state
            .running
            .unwrap_or(false)
            .then_some(state.pid)
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0))
    }

    /// Wires a running container `vm`: a veth pair, `eth0` inside with the VM's address and a
    /// default route via lbd's end, which gets the balancer side of the /30.
    async fn wire(&self, vm: &Vm, pid: u32) -> Result<(), VmError> {
        let iface = meta(vm, "iface")?.to_string();
        let host: IpAddr = meta(vm, "host_addr")?
            .parse()
            .map_err(|_| VmError::BadRecord(format!("{}: host_addr", vm.name)))?;
        if link::index(&iface).is_ok() {
            return Ok(());
        }
        let lbd_end = End {
            name: iface.clone(),
            addrs: vec![(host, 30)],
            ..End::default()
        };
        let vm_end = End {
            ns: Some(netns::of_process(pid)),
            name: "eth0".into(),
            addrs: vec![(vm.addr, 30)],
            gateways: vec![host],
            ..End::default()
        };
        link::veth(&lbd_end, &vm_end)
            .await
            .map_err(|e| VmError::system(format!("wiring {}", vm.name), e))
    }
}

/// `vm.meta[key]`.
fn meta<'a>(vm: &'a Vm, key: &str) -> Result<&'a str, VmError> {
    vm.meta
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| VmError::BadRecord(format!("{}: no {key}", vm.name)))
}

/// The VM a container's labels describe.
fn from_labels(labels: &HashMap<String, String>) -> Option<Vm> {
    let get = |k: &str| labels.get(&format!("xlb.{k}")).cloned();
    let pool = get("pool")?;
    let slot: u32 = get("slot")?.parse().ok()?;
    Some(Vm {
        name: format!("{pool}-{slot}"),
        pool,
        slot,
        addr: get("addr")?.parse().ok()?,
        port: get("port")?.parse().ok()?,
        cpu_limit: get("cpu")?.parse().ok()?,
        created_ms: get("created")?.parse().ok()?,
        meta: META_KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), get(k)?)))
            .collect(),
    })
}

impl VmProvider for DockerProvider {
    async fn create(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        let docker = self.engine()?;
        docker
            .inspect_image(&self.cfg.image)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => {
                    VmError::ImageMissing(format!("image {} is not on the engine", self.cfg.image))
                }
                e => engine_error(&format!("looking for image {}", self.cfg.image), e),
            })?;
        let (host, addr) = link_addrs(self.network, spec.slot)?;
        let name = format!("{}-{}", spec.pool, spec.slot);
        let container = format!("xlb-{}-{}", self.instance, name);
        let vm = Vm::new(
            spec,
            addr,
            host,
            link_name("xd", &self.instance, &spec.pool, spec.slot),
            [("container", container.clone())],
        );
        let mut labels: HashMap<String, String> = vm
            .meta
            .iter()
            .map(|(k, v)| (format!("xlb.{k}"), v.clone()))
            .collect();
        for (k, v) in [
            (INSTANCE, self.instance.clone()),
            (POOL, vm.pool.clone()),
            ("xlb.slot", vm.slot.to_string()),
            ("xlb.addr", vm.addr.to_string()),
            ("xlb.port", vm.port.to_string()),
            ("xlb.cpu", vm.cpu_limit.to_string()),
            ("xlb.created", vm.created_ms.to_string()),
        ] {
            labels.insert(k.to_string(), v);
        }
        let listen = format!("[::]:{}", spec.port);
        let agent = format!("[::]:{}", spec.agent_port);
        let mut cmd = vec!["--name".to_string(), name.clone()];
        cmd.extend([
            if spec.udp { "--listen" } else { "--http" }.to_string(),
            listen,
        ]);
        if spec.agent_port != 0 {
            cmd.extend(["--agent".to_string(), agent]);
        }
        cmd.extend([
            "--cpu-limit".to_string(),
            spec.cpu_limit.to_string(),
            "--work-us".to_string(),
            spec.work_us.to_string(),
        ]);
        // No CAP_SYS_RESOURCE is needed where the limits are explicit.
        let ulimit = |name: &str| ResourcesUlimits {
            name: Some(name.into()),
            soft: Some(4096),
            hard: Some(4096),
        };
        let body = ContainerCreateBody {
            image: Some(self.cfg.image.clone()),
            cmd: Some(cmd),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                nano_cpus: Some((spec.cpu_limit * 1e9) as i64),
                memory: Some(spec.memory_mb as i64 * 1024 * 1024),
                ulimits: Some(vec![ulimit("nofile"), ulimit("nproc")]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptions {
            name: Some(container.clone()),
            ..CreateContainerOptions::default()
        };
        docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine_error(&format!("creating container {container}"), e))?;
        Ok(vm)
    }

    async fn start(&self, vm: &mut Vm) -> Result<(), VmError> {
        let container = meta(vm, "container")?.to_string();
        self.engine()?
            .start_container(&container, None)
            .await
            .map_err(|e| engine_error(&format!("starting {container}"), e))?;
        let pid = self
            .pid(&container)
            .await?
            .ok_or_else(|| VmError::Engine(format!("{container} stopped as soon as it started")))?;
        self.wire(vm, pid).await
    }

    async fn status(&self, vm: &Vm) -> Result<VmStatus, VmError> {
        let container = meta(vm, "container")?;
        let info = match self.engine()?.inspect_container(container, None).await {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(VmStatus::Missing),
            Err(e) => return Err(engine_error(&format!("inspecting {container}"), e)),
        };
        Ok(match info.state.and_then(|s| s.status) {
            Some(ContainerStateStatusEnum::RUNNING) => VmStatus::Running,
            Some(ContainerStateStatusEnum::CREATED) => VmStatus::Created,
            _ => VmStatus::Stopped,
        })
    }

    async fn stop(&self, vm: &Vm) -> Result<(), VmError> {
        let container = meta(vm, "container")?;
        let options = StopContainerOptions {
            t: Some(self.cfg.shutdown_s as i32),
            ..StopContainerOptions::default()
        };
        match self
            .engine()?
            .stop_container(container, Some(options))
            .await
        {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { .. }) => Ok(()),
            Err(e) => Err(engine_error(&format!("stopping {container}"), e)),
        }
    }

    async fn delete(&self, vm: &Vm) -> Result<(), VmError> {
        let container = meta(vm, "container")?;
        let options = RemoveContainerOptions {
            force: true,
            ..RemoveContainerOptions::default()
        };
        match self
            .engine()?
            .remove_container(container, Some(options))
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(engine_error(&format!("removing {container}"), e)),
        }
        // The pair goes with the container's namespace; an end left behind is removed.
        if let Ok(iface) = meta(vm, "iface") {
            if let Ok(index) = link::index(iface) {
                let _ = link::delete(index).await;
            }
        }
        Ok(())
    }

    async fn list(&self, pool: &str) -> Result<Vec<Vm>, VmError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{INSTANCE}={}", self.instance),
                format!("{POOL}={pool}"),
            ],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        };
        let found = self
            .engine()?
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error("listing containers", e))?;
        Ok(found
            .iter()
            .filter_map(|c| from_labels(c.labels.as_ref()?))
            .filter(|vm| vm.pool == pool)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_comes_back_from_its_labels() {
        let labels: HashMap<String, String> = [
            ("xlb.pool", "web"),
            ("xlb.slot", "2"),
            ("xlb.addr", "10.203.0.10"),
            ("xlb.port", "8080"),
            ("xlb.cpu", "0.5"),
            ("xlb.created", "17"),
            ("xlb.container", "xlb-i-web-2"),
            ("xlb.iface", "xd0000012"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let vm = from_labels(&labels).expect("a VM");
        assert_eq!(vm.name, "web-2");
        assert_eq!(vm.backend(), "10.203.0.10:8080".parse().unwrap());
        assert_eq!(vm.meta["container"], "xlb-i-web-2");
        let mut partial = labels.clone();
        partial.remove("xlb.addr");
        assert!(
            from_labels(&partial).is_none(),
            "an incomplete record is not ours"
        );
    }
}
