//! Where the balancer runs on an interface, and attaching it there: native XDP (NICs) or tc
//! clsact ingress through a TCX link (virtual interfaces, where XDP pays a conversion per
//! packet and loses the kernel's checksum state). Either link is pinned under
//! `<pin_dir>/links/` (see [`pin`]), so the program stays attached if the controller dies,
//! and a pinned link is adopted by atomic replacement.
use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    xdp::XdpLink,
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
};

use crate::{
    model::config::{AttachMode, Hook},
    sys::{
        error::{fail, Context, Result},
        ethtool,
    },
};

/// The pin of the link of `hook` on `iface` under `links`: `<iface>` for XDP, `tc:<iface>`
/// for tc. The BPF filesystem refuses names with a dot, which interface names may hold
/// (`eth0.100`), and no interface name holds a colon: dots become colons.
pub fn pin(hook: Hook, links: &Path, iface: &str) -> PathBuf {
    let name = iface.replace('.', ":");
    match hook {
        Hook::Xdp => links.join(name),
        Hook::Tc => links.join(format!("tc:{name}")),
    }
}

/// The other hook.
pub fn other(hook: Hook) -> Hook {
    match hook {
        Hook::Xdp => Hook::Tc,
        Hook::Tc => Hook::Xdp,
    }
}

/// Drivers of virtual interfaces: packets reach them as socket buffers (often locally sent,
/// with partial checksums), so the balancer runs at tc there.
const VIRTUAL_DRIVERS: [&str; 13] = [
    "veth",
    "tun",
    "bridge",
    "dummy",
    "macvlan",
    "ipvlan",
    "vxlan",
    "geneve",
    "802.1Q VLAN Support",
    "team",
    "openvswitch",
    "wireguard",
    "vrf",
];

/// The hook `mode` means for `iface`, and why (for the log and `lbctl status`).
pub fn resolve(iface: &str, mode: AttachMode) -> Result<(Hook, String)> {
    let driver = ethtool::driver(iface)?;
    let shown = driver.as_deref().unwrap_or("none");
    Ok(match mode {
        AttachMode::Xdp => (Hook::Xdp, format!("configured (driver {shown})")),
        AttachMode::Tc => (Hook::Tc, format!("configured (driver {shown})")),
        AttachMode::Auto => match driver {
            Some(d) if !VIRTUAL_DRIVERS.contains(&d.as_str()) => {
                (Hook::Xdp, format!("auto: driver {d} is a NIC's"))
            }
            _ => (Hook::Tc, format!("auto: driver {shown} is virtual")),
        },
    })
}

/// What XDP on `iface` needs from its surroundings that tc does not, if anything: the warning
/// lbd logs when XDP is configured on a veth.
pub fn xdp_caveat(iface: &str) -> Option<String> {
    let driver = ethtool::driver(iface).ok().flatten()?;
    (driver == "veth").then(|| {
        format!(
            "XDP on veth {iface}: frames redirected into a veth are dropped unless its peer runs \
             an XDP program or has GRO on (`ethtool -K PEER gro on`), and packets sent by local \
             processes carry partial checksums an XDP rewrite cannot finish (`ethtool -K DEV \
             tx off` on each sender); attach = \"tc\" (auto's choice here) needs neither"
        )
    })
}

/// Attaches XDP program `prog` to `iface`, pinning its link at `pin` (adopting one found
/// there).
pub fn attach_xdp(prog: &mut Xdp, iface: &str, ifindex: u32, pin: &Path) -> Result<()> {
    if pin.exists() {
        let pinned = PinnedLink::from_pin(pin)
            .with_context(|| format!("opening pinned link {}", pin.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .with_context(|| format!("{} is not an XDP link", pin.display()))?;
        prog.attach_to_link(link)
            .with_context(|| format!("replacing the XDP program on {iface}"))?;
        return Ok(());
    }
    let id = prog
        .attach_to_if_index(ifindex, XdpMode::Default)
        .with_context(|| format!("attaching at XDP to {iface}"))?;
    let link = prog
        .take_link(id)
        .with_context(|| format!("taking the XDP link of {iface}"))?;
    let link = FdLink::try_from(link)
        .with_context(|| format!("{iface}: the kernel gave no bpf_link to pin"))?;
    link.pin(pin)
        .with_context(|| format!("pinning the XDP link of {iface}"))?;
    Ok(())
}

/// Attaches tc program `prog` to the ingress of `iface` through a TCX link pinned at `pin`
/// (adopting one found there).
pub fn attach_tc(prog: &mut SchedClassifier, iface: &str, pin: &Path) -> Result<()> {
    if pin.exists() {
        let pinned = PinnedLink::from_pin(pin)
            .with_context(|| format!("opening pinned link {}", pin.display()))?;
        let link = SchedClassifierLink::try_from(FdLink::from(pinned))
            .with_context(|| format!("{} is not a TCX link", pin.display()))?;
        prog.attach_to_link(link)
            .with_context(|| format!("replacing the tc program on {iface}"))?;
        return Ok(());
    }
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| format!("attaching at tc ingress to {iface} (TCX, kernel 6.6+)"))?;
    let link = prog
        .take_link(id)
        .with_context(|| format!("taking the tc link of {iface}"))?;
    let link = FdLink::try_from(link)
        .with_context(|| format!("{iface}: the kernel gave no TCX link to pin"))?;
    link.pin(pin)
        .with_context(|| format!("pinning the tc link of {iface}"))?;
    Ok(())
}

/// Removes the pin at `pin` (detaching its link); a missing pin is fine.
pub fn unpin(pin: &Path) -> Result<()> {
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(fail(format!("unpinning {}", pin.display()), e))
        }
        _ => Ok(()),
    }
}
