//! `cargo xtask build`: setup, then the release binaries (the build script embeds lb-ebpf).
use anyhow::Result;

use crate::{cmd, setup};

/// Installs what is missing and builds the release binaries.
pub fn run() -> Result<()> {
    setup::ensure()?;
    release()
}

/// Builds lbd, lbctl, lb-backend and lb-lab in release mode.
pub fn release() -> Result<()> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "lb-userspace",
        "-p",
        "lb-lab",
        "--bins",
    ]))
}
