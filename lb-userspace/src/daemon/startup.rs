//! What starting needs before the kernel is touched: the desired state (the config, or the
//! state file while the config is unchanged: see [`crate::model::state`]), the machine's
//! readiness (root, interfaces, the host's bpffs), and the instance's lock.
use std::{
    fs::File,
    io::{Read, Seek, Write},
    os::unix::fs::MetadataExt,
    path::PathBuf,
};

use nix::fcntl::{Flock, FlockArg};

use crate::{
    dataplane::{self, object},
    model::{
        config::Config,
        diff::diff,
        state::{aside, StateFile},
        Error, Result,
    },
    workers::reload::Source,
};

/// Where an instance keeps its desired state unless the config says otherwise.
pub fn default_state_file(instance: &str) -> PathBuf {
    PathBuf::from(format!("/var/lib/lbd/{instance}.toml"))
}

/// Where an instance pins its maps, links and programs.
pub fn pin_dir(instance: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf").join(instance)
}

/// What a daemon starts from.
pub struct Startup {
    /// The desired state (validated): the config's daemon settings, and its VIPs or the state
    /// file's.
    pub cfg: Config,
    /// Where the desired state is kept.
    pub state_file: PathBuf,
    /// Digest of the config file's meaning.
    pub config_digest: String,
    /// Where the config came from, for reloads.
    pub source: Source,
}

/// The desired state to start from: the config of `source`; its VIPs are replaced by the
/// state file's (the last run's, runtime changes included) while the config is unchanged
/// since that state was written. An empty or unusable state file is refused unless
/// `reset_state`, which starts from the config and keeps the bad file aside.
pub fn desired_state(source: &Source, reset_state: bool) -> Result<Startup> {
    let (mut cfg, config_digest) = source.load()?;
    let state_file = cfg
        .lbd
        .state_file
        .clone()
        .unwrap_or_else(|| default_state_file(&cfg.lbd.instance));
    if state_file.exists() {
        match StateFile::read(&state_file) {
            Err(e) if reset_state => {
                let bad = aside(&state_file);
                std::fs::rename(&state_file, &bad).map_err(|io| {
                    Error::internal(format!("moving {} aside", state_file.display()), io)
                })?;
                tracing::warn!(
                    "{e}; --reset-state: starting from the config, the file is now {}",
                    bad.display()
                );
            }
            Err(e) => return Err(e),
            Ok(saved) => match &saved.state {
                Some(meta) if meta.config_digest != config_digest => {
                    let dropped = diff(&saved.vips, &cfg.vips);
                    tracing::warn!(
                        "the config changed since {} was written: starting from the config; {} runtime change(s) dropped{}",
                        state_file.display(),
                        dropped.len(),
                        dropped
                            .iter()
                            .map(|c| format!("\n  {}: {}", c.vip, c.what))
                            .collect::<String>()
                    );
                }
                _ => {
                    tracing::info!(
                        "restoring {} VIPs from {} (the last run's state, runtime changes included; the config is unchanged since)",
                        saved.vips.len(),
                        state_file.display()
                    );
                    cfg.vips = saved.vips;
                }
            },
        }
    }
    Ok(Startup {
        cfg,
        state_file,
        config_digest,
        source: source.clone(),
    })
}

/// Checks what starting needs from the machine: root, interfaces that exist, and a pin
/// directory on the host's bpffs.
pub fn preflight(cfg: &Config) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::invalid(
            "lbd",
            "must run as root: it loads XDP programs (CAP_BPF, CAP_NET_ADMIN)",
        ));
    }
    for iface in &cfg.lbd.interfaces {
        dataplane::ifindex(iface).map_err(|_| {
            Error::invalid(
                "lbd.interfaces",
                format!("interface {iface:?} does not exist"),
            )
        })?;
    }
    object::ensure_bpffs()?;
    host_bpffs()
}

/// Fails when /sys/fs/bpf here is not the bpffs of the namespace lbd was started from (lbd
/// run by `ip netns exec`, which unshares the mounts and mounts a /sys of its own): pins there
/// die with this process, so a killed lbd could not be adopted and its data path would stop.
fn host_bpffs() -> Result<()> {
    let ours = std::fs::metadata("/sys/fs/bpf").map(|m| m.dev());
    // The parent's view of the same path: where lbd was started from (when visible).
    let parent = std::os::unix::process::parent_id();
    let theirs = std::fs::metadata(format!("/proc/{parent}/root/sys/fs/bpf")).map(|m| m.dev());
    match (ours, theirs) {
        (Ok(a), Ok(b)) if a != b => Err(Error::invalid(
            "lbd",
            "/sys/fs/bpf is a bpffs private to this mount namespace (was lbd started with \
             `ip netns exec`? It mounts a /sys of its own): pins there die with lbd, so a \
             restarted lbd could not adopt the data path. Run lbd in a network namespace with \
             `nsenter --net=/run/netns/NAME lbd --config FILE`, which keeps the host's mounts",
        )),
        _ => Ok(()),
    }
}

/// The lock that makes an instance single: held for the daemon's life.
pub struct InstanceLock {
    _lock: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock of `instance` (`/run/lbd/<instance>.lock`, holding the owner's pid), or
    /// fails naming the lbd that holds it.
    pub fn take(instance: &str) -> Result<Self> {
        let path = PathBuf::from(format!("/run/lbd/{instance}.lock"));
        let io = |what: &str, e: std::io::Error| {
            Error::internal(format!("{what} {}", path.display()), e)
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        let mut owner = String::new();
        let _ = file.read_to_string(&mut owner);
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(Error::conflict(
                    "lbd.instance",
                    format!(
                        "instance {instance:?} is already running (pid {}, lock {}): stop it \
                         first, or give this one another instance name",
                        owner.trim(),
                        path.display()
                    ),
                ))
            }
            Err((_, errno)) => {
                return Err(Error::internal(
                    format!("locking {}", path.display()),
                    errno,
                ))
            }
        };
        let pid = std::process::id().to_string();
        let written = lock
            .set_len(0)
            .and_then(|_| lock.rewind())
            .and_then(|_| lock.write_all(pid.as_bytes()))
            .and_then(|_| lock.sync_all());
        written.map_err(|e| io("writing", e))?;
        Ok(InstanceLock { _lock: lock })
    }
}

/// Raises the soft limit on open files to the hard one: every API connection, map and link
/// is a descriptor.
pub fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
