//! Network namespaces owned by RAII guards, made and configured through the product's
//! namespace implementation (`lb_userspace::sys`: nix and rtnetlink): created with a unique
//! name, entered by a thread, deleted (with every process started in them) on drop, even when
//! a test fails.
use std::{
    future::Future,
    net::IpAddr,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context, Result};
use lb_userspace::sys::{
    self,
    link::{self, Handle},
};

/// A network namespace that lives as long as this guard.
pub struct Netns {
    name: String,
    children: Vec<Child>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine for this process: `<prefix><pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// Runs `f` to completion on a runtime of this thread (the netlink session itself runs on a
/// thread of its own inside the namespace).
pub fn block_on<T>(f: impl Future<Output = T>) -> Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?
        .block_on(f))
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        sys::netns::add_netns(name)?;
        let ns = Netns {
            name: name.to_string(),
            children: Vec::new(),
        };
        ns.netlink(|h| async move {
            let lo = link::index("lo")?;
            link::set_up(&h, lo, "lo").await
        })?;
        Ok(ns)
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` with a netlink handle inside the namespace and waits for it.
    pub fn netlink<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = sys::Result<T>>,
    {
        Ok(block_on(link::netlink(Some(self.name.clone()), f))??)
    }

    /// Adds `addr/len` to interface `dev` of the namespace (IPv6 without duplicate address
    /// detection).
    pub fn add_addr(&self, dev: &str, addr: IpAddr, len: u8) -> Result<()> {
        let dev = dev.to_string();
        self.netlink(move |h| async move {
            let idx = link::index(&dev)?;
            link::add_address(&h, idx, &dev, addr, len).await
        })
    }

    /// The interface a packet to `dst` leaves this namespace by (`ip route get`), or an error
    /// when no route covers it.
    pub fn route_dev(&self, dst: IpAddr) -> Result<String> {
        let index = self
            .netlink(move |h| async move { link::route_dev(&h, dst).await })?
            .with_context(|| format!("{}: no route to {dst}", self.name))?;
        let name = self.enter(move || nix::net::if_::if_indextoname(index))??;
        Ok(name.to_string_lossy().into_owned())
    }

    /// Fails unless every address of `targets` leaves this namespace by interface `dev`: a
    /// test checks this before it sends to them, so no probe can leave the topology it made.
    pub fn check_routes(&self, targets: &[IpAddr], dev: &str) -> Result<()> {
        for t in targets {
            let via = self.route_dev(*t)?;
            if via != dev {
                bail!("{}: {t} routes via {via}, not via {dev}", self.name);
            }
        }
        Ok(())
    }

    /// Runs `PROGRAM ARGS...` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        run(&mut self.command(program, args)?)
    }

    /// A command that runs `PROGRAM ARGS...` inside the namespace. Unlike `ip netns exec`, it
    /// keeps the caller's mount namespace, so pins under /sys/fs/bpf stay shared.
    pub fn command(&self, program: &str, args: &[&str]) -> Result<Command> {
        Ok(sys::netns::command_in(&self.name, program, args)?)
    }

    /// Starts `cmd` (from [`Netns::command`]) and keeps it: it is killed when the guard drops.
    /// Returns the child's pid.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<u32> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Sends `signal` to the process `pid` this guard started and, for a fatal one, reaps it.
    pub fn signal_child(&mut self, pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
        let idx = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .with_context(|| format!("no child {pid} in {}", self.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        if signal == nix::sys::signal::Signal::SIGKILL {
            let mut child = self.children.remove(idx);
            child.wait()?;
        }
        Ok(())
    }

    /// Waits up to `limit` for the process `pid` this guard started to exit, and forgets it.
    pub fn wait_child(
        &mut self,
        pid: u32,
        limit: std::time::Duration,
    ) -> Result<std::process::ExitStatus> {
        let idx = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .with_context(|| format!("no child {pid} in {}", self.name))?;
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.children[idx].try_wait()? {
                // Reaped already; `wait` returns at once.
                let _ = self.children.remove(idx).wait();
                return Ok(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        bail!("process {pid} in {} still runs after {limit:?}", self.name)
    }

    /// Fails if a process this guard started has exited, with its exit status.
    pub fn check_children(&mut self) -> Result<()> {
        for child in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("process {} in {} exited: {status}", child.id(), self.name);
            }
        }
        Ok(())
    }

    /// Sets a sysctl inside the namespace, e.g. `net.ipv4.ip_forward=1`.
    pub fn sysctl(&self, setting: &str) -> Result<()> {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("{setting:?} is not KEY=VALUE"))?;
        Ok(sys::netns::sysctl(Some(&self.name), key, value)?)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live there.
    pub fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        Ok(sys::netns::enter(&self.name, f)?)
    }

    /// Stops the processes this guard started, in reverse order: SIGTERM, then SIGKILL if
    /// one is still running after 3 s.
    pub fn kill_children(&mut self) {
        for mut child in self.children.drain(..).rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_children();
        let _ = sys::netns::del_netns(&self.name);
    }
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
