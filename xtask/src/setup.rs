//! Fresh-machine setup shared by every task: installs what is missing, skips what is present,
//! prints each step. Idempotent.
use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::cmd;

/// Debian packages: LLVM 22 for bpf-linker, and the tools the lab and tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "procps",
    "nftables",
];
/// The bpf-linker release we build against Debian's LLVM 22 (rustc's LLVM major).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Makes sure every build and test prerequisite is installed.
pub fn ensure() -> Result<()> {
    let start = Instant::now();
    println!("[setup] checking the toolchain (installs only what is missing)");
    apt_packages()?;
    nightly()?;
    stable_components()?;
    bpf_linker()?;
    println!("[setup] ready ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(())
}

fn installed(pkg: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn apt_packages() -> Result<()> {
    ensure_packages(APT_PACKAGES)
}

/// Installs the Debian packages of `packages` that are missing (one `apt-get` run).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("[setup] apt packages: present ({})", packages.join(" "));
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "apt packages missing ({}); run as root to install them",
            missing.join(" ")
        );
    }
    println!("[setup] apt packages: installing {}", missing.join(" "));
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly() -> Result<()> {
    let toolchains =
        cmd::output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("[setup] nightly toolchain: present");
    } else {
        println!("[setup] nightly toolchain: installing");
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        println!("[setup] rust-src for nightly: present");
        return Ok(());
    }
    println!("[setup] rust-src for nightly: installing");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// rustfmt and clippy for the toolchain that builds the userspace crates (the style gates of
/// `cargo xtask test`).
fn stable_components() -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["component", "list", "--installed"]))
        .unwrap_or_default();
    for component in ["rustfmt", "clippy"] {
        if installed.lines().any(|l| l.starts_with(component)) {
            println!("[setup] {component}: present");
        } else {
            println!("[setup] {component}: installing");
            cmd::run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let version = cmd::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        println!("[setup] bpf-linker {BPF_LINKER_VERSION}: present");
        return Ok(());
    }
    println!("[setup] bpf-linker {BPF_LINKER_VERSION}: building against LLVM 22 (about a minute)");
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22", "--force"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}
