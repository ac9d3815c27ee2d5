//! `lb-bench` (run by `cargo xtask bench`): the data path's ns/packet per traffic class at
//! XDP and at tc through BPF_PROG_TEST_RUN, net of the harness that restores each
//! iteration's frame, against targets set as multiples of that harness's own cost; then the
//! control plane's timings. Tables on stdout, JSON in target/bench/.
mod controlplane;
mod dataplane;

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

/// Runs of each measurement; tables show their median and spread.
const RUNS: usize = 9;

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn main() -> Result<()> {
    let json_path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench/dataplane.json".into()),
    );
    let only_dataplane = std::env::args().any(|a| a == "--dataplane");
    dataplane::run(&json_path)?;
    if only_dataplane {
        return Ok(());
    }
    let maglev = controlplane::maglev_build_times();
    let tables = controlplane::table_tradeoffs();
    let lab = controlplane::lab_timings()?;
    let pools = controlplane::pool_timings()?;
    let providers = controlplane::provider_boot_times()?;
    let path = json_path.with_file_name("controlplane.json");
    let doc = json!({
        "maglev_build": maglev,
        "tables": tables,
        "lab": lab,
        "pools": pools,
        "providers": providers,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("JSON: {}", path.display());
    Ok(())
}
