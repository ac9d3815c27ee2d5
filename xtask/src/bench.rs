//! `cargo xtask bench`: data-path ns/packet through BPF_PROG_TEST_RUN and Maglev build time
//! (tables + JSON).
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
