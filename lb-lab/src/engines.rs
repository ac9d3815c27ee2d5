//! The engines the libvirt and docker pools run on, started for a test or a lab as processes
//! of their own with pid files and stopped by pid: `virtlogd` and `libvirtd` (the system
//! instance, `qemu:///system`), and podman's Docker-compatible API service on a socket of its
//! own. One user at a time in a process (a lock), since there is one system libvirtd.
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::netns::unique_name;

/// Held by whoever runs engines in this process.
static ENGINES: Mutex<()> = Mutex::new(());

/// Takes the engines' lock (a test that failed holding it does not block the others).
fn lock() -> MutexGuard<'static, ()> {
    ENGINES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `program args` in a session of its own (it outlives no one: the guard kills it),
/// its output appended to `log`, and returns its pid.
fn spawn(program: &str, args: &[&str], log: &Path, env: &[(&str, &Path)]) -> Result<u32> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setsid(2) between fork and exec is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    Ok(child.id())
}

/// Stops process `pid` (SIGTERM, then SIGKILL after 5 s) and reaps it if it is our child.
fn stop(pid: u32) {
    use nix::{sys::signal, unistd::Pid};
    let pid = Pid::from_raw(pid as i32);
    let _ = signal::kill(pid, signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        if signal::kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = signal::kill(pid, signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// Waits up to 10 s for a Unix socket at `path` to accept.
fn wait_for_socket(path: &Path, what: &str, log: &Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{what} did not open {} within 10 s: {}",
        path.display(),
        crate::tail(log, 20)
    )
}

/// `virtlogd` and `libvirtd`, started for as long as this lives (a libvirtd already running
/// is used and left alone).
pub struct Libvirt {
    pids: Vec<u32>,
    dir: PathBuf,
    _lock: MutexGuard<'static, ()>,
}

/// libvirtd's system socket.
const LIBVIRT_SOCKET: &str = "/run/libvirt/libvirt-sock";

impl Libvirt {
    /// Starts the daemons (they answer on `qemu:///system`).
    pub fn start() -> Result<Self> {
        let lock = lock();
        let dir = std::env::temp_dir().join(unique_name("libvirt"));
        std::fs::create_dir_all(&dir)?;
        let mut engine = Libvirt {
            pids: Vec::new(),
            dir,
            _lock: lock,
        };
        if std::os::unix::net::UnixStream::connect(LIBVIRT_SOCKET).is_ok() {
            return Ok(engine);
        }
        for d in [
            "/var/log/libvirt/qemu",
            "/var/lib/libvirt/qemu",
            "/run/libvirt",
        ] {
            std::fs::create_dir_all(d)?;
        }
        let log = engine.dir.join("daemons.log");
        for (daemon, socket) in [
            ("virtlogd", "/run/libvirt/virtlogd-sock"),
            ("libvirtd", LIBVIRT_SOCKET),
        ] {
            let conf = engine.dir.join(format!("{daemon}.conf"));
            std::fs::write(&conf, "log_level = 3\nlog_outputs = \"3:stderr\"\n")?;
            let pid_file = engine.dir.join(format!("{daemon}.pid"));
            let (conf, pid_file) = (conf.display().to_string(), pid_file.display().to_string());
            let args = ["--config", conf.as_str(), "--pid-file", pid_file.as_str()];
            let pid = spawn(daemon, &args, &log, &[])?;
            engine.pids.push(pid);
            wait_for_socket(Path::new(socket), daemon, &log)?;
        }
        Ok(engine)
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        for pid in self.pids.drain(..).rev() {
            stop(pid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// podman's Docker-compatible API service on a socket of its own, with the settings this
/// kind of machine needs (runc, cgroupfs, explicit ulimits), for as long as this lives.
pub struct Podman {
    pid: u32,
    dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    _lock: MutexGuard<'static, ()>,
}

impl Podman {
    /// Starts the service.
    pub fn start() -> Result<Self> {
        let lock = lock();
        let dir = std::env::temp_dir().join(unique_name("podman"));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n[containers]\n\
             default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n",
        )?;
        let socket = dir.join("podman.sock");
        let log = dir.join("service.log");
        let uri = format!("unix://{}", socket.display());
        let pid = spawn(
            "podman",
            &["system", "service", "--time=0", &uri],
            &log,
            &[("CONTAINERS_CONF", &conf)],
        )?;
        let service = Podman {
            pid,
            dir,
            socket,
            _lock: lock,
        };
        wait_for_socket(&service.socket, "podman system service", &log)?;
        Ok(service)
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        crate::tail(&self.dir.join("service.log"), 40)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        stop(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the libvirt domains (and their persistent definitions) of lbd instance `instance`:
/// for labs and tests, so none outlives them even if lbd was killed.
pub fn purge_domains(instance: &str) {
    let virsh = |args: &[&str]| {
        Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let prefix = format!("xlb-{instance}-");
    let names = virsh(&["list", "--all", "--name"]).unwrap_or_default();
    for name in names.lines().filter(|n| n.starts_with(&prefix)) {
        let _ = virsh(&["destroy", name]);
        let _ = virsh(&["undefine", name]);
    }
}

/// The libvirt domains of lbd instance `instance` that exist now, by name.
pub fn domains(instance: &str) -> Vec<String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let prefix = format!("xlb-{instance}-");
    let mut names: Vec<String> = out
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

impl Podman {
    /// `podman ARGS...` with the service's settings.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        cmd
    }

    /// Names of the containers of lbd instance `instance` (running or not).
    pub fn containers(&self, instance: &str) -> Vec<String> {
        let filter = format!("label=xlb.instance={instance}");
        let out = self
            .cli(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    /// Removes the containers of lbd instance `instance`.
    pub fn purge(&self, instance: &str) {
        for name in self.containers(instance) {
            let _ = self.cli(&["rm", "--force", &name]).output();
        }
    }
}
