//! `cargo xtask bench`: data-path ns/packet through BPF_PROG_TEST_RUN, Maglev build time and
//! control-plane timings; `cargo xtask bench e2e`: the end-to-end comparison (tables + JSON).
//! Also the runner every measuring command shares ([`run_bin`]).
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cmd, guest, setup};

/// Builds and runs the data-path benchmark; JSON goes to target/bench/dataplane.json.
pub fn run() -> Result<()> {
    setup::ensure()?;
    // The control-plane part runs the namespace lab (lbd, lbctl and the VM binaries) and
    // boots each provider's VMs (the guest kernel, initramfs and container image).
    if cmd::is_root() {
        build::release()?;
        guest::ensure("release")?;
    }
    run_bin("the benchmark", &["lb-bench"], "dataplane.json", &[])
}

/// Debian packages the end-to-end comparison runs against (nftables is a base package).
const E2E_PACKAGES: &[&str] = &["haproxy"];

/// Builds and runs the end-to-end benchmark; JSON goes to target/bench/e2e.json.
pub fn e2e() -> Result<()> {
    setup::ensure()?;
    setup::ensure_packages(E2E_PACKAGES)?;
    run_bin(
        "the end-to-end benchmark",
        &["lb-e2e", "lb-load"],
        "e2e.json",
        &[],
    )
}

/// Checks for root (`what` needs it: XDP programs, network namespaces), builds the release
/// binaries and the `tests` binaries `bins`, and runs the first with
/// `target/bench/<json>` and `args`. Setup is the caller's.
pub fn run_bin(what: &str, bins: &[&str], json: &str, args: &[String]) -> Result<()> {
    if !cmd::is_root() {
        bail!("{what} loads XDP programs in network namespaces: run as root");
    }
    build::release()?;
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-p", "tests"]);
    for b in bins {
        build.args(["--bin", b]);
    }
    cmd::run(&mut build)?;
    let json = cmd::root().join("target/bench").join(json);
    cmd::run(
        Command::new(cmd::root().join("target/release").join(bins[0]))
            .arg(json)
            .args(args),
    )
}
