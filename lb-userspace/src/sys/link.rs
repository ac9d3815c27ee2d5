//! Links, addresses and routes through netlink (rtnetlink), without the `ip` tool: a veth pair
//! between two namespaces with addresses and default routes, bridges and their ports, and the
//! netlink session they are made through, which runs on a thread of its own so no thread of the caller changes
//! namespace.
use std::{
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use nix::net::if_::if_nametoindex;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
pub use rtnetlink::Handle;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{
    error::{fail, Context, Result},
    netns::{enter_here, netns_path},
};

/// Runs `f` with an rtnetlink handle whose socket lives in namespace `ns` (none: the
/// caller's), on a thread and runtime of its own. Interface names `f` resolves ([`index`])
/// are resolved in that namespace too.
pub async fn netlink<T, F, Fut>(ns: Option<String>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let run = || -> Result<T> {
            if let Some(ns) = &ns {
                enter_here(ns)?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a netlink runtime")?;
            rt.block_on(async {
                let (connection, handle, _) =
                    rtnetlink::new_connection().context("opening a netlink socket")?;
                tokio::spawn(connection);
                f(handle).await
            })
        };
        let _ = tx.send(run());
    });
    rx.await
        .map_err(|_| fail("netlink", "the netlink thread died"))?
}

/// The index of interface `name` in the calling thread's namespace.
pub fn index(name: &str) -> Result<u32> {
    if_nametoindex(name).with_context(|| format!("no interface {name:?}"))
}

/// Sets interface `index` (called `name`) up.
pub async fn set_up(h: &Handle, index: u32, name: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .with_context(|| format!("setting {name} up"))
}

/// Adds `addr/len` to interface `index` (called `name`); IPv6 addresses skip duplicate
/// address detection, so they are usable at once.
pub async fn add_address(h: &Handle, index: u32, name: &str, addr: IpAddr, len: u8) -> Result<()> {
    let mut req = h.address().add(index, addr, len);
    if addr.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .with_context(|| format!("adding {addr}/{len} to {name}"))
}

/// Adds a default route via `gateway` (IPv4 or IPv6).
pub async fn default_route(h: &Handle, gateway: IpAddr) -> Result<()> {
    let msg = match gateway {
        IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build(),
        IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build(),
    };
    h.route()
        .add(msg)
        .execute()
        .await
        .with_context(|| format!("adding the default route via {gateway}"))
}

/// Adds a route to `dst/len` via `gateway` (the same family).
pub async fn route_via(h: &Handle, dst: IpAddr, len: u8, gateway: IpAddr) -> Result<()> {
    let msg = match (dst, gateway) {
        (IpAddr::V4(d), IpAddr::V4(gw)) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(d, len)
            .gateway(gw)
            .build(),
        (IpAddr::V6(d), IpAddr::V6(gw)) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(d, len)
            .gateway(gw)
            .build(),
        _ => {
            return Err(fail(
                format!("route to {dst} via {gateway}"),
                "mixed families",
            ))
        }
    };
    h.route()
        .add(msg)
        .execute()
        .await
        .with_context(|| format!("adding the route to {dst}/{len} via {gateway}"))
}

/// Moves interface `name` from namespace `from` (a name or a `/proc/<pid>/ns/net` path) into
/// the calling thread's namespace, unless it is here already.
pub async fn move_here(from: &str, name: &str) -> Result<()> {
    if index(name).is_ok() {
        return Ok(());
    }
    let here = File::open("/proc/thread-self/ns/net").context("opening this namespace")?;
    let name = name.to_string();
    netlink(Some(from.to_string()), move |h| async move {
        h.link()
            .set(
                LinkUnspec::new_with_index(index(&name)?)
                    .setns_by_fd(here.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("moving {name} into lbd's namespace"))
    })
    .await
}

/// Gives interface `name` of the calling thread's namespace `addr/len` and sets it up.
pub async fn configure_here(name: &str, addr: IpAddr, len: u8) -> Result<()> {
    let idx = index(name)?;
    let name = name.to_string();
    // The netlink thread is made by this one, in its namespace.
    netlink(None, move |h| async move {
        add_address(&h, idx, &name, addr, len).await?;
        set_up(&h, idx, &name).await
    })
    .await
}

/// Deletes interface `index` of the calling thread's namespace (a veth takes its peer along).
pub async fn delete(index: u32) -> Result<()> {
    netlink(None, move |h| async move {
        h.link()
            .del(index)
            .execute()
            .await
            .with_context(|| format!("deleting interface {index}"))
    })
    .await
}

/// Creates bridge `name`, up, in the handle's namespace; returns its index.
pub async fn bridge(h: &Handle, name: &str) -> Result<u32> {
    h.link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
        .with_context(|| format!("creating bridge {name}"))?;
    index(name)
}

/// Makes interface `port` (called `name`) a port of the bridge with index `bridge`.
pub async fn set_controller(h: &Handle, port: u32, name: &str, bridge: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(port).controller(bridge).build())
        .execute()
        .await
        .with_context(|| format!("adding {name} to a bridge"))
}

