//! Running a command and reporting it: every step prints what it runs and how long it took.
use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

/// Runs `cmd` with inherited output, printing it first and its duration after.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("[xtask] $ {shown}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    println!("[xtask]   ({:.1} s)", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or None if it could not run or failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo` with the workspace root as working directory.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}
