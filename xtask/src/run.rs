//! `cargo xtask run`: the namespace lab (its VMs namespaces, or with `--provider libvirt|docker`
//! QEMU guests or containers), or lbd on a real interface.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, guest, setup};

/// Builds, then runs lb-lab (no arguments) or lbd (`--iface`/`--config` given).
pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    build::release()?;
    if !cmd::is_root() {
        bail!("the balancer loads XDP programs and the lab creates namespaces: run as root");
    }
    let bin = cmd::root().join("target/release");
    let real = args
        .iter()
        .any(|a| a.starts_with("--iface") || a.starts_with("--config"));
    let program = if real { "lbd" } else { "lb-lab" };
    if args.iter().any(|a| a.starts_with("--provider")) {
        // libvirt guests and the docker image, from the release binaries.
        guest::ensure("release")?;
    }
    cmd::run(Command::new(bin.join(program)).args(args))
}