/// The interface (its index) a packet to `dst` leaves by, as `ip route get` tells it: none
/// when no route covers `dst`.
pub async fn route_dev(h: &Handle, dst: IpAddr) -> Result<Option<u32>> {
    use futures_util::TryStreamExt;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut msg = match dst {
        IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.attributes.push(RouteAttribute::Destination(match dst {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }));
    let mut answers = h.route().get(msg).execute();
    match answers.try_next().await {
        Ok(Some(route)) => Ok(route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })),
        // ENETUNREACH and friends: no route.
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Ok(None),
        Err(e) => Err(fail(format!("looking up the route to {dst}"), e)),
    }
}

/// One end of a veth pair and how it is configured.
#[derive(Clone, Debug, Default)]
pub struct End {
    /// Its namespace (none: the caller's).
    pub ns: Option<String>,
    /// Its name there.
    pub name: String,
    /// Addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Default routes via these gateways.
    pub gateways: Vec<IpAddr>,
    /// Addresses for the namespace's loopback, which is set up (only for an end in a
    /// namespace of its own).
    pub lo: Vec<IpAddr>,
}

/// FNV-1a of a string, for short unique interface names.
pub fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Creates a veth pair between `a` and `b`: made in `a`'s namespace, `b`'s end moved into its
/// namespace under a name unique in `a`'s and renamed there (`a`'s namespace may have an
/// interface of `b`'s name), then each end configured and set up.
pub async fn veth(a: &End, b: &End) -> Result<()> {
    let tmp = format!("xt{:08x}", short_hash(&format!("{b:?}")));
    let (a_name, b_ns, tmp2) = (a.name.clone(), b.ns.clone(), tmp.clone());
    netlink(a.ns.clone(), move |h| async move {
        h.link()
            .add(LinkVeth::new(&a_name, &tmp2).build())
            .execute()
            .await
            .with_context(|| format!("creating veth {a_name}"))?;
        if let Some(ns) = &b_ns {
            let target = File::open(netns_path(ns)).with_context(|| format!("opening {ns}"))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(index(&tmp2)?)
                        .setns_by_fd(target.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .with_context(|| format!("moving {tmp2} into {ns}"))?;
        }
        Ok(())
    })
    .await?;
    configure(a, None).await?;
    configure(b, Some(tmp)).await
}

/// Configures end `e` (first renamed from `tmp`) in its namespace.
async fn configure(e: &End, tmp: Option<String>) -> Result<()> {
    let e = e.clone();
    let ns = e.ns.clone();
    netlink(ns, move |h| async move {
        if e.ns.is_some() {
            let lo = index("lo")?;
            set_up(&h, lo, "lo").await?;
            for a in &e.lo {
                add_address(&h, lo, "lo", *a, if a.is_ipv4() { 32 } else { 128 }).await?;
            }
        }
        let idx = index(tmp.as_deref().unwrap_or(&e.name))?;
        if tmp.is_some() {
            h.link()
                .set(LinkUnspec::new_with_index(idx).name(e.name.clone()).build())
                .execute()
                .await
                .with_context(|| format!("renaming the veth end to {}", e.name))?;
        }
        for (addr, len) in &e.addrs {
            add_address(&h, idx, &e.name, *addr, *len).await?;
        }
        set_up(&h, idx, &e.name).await?;
        for gw in &e.gateways {
            default_route(&h, *gw).await?;
        }
        Ok(())
    })
    .await
}
