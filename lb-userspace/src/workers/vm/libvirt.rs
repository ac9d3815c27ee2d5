//! The `libvirt` provider: a VM is a persistent QEMU/KVM domain booting the pool's kernel and
//! initramfs (or a copy-on-write overlay of its disk), addressed through the kernel command
//! line (`xlb.addr`, `xlb.gw`, ...), with a tap that lbd moves into its own namespace, gives the
//! balancer side of the VM's /30 and attaches the data path to. Domains are spread over the
//! pool's hypervisor URIs (the one with the fewest of this lbd's domains first) and carry lbd's
//! metadata, so a restarted lbd adopts them from libvirt itself. libvirt's calls block: each
//! runs on a blocking thread with a connection of its own.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use virt::{connect::Connect, domain::Domain, sys};

use super::{link_addrs, link_name, records_dir, Host, Vm, VmError, VmProvider, VmSpec, VmStatus};
use crate::{
    model::provider::LibvirtConfig,
    sys::{link, netns},
};

/// The XML namespace of lbd's metadata in a domain.
const META_URI: &str = "https://xlb.dev/xmlns/vm/1";

/// Makes VMs as libvirt domains for one lbd instance.
pub struct LibvirtProvider {
    instance: String,
    cfg: LibvirtConfig,
    network: (Ipv4Addr, u8),
    /// Where overlays and console logs go (beside the state file).
    files: PathBuf,
}

/// A connection, closed when dropped.
struct Conn(Connect);

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

/// Opens a connection to `uri`.
fn open(uri: &str) -> Result<Conn, VmError> {
    Connect::open(Some(uri))
        .map(Conn)
        .map_err(|e| VmError::EngineUnreachable(format!("{uri}: {}", e.message())))
}

/// Runs `f` (libvirt calls) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VmError> + Send + 'static,
) -> Result<T, VmError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VmError::Engine(format!("a libvirt call failed: {e}")))?
}

