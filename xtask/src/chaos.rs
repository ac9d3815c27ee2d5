//! `cargo xtask chaos`: the chaos suite with full-length faults (tables + JSON); the same
//! scenarios run shorter as Tier 3 tests.
use anyhow::Result;

use crate::{bench, setup};

/// Builds and runs `lb-chaos`; JSON goes to target/bench/chaos.json. `args` name scenarios.
pub fn run(args: &[String]) -> Result<()> {
    setup::ensure()?;
    bench::run_bin("the chaos suite", &["lb-chaos"], "chaos.json", args)
}
