//! Helpers for the test tiers: packet building, independent checksum checks, a per-test
//! network namespace with a loaded balancer, filling flow tables, the validation tables'
//! config, and locating the built binaries.
pub mod chaos;
pub mod config;
pub mod flows;
pub mod harness;
pub mod lab;
pub mod packet;

use std::path::PathBuf;

/// Path of a binary of lb-userspace built next to this test or bench (`cargo xtask test` and
/// `cargo xtask bench` build them).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, the bench binary from target/<profile>/.
    let mut dir = exe.parent().expect("executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the binaries)",
        path.display()
    );
    path
}

/// A file `cargo xtask test` built for the engines' guests (`target/guest/<name>`): the
/// guest kernel, an initramfs.
pub fn guest_file(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the guests)",
        path.display()
    );
    path
}

/// Median of the samples (the upper one of an even count; 0 when there are none), for the
/// bench binaries' tables.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Fails the test early, with a clear message, when not running as root.
pub fn require_root() {
    assert!(
        nix_is_root(),
        "this tier needs root (CAP_BPF, CAP_NET_ADMIN): run `cargo xtask test` as root"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
