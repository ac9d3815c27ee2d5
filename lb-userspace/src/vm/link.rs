//! Network plumbing of `netns` VMs through netlink (rtnetlink) and nix, without the `ip` tool:
//! named network namespaces (as `ip netns add|del` makes them, so `ip netns` and every other
//! tool sees them), and a veth pair from lbd's namespace into a VM with addresses and a
//! default route.
use std::{
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context, Result};
use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    net::if_::if_nametoindex,
    sched::{setns, unshare, CloneFlags},
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Where named network namespaces are bind-mounted (as `ip netns` keeps them).
const NETNS_DIR: &str = "/run/netns";

/// The bind mount of namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates the named network namespace `name`, as `ip netns add` does: `/run/netns` is made
/// a shared mount, and a new namespace (unshared by a thread of its own, so no thread of lbd
/// changes namespace) is bind-mounted on `/run/netns/<name>`.
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
    .map_err(|_| anyhow!("the namespace thread panicked"))?;
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

/// Runs `f` with an rtnetlink handle whose socket lives in namespace `ns` (none: lbd's own),
/// on a thread and runtime of its own, so no thread of lbd ever changes namespace. Interface
/// names `f` resolves (`if_nametoindex`) are resolved in that namespace too.
async fn netlink<T, F, Fut>(ns: Option<String>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let run = || -> Result<T> {
            if let Some(ns) = &ns {
                let file = File::open(netns_path(ns))
                    .with_context(|| format!("opening namespace {ns}"))?;
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering namespace {ns}"))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (connection, handle, _) =
                    rtnetlink::new_connection().context("opening a netlink socket")?;
                tokio::spawn(connection);
                f(handle).await
            })
        };
        let _ = tx.send(run());
    });
    rx.await.map_err(|_| anyhow!("the netlink thread died"))?
}

/// Sets interface `index` (called `name`) up.
async fn set_up(h: &Handle, index: u32, name: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .with_context(|| format!("setting {name} up"))
}

fn index(name: &str) -> Result<u32> {
    if_nametoindex(name).map_err(|e| anyhow!("no interface {name:?}: {e}"))
}

/// How a VM is wired: `iface` in lbd's namespace with `host`/30, `eth0` in namespace `ns`
/// with `vm`/30 and a default route via `host`, loopback up (holding `lo_addr` if given,
/// a DSR pool's VIP).
pub struct VethLink<'a> {
    /// The VM's namespace.
    pub ns: &'a str,
    /// lbd's end of the pair.
    pub iface: &'a str,
    /// lbd's address on it.
    pub host: Ipv4Addr,
    /// The VM's address on `eth0`.
    pub vm: Ipv4Addr,
    /// An address for the VM's loopback.
    pub lo_addr: Option<IpAddr>,
}

impl VethLink<'_> {
    /// Creates the pair, moves the VM's end into its namespace and configures both ends.
    pub async fn create(&self) -> Result<()> {
        let (ns, iface, host, vm, lo_addr) = (
            self.ns.to_string(),
            self.iface.to_string(),
            self.host,
            self.vm,
            self.lo_addr,
        );
        // The VM's end is made under a name unique here, then renamed inside the VM: lbd's
        // namespace may have an eth0 of its own.
        let peer = format!("{iface}p");
        let (ns2, peer2) = (ns.clone(), peer.clone());
        netlink(None, move |h| async move {
            h.link()
                .add(LinkVeth::new(&iface, &peer2).build())
                .execute()
                .await
                .with_context(|| format!("creating veth {iface}"))?;
            let target = File::open(netns_path(&ns2))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(index(&peer2)?)
                        .setns_by_fd(target.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .with_context(|| format!("moving {peer2} into {ns2}"))?;
            let idx = index(&iface)?;
            h.address()
                .add(idx, host.into(), 30)
                .execute()
                .await
                .with_context(|| format!("adding {host}/30 to {iface}"))?;
            set_up(&h, idx, &iface).await?;
            Ok(())
        })
        .await?;
        netlink(Some(ns.clone()), move |h| async move {
            let lo = index("lo")?;
            set_up(&h, lo, "lo").await?;
            if let Some(a) = lo_addr {
                let len = if a.is_ipv4() { 32 } else { 128 };
                h.address()
                    .add(lo, a, len)
                    .execute()
                    .await
                    .with_context(|| format!("adding {a} to lo"))?;
            }
            let eth = index(&peer)?;
            h.link()
                .set(LinkUnspec::new_with_index(eth).name("eth0").build())
                .execute()
                .await
                .context("renaming the VM's end to eth0")?;
            h.address()
                .add(eth, vm.into(), 30)
                .execute()
                .await
                .with_context(|| format!("adding {vm}/30 to eth0"))?;
            set_up(&h, eth, "eth0").await?;
            h.route()
                .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(host).build())
                .execute()
                .await
                .with_context(|| format!("adding the default route via {host}"))?;
            Ok(())
        })
        .await
        .with_context(|| format!("configuring namespace {ns}"))
    }
}
