//! `cargo xtask build|run|test|bench`: the project's two user commands and what they share.
mod bench;
mod build;
mod cmd;
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
    /// Data-path ns/packet through BPF_PROG_TEST_RUN: prints a table, writes JSON.
    Bench,
    /// Install what is missing, then run every test tier (tiers 2 and 3 need root).
    Test {
        /// Passed to `cargo test` (a test name filter, for instance).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Task::Build => build::run(),
        Task::Run { args } => run::run(&args),
        Task::Test { args } => test::run(&args),
        Task::Bench => bench::run(),
    }
}
