//! `lb-chaos` (run by `cargo xtask chaos`): every chaos scenario with its full phases (20 s
//! faults), then the API abuse checks; prints a table of what the clients saw, writes JSON, and
//! fails if a target was missed. `lb-chaos [JSON] [SCENARIO...]` runs only the named ones.
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;
use tests::chaos::{self, Phases, Report, SCENARIOS};

fn main() -> Result<()> {
    tests::require_root();
    let mut args = std::env::args().skip(1);
    let json_path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/bench/chaos.json".into()),
    );
    let only: Vec<String> = args.collect();
    if let Some(bad) = only
        .iter()
        .find(|o| *o != "api" && !SCENARIOS.iter().any(|(n, _)| n == o))
    {
        let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown scenario {bad:?}; scenarios: {} api",
            names.join(" ")
        );
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut reports: Vec<Report> = Vec::new();
    for (name, run) in SCENARIOS {
        if wanted(name) {
            println!("[chaos] {name}: running");
            reports.push(run(Phases::FULL));
        }
    }
    if wanted("api") {
        println!("[chaos] api: running");
        reports.push(chaos::api_abuse());
    }
    println!();
    println!(
        "{:<36} {:>9} {:>9} {:>7} {:>9} {:>7} {:>8} {:>7} {:>6}  result",
        "scenario",
        "long conn",
        "completed",
        "broken",
        "short",
        "failed",
        "udp sent",
        "unansw",
        "moved"
    );
    let mut rows = Vec::new();
    for r in &reports {
        let c = &r.counts;
        println!(
            "{:<36} {:>9} {:>9} {:>7} {:>9} {:>7} {:>8} {:>7} {:>6}  {}",
            r.name,
            c.long_attempted,
            c.long_completed,
            c.broken(),
            c.short_attempted,
            c.short_failed.len(),
            c.udp_sent,
            c.udp_failed,
            c.udp_moved,
            if r.missed.is_empty() { "met" } else { "MISSED" }
        );
        for n in &r.notes {
            println!("{:<36} {n}", "");
        }
        for m in &r.missed {
            println!("{:<36} missed: {m}", "");
        }
        rows.push(json!({
            "scenario": r.name,
            "long_attempted": c.long_attempted, "long_completed": c.long_completed,
            "long_broken": c.long_broken, "short_attempted": c.short_attempted,
            "short_failed": c.short_failed.len(), "udp_sent": c.udp_sent,
            "udp_unanswered": c.udp_failed, "udp_moved": c.udp_moved,
            "notes": r.notes, "missed": r.missed,
        }));
    }
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json!({"scenarios": rows}))?,
    )?;
    println!("JSON: {}", json_path.display());
    let missed = reports.iter().filter(|r| !r.missed.is_empty()).count();
    if missed > 0 {
        bail!("{missed} scenario(s) missed a target");
    }
    Ok(())
}
