//! Tier 1: the Debian package `cargo xtask deb` builds (`cargo xtask test` builds it first)
//! installs into a scratch root with dpkg and holds the product: the binaries, the systemd
//! unit with its reload, man pages generated from the command lines, shell completions.
use std::{path::PathBuf, process::Command};

/// The package `cargo xtask deb --debug` wrote.
fn package() -> PathBuf {
    let target = tests::bin("lbd")
        .parent()
        .and_then(|d| d.parent())
        .expect("target/")
        .to_path_buf();
    let deb = target.join(format!("deb/xlb_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    assert!(
        deb.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the package)",
        deb.display()
    );
    deb
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_installs_into_a_scratch_root_with_everything_an_operator_needs() {
    let deb = package();
    let fields = ok(Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .args(["Package", "Architecture"]));
    assert!(
        fields.contains("Package: xlb") && fields.contains("Architecture: amd64"),
        "{fields}"
    );
    let root = std::env::temp_dir().join(format!("xlb-deb-{}", std::process::id()));
    let _guard = lb_lab::TempDir(root.clone());
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    ok(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-depends",
            "--force-not-root",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb));
    let listed = ok(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-L", "xlb"]));
    for file in [
        "/usr/bin/lbd",
        "/usr/bin/lbctl",
        "/usr/bin/lb-decap",
        "/usr/bin/lb-backend",
        "/lib/systemd/system/lbd.service",
        "/usr/share/man/man1/lbd.1.gz",
        "/usr/share/man/man1/lbctl.1.gz",
        "/usr/share/bash-completion/completions/lbctl",
        "/usr/share/zsh/vendor-completions/_lbctl",
        "/usr/share/fish/vendor_completions.d/lbctl.fish",
        "/usr/share/doc/xlb/lbd.toml.example",
    ] {
        assert!(
            listed.lines().any(|l| l == file),
            "{file} not installed:\n{listed}"
        );
        assert!(root.join(&file[1..]).exists(), "{file} missing on disk");
    }
    let version = ok(Command::new(root.join("usr/bin/lbctl")).arg("--version"));
    assert!(version.starts_with("lbctl "), "{version}");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/lbd.service")).expect("unit");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(
        unit.contains("ExecStart=/usr/bin/lbd --config /etc/lbd/lbd.toml"),
        "{unit}"
    );
    let man = ok(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/lbctl.1.gz")));
    assert!(
        man.contains(".TH lbctl") && man.contains("reload"),
        "{man:.400}"
    );
    let man = ok(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/lbd.1.gz")));
    assert!(
        man.contains(".TH lbd") && man.contains("reset\\-state"),
        "{man:.400}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/lbctl"))
        .expect("bash");
    assert!(
        bash.contains("complete") && bash.contains("lbctl"),
        "{bash:.200}"
    );
    let example = root.join("usr/share/doc/xlb/lbd.toml.example");
    let checked = ok(Command::new(root.join("usr/bin/lbd"))
        .arg("--check-config")
        .arg(&example));
    assert!(checked.contains("OK (1 VIPs, 1 backends)"), "{checked}");
}

#[test]
fn the_package_depends_on_the_package_of_every_library_its_binaries_link() {
    let deb = package();
    let depends = ok(Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .arg("Depends"));
    let named: Vec<&str> = depends
        .trim()
        .split(", ")
        .map(|d| d.split(' ').next().unwrap_or(d))
        .collect();
    let root = std::env::temp_dir().join(format!("xlb-deb-libs-{}", std::process::id()));
    let _guard = lb_lab::TempDir(root.clone());
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let mut linked = 0;
    for bin in ["lbd", "lbctl", "lb-decap", "lb-backend"] {
        let dynamic = ok(Command::new("readelf")
            .arg("-d")
            .arg(root.join("usr/bin").join(bin)));
        for lib in dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.strip_suffix(']'))
        {
            let owner = ok(Command::new("dpkg").args(["-S", &format!("*/{lib}")]));
            let package = owner.split(':').next().expect("package: path");
            assert!(
                named.contains(&package),
                "{bin} links {lib} from {package}, not in Depends: {depends}"
            );
            linked += 1;
        }
    }
    assert!(linked >= 4, "the binaries link libc at least: {linked}");
    assert!(
        depends.contains("libc6 (>= 2.36)"),
        "glibc keeps its floor: {depends}"
    );
}