/// A libvirt error as ours: a missing file is a missing image, a refused limit a refused
/// quota.
fn engine_error(what: &str, e: &virt::error::Error) -> VmError {
    let m = e.message();
    let msg = format!("{what}: {m}");
    let lower = m.to_lowercase();
    if lower.contains("no such file") || lower.contains("cannot access") {
        VmError::ImageMissing(msg)
    } else if lower.contains("cgroup") || lower.contains("quota") || lower.contains("memory") {
        VmError::QuotaRefused(msg)
    } else {
        VmError::Engine(msg)
    }
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The value of attribute `key` of the first element of `xml` (unescaped; either quote).
fn attr(xml: &str, key: &str) -> Option<String> {
    let (at, quote) = ['"', '\'']
        .iter()
        .find_map(|q| Some((xml.find(&format!(" {key}={q}"))? + key.len() + 3, *q)))?;
    let end = xml[at..].find(quote)? + at;
    Some(
        xml[at..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Keys of a VM's `meta` that its domain's metadata carries.
const META_KEYS: [&str; 8] = [
    "domain",
    "uri",
    "iface",
    "host_addr",
    "agent_port",
    "work_us",
    "udp",
    "overlay",
];

impl LibvirtProvider {
    /// A provider for `host`'s lbd with `cfg`, cutting VM links from `network`.
    pub fn new(host: &Host, cfg: LibvirtConfig, network: (Ipv4Addr, u8)) -> Self {
        LibvirtProvider {
            instance: host.instance.clone(),
            cfg,
            network,
            files: records_dir(&host.state_file),
        }
    }

    /// Domains of this instance's pool `pool` are named `xlb-<instance>-<pool>-<slot>`.
    fn prefix(&self, pool: &str) -> String {
        format!("xlb-{}-{pool}-", self.instance)
    }

    /// The domain XML of `vm` (made for `spec`).
    fn domain_xml(&self, vm: &Vm, spec: &VmSpec) -> String {
        let m = |k: &str| vm.meta.get(k).map_or(String::new(), |v| escape(v));
        let cmdline = format!(
            "{} xlb.name={} xlb.addr={}/30 xlb.gw={} xlb.port={} xlb.agent={} xlb.cpu={} \
             xlb.work={} xlb.udp={}",
            self.cfg.cmdline,
            vm.name,
            vm.addr,
            m("host_addr"),
            vm.port,
            spec.agent_port,
            spec.cpu_limit,
            spec.work_us,
            u8::from(spec.udp)
        );
        let disk = match vm.meta.get("overlay") {
            Some(o) if !o.is_empty() => format!(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
                 <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
                escape(o)
            ),
            _ => String::new(),
        };
        let quota = (spec.cpu_limit * 100_000.0).round().max(1000.0) as u64;
        let mac = {
            let h = crate::sys::link::short_hash(&m("domain"));
            format!(
                "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
                (h >> 24) as u8,
                (h >> 16) as u8,
                (h >> 8) as u8,
                h as u8
            )
        };
        let console = self.files.join(format!("{}.console", vm.name));
        format!(
            "<domain type='{kind}'>\n  <name>{name}</name>\n  <metadata>\n    \
             <xlb:vm xmlns:xlb='{META_URI}' instance='{instance}' pool='{pool}' slot='{slot}' \
             addr='{addr}' port='{port}' cpu='{cpu}' created='{created}' domain='{name}' \
             uri='{uri}' iface='{iface}' host_addr='{host}' agent_port='{agent}' \
             work_us='{work}' udp='{udp}' overlay='{overlay}'/>\n  </metadata>\n  \
             <memory unit='MiB'>{mem}</memory>\n  <vcpu>{vcpus}</vcpu>\n  \
             <cputune><period>100000</period><quota>{quota}</quota></cputune>\n  \
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel>\
             <initrd>{initrd}</initrd><cmdline>{cmdline}</cmdline></os>\n  \
             <on_crash>preserve</on_crash>\n  <devices>\n    {disk}\n    \
             <interface type='ethernet'><target dev='{iface}' managed='yes'/>\
             <mac address='{mac}'/><model type='virtio'/></interface>\n    \
             <serial type='file'><source path='{console}'/></serial>\n  </devices>\n</domain>\n",
            kind = escape(&self.cfg.domain_type),
            name = m("domain"),
            instance = escape(&self.instance),
            pool = escape(&vm.pool),
            slot = vm.slot,
            addr = vm.addr,
            port = vm.port,
            cpu = vm.cpu_limit,
            created = vm.created_ms,
            uri = m("uri"),
            iface = m("iface"),
            host = m("host_addr"),
            agent = m("agent_port"),
            work = m("work_us"),
            udp = m("udp"),
            overlay = m("overlay"),
            mem = spec.memory_mb,
            vcpus = self.cfg.vcpus,
            kernel = escape(&self.cfg.kernel.display().to_string()),
            initrd = escape(&self.cfg.initrd.display().to_string()),
            cmdline = escape(&cmdline),
            console = escape(&console.display().to_string()),
        )
    }

    /// The URI to put the next VM on: of those that answer, the one with the fewest of this
    /// instance's domains (ties: the first listed).
    async fn place(&self) -> Result<String, VmError> {
        let uris = self.cfg.uris.clone();
        let prefix = format!("xlb-{}-", self.instance);
        blocking(move || {
            let mut best: Option<(usize, String)> = None;
            let mut failures = Vec::new();
            for uri in uris {
                let conn = match open(&uri) {
                    Ok(c) => c,
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                };
                let ours = conn
                    .0
                    .list_all_domains(0)
                    .map_err(|e| engine_error(&format!("listing domains on {uri}"), &e))?
                    .iter()
                    .filter(|d| d.get_name().is_ok_and(|n| n.starts_with(&prefix)))
                    .count();
                if best.as_ref().is_none_or(|(n, _)| ours < *n) {
                    best = Some((ours, uri));
                }
            }
            best.map(|(_, uri)| uri)
                .ok_or_else(|| VmError::EngineUnreachable(failures.join("; ")))
        })
        .await
    }

    /// Moves the VM's tap from the hypervisor's namespace into this one (a local hypervisor
    /// makes it where QEMU runs) and gives it the balancer side of the VM's /30.
    async fn claim_tap(&self, vm: &Vm) -> Result<(), VmError> {
        let tap = meta(vm, "iface")?.to_string();
        let host: IpAddr = meta(vm, "host_addr")?
            .parse()
            .map_err(|_| VmError::BadRecord(format!("{}: host_addr", vm.name)))?;
        let domain = meta(vm, "domain")?;
        if link::index(&tap).is_err() {
            let pid_file = format!("/run/libvirt/qemu/{domain}.pid");
            let pid: u32 = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| {
                    VmError::Engine(format!(
                        "{}: tap {tap} is not in lbd's namespace and no local QEMU ({pid_file}) \
                         holds it: a remote hypervisor's VMs need routing of their own",
                        vm.name
                    ))
                })?;
            link::move_here(&netns::of_process(pid), &tap)
                .await
                .map_err(|e| VmError::system(format!("taking tap {tap}"), e))?;
        }
        match link::configure_here(&tap, host, 30).await {
            Err(e) if !e.cause.contains("File exists") => {
                Err(VmError::system(format!("addressing tap {tap}"), e))
            }
            _ => Ok(()),
        }
    }

    /// The VM a domain of this instance stands for, from its metadata `xml`.
    fn vm_of_metadata(&self, xml: &str) -> Option<Vm> {
        if attr(xml, "instance")? != self.instance {
            return None;
        }
        let pool = attr(xml, "pool")?;
        let slot: u32 = attr(xml, "slot")?.parse().ok()?;
        let meta: BTreeMap<String, String> = META_KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), attr(xml, k)?)))
            .collect();
        Some(Vm {
            name: format!("{pool}-{slot}"),
            pool,
            slot,
            addr: attr(xml, "addr")?.parse().ok()?,
            port: attr(xml, "port")?.parse().ok()?,
            cpu_limit: attr(xml, "cpu")?.parse().ok()?,
            created_ms: attr(xml, "created")?.parse().ok()?,
            meta,
        })
    }
}

