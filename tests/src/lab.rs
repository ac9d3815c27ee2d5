//! A running lab for Tier 3 tests: namespaces, backend servers and `lbd`, torn down on drop.
use std::{path::PathBuf, process::Command, sync::atomic::Ordering, time::Duration};

use lb_userspace::model::config::AttachMode;

use lb_lab::{
    lbd_log,
    netns::{unique_name, Netns},
    start_lbd_in, state_file, tail, Load, OneArmed, PinGuard, TempFile, Topology,
};

/// Namespaces with `lb-backend` in every VM and `lbd` in the balancer.
pub struct RunningLab {
    /// The namespaces (dropping it stops lbd and the servers).
    pub topo: Topology,
    /// lbd's API socket.
    pub socket: PathBuf,
    /// lbd's pid.
    pub lbd: u32,
    /// lbd's instance name (its pins are under /sys/fs/bpf/<instance>).
    pub instance: String,
    /// lbd's config file.
    pub config: TempFile,
    _state: TempFile,
    _log: TempFile,
    /// Removes the pins after lbd stopped (a lab's lbd may leave its data path running).
    _pins: PinGuard,
}

impl RunningLab {
    /// Starts a lab with `n` backend VMs serving the VIP on TCP and UDP.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, 0, "")
    }

    /// The same, with `hosts` more client hosts on links of their own (`topo.hosts`) and
    /// `lbd_settings` (TOML lines) added to the config's `[lbd]` table.
    pub fn start_with(n: usize, hosts: usize, lbd_settings: &str) -> Self {
        Self::start_custom(n, hosts, |text| {
            text.replacen("[lbd]\n", &format!("[lbd]\n{lbd_settings}"), 1)
        })
    }

    /// The same with lbd forced to XDP, its peers set up as lbd's warning says (see
    /// `Topology::build_for`).
    pub fn start_xdp(n: usize) -> Self {
        Self::start_for(n, 0, AttachMode::Xdp, |text| text)
    }

    /// The same, with the config text (the lab's) passed through `edit` first.
    pub fn start_custom(n: usize, hosts: usize, edit: impl FnOnce(String) -> String) -> Self {
        Self::start_for(n, hosts, AttachMode::Auto, edit)
    }

    /// The same, for lbd attaching with `attach`.
    pub fn start_for(
        n: usize,
        hosts: usize,
        attach: AttachMode,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        crate::require_root();
        let mut topo = Topology::build_for(n, attach).expect("build namespaces");
        for _ in 0..hosts {
            topo.add_host().expect("add a host");
        }
        topo.start_backends(&crate::bin("lb-backend"), &crate::bin("lb-decap"))
            .expect("start backends");
        let (instance, socket, config, state, lbd) =
            launch(&mut topo, "t3", |t, i, s| edit(t.config_toml(i, s)));
        RunningLab {
            topo,
            _log: TempFile::adopt(lbd_log(&socket)),
            _pins: PinGuard(instance.clone()),
            socket,
            lbd,
            instance,
            config,
            _state: state,
        }
    }

    /// What lbd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(lbd_log(&self.socket)).unwrap_or_default()
    }

    /// Kills lbd with SIGKILL (no cleanup at all) and starts a new one with the same config.
    /// Borrows only the balancer side, so a client thread can keep using `topo.client`.
    pub fn kill_and_restart_lbd(
        lb: &mut Netns,
        lbd: &mut u32,
        config: &TempFile,
        socket: &std::path::Path,
    ) {
        lb.signal_child(*lbd, nix::sys::signal::Signal::SIGKILL)
            .expect("kill lbd");
        *lbd = start_lbd_in(lb, &crate::bin("lbd"), config.path(), socket).expect("restart lbd");
    }

    /// Runs `lbctl --socket <socket> ARGS...` and returns its stdout; panics with stderr on failure.
    pub fn lbctl(&self, args: &[&str]) -> String {
        lbctl(&self.socket, args)
    }

    /// lbd's `GET /v1/stats`: verdict counters by reason name, ring changes applied (Null if
    /// lbd does not answer).
    pub fn stats(&self) -> serde_json::Value {
        lb_userspace::face::client::call(&self.socket, "GET", "/v1/stats", None).unwrap_or_default()
    }

    /// The state of backend VM `i` of the VIP `web` (`lbctl backend list`), or "missing".
    pub fn web_state(&self, i: usize) -> String {
        let list: serde_json::Value =
            serde_json::from_str(&self.lbctl(&["backend", "list", "--vip", "web", "--json"]))
                .expect("list JSON");
        list[0]["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .find(|b| b["addr"] == lb_lab::backend_addr(i).to_string())
            .and_then(|b| b["state"].as_str())
            .unwrap_or("missing")
            .to_string()
    }
}

