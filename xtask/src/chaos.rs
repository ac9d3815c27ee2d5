//! `cargo xtask chaos`: the chaos suite with full-length faults (tables + JSON); the same
//! scenarios run shorter as Tier 3 tests.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, setup};

/// Builds and runs `lb-chaos`; JSON goes to target/bench/chaos.json. `args` name scenarios.
pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    if !cmd::is_root() {
        bail!("the chaos suite builds network namespaces: run as root");
    }
    build::release()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "tests", "--bin", "lb-chaos"]))?;
    let json = cmd::root().join("target/bench/chaos.json");
    cmd::run(
        Command::new(cmd::root().join("target/release/lb-chaos"))
            .arg(json)
            .args(args),
    )
}
