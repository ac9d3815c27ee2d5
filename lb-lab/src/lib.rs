//! The embedded lab behind `cargo xtask run`, the tests and the benches: namespace guards,
//! the lab topology and its configs, a one-armed topology on a bridge, the engines of VM and
//! container pools, client probes, and the benchmark harness object. Test scaffolding, not product: its errors are `anyhow`.
pub mod bridge;
pub mod engines;
pub mod netns;
pub mod probes;
pub mod topology;

pub use bridge::*;
pub use probes::*;
pub use topology::*;

/// The benchmark harness object (`lb_bench`, `lb_pass`, `lb_tx`, and their tc twins `lb_bench_tc`, `lb_pass_tc`), built with the
/// product's programs by `lb-userspace`'s build script.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-bench.o"));
