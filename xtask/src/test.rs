//! `cargo xtask test`: setup, the style gates (rustfmt, clippy with warnings as errors), then
//! every tier (1: no privileges; 2: BPF_PROG_TEST_RUN; 3: network namespaces). Tiers 2 and 3
//! need root.
use anyhow::Result;

use crate::{cmd, deb, guest, setup};

/// Installs what is missing, builds the binaries the namespace tests start, runs the tests.
pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    if !cmd::is_root() {
        println!("[xtask] warning: not root; tier 2 and 3 tests will fail");
    }
    lint()?;
    cmd::run(cmd::cargo().args(["build", "-p", "lb-userspace", "-p", "lb-lab", "--bins"]))?;
    // The libvirt and docker pool tests boot these.
    guest::ensure("debug")?;
    // The packaging test installs this package into a scratch root.
    deb::run(true)?;
    cmd::run(
        cmd::cargo()
            .args([
                "test",
                "--workspace",
                "--exclude",
                "lb-ebpf",
                "--no-fail-fast",
            ])
            .args(args),
    )
}

/// Fails on unformatted code and on any clippy warning in the userspace crates (the eBPF
/// crate builds for its own target only).
fn lint() -> Result<()> {
    println!("[xtask] cargo fmt --check");
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    println!("[xtask] cargo clippy (warnings are errors)");
    cmd::run(cmd::cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "lb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}