/// `vm.meta[key]`.
fn meta<'a>(vm: &'a Vm, key: &str) -> Result<&'a str, VmError> {
    vm.meta
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| VmError::BadRecord(format!("{}: no {key}", vm.name)))
}

/// Looks domain `name` up on `uri` and runs `f` on it; a missing domain is `None`.
async fn with_domain<T: Send + 'static>(
    uri: &str,
    name: &str,
    f: impl FnOnce(&Domain) -> Result<T, VmError> + Send + 'static,
) -> Result<Option<T>, VmError> {
    let (uri, name) = (uri.to_string(), name.to_string());
    blocking(move || {
        let conn = open(&uri)?;
        match Domain::lookup_by_name(&conn.0, &name) {
            Ok(dom) => f(&dom).map(Some),
            Err(e) if matches!(e.code(), virt::error::ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(engine_error(&format!("looking up {name}"), &e)),
        }
    })
    .await
}

/// The state of a domain as ours: running (or blocked on I/O) is running; paused, shut off
/// or crashed has stopped serving.
fn status_of(state: sys::virDomainState) -> VmStatus {
    match state {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => VmStatus::Running,
        sys::VIR_DOMAIN_NOSTATE => VmStatus::Created,
        _ => VmStatus::Stopped,
    }
}

impl VmProvider for LibvirtProvider {
    async fn create(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        for (what, path) in [("kernel", &self.cfg.kernel), ("initrd", &self.cfg.initrd)]
            .into_iter()
            .chain(self.cfg.disk.iter().map(|d| ("disk", d)))
        {
            if !path.is_file() {
                return Err(VmError::ImageMissing(format!(
                    "{what} {} does not exist",
                    path.display()
                )));
            }
        }
        let uri = self.place().await?;
        let (host, addr) = link_addrs(self.network, spec.slot)?;
        let name = format!("{}-{}", spec.pool, spec.slot);
        let domain = format!("{}{}", self.prefix(&spec.pool), spec.slot);
        std::fs::create_dir_all(&self.files).map_err(|e| {
            VmError::system(
                "creating the VM files' directory",
                crate::sys::error::fail(self.files.display().to_string(), e),
            )
        })?;
        let overlay = match &self.cfg.disk {
            Some(base) => {
                let overlay = self.files.join(format!("{name}.qcow2"));
                let out = tokio::process::Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                    .arg(base)
                    .arg(&overlay)
                    .output()
                    .await
                    .map_err(|e| VmError::Engine(format!("running qemu-img: {e}")))?;
                if !out.status.success() {
                    return Err(VmError::Engine(format!(
                        "qemu-img create for {name}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                overlay.display().to_string()
            }
            None => String::new(),
        };
        let vm = Vm::new(
            spec,
            addr,
            host,
            link_name("xl", &self.instance, &spec.pool, spec.slot),
            [
                ("domain", domain.clone()),
                ("uri", uri.clone()),
                ("udp", spec.udp.to_string()),
                ("overlay", overlay.clone()),
            ],
        );
        let xml = self.domain_xml(&vm, spec);
        let defined = blocking(move || {
            let conn = open(&uri)?;
            Domain::define_xml(&conn.0, &xml)
                .map(|_| ())
                .map_err(|e| engine_error(&format!("defining {domain}"), &e))
        })
        .await;
        if let Err(e) = defined {
            if !overlay.is_empty() {
                let _ = std::fs::remove_file(&overlay);
            }
            return Err(e);
        }
        Ok(vm)
    }

    async fn start(&self, vm: &mut Vm) -> Result<(), VmError> {
        let domain = meta(vm, "domain")?.to_string();
        let what = format!("starting {domain}");
        with_domain(meta(vm, "uri")?, &domain, move |dom| {
            dom.create()
                .map(|_| ())
                .map_err(|e| engine_error(&what, &e))
        })
        .await?
        .ok_or_else(|| VmError::Engine(format!("{}: its domain vanished", vm.name)))?;
        self.claim_tap(vm).await
    }

    async fn status(&self, vm: &Vm) -> Result<VmStatus, VmError> {
        let state = with_domain(meta(vm, "uri")?, meta(vm, "domain")?, |dom| {
            dom.get_state()
                .map(|(s, _)| s)
                .map_err(|e| engine_error("reading a domain's state", &e))
        })
        .await?;
        Ok(state.map_or(VmStatus::Missing, status_of))
    }

    async fn stop(&self, vm: &Vm) -> Result<(), VmError> {
        let grace = Duration::from_secs(self.cfg.shutdown_s);
        with_domain(meta(vm, "uri")?, meta(vm, "domain")?, move |dom| {
            // A guest that ignores the request is destroyed after the grace time.
            let _ = dom.shutdown();
            let start = Instant::now();
            while start.elapsed() < grace {
                if dom
                    .get_state()
                    .is_ok_and(|(s, _)| s == sys::VIR_DOMAIN_SHUTOFF)
                {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = dom.destroy();
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, vm: &Vm) -> Result<(), VmError> {
        with_domain(meta(vm, "uri")?, meta(vm, "domain")?, |dom| {
            // Destroying one that is not running fails harmlessly.
            let _ = dom.destroy();
            dom.undefine()
                .map_err(|e| engine_error("undefining a domain", &e))
        })
        .await?;
        if let Some(o) = vm.meta.get("overlay").filter(|o| !o.is_empty()) {
            let _ = std::fs::remove_file(o);
        }
        let _ = std::fs::remove_file(self.files.join(format!("{}.console", vm.name)));
        Ok(())
    }

    async fn list(&self, pool: &str) -> Result<Vec<Vm>, VmError> {
        let mut vms: Vec<Vm> = Vec::new();
        for uri in &self.cfg.uris {
            let (uri, prefix) = (uri.clone(), self.prefix(pool));
            let found = blocking(move || {
                let conn = open(&uri)?;
                let domains = conn
                    .0
                    .list_all_domains(0)
                    .map_err(|e| engine_error(&format!("listing domains on {uri}"), &e))?;
                Ok(domains
                    .iter()
                    .filter(|d| d.get_name().is_ok_and(|n| n.starts_with(&prefix)))
                    .filter_map(|d| {
                        let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
                        d.get_metadata(kind, Some(META_URI), 0).ok()
                    })
                    .collect::<Vec<String>>())
            })
            .await;
            match found {
                Ok(metadata) => {
                    for vm in metadata.iter().filter_map(|x| self.vm_of_metadata(x)) {
                        if vm.pool == pool && !vms.iter().any(|v| v.name == vm.name) {
                            vms.push(vm);
                        }
                    }
                }
                Err(e) => tracing::warn!("pool {pool}: {e}"),
            }
        }
        Ok(vms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_attributes_come_back_unescaped() {
        let xml = format!(
            "<xlb:vm xmlns:xlb=\"{META_URI}\" pool=\"a&amp;b\" slot='3' uri=\"qemu:///system\"/>"
        );
        assert_eq!(attr(&xml, "pool").as_deref(), Some("a&b"));
        assert_eq!(attr(&xml, "slot").as_deref(), Some("3"));
        assert_eq!(attr(&xml, "missing"), None);
        assert_eq!(escape("<'\"&>"), "&lt;&apos;&quot;&amp;&gt;");
    }
}
