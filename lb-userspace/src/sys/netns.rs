//! Named network namespaces through nix, as `ip netns add|del` makes them (bind mounts under
//! `/run/netns`, so `ip netns` and every other tool sees them), and ways to act inside one
//! without moving a thread of the caller: a thread of its own, a child that enters it between
//! fork and exec, a sysctl written from inside.
use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};

use super::error::{fail, Context, Result};

/// Where named network namespaces are bind-mounted (as `ip netns` keeps them).
const NETNS_DIR: &str = "/run/netns";

/// The bind mount of namespace `name`; a name that is an absolute path is that file (a
/// process's namespace: `/proc/<pid>/ns/net`).
pub fn netns_path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        return PathBuf::from(name);
    }
    Path::new(NETNS_DIR).join(name)
}

/// The namespace a process is in (`/proc/<pid>/ns/net`), as a name the functions here take.
pub fn of_process(pid: u32) -> String {
    format!("/proc/{pid}/ns/net")
}

/// Whether the namespace `name` is the one the calling thread is in.
pub fn is_current(name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let here = inode(Path::new("/proc/thread-self/ns/net"));
    here.is_some() && here == inode(&netns_path(name))
}

/// Creates the named network namespace `name`, as `ip netns add` does: `/run/netns` is made
/// a shared mount, and a new namespace (unshared by a thread of its own, so no thread of the
/// caller changes namespace) is bind-mounted on `/run/netns/<name>`. Its loopback is down, as
/// in every new namespace.
pub fn add_netns(name: &str) -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {NETNS_DIR}"))?;
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if shared().is_err() {
        // Not a mount point yet: make it one, then shared.
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("bind-mounting /run/netns")?;
        shared().context("making /run/netns shared")?;
    }
    let path = netns_path(name);
    File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("bind-mounting the new namespace")
    })
    .join()
    .map_err(|_| fail(format!("creating namespace {name}"), "the thread panicked"))?;
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Deletes the named network namespace `name` (as `ip netns del`); a missing one is fine.
/// The namespace and its interfaces go once no process is left in it.
pub fn del_netns(name: &str) -> Result<()> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    // Not mounted (a half-made namespace) is fine: the file is removed either way.
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// Moves the calling thread into namespace `ns` (for threads made for that purpose only).
pub fn enter_here(ns: &str) -> Result<()> {
    let file = File::open(netns_path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering namespace {ns}"))
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it opens live there.
pub fn enter<F, R>(ns: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    std::thread::scope(|s| {
        s.spawn(move || -> Result<R> {
            enter_here(ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| fail(format!("thread in namespace {ns}"), "panicked"))?
    })
}

/// A command that runs `PROGRAM ARGS...` inside namespace `ns`. Unlike `ip netns exec`, it
/// keeps the caller's mount namespace, so pins under /sys/fs/bpf stay shared.
pub fn command_in(ns: &str, program: &str, args: &[&str]) -> Result<Command> {
    let file = File::open(netns_path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs between fork and exec and only calls setns(2), which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
    Ok(cmd)
}

/// Sets sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) to `value` inside namespace `ns`
/// (none: the caller's). `/proc/sys/net` shows the namespace of the thread that opens it.
pub fn sysctl(ns: Option<&str>, key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let write = || std::fs::write(&path, value).with_context(|| format!("setting {key} = {value}"));
    match ns {
        Some(ns) => enter(ns, write)?,
        None => write(),
    }
}
