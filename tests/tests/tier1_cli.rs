//! Tier 1: `lbd` and `lbctl` argument and config errors are clear, and `--check-config` works
//! without touching the kernel.
use std::{os::unix::process::CommandExt, process::Command};

use lb_lab::TempFile;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "[lbd]\ninterfaces = [\"eth9\"]\n[[vip]]\nname = \"web\"\naddr = \"192.0.2.1\"\nport = 80\nproto = \"tcp\"\n[[vip.backend]]\naddr = \"10.0.0.2\"\nport = 8080\n";

#[test]
fn check_config_accepts_a_good_file() {
    let f = TempFile::new(&format!("cli-good-{}.toml", std::process::id()), GOOD).unwrap();
    let (ok, out, err) = run(Command::new(tests::bin("lbd"))
        .arg("--check-config")
        .arg(f.path()));
    assert!(ok, "{err}");
    assert!(out.contains("OK (1 VIPs, 1 backends)"), "{out}");
}

#[test]
fn check_config_names_the_bad_field() {
    let bad = GOOD.replace("port = 8080", "port = 0");
    let f = TempFile::new(&format!("cli-bad-{}.toml", std::process::id()), &bad).unwrap();
    let (ok, _, err) = run(Command::new(tests::bin("lbd"))
        .arg("--check-config")
        .arg(f.path()));
    assert!(!ok);
    assert!(
        err.contains("vip[0].backend[0].port: must be 1-65535"),
        "{err}"
    );
}

#[test]
fn lbd_rejects_unknown_flags_and_missing_config() {
    let (ok, _, err) = run(Command::new(tests::bin("lbd")).arg("--frobnicate"));
    assert!(!ok);
    assert!(err.contains("--frobnicate"), "{err}");
    let (ok, _, err) = run(&mut Command::new(tests::bin("lbd")));
    assert!(!ok);
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn lbctl_rejects_a_bad_weight_with_an_example() {
    let (ok, _, err) = run(Command::new(tests::bin("lbctl")).args([
        "backend",
        "add",
        "--vip",
        "web",
        "10.0.0.1:80",
        "--weight",
        "lots",
    ]));
    assert!(!ok);
    assert!(err.contains("--weight") && err.contains("lots"), "{err}");
}

#[test]
fn lbd_refuses_to_run_without_root() {
    let f = TempFile::new(&format!("cli-noroot-{}.toml", std::process::id()), GOOD).unwrap();
    let mut cmd = Command::new(tests::bin("lbd"));
    cmd.arg("--config").arg(f.path());
    // As root, run the child as `nobody`; as anyone else it is unprivileged already.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let (ok, _, err) = run(&mut cmd);
    assert!(!ok);
    assert!(err.contains("must run as root"), "{err}");
}

#[test]
fn lbd_names_a_missing_interface() {
    tests::require_root();
    let f = TempFile::new(&format!("cli-noif-{}.toml", std::process::id()), GOOD).unwrap();
    let (ok, _, err) = run(Command::new(tests::bin("lbd"))
        .arg("--config")
        .arg(f.path()));
    assert!(!ok);
    assert!(err.contains("interface \"eth9\" does not exist"), "{err}");
}

#[test]
fn plan_takes_apply_after_the_operation_as_the_readme_writes_it() {
    let socket = format!("/tmp/cli-none-{}.sock", std::process::id());
    let (ok, _, err) = run(Command::new(tests::bin("lbctl")).args([
        "--socket",
        &socket,
        "plan",
        "--vip",
        "web",
        "remove",
        "10.0.0.5:8080",
        "--apply",
    ]));
    assert!(!ok);
    // Past the parser: it got as far as looking for lbd.
    assert!(err.contains("lbd is not running"), "{err}");
}

#[test]
fn lbctl_states_the_real_weight_limit() {
    let (ok, _, err) = run(Command::new(tests::bin("lbctl")).args([
        "backend",
        "weight",
        "--vip",
        "web",
        "10.0.0.1:80",
        "70000",
    ]));
    assert!(!ok);
    assert!(err.contains("0..=65535"), "{err}");
    assert!(!err.contains("4294967295"), "{err}");
}
