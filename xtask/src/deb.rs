//! `cargo xtask deb`: a Debian package of the product — lbd, lbctl, lb-decap and lb-backend
//! (the netns VMs' server), the systemd unit (reload wired to SIGHUP), man pages generated
//! from the binaries' own command lines, shell completions, an example config — staged and
//! built with `dpkg-deb`, the way cargo-deb lays a package out.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{build, cmd};

/// The package's name.
const PACKAGE: &str = "xlb";
/// The binaries it installs in /usr/bin.
const BINARIES: [&str; 4] = ["lbd", "lbctl", "lb-decap", "lb-backend"];

/// Where the package is written: `target/deb/xlb_<version>_<arch>.deb`.
pub fn path() -> PathBuf {
    cmd::root().join(format!(
        "target/deb/{PACKAGE}_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Builds the binaries (release, or the debug ones with `debug`) and the package.
pub fn run(debug: bool) -> Result<()> {
    let profile = if debug {
        cmd::run(cmd::cargo().args(["build", "-p", "lb-userspace", "--bins"]))?;
        "debug"
    } else {
        build::release()?;
        "release"
    };
    let deb = package(&cmd::root().join("target").join(profile), debug)?;
    println!("[xtask] package: {}", deb.display());
    Ok(())
}

/// Writes `bytes` to `root/rel` (making its directories), with `mode`.
fn put(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(rel);
    fs::create_dir_all(path.parent().context("a file in a directory")?)?;
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// What `bin ARGS...` prints on stdout.
fn output_of(bin: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// `bytes` compressed with `gzip -9n` (reproducible: no name, no time).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    child
        .stdin
        .take()
        .context("gzip's stdin")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

/// The Debian packages holding the shared libraries the binaries link (lbd links libvirt's
/// C library when built with the `libvirt` feature): `readelf -d` names them, `dpkg -S` finds
/// their packages. glibc keeps the floor the binaries were built against.
fn depends(bins: &Path) -> Result<Vec<String>> {
    let mut packages = std::collections::BTreeSet::new();
    for b in BINARIES {
        let dynamic = cmd::output(Command::new("readelf").arg("-d").arg(bins.join(b)))
            .with_context(|| format!("readelf -d {b}"))?;
        for lib in dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.strip_suffix(']'))
        {
            let owner = cmd::output(Command::new("dpkg").args(["-S", &format!("*/{lib}")]))
                .with_context(|| format!("which package holds {lib}"))?;
            let package = owner
                .lines()
                .find_map(|l| l.split(':').next())
                .with_context(|| format!("no package holds {lib}"))?;
            packages.insert(package.to_string());
        }
    }
    Ok(packages
        .into_iter()
        .map(|p| {
            if p == "libc6" {
                "libc6 (>= 2.36)".into()
            } else {
                p
            }
        })
        .collect())
}

/// Stages and builds the package from the binaries in `bins` (uncompressed for `debug`
/// binaries, which are large and only tested).
fn package(bins: &Path, debug: bool) -> Result<PathBuf> {
    let stage = cmd::root().join("target/deb/stage");
    let _ = fs::remove_dir_all(&stage);
    for b in BINARIES {
        let bytes = fs::read(bins.join(b)).with_context(|| format!("reading {b} (built?)"))?;
        put(&stage, &format!("usr/bin/{b}"), &bytes, 0o755)?;
    }
    let lbd = bins.join("lbd");
    let lbctl = bins.join("lbctl");
    put(
        &stage,
        "usr/share/man/man1/lbd.1.gz",
        &gzip(&output_of(&lbd, &["--man"])?)?,
        0o644,
    )?;
    put(
        &stage,
        "usr/share/man/man1/lbctl.1.gz",
        &gzip(&output_of(&lbctl, &["man"])?)?,
        0o644,
    )?;
    for (shell, rel) in [
        ("bash", "usr/share/bash-completion/completions/lbctl"),
        ("zsh", "usr/share/zsh/vendor-completions/_lbctl"),
        ("fish", "usr/share/fish/vendor_completions.d/lbctl.fish"),
    ] {
        put(
            &stage,
            rel,
            &output_of(&lbctl, &["completions", shell])?,
            0o644,
        )?;
    }
    put(
        &stage,
        "lib/systemd/system/lbd.service",
        include_bytes!("deb/lbd.service"),
        0o644,
    )?;
    put(
        &stage,
        "usr/share/doc/xlb/lbd.toml.example",
        include_bytes!("deb/lbd.toml.example"),
        0o644,
    )?;
    let size_kib = du(&stage)? / 1024;
    let control = format!(
        "Package: {PACKAGE}\nVersion: {}\nArchitecture: amd64\nMaintainer: xlb developers <xlb@localhost>\n\
         Installed-Size: {size_kib}\nDepends: {}\nSection: net\nPriority: optional\n\
         Description: XDP L4 load balancer for cloud backends\n \
         lbd balances TCP and UDP flows to a virtual IP across backend VMs with an XDP\n \
         program (weighted Maglev, NAT or direct server return), health-checks, drains and\n \
         autoscales its backends; lbctl changes everything live.\n",
        env!("CARGO_PKG_VERSION"),
        depends(bins)?.join(", ")
    );
    put(&stage, "DEBIAN/control", control.as_bytes(), 0o644)?;
    let deb = path();
    let compression = if debug { "-Znone" } else { "-Zxz" };
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", compression])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
