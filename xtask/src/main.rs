//! `cargo xtask build|run|test|bench|chaos`: the project's two user commands and what they share.
mod bench;
mod build;
mod chaos;
mod cmd;
mod deb;
mod guest;
mod mutants;
mod run;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test the XDP load balancer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing, then build lbd, lbctl, lb-backend and lb-lab (release).
    Build,
    /// Build, then run the namespace lab; with `-- --iface IFACE --config FILE`, run lbd on a
    /// real interface instead.
    Run {
        /// Passed to lb-lab, or to lbd when --iface or --config is among them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Data-path ns/packet through BPF_PROG_TEST_RUN and the control-plane timings; `bench e2e`
    /// runs the end-to-end comparison with nftables and HAProxy instead. Prints tables,
    /// writes JSON.
    Bench {
        #[command(subcommand)]
        what: Option<BenchWhat>,
    },
    /// The chaos suite: steady traffic through 8 faults (lbd killed, drain, weight churn,
    /// scale-in, a VM killed, SYN flood, malformed frames, health flapping) and API abuse,
    /// counting broken connections. Prints a table, writes JSON.
    Chaos {
        /// Only these scenarios (lbd-restart drain-remove weight-churn scale-in
        /// backend-killed syn-flood malformed health-flapping api).
        scenarios: Vec<String>,
    },
    /// Build the Debian package (release binaries; `--debug` packs the debug ones) into
    /// target/deb/.
    Deb {
        /// Pack the debug build (faster; what the tests check).
        #[arg(long)]
        debug: bool,
    },
    /// How many realistic bugs the tests catch: cargo-mutants over the pure userspace modules
    /// (unit + Tier 1 tests) and hand-written data-path mutants (Tier 2, root). Hours (the
    /// userspace part alone about 2.5 here); not part of CI. Prints caught/survived per file.
    Mutants {
        /// Only these parts (userspace, datapath).
        parts: Vec<String>,
    },
    /// Install what is missing, then run every test tier (tiers 2 and 3 need root).
    Test {
        /// Passed to `cargo test` (a test name filter, for instance).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// End to end in namespaces: ours (nat, dsr) against nftables DNAT, HAProxy and a direct
    /// run, requests/s, connections/s, latency, CPU; and raw forwarding against XDP_TX.
    E2e,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Task::Build => build::run(),
        Task::Run { args } => run::run(&args),
        Task::Test { args } => test::run(&args),
        Task::Deb { debug } => deb::run(debug),
        Task::Chaos { scenarios } => chaos::run(&scenarios),
        Task::Mutants { parts } => mutants::run(&parts),
        Task::Bench { what: None } => bench::run(),
        Task::Bench {
            what: Some(BenchWhat::E2e),
        } => bench::e2e(),
    }
}
