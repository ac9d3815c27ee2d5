//! `cargo xtask test`: setup, then every tier (1: no privileges; 2: BPF_PROG_TEST_RUN; 3:
//! network namespaces). Tiers 2 and 3 need root.
use anyhow::Result;

use crate::{cmd, setup};

/// Installs what is missing, builds the binaries the namespace tests start, runs the tests.
pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    if !cmd::is_root() {
        println!("[xtask] warning: not root; tier 2 and 3 tests will fail");
    }
    cmd::run(cmd::cargo().args(["build", "-p", "lb-userspace", "--bins"]))?;
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
