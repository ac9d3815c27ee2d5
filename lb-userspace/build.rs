//! Builds the `lb-ebpf` object (nightly, bpfel-unknown-none, bpf-linker) so it can be embedded.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("lb-userspace sits in the workspace")
        .to_path_buf();
    let ebpf = root.join("lb-ebpf");
    for path in [
        "lb-ebpf/src",
        "lb-ebpf/Cargo.toml",
        "lb-common/src",
        "lb-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let target_dir = root.join("target").join("bpf");
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf)
        .args(["+nightly", "build", "--release", "--ignore-rust-version"])
        .args(["-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer cargo points these at the stable toolchain and host target; the nested nightly
    // build must not inherit them.
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_CFG_") || key.starts_with("CARGO_FEATURE_") {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run cargo +nightly for lb-ebpf ({e}); run `cargo xtask build` first")
    });
    if !status.success() {
        panic!(
            "building lb-ebpf failed; `cargo xtask build` installs the nightly rust-src and \
             bpf-linker it needs"
        );
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let objects = target_dir.join("bpfel-unknown-none/release");
    // The lab crate embeds the bench harness from here (`DEP_LB_EBPF_OBJECTS`).
    println!("cargo:objects={}", objects.display());
    for name in ["lb-ebpf", "lb-decap"] {
        let object = objects.join(name);
        std::fs::copy(&object, out_dir.join(format!("{name}.o")))
            .unwrap_or_else(|e| panic!("copy {} into OUT_DIR: {e}", object.display()));
    }
}