/// A pool lab for Tier 3 tests: a client, the balancer and `lbd` with one pooled VIP whose
/// VMs lbd creates; the VMs are removed on drop even if lbd was killed.
pub struct PoolRunning {
    /// The client and balancer namespaces (dropping them stops lbd).
    pub topo: Topology,
    /// lbd's API socket.
    pub socket: PathBuf,
    /// lbd's pid.
    pub lbd: u32,
    /// lbd's instance name (VM namespaces are `xlb-<instance>-<vm>`).
    pub instance: String,
    /// lbd's config file.
    pub config: TempFile,
    _state: TempFile,
    _log: TempFile,
    /// Removes the VMs after lbd stops, even if it was killed.
    _vms: lb_userspace::workers::vm::netns::PurgeGuard,
    _pins: PinGuard,
}

impl PoolRunning {
    /// Starts lbd over a pool configured by `lab`.
    pub fn start(lab: &lb_lab::PoolLab) -> Self {
        Self::start_with(lab, |text| text)
    }

    /// The same, with the config text passed through `edit` first (more VIPs, say).
    pub fn start_with(lab: &lb_lab::PoolLab, edit: impl FnOnce(String) -> String) -> Self {
        crate::require_root();
        let mut topo = Topology::build(0).expect("build namespaces");
        let (instance, socket, config, state, lbd) =
            launch(&mut topo, "tp", |t, i, s| edit(lab.config_toml(t, i, s)));
        PoolRunning {
            _vms: lb_userspace::workers::vm::netns::PurgeGuard::new(
                &instance,
                &state_file(&socket),
            ),
            _log: TempFile::adopt(lbd_log(&socket)),
            _pins: PinGuard(instance.clone()),
            topo,
            socket,
            lbd,
            instance,
            config,
            _state: state,
        }
    }

    /// The pool as lbd shows it now (the lab's `web`).
    pub fn pool(&self) -> lb_userspace::model::wire::PoolView {
        self.pool_named("web")
    }

    /// Pool `name` as lbd shows it now.
    pub fn pool_named(&self, name: &str) -> lb_userspace::model::wire::PoolView {
        let v = lb_userspace::face::client::call(&self.socket, "GET", "/v1/vms", None)
            .expect("GET /v1/vms");
        let pools: Vec<lb_userspace::model::wire::PoolView> =
            serde_json::from_value(v).expect("pool JSON");
        pools
            .into_iter()
            .find(|p| p.vip == name)
            .unwrap_or_else(|| panic!("no pool {name}"))
    }

    /// `n` HTTP requests through the pool's VIP from the client: the backends that answered
    /// (their `X-Backend` names), and how many failed.
    pub fn burst(&self, n: usize) -> (std::collections::BTreeSet<String>, usize) {
        let vip = std::net::SocketAddr::from((lb_lab::VIP, lb_lab::VIP_PORT));
        self.topo
            .client
            .enter(move || {
                let mut seen = std::collections::BTreeSet::new();
                let mut failed = 0;
                for _ in 0..n {
                    match lb_lab::http_get(vip, "/") {
                        Ok(name) => {
                            seen.insert(name);
                        }
                        Err(_) => failed += 1,
                    }
                }
                (seen, failed)
            })
            .expect("client namespace")
    }

