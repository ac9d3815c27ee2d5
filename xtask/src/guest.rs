//! What the real engines run, built from this workspace: for libvirt a guest kernel (Debian's
//! cloud kernel, downloaded, not installed) and an initramfs (busybox, the virtio network
//! modules in dependency order, `lb-backend` with its shared libraries, an init that reads its
//! address from the kernel command line); for docker and podman an image of `lb-backend`
//! (`xlb-backend:<profile>`, imported from a root filesystem: no registry). Idempotent: each
//! piece is made only when missing or older than what it is made from; every step prints.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// The guest's init: mounts, loads the modules, takes `xlb.*` from the command line, brings
/// `eth0` up with its address and default route, and runs `lb-backend`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
for kv in $(cat /proc/cmdline); do
  case "$kv" in xlb.*=*) k=${kv%%=*}; k=${k#xlb.}; eval "X_$k=\"${kv#*=}\"";; esac
done
ip link set lo up
ip link set eth0 up
ip addr add "$X_addr" dev eth0
ip route add default via "$X_gw"
echo "xlb guest $X_name: $X_addr via $X_gw"
kind=--http
[ "$X_udp" = 1 ] && kind=--listen
set -- --name "$X_name" $kind "[::]:$X_port" --cpu-limit "$X_cpu" --work-us "$X_work"
[ "$X_agent" != 0 ] && set -- "$@" --agent "[::]:$X_agent"
exec /bin/lb-backend "$@"
"#;

/// The modules the guest needs (their dependencies come along): the PCI transport its
/// devices sit on, and the network driver.
const NEEDED_MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];

/// Where the pieces go: `target/guest/`.
pub fn dir() -> PathBuf {
    cmd::root().join("target/guest")
}

/// The kernel and initramfs of `profile` (`debug` or `release`), for libvirt pools.
pub fn kernel_and_initrd(profile: &str) -> (PathBuf, PathBuf) {
    (
        dir().join("vmlinuz"),
        dir().join(format!("initramfs-{profile}.cpio")),
    )
}

/// The image docker pools of `profile` run.
pub fn image(profile: &str) -> String {
    format!("xlb-backend:{profile}")
}

/// Makes every piece for the binaries of `profile` (already built).
pub fn ensure(profile: &str) -> Result<()> {
    kernel()?;
    initramfs(profile)?;
    container_image(profile)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `out` is missing or older than one of `inputs`.
fn stale(out: &Path, inputs: &[PathBuf]) -> bool {
    let Some(made) = modified(out) else {
        return true;
    };
    inputs.iter().any(|i| modified(i).is_none_or(|t| t > made))
}

/// Debian's cloud kernel and the modules the guest loads, into `target/guest/`.
fn kernel() -> Result<()> {
    let dir = dir();
    let order = dir.join("modules/order");
    let listed = std::fs::read_to_string(&order).unwrap_or_default();
    let complete = NEEDED_MODULES
        .iter()
        .all(|m| listed.lines().any(|l| l == *m));
    if dir.join("vmlinuz").exists() && complete {
        println!("[guest] kernel and modules: present");
        return Ok(());
    }
    let deps = cmd::output(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))
        .context("apt-cache depends linux-image-cloud-amd64")?;
    let package = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .context("which kernel linux-image-cloud-amd64 depends on")?
        .to_string();
    println!("[guest] kernel: downloading {package} (not installed: unpacked into target/guest)");
    let dl = dir.join("dl");
    let _ = std::fs::remove_dir_all(&dl);
    std::fs::create_dir_all(&dl)?;
    cmd::run(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&dl),
    )?;
    let deb = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("the downloaded kernel package")?;
    let unpacked = dl.join("root");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .context("vmlinuz in the kernel package")?;
    let modules = dir.join("modules");
    let _ = std::fs::remove_dir_all(&modules);
    std::fs::create_dir_all(&modules)?;
    let all = find_modules(&unpacked.join("lib/modules"))?;
    let load = load_order(&all, &NEEDED_MODULES)?;
    for m in &load {
        std::fs::copy(&all[m], modules.join(format!("{m}.ko")))?;
    }
    std::fs::copy(&vmlinuz, dir.join("vmlinuz"))?;
    std::fs::write(&order, load.join("\n") + "\n")?;
    println!(
        "[guest] kernel: {} and modules {}",
        vmlinuz.display(),
        load.join(" ")
    );
    std::fs::remove_dir_all(&dl)?;
    Ok(())
}

/// Every module under `root`, by name (dashes as underscores, as the kernel names them).
fn find_modules(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Some(stem) = p.to_string_lossy().strip_suffix(".ko") {
                let name = Path::new(stem)
                    .file_name()
                    .map(|n| n.to_string_lossy().replace('-', "_"))
                    .unwrap_or_default();
                found.insert(name, p.clone());
            }
        }
    }
    Ok(found)
}

