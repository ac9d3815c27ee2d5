//! `cargo xtask bench`: data-path ns/packet through BPF_PROG_TEST_RUN, Maglev build time and
//! control-plane timings; `cargo xtask bench e2e`: the end-to-end comparison (tables + JSON).
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, setup};

/// Builds and runs the data-path benchmark; JSON goes to target/bench/dataplane.json.
pub fn run() -> Result<()> {
    setup::ensure()?;
    if !cmd::is_root() {
        bail!("the benchmark loads XDP programs in a network namespace: run as root");
    }
    // The control-plane part runs the namespace lab: it needs lbd, lbctl and the VM binaries.
    build::release()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "tests", "--bin", "lb-bench"]))?;
    let json = cmd::root().join("target/bench/dataplane.json");
    cmd::run(Command::new(cmd::root().join("target/release/lb-bench")).arg(json))
}

/// Debian packages the end-to-end comparison runs against (nftables is a base package).
const E2E_PACKAGES: &[&str] = &["haproxy"];

/// Builds and runs the end-to-end benchmark; JSON goes to target/bench/e2e.json.
pub fn e2e() -> Result<()> {
    setup::ensure()?;
    setup::ensure_packages(E2E_PACKAGES)?;
    if !cmd::is_root() {
        bail!("the end-to-end benchmark builds network namespaces: run as root");
    }
    build::release()?;
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "tests",
        "--bin",
        "lb-e2e",
        "--bin",
        "lb-load",
    ]))?;
    let json = cmd::root().join("target/bench/e2e.json");
    cmd::run(Command::new(cmd::root().join("target/release/lb-e2e")).arg(json))
}