    /// Waits up to 10 s until pool `name` counts a provider error of `kind`; its view then.
    pub fn wait_for_error(&self, name: &str, kind: &str) -> lb_userspace::model::wire::PoolView {
        let start = std::time::Instant::now();
        loop {
            let p = self.pool_named(name);
            if p.errors.get(kind).copied().unwrap_or(0) >= 1 {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name}: no {kind} error: {p:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits up to `limit` for `ready(pool)`; panics with the last view if it never holds.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        mut ready: impl FnMut(&lb_userspace::model::wire::PoolView) -> bool,
    ) -> lb_userspace::model::wire::PoolView {
        let start = std::time::Instant::now();
        loop {
            let p = self.pool();
            if ready(&p) {
                return p;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; pool now:\n{}",
                lb_userspace::face::render::pools(&[p], 20)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Turns `load` down to light traffic and waits (up to 60 s) for the pool to scale in
    /// to 2 active VMs; asserts that it drained before deleting and that no request failed
    /// while it scaled (so a broken drain shows as failures).
    pub fn scale_in_to_two(&self, load: Load) -> lb_userspace::model::wire::PoolView {
        load.rate.store(10, Ordering::Relaxed);
        let back = self.wait_for(Duration::from_secs(60), "scale in to 2", |p| {
            p.vms.len() == 2 && Self::active(p).len() == 2
        });
        assert!(
            back.events
                .iter()
                .any(|e| e.what.contains("drained; deleting")),
            "scale-in drains before deleting: {:?}",
            back.events
        );
        let ok = load.tally.ok.load(Ordering::Relaxed);
        let failed = load.tally.failed.load(Ordering::Relaxed);
        drop(load);
        assert_eq!(failed, 0, "requests failed during scaling ({ok} answered)");
        assert!(ok > 200, "the load ran: {ok} answered");
        back
    }

    /// Names of the VMs that are `active`.
    pub fn active(p: &lb_userspace::model::wire::PoolView) -> Vec<String> {
        p.vms
            .iter()
            .filter(|v| v.state == lb_userspace::model::wire::VmState::Active)
            .map(|v| v.name.clone())
            .collect()
    }

    /// VM namespaces of this instance that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("xlb-{}-", self.instance);
        let mut names: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Runs `lbctl --socket <socket> ARGS...` and returns its stdout; panics with stderr on
    /// failure.
    pub fn lbctl(&self, args: &[&str]) -> String {
        lbctl(&self.socket, args)
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- lbd's log (last 40 lines) ---\n{}",
                tail(&lbd_log(&self.socket), 40)
            );
        }
    }
}

impl Drop for PoolRunning {
    fn drop(&mut self) {
        // lbd first, so it cannot make a VM after the purge guard (a field) has run.
        self.topo.lb.kill_children();
    }
}

/// Runs `lbctl --socket SOCKET ARGS...`: whether it succeeded, its stdout and its stderr.
pub fn lbctl_try(socket: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crate::bin("lbctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run lbctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `lbctl --socket SOCKET ARGS...` and returns its stdout; panics with stderr on failure.
pub fn lbctl(socket: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(crate::bin("lbctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run lbctl");
    assert!(
        out.status.success(),
        "lbctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes the config `make(topo, instance, socket)` for a new instance named after `prefix`
/// and starts lbd with it: (instance, socket, config, state file guard, lbd's pid).
pub fn launch(
    topo: &mut Topology,
    prefix: &str,
    make: impl FnOnce(&Topology, &str, &std::path::Path) -> String,
) -> (String, PathBuf, TempFile, TempFile, u32) {
    let text = |instance: &str, socket: &std::path::Path| make(topo, instance, socket);
    let (instance, socket, config) = write_config(prefix, text);
    let state = TempFile::adopt(state_file(&socket));
    let lbd = topo
        .start_lbd(&crate::bin("lbd"), config.path(), &socket)
        .expect("start lbd");
    (instance, socket, config, state, lbd)
}

/// Writes the config `make(instance, socket)` of a new instance named after `prefix`:
/// (instance, socket, config).
fn write_config(
    prefix: &str,
    make: impl FnOnce(&str, &std::path::Path) -> String,
) -> (String, PathBuf, TempFile) {
    let instance = unique_name(prefix);
    let socket = std::env::temp_dir().join(format!("{instance}.sock"));
    let config = TempFile::new(&format!("{instance}.toml"), &make(&instance, &socket))
        .expect("write config");
    (instance, socket, config)
}

/// lbd on the one-armed lab (`lb_lab::OneArmed`), its backends serving HTTP; everything is
/// torn down on drop.
pub struct ArmLab {
    /// The switch and hosts (dropping them stops lbd and the servers).
    pub arm: OneArmed,
    /// lbd's API socket.
    pub socket: PathBuf,
    _config: TempFile,
    _state: TempFile,
    _log: TempFile,
    _pins: PinGuard,
}

impl ArmLab {
    /// Builds the lab with `n` backends (DSR or NAT), starts the servers, then lbd attaching
    /// with `attach`.
    pub fn start(n: usize, attach: AttachMode, dsr: bool) -> Self {
        crate::require_root();
        let mut arm = OneArmed::build(n, attach, dsr).expect("one-armed lab");
        arm.start_backends(&crate::bin("lb-backend"), &crate::bin("lb-decap"))
            .expect("start backends");
        let (instance, socket, config) = write_config("ta", |i, s| arm.config_toml(i, s));
        let state = TempFile::adopt(state_file(&socket));
        start_lbd_in(&mut arm.lb, &crate::bin("lbd"), config.path(), &socket).expect("start lbd");
        ArmLab {
            arm,
            _log: TempFile::adopt(lbd_log(&socket)),
            _pins: PinGuard(instance),
            socket,
            _config: config,
            _state: state,
        }
    }

    /// What lbd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(lbd_log(&self.socket)).unwrap_or_default()
    }

    /// lbd's verdict counters by reason name.
    pub fn counters(&self) -> serde_json::Value {
        lb_userspace::face::client::call(&self.socket, "GET", "/v1/stats", None)
            .map(|v| v["counters"].clone())
            .unwrap_or_default()
    }
}

impl Drop for ArmLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- lbd's log (last 40 lines) ---\n{}",
                tail(&lbd_log(&self.socket), 40)
            );
        }
    }
}

/// The Prometheus page lbd serves in namespace `lb` (at `lab::METRICS`), HTTP head included.
pub fn metrics_page(lb: &Netns) -> String {
    use std::io::{Read, Write};
    lb.enter(|| {
        let addr: std::net::SocketAddr = lb_lab::METRICS.parse().unwrap();
        let mut s = std::net::TcpStream::connect(addr).expect("metrics port");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: lbd\r\n\r\n")
            .unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        page
    })
    .expect("balancer namespace")
}
