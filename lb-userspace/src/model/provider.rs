//! The engine settings of pools whose VMs are real: `[vip.pool.libvirt]` (QEMU/KVM domains
//! through libvirt) and `[vip.pool.docker]` (containers through the Docker Engine API, which
//! podman serves too). Their shapes are checked with the rest of the config; whether an image
//! or an engine is really there is the provider's question, asked when it makes a VM, so a
//! missing one fails that pool alone.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Error;

/// `[vip.pool.libvirt]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LibvirtConfig {
    /// Connection URIs of the hypervisor hosts VMs are spread over (each VM goes to the one
    /// with the fewest of this lbd's VMs). Default: `qemu:///system`.
    #[serde(default = "default_uris")]
    pub uris: Vec<String>,
    /// `kvm` (default) or `qemu` (software emulation, TCG: for machines without KVM).
    #[serde(default = "default_domain_type")]
    pub domain_type: String,
    /// The guest kernel (booted directly).
    pub kernel: PathBuf,
    /// Its initramfs: it reads `xlb.addr`, `xlb.gw`, `xlb.name`, `xlb.port`, `xlb.agent`,
    /// `xlb.cpu`, `xlb.work` and `xlb.udp` from the kernel command line (the one `cargo xtask`
    /// builds runs `lb-backend`).
    pub initrd: PathBuf,
    /// More kernel command line, before lbd's `xlb.*` words.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// A disk image each VM gets a copy-on-write overlay of (qcow2, as its first virtio
    /// disk); none: diskless.
    #[serde(default)]
    pub disk: Option<PathBuf>,
    /// Virtual CPUs per VM (the pool's `cpu_limit` caps what they may use together).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Seconds a VM gets to shut down before it is destroyed.
    #[serde(default = "default_shutdown")]
    pub shutdown_s: u64,
}

/// `[vip.pool.docker]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine's API socket (`/var/run/docker.sock`, or podman's
    /// `/run/podman/podman.sock`).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The image the containers run (its entrypoint is `lb-backend`; `cargo xtask` builds
    /// one locally, `xlb-backend:release` and `xlb-backend:debug`).
    pub image: String,
    /// Seconds a container gets to stop before it is killed.
    #[serde(default = "default_shutdown")]
    pub shutdown_s: u64,
}

fn default_uris() -> Vec<String> {
    vec!["qemu:///system".into()]
}
fn default_domain_type() -> String {
    "kvm".into()
}
fn default_cmdline() -> String {
    "console=ttyS0 quiet".into()
}
fn default_vcpus() -> u32 {
    1
}
fn default_shutdown() -> u64 {
    10
}
fn default_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

/// A config error at `field`.
fn err(field: String, message: impl Into<String>) -> Error {
    Error::invalid(field, message)
}

impl LibvirtConfig {
    /// Checks the shape of the settings (the files are the provider's to find).
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        if self.uris.is_empty() || self.uris.len() > 16 {
            return Err(err(format!("{at}.uris"), "list 1-16 connection URIs"));
        }
        if let Some(u) = self.uris.iter().find(|u| !u.contains("://")) {
            return Err(err(
                format!("{at}.uris"),
                format!("{} is not a libvirt URI (qemu:///system)", super::shown(u)),
            ));
        }
        if !["kvm", "qemu"].contains(&self.domain_type.as_str()) {
            return Err(err(format!("{at}.domain_type"), "must be kvm or qemu"));
        }
        for (name, path) in [("kernel", &self.kernel), ("initrd", &self.initrd)] {
            if !path.is_absolute() {
                return Err(err(format!("{at}.{name}"), "must be an absolute path"));
            }
        }
        if self.disk.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(err(format!("{at}.disk"), "must be an absolute path"));
        }
        if self.cmdline.contains("xlb.") || self.cmdline.len() > 1024 {
            return Err(err(
                format!("{at}.cmdline"),
                "at most 1024 characters, without xlb.* words (lbd adds those)",
            ));
        }
        if !(1..=64).contains(&self.vcpus) {
            return Err(err(format!("{at}.vcpus"), "must be 1-64"));
        }
        if self.shutdown_s > 600 {
            return Err(err(format!("{at}.shutdown_s"), "must be 0-600 s"));
        }
        Ok(())
    }
}

impl DockerConfig {
    /// Checks the shape of the settings (the image and the engine are the provider's to find).
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        if !self.socket.is_absolute() {
            return Err(err(format!("{at}.socket"), "must be an absolute path"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
        if self.image.is_empty() || self.image.len() > 255 || !self.image.chars().all(valid) {
            return Err(err(
                format!("{at}.image"),
                "must be an image reference (name[:tag], at most 255 characters)",
            ));
        }
        if self.shutdown_s > 600 {
            return Err(err(format!("{at}.shutdown_s"), "must be 0-600 s"));
        }
        Ok(())
    }
}
