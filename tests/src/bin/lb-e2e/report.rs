//! The e2e tables (medians over rounds, ratios to the best baseline of the same run) and the
//! bridge topology's targets.
use serde_json::{json, Value};
use tests::median;

use crate::{measure::machine_description, Samples, Setup, BACKENDS, CONNECTIONS, ROUNDS, SECONDS};

/// The median of `f` over the samples of `setup` in `mode` (0 if there are none).
fn med(samples: &Samples, setup: Setup, mode: &str, f: fn(&crate::Sample) -> f64) -> f64 {
    samples
        .iter()
        .find(|((s, m), _)| *s == setup && *m == mode)
        .map_or(0.0, |(_, v)| median(&v.iter().map(f).collect::<Vec<_>>()))
}

/// Prints one topology's two tables; `baselines` are what "vs best" compares with.
pub fn table(title: &str, samples: &Samples, baselines: &[Setup]) -> Value {
    println!();
    println!(
        "{title}\n{BACKENDS} backends, {CONNECTIONS} connections, {SECONDS} s x {ROUNDS} rounds \
         interleaved, medians ({})",
        machine_description()
    );
    let mut rows = Vec::new();
    for (mode, heading) in [
        ("keepalive", "keep-alive requests"),
        ("close", "new connections (one request each)"),
    ] {
        let best = baselines
            .iter()
            .map(|s| med(samples, *s, mode, |x| x.rps))
            .fold(0.0, f64::max);
        println!();
        println!("{heading}");
        println!(
            "{:<32} {:>9} {:>8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>7}",
            "setup",
            "req/s",
            "vs best",
            "p50 µs",
            "p99 µs",
            "p999",
            "share",
            "errors",
            "cpu µs/r",
            "lb µs/r"
        );
        let setups: Vec<Setup> = samples
            .keys()
            .filter(|(_, m)| *m == mode)
            .map(|(s, _)| *s)
            .collect();
        for setup in setups {
            let v = &samples[&(setup, mode)];
            let rps = med(samples, setup, mode, |x| x.rps);
            let lb_us = {
                let b: Vec<f64> = v.iter().filter_map(|s| s.balancer_us).collect();
                (!b.is_empty()).then(|| median(&b))
            };
            let errors: u64 = v.iter().map(|s| s.errors).sum();
            println!(
                "{:<32} {:>9.0} {:>7.2}x {:>7.0} {:>7.0} {:>7.0} {:>6.2} {:>7} {:>8.1} {:>7}",
                setup.name(),
                rps,
                rps / best,
                med(samples, setup, mode, |x| x.p50),
                med(samples, setup, mode, |x| x.p99),
                med(samples, setup, mode, |x| x.p999),
                med(samples, setup, mode, |x| x.share),
                errors,
                med(samples, setup, mode, |x| x.machine_us),
                lb_us.map_or("-".to_string(), |u| format!("{u:.2}")),
            );
            rows.push(json!({
                "setup": setup.name(), "mode": mode,
                "rps": v.iter().map(|s| s.rps).collect::<Vec<_>>(),
                "median_rps": rps, "ratio_to_best_baseline": rps / best,
                "median_p50_us": med(samples, setup, mode, |x| x.p50),
                "median_p99_us": med(samples, setup, mode, |x| x.p99),
                "median_p999_us": med(samples, setup, mode, |x| x.p999),
                "median_share_max_over_mean": med(samples, setup, mode, |x| x.share),
                "errors": errors,
                "median_machine_cpu_us_per_request": med(samples, setup, mode, |x| x.machine_us),
                "median_balancer_cpu_us_per_request": lb_us,
            }));
        }
    }
    json!({"title": title, "runs": rows})
}

/// The bridge topology's targets: new connections/s at least 1.3 × nftables DNAT's, CPU per
/// request at most 0.8 × nftables', and DSR keep-alive at least 0.9 × the direct run; for ours
/// at tc and at forced XDP.
pub fn bridge_targets(samples: &Samples) -> Value {
    let nft_conns = med(samples, Setup::Nftables, "close", |x| x.rps);
    let nft_cpu = med(samples, Setup::Nftables, "close", |x| x.machine_us);
    let direct = med(samples, Setup::Direct, "keepalive", |x| x.rps);
    println!("\ntargets, one-armed bridge (ratios within this run)");
    println!(
        "{:<52} {:>8} {:>8} {:>5}",
        "measure", "ratio", "target", "met"
    );
    let mut rows = Vec::new();
    let mut line = |what: String, ratio: f64, target: f64, at_least: bool| {
        let met = if at_least {
            ratio >= target
        } else {
            ratio <= target
        };
        let sign = if at_least { ">=" } else { "<=" };
        println!(
            "{what:<52} {ratio:>7.2}x {sign}{target:>5.1}x {:>5}",
            if met { "yes" } else { "NO" }
        );
        rows.push(json!({"measure": what, "ratio": ratio, "target": target, "met": met}));
    };
    for (nat, dsr) in [
        (Setup::OursNat, Setup::OursDsr),
        (Setup::OursNatXdp, Setup::OursDsrXdp),
    ] {
        let conns = med(samples, nat, "close", |x| x.rps);
        let cpu = med(samples, nat, "close", |x| x.machine_us);
        let keep = med(samples, dsr, "keepalive", |x| x.rps);
        line(
            format!("{} new conn/s vs nftables DNAT", nat.name()),
            conns / nft_conns,
            1.3,
            true,
        );
        line(
            format!("{} CPU per new conn vs nftables DNAT", nat.name()),
            cpu / nft_cpu,
            0.8,
            false,
        );
        line(
            format!("{} keep-alive req/s vs direct", dsr.name()),
            keep / direct,
            0.9,
            true,
        );
    }
    Value::Array(rows)
}
