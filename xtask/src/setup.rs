//! Fresh-machine setup shared by every task: installs what is missing, skips what is present,
//! prints each step. Idempotent.
use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::cmd;

/// Debian packages: LLVM 22 for bpf-linker, libvirt's C library (the libvirt VM provider links
/// it), and the tools and engines the lab and tests drive: QEMU and libvirtd for VM pools,
/// podman (with runc: crun cannot use this kind of machine's cgroups) for container pools,
/// busybox for the guests.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "procps",
    "nftables",
    "libvirt-dev",
    "libvirt-daemon",
    "libvirt-clients",
    "libvirt-daemon-driver-qemu",
    "qemu-system-x86",
    "qemu-utils",
    "busybox-static",
    "podman",
    "runc",
];

/// libvirtd's QEMU driver settings for a host without the `libvirt-qemu` user's usual setup
/// (the minimal packages have neither it nor a qemu.conf, and libvirtd then refuses the
/// driver): QEMU runs as root, no security driver, no ownership changes.
const QEMU_CONF: &str = "# Written by cargo xtask (xlb): QEMU as root, no security driver.\n\
user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nsecurity_driver = \"none\"\n";
/// The bpf-linker release we build against Debian's LLVM 22 (rustc's LLVM major).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Makes sure every build and test prerequisite is installed.
pub fn ensure() -> Result<()> {
    let start = Instant::now();
    println!("[setup] checking the toolchain (installs only what is missing)");
    apt_packages()?;
    libvirt_host()?;
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

/// The `libvirt-qemu` user and group and `/etc/libvirt/qemu.conf` libvirtd needs here, and the
/// directories it logs and keeps state in.
fn libvirt_host() -> Result<()> {
    let exists = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let conf = std::path::Path::new("/etc/libvirt/qemu.conf");
    let ready = exists("group", "libvirt-qemu")
        && exists("passwd", "libvirt-qemu")
        && std::fs::read_to_string(conf).is_ok_and(|c| c == QEMU_CONF);
    if ready {
        println!("[setup] libvirt host settings: present");
        return Ok(());
    }
    if !cmd::is_root() {
        bail!("libvirt host settings missing; run as root to write them");
    }
    println!(
        "[setup] libvirt host settings: the libvirt-qemu user, {}",
        conf.display()
    );
    if !exists("group", "libvirt-qemu") {
        cmd::run(Command::new("groupadd").args(["-r", "libvirt-qemu"]))?;
    }
    if !exists("passwd", "libvirt-qemu") {
        cmd::run(Command::new("useradd").args([
            "-r",
            "-g",
            "libvirt-qemu",
            "-d",
            "/var/lib/libvirt",
            "-s",
            "/usr/sbin/nologin",
            "libvirt-qemu",
        ]))?;
    }
    for dir in [
        "/etc/libvirt",
        "/var/log/libvirt/qemu",
        "/var/lib/libvirt/qemu",
    ] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(conf, QEMU_CONF)?;
    Ok(())
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
