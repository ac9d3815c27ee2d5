//! An interface's driver and two of its offload settings through the kernel's ethtool ioctl
//! (`SIOCETHTOOL`): generic receive offload and transmit checksum offload. An XDP redirect
//! into a veth is received only if the peer runs an XDP program or has GRO on, and locally
//! sent packets with TX checksum offload carry partial checksums an XDP rewrite cannot
//! finish; the driver tells a virtual interface (where the balancer runs at tc instead) from
//! a NIC. No maintained crate sets these (rust-netlink's `ethtool` reads features only), so
//! the commands are issued here.
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::error::{fail, Context, Result};

/// `SIOCETHTOOL` (linux/sockios.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// An offload setting and its get / set command numbers (linux/ethtool.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Generic receive offload (`ETHTOOL_GGRO` / `ETHTOOL_SGRO`).
    Gro,
    /// Transmit checksum offload (`ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM`).
    TxChecksum,
}

impl Offload {
    fn commands(self) -> (u32, u32) {
        match self {
            Offload::Gro => (0x2b, 0x2c),
            Offload::TxChecksum => (0x16, 0x17),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Offload::Gro => "gro",
            Offload::TxChecksum => "tx checksum offload",
        }
    }
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo` (`ETHTOOL_GDRVINFO`).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    counts: [u32; 5],
}

/// `ETHTOOL_GDRVINFO`.
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// `struct ifreq` with the `ifr_data` member of its union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn request(iface: &str, cmd: u32, data: u32) -> Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: `EthtoolValue` is the structure the get / set value commands read and write.
    unsafe {
        ioctl(
            iface,
            cmd,
            &mut value as *mut EthtoolValue as *mut libc::c_void,
        )?
    };
    Ok(value.data)
}

/// Issues ethtool command `cmd` on `iface` with `data`.
///
/// # Safety
/// `data` must point at a live structure of the layout command `cmd` reads and writes.
unsafe fn ioctl(iface: &str, cmd: u32, data: *mut libc::c_void) -> Result<()> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(fail(
            format!("interface {iface:?}"),
            "not an interface name",
        ));
    }
    let sock: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening an ethtool socket")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: `req` is a valid `struct ifreq` whose data pointer points at the live structure
    // the caller vouches for; the kernel reads and writes only those.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(fail(
            format!("ethtool command {cmd:#x} on {iface}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The driver of `iface` (`veth`, `tun`, `bridge`, `virtio_net`, `ixgbe`, ...); none for an
/// interface without ethtool support (loopback).
pub fn driver(iface: &str) -> Result<Option<String>> {
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    // SAFETY: `DrvInfo` is `struct ethtool_drvinfo`, the structure the command writes.
    match unsafe {
        ioctl(
            iface,
            ETHTOOL_GDRVINFO,
            &mut info as *mut DrvInfo as *mut libc::c_void,
        )
    } {
        Ok(()) => {
            let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
            Ok(Some(
                String::from_utf8_lossy(&info.driver[..end]).into_owned(),
            ))
        }
        Err(_) if nix::net::if_::if_nametoindex(iface).is_ok() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `offload` is on for `iface` (in the calling thread's namespace).
pub fn get(iface: &str, offload: Offload) -> Result<bool> {
    request(iface, offload.commands().0, 0)
        .map(|v| v != 0)
        .with_context(|| format!("reading {} of {iface}", offload.name()))
}

/// Turns `offload` on or off for `iface` (in the calling thread's namespace).
pub fn set(iface: &str, offload: Offload, on: bool) -> Result<()> {
    request(iface, offload.commands().1, u32::from(on))
        .map(|_| ())
        .with_context(|| format!("setting {} of {iface}", offload.name()))
}
