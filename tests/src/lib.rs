//! Helpers for the test tiers: packet building, independent checksum checks, a per-test
//! network namespace with a loaded balancer, and locating the built binaries.
pub mod harness;
pub mod lab;
pub mod packet;

use std::path::PathBuf;

/// Path of a binary of lb-userspace built next to this test (`cargo xtask test` builds them).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the binaries)",
        path.display()
    );
    path
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
