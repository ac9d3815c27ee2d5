//! The `netns` provider: a VM is a network namespace with a veth into lbd's namespace (a /30
//! cut from the pool's network), CPU and memory limits through cgroups, and `lb-backend`
//! serving inside (plus `lb-decap` for DSR pools). Servers run in their own session, so they
//! outlive lbd; records beside the state file let the next lbd adopt them.
use std::{
    net::{IpAddr, Ipv4Addr},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::PathBuf,
    process::Stdio,
};

use super::{link_addrs, link_name, records_dir, Host, Vm, VmError, VmProvider, VmSpec, VmStatus};
use crate::{
    model::config::AttachMode,
    sys::{
        cgroup::Cgroup,
        error::{fail, Context, Result},
        ethtool::{self, Offload},
        link::{self, End},
        netns::{add_netns, command_in, del_netns, enter, netns_path},
    },
};

/// Makes VMs as network namespaces for one lbd instance.
pub struct NetnsProvider {
    instance: String,
    records: PathBuf,
    network: (Ipv4Addr, u8),
    bin_dir: PathBuf,
    /// DSR pools: the VIP each VM holds on its loopback (and `lb-decap` runs).
    dsr_vip: Option<IpAddr>,
    /// lbd attaches to the VMs' links at XDP (forced): their ends get set up for it.
    xdp: bool,
}

/// Namespaces of every VM of `instance` start with this.
fn ns_prefix(instance: &str) -> String {
    format!("xlb-{instance}-")
}

impl NetnsProvider {
    /// A provider for `host`'s lbd keeping records beside its state file, cutting VM links
    /// from `network`, starting the binaries found in its `bin_dir`.
    pub fn new(host: &Host, network: (Ipv4Addr, u8), dsr_vip: Option<IpAddr>) -> Self {
        NetnsProvider {
            instance: host.instance.clone(),
            records: records_dir(&host.state_file),
            network,
            bin_dir: host.bin_dir.clone(),
            dsr_vip,
            xdp: host.attach == AttachMode::Xdp,
        }
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.records.join(format!("{name}.json"))
    }

    fn write_record(&self, vm: &Vm) -> Result<(), VmError> {
        let write = || -> Result<()> {
            std::fs::create_dir_all(&self.records)
                .with_context(|| format!("creating {}", self.records.display()))?;
            let path = self.record_path(&vm.name);
            let tmp = path.with_extension("tmp");
            let json = serde_json::to_vec_pretty(vm).context("encoding the record")?;
            std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))
        };
        write().map_err(|e| VmError::system(format!("saving the record of {}", vm.name), e))
    }

    fn bin(&self, name: &str) -> String {
        self.bin_dir.join(name).display().to_string()
    }

    /// Starts `program` in namespace `ns`, in its own session (it outlives lbd), inside
    /// `cgroup`; returns its pid.
    fn spawn(
        &self,
        ns: &str,
        cgroup: &Cgroup,
        log: &std::path::Path,
        program: &str,
        args: &[&str],
    ) -> Result<u32> {
        let mut cmd = command_in(ns, program, args)?;
        let procs = cgroup.procs_files()?;
        let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().context("duplicating the log descriptor")?)
            .stderr(out);
        // SAFETY: runs between fork and exec; it calls only async-signal-safe functions
        // (setsid, getpid, write) on a stack buffer and fds opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                let mut buf = [0u8; 12];
                let mut n = libc::getpid() as u32;
                let mut i = buf.len();
                loop {
                    i -= 1;
                    buf[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                for fd in &fds {
                    let len = buf.len() - i;
                    if libc::write(*fd, buf[i..].as_ptr().cast(), len) != len as isize {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {program}"))?;
        drop(procs);
        Ok(child.id())
    }
}

fn meta<'a>(vm: &'a Vm, key: &str) -> Result<&'a str, VmError> {
    vm.meta
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| VmError::BadRecord(format!("{}: no {key}", vm.name)))
}