/// The `depends=` of a module file (its `.modinfo` strings).
fn depends(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)?;
    let key = b"depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// `wanted` and what they depend on, dependencies first.
fn load_order(all: &BTreeMap<String, PathBuf>, wanted: &[&str]) -> Result<Vec<String>> {
    fn visit(
        m: &str,
        all: &BTreeMap<String, PathBuf>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        if path.iter().any(|p| p == m) {
            bail!("modules depend on each other in a loop at {m}");
        }
        let file = all
            .get(m)
            .with_context(|| format!("module {m} is not in the package"))?;
        path.push(m.to_string());
        for d in depends(file)? {
            visit(&d, all, order, path)?;
        }
        path.pop();
        order.push(m.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for m in wanted {
        visit(m, all, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// The shared libraries `binary` loads (from `ldd`), with their paths.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = cmd::output(Command::new("ldd").arg(binary))
        .with_context(|| format!("ldd {}", binary.display()))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let path = l
                .split("=>")
                .nth(1)
                .unwrap_or(l)
                .split_whitespace()
                .next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `(path in the image, file)` for a binary of `profile` and its libraries.
fn binary_files(profile: &str, name: &str, at: &str) -> Result<Vec<(String, PathBuf)>> {
    let binary = cmd::root().join("target").join(profile).join(name);
    if !binary.exists() {
        bail!("{} is missing: build it first", binary.display());
    }
    let mut files = vec![(format!("{at}/{name}"), binary.clone())];
    for lib in libraries(&binary)? {
        files.push((
            lib.display()
                .to_string()
                .trim_start_matches('/')
                .to_string(),
            lib,
        ));
    }
    Ok(files)
}

/// The initramfs of `profile`: init, busybox, modules, `lb-backend` and its libraries.
fn initramfs(profile: &str) -> Result<()> {
    let (_, out) = kernel_and_initrd(profile);
    let mut files = binary_files(profile, "lb-backend", "bin")?;
    files.push(("bin/busybox".into(), PathBuf::from("/bin/busybox")));
    let modules = dir().join("modules");
    for e in std::fs::read_dir(&modules)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        files.push((format!("lib/modules/{name}"), e.path()));
    }
    let inputs: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    if !stale(&out, &inputs) {
        println!("[guest] initramfs {}: up to date", out.display());
        return Ok(());
    }
    println!("[guest] initramfs {}: writing", out.display());
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        cpio.dir(d);
    }
    cpio.file("init", INIT.as_bytes(), 0o755);
    for (at, path) in &files {
        let parent = Path::new(at).parent().map(|p| p.display().to_string());
        for ancestor in parent.iter().flat_map(|p| ancestors(p)) {
            cpio.dir(&ancestor);
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        cpio.file(at, &bytes, 0o755);
    }
    std::fs::write(&out, cpio.finish())?;
    Ok(())
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`.
fn ancestors(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// An uncompressed cpio archive in the kernel's `newc` format.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
    dirs: std::collections::BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        if self.dirs.insert(name.to_string()) {
            self.entry(name, 0o040_755, &[]);
        }
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

/// The image of `profile`, imported into the local container storage from a root filesystem
/// holding `lb-backend` and its libraries.
fn container_image(profile: &str) -> Result<()> {
    let files = binary_files(profile, "lb-backend", "")?;
    let stamp = dir().join(format!("image-{profile}.stamp"));
    let inputs: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    let tag = image(profile);
    let present = Command::new("podman")
        .args(["image", "exists", &tag])
        .status()
        .is_ok_and(|s| s.success());
    if present && !stale(&stamp, &inputs) {
        println!("[guest] image {tag}: up to date");
        return Ok(());
    }
    let rootfs = dir().join(format!("rootfs-{profile}"));
    let _ = std::fs::remove_dir_all(&rootfs);
    for (at, path) in &files {
        let to = rootfs.join(at.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().context("a file's directory")?)?;
        std::fs::copy(path, &to)?;
    }
    let tar = dir().join(format!("rootfs-{profile}.tar"));
    cmd::run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    cmd::run(
        Command::new("podman")
            .args([
                "import",
                "--quiet",
                "--change",
                "ENTRYPOINT [\"/lb-backend\"]",
            ])
            .arg(&tar)
            .arg(&tag),
    )?;
    std::fs::write(&stamp, &tag)?;
    std::fs::remove_dir_all(&rootfs)?;
    std::fs::remove_file(&tar)?;
    Ok(())
}