/// Whether `pid` is a live (not zombie) process; reaps it if it is our exited child.
fn alive(pid: i32) -> bool {
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

impl VmProvider for NetnsProvider {
    async fn create(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        let name = format!("{}-{}", spec.pool, spec.slot);
        let ns = format!("{}{name}", ns_prefix(&self.instance));
        let iface = link_name("xv", &self.instance, &spec.pool, spec.slot);
        let (host, addr) = link_addrs(self.network, spec.slot)?;
        let vm = Vm::new(
            spec,
            addr,
            host,
            iface.clone(),
            [
                ("netns", ns.clone()),
                ("memory_mb", spec.memory_mb.to_string()),
                ("udp", spec.udp.to_string()),
            ],
        );
        let make = async {
            let name = ns.clone();
            tokio::task::spawn_blocking(move || add_netns(&name))
                .await
                .map_err(|e| fail("creating the namespace", e))??;
            let host_end = End {
                name: iface.clone(),
                addrs: vec![(host.into(), 30)],
                ..End::default()
            };
            let vm_end = End {
                ns: Some(ns.clone()),
                name: "eth0".into(),
                addrs: vec![(addr.into(), 30)],
                gateways: vec![host.into()],
                lo: self.dsr_vip.into_iter().collect(),
            };
            link::veth(&host_end, &vm_end).await?;
            if self.xdp {
                // Forced XDP on the VM's link (at tc, the default here, nothing is needed):
                // GRO on, so frames lb_xdp redirects into the veth are received; TX checksums
                // off, so the VM's packets carry full checksums XDP can update.
                enter(&ns, || -> Result<()> {
                    ethtool::set("eth0", Offload::Gro, true)?;
                    ethtool::set("eth0", Offload::TxChecksum, false)
                })??;
            }
            Cgroup::create(&ns, spec.cpu_limit, spec.memory_mb)?;
            Result::Ok(())
        };
        if let Err(e) = make.await {
            let _ = self.delete(&vm).await;
            return Err(VmError::system(format!("creating VM {name}"), e));
        }
        self.write_record(&vm)?;
        Ok(vm)
    }

    async fn start(&self, vm: &mut Vm) -> Result<(), VmError> {
        let ns = meta(vm, "netns")?.to_string();
        let cgroup = Cgroup::of(&ns);
        let log = self.records.join(format!("{}.log", vm.name));
        let serve = format!("[::]:{}", vm.port);
        let agent = format!("[::]:{}", meta(vm, "agent_port")?);
        let work = meta(vm, "work_us")?.to_string();
        let cpu = vm.cpu_limit.to_string();
        let kind = if meta(vm, "udp")? == "true" {
            "--listen"
        } else {
            "--http"
        };
        let args = [
            "--name",
            &vm.name,
            kind,
            &serve,
            "--agent",
            &agent,
            "--cpu-limit",
            &cpu,
            "--work-us",
            &work,
        ];
        let started = (|| -> Result<()> {
            if self.dsr_vip.is_some() {
                let pid = self.spawn(
                    &ns,
                    &cgroup,
                    &log,
                    &self.bin("lb-decap"),
                    &[
                        "--iface",
                        "eth0",
                        "--attach",
                        if self.xdp { "xdp" } else { "auto" },
                    ],
                )?;
                vm.meta.insert("decap_pid".into(), pid.to_string());
            }
            let pid = self.spawn(&ns, &cgroup, &log, &self.bin("lb-backend"), &args)?;
            vm.meta.insert("pid".into(), pid.to_string());
            Ok(())
        })();
        started.map_err(|e| VmError::system(format!("starting VM {}", vm.name), e))?;
        self.write_record(vm)
    }

    async fn status(&self, vm: &Vm) -> Result<VmStatus, VmError> {
        let ns = meta(vm, "netns")?;
        if !netns_path(ns).exists() {
            return Ok(VmStatus::Missing);
        }
        let Some(pid) = vm.meta.get("pid") else {
            return Ok(VmStatus::Created);
        };
        let pid: i32 = pid
            .parse()
            .map_err(|_| VmError::BadRecord(format!("{}: pid {pid:?}", vm.name)))?;
        Ok(if alive(pid) {
            VmStatus::Running
        } else {
            VmStatus::Stopped
        })
    }

    async fn stop(&self, vm: &Vm) -> Result<(), VmError> {
        for key in ["pid", "decap_pid"] {
            if let Some(pid) = vm.meta.get(key).and_then(|p| p.parse::<i32>().ok()) {
                if alive(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, vm: &Vm) -> Result<(), VmError> {
        let ns = meta(vm, "netns")?.to_string();
        // Every process of the VM is in its cgroup: killing those leaves nothing behind.
        let cgroup = Cgroup::of(&ns);
        tokio::task::spawn_blocking(move || cgroup.destroy())
            .await
            .map_err(|e| VmError::system(format!("deleting VM {}", vm.name), fail("cgroup", e)))?;
        // The namespace, and the veth pair with it, go once its processes are gone.
        del_netns(&ns).map_err(|e| VmError::system(format!("deleting namespace {ns}"), e))?;
        let _ = std::fs::remove_file(self.record_path(&vm.name));
        let _ = std::fs::remove_file(self.records.join(format!("{}.log", vm.name)));
        Ok(())
    }

    async fn list(&self, pool: &str) -> Result<Vec<Vm>, VmError> {
        let Ok(dir) = std::fs::read_dir(&self.records) else {
            return Ok(Vec::new());
        };
        let mut vms = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let vm: Vm = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(vm) => vm,
                None => {
                    tracing::warn!("ignoring unreadable VM record {}", path.display());
                    continue;
                }
            };
            if vm.pool != pool {
                continue;
            }
            if self.status(&vm).await? == VmStatus::Missing {
                // Its namespace is gone (machine restarted): nothing to adopt.
                let _ = self.delete(&vm).await;
                continue;
            }
            vms.push(vm);
        }
        vms.sort_by_key(|v| v.slot);
        Ok(vms)
    }
}

/// Removes every VM namespace and cgroup of `instance` (test and lab cleanup after a crash).
pub fn purge(instance: &str) {
    let prefix = ns_prefix(instance);
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            Cgroup::of(&name).destroy();
            let _ = del_netns(&name);
        }
    }
}

/// Removes every VM of an instance, and its VM records, when dropped: for labs and tests, so
/// no VM outlives them even if lbd was killed before it could delete its VMs. Drop it after
/// lbd has stopped.
pub struct PurgeGuard {
    instance: String,
    records: PathBuf,
}

impl PurgeGuard {
    /// Guards the VMs of `instance`, whose lbd keeps its state in `state_file`.
    pub fn new(instance: &str, state_file: &std::path::Path) -> Self {
        PurgeGuard {
            instance: instance.to_string(),
            records: super::records_dir(state_file),
        }
    }
}

impl Drop for PurgeGuard {
    fn drop(&mut self) {
        purge(&self.instance);
        let _ = std::fs::remove_dir_all(&self.records);
    }
}
