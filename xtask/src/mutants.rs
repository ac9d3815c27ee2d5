//! `cargo xtask mutants`: how many realistic bugs the tests catch. The pure userspace modules
//! (the Maglev table, plan, weights, config validation, health) go through
//! cargo-mutants against the unit and Tier 1 tests; the data path through a list of
//! hand-written mutants (one realistic bug each), each built into a scratch worktree of HEAD
//! and run against Tier 2. Prints caught/survived per file and writes JSON to
//! target/mutants/. Not part of CI: the userspace part alone takes about 2.5 hours here
//! (each mutant rebuilds lb-userspace and the Tier 1 tests).
use std::{collections::BTreeMap, path::Path, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::{cmd, setup};

/// The cargo-mutants release this task installs when it is missing.
const CARGO_MUTANTS: &str = "27.1.0";

/// Userspace files cargo-mutants mutates: 388 mutants (the consistent table's 116 more would
/// add a third to the run).
const USERSPACE_FILES: &[&str] = &[
    "lb-userspace/src/balance/maglev.rs",
    "lb-userspace/src/balance/plan.rs",
    "lb-userspace/src/balance/weights.rs",
    "lb-userspace/src/model/validate.rs",
    "lb-userspace/src/workers/health/mod.rs",
    "lb-userspace/src/workers/health/probe.rs",
];

/// One hand-written data-path bug: `old` (found exactly once in `file`) becomes `new`.
struct Mutant {
    file: &'static str,
    old: &'static str,
    new: &'static str,
    what: &'static str,
}

/// The data-path bugs: each one a mistake someone could make while changing that code.
const DATAPATH: &[Mutant] = &[
    Mutant {
        file: "lb-ebpf/src/pipeline.rs",
        old: "if !opens && (to_vip",
        new: "if (to_vip",
        what: "a SYN reuses a stale connection-table entry",
    },
    Mutant {
        file: "lb-ebpf/src/pipeline.rs",
        old: "if now.wrapping_sub(entry.last_seen) > idle {",
        new: "if idle > now.wrapping_sub(entry.last_seen) {",
        what: "UDP idle check with its operands swapped",
    },
    Mutant {
        file: "lb-ebpf/src/pipeline.rs",
        old: "(backend.family != 0).then_some(backend)",
        new: "Some(backend)",
        what: "a removed backend keeps its established flows",
    },
    Mutant {
        file: "lb-ebpf/src/pipeline.rs",
        old: "let probation = if opens || flow_limit() == 0 {",
        new: "let probation = if flow_limit() == 0 {",
        what: "a retransmitted SYN promotes a flow off probation",
    },
    Mutant {
        file: "lb-ebpf/src/pipeline.rs",
        old: "        || vip.port != pkt.key.dport\n",
        new: "",
        what: "an entry outlives its VIP when a VIP on another port takes its id",
    },
    Mutant {
        file: "lb-ebpf/src/csum.rs",
        old: "    sum = (sum & 0xffff) + (sum >> 16);\n    sum = (sum & 0xffff) + (sum >> 16);\n",
        new: "    sum = (sum & 0xffff) + (sum >> 16);\n",
        what: "one's-complement fold without the second carry",
    },
    Mutant {
        file: "lb-ebpf/src/csum.rs",
        old: "replace2(check, (old >> 16) as u16, (new >> 16) as u16)",
        new: "replace2(check, (old >> 16) as u16, (old >> 16) as u16)",
        what: "a 32-bit checksum update that forgets the high half",
    },
    Mutant {
        file: "lb-ebpf/src/hook.rs",
        old: "if c.udp && sum == 0 {",
        new: "if c.udp && sum == 0 && !c.v4 {",
        what: "a NAT'd IPv4 UDP checksum of 0 sent as 0 (no checksum)",
    },
    Mutant {
        file: "lb-ebpf/src/parse.rs",
        old: "& 0x3fff != 0",
        new: "& 0x1fff != 0",
        what: "first fragments (MF set, offset 0) balanced as whole packets",
    },
    Mutant {
        file: "lb-ebpf/src/parse.rs",
        old: "if tot_len < ihl || L3 + tot_len > ctx.wire_len() {",
        new: "if tot_len < ihl {",
        what: "an IPv4 total length longer than the frame accepted",
    },
    Mutant {
        file: "lb-ebpf/src/forward.rs",
        old: "if ttl <= 1 {",
        new: "if ttl < 1 {",
        what: "a packet with TTL 1 forwarded with TTL 0",
    },
    Mutant {
        file: "lb-ebpf/src/forward.rs",
        old: "if nh.ifindex == 0 || nh.epoch != epoch {",
        new: "if nh.ifindex == 0 {",
        what: "a next hop cached before a route change is never looked up again",
    },
    Mutant {
        file: "lb-ebpf/src/decap.rs",
        old: "if ip.proto != PROTO_IPIP || ip.vihl != 0x45 {",
        new: "if ip.proto != PROTO_IPIP {",
        what: "lb_decap strips an outer IPv4 header with options by 20 bytes",
    },
    Mutant {
        file: "lb-ebpf/src/icmp.rs",
        old: "if kind != request || code != 0 {",
        new: "if kind != request {",
        what: "echo requests with a non-zero code answered for the VIP",
    },
];

/// Runs `what` (userspace, datapath, or both when empty).
pub fn run(what: &[String]) -> Result<()> {
    setup::ensure()?;
    let all = what.is_empty();
    let want = |w: &str| all || what.iter().any(|x| x == w);
    for w in what {
        if w != "userspace" && w != "datapath" {
            bail!("unknown part {w:?}: userspace or datapath");
        }
    }
    let out = cmd::root().join("target/mutants");
    std::fs::create_dir_all(&out)?;
    if want("userspace") {
        userspace(&out)?;
    }
    if want("datapath") {
        datapath(&out)?;
    }
    Ok(())
}

/// cargo-mutants over [`USERSPACE_FILES`], tested by lb-userspace's unit tests and the Tier 1
/// config and validation tests.
fn userspace(out: &Path) -> Result<()> {
    let installed = cmd::output(Command::new("cargo").args(["mutants", "--version"]));
    if installed.is_none_or(|v| !v.contains(CARGO_MUTANTS)) {
        println!("[mutants] installing cargo-mutants {CARGO_MUTANTS}");
        cmd::run(Command::new("cargo").args([
            "install",
            "--locked",
            "--version",
            CARGO_MUTANTS,
            "cargo-mutants",
        ]))?;
    } else {
        println!("[mutants] cargo-mutants {CARGO_MUTANTS}: present");
    }
    // cargo-mutants' own baseline runs the mutated package's tests only, where the Tier 1
    // targets of `tests` do not exist: the baseline runs here, and times the mutants.
    let targets = [
        "--lib",
        "--test",
        "tier1_config*",
        "--test",
        "tier1_validation*",
    ];
    // The consistent table's 5-second test checks a file not mutated here.
    let skip = ["--skip", "consistent::"];
    let packages = ["-p", "lb-userspace", "-p", "tests"];
    println!("[mutants] baseline: the unmutated tree passes its tests");
    cmd::run(
        cmd::cargo()
            .arg("test")
            .args(packages)
            .args(targets)
            .arg("--no-run"),
    )?;
    let start = Instant::now();
    cmd::run(
        cmd::cargo()
            .arg("test")
            .args(packages)
            .args(targets)
            .arg("--")
            .args(skip),
    )
    .context("the unmutated tree fails its tests: no mutant would mean anything")?;
    let timeout = (start.elapsed().as_secs() * 5).max(30);
    let mut mutants = Command::new("cargo");
    mutants
        .current_dir(cmd::root())
        .args(["mutants", "--package", "lb-userspace", "--no-shuffle"])
        .args(["--test-package", "lb-userspace", "--test-package", "tests"])
        .args(["--baseline", "skip", "--timeout"])
        .arg(timeout.to_string())
        .arg("--output")
        .arg(out);
    for f in USERSPACE_FILES {
        mutants.args(["--file", f]);
    }
    for arg in targets {
        mutants.arg(format!("--cargo-test-arg={arg}"));
    }
    // Two builds at once.
    mutants.args(["--jobs", "2", "--", "--"]).args(skip);
    // cargo-mutants exits non-zero when a mutant survives: the table below says which.
    let _ = cmd::run(&mut mutants);
    let dir = out.join("mutants.out");
    let mut per_file: BTreeMap<String, [u32; 4]> = BTreeMap::new();
    for (k, list) in ["caught", "missed", "timeout", "unviable"]
        .iter()
        .enumerate()
    {
        let text = std::fs::read_to_string(dir.join(format!("{list}.txt"))).unwrap_or_default();
        for line in text.lines() {
            let file = line.split(':').next().unwrap_or(line).to_string();
            per_file.entry(file).or_default()[k] += 1;
        }
    }
    if per_file.is_empty() {
        bail!("cargo-mutants left no outcomes in {}", dir.display());
    }
    println!("\nUserspace mutants (cargo-mutants; unit + Tier 1 tests)\n");
    println!(
        "{:<44} {:>7} {:>9} {:>8} {:>9}",
        "file", "caught", "survived", "timeout", "unviable"
    );
    for (file, [c, m, t, u]) in &per_file {
        println!("{file:<44} {c:>7} {m:>9} {t:>8} {u:>9}");
    }
    println!("survivors: {}", dir.join("missed.txt").display());
    Ok(())
}

/// The hand-written data-path mutants, each built into a worktree of HEAD and run against
/// Tier 2 (root: BPF_PROG_TEST_RUN).
fn datapath(out: &Path) -> Result<()> {
    if !cmd::is_root() {
        bail!("the data-path mutants run Tier 2 (BPF_PROG_TEST_RUN): run as root");
    }
    let tree = out.join("datapath-tree");
    let _ = Command::new("git")
        .current_dir(cmd::root())
        .args(["worktree", "remove", "--force"])
        .arg(&tree)
        .status();
    cmd::run(
        Command::new("git")
            .current_dir(cmd::root())
            .args(["worktree", "add", "--detach", "--force"])
            .arg(&tree)
            .arg("HEAD"),
    )?;
    let _guard = Worktree(tree.clone());
    let target = out.join("datapath-target");
    let tier2 = |label: &str| -> Result<Outcome> {
        let start = Instant::now();
        let cargo = |timeout: &str, extra: &[&str]| {
            let mut c = Command::new("timeout");
            c.args(["--kill-after=10", timeout])
                .arg(cmd::cargo().get_program())
                .current_dir(&tree)
                .env("CARGO_TARGET_DIR", &target)
                .args(["test", "-q", "-p", "tests", "--test", "tier2_*"])
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            c.status().context("running cargo test")
        };
        let built = cargo("1800", &["--no-run"])?.success();
        let status = if built {
            Some(cargo("900", &["--no-fail-fast"])?)
        } else {
            None
        };
        let outcome = match status {
            None => Outcome::Unviable,
            Some(s) if s.success() => Outcome::Survived,
            Some(s) if matches!(s.code(), Some(124 | 137)) => Outcome::Timeout,
            Some(_) => Outcome::Caught,
        };
        let word = match (label, outcome) {
            (BASELINE, Outcome::Survived) => "passes",
            (BASELINE, _) => "FAILS",
            _ => outcome.word(),
        };
        println!(
            "[mutants] {label}: {word} ({:.0} s)",
            start.elapsed().as_secs_f64()
        );
        Ok(outcome)
    };
    println!("[mutants] baseline: HEAD unmutated must pass Tier 2 (builds the worktree first)");
    if tier2(BASELINE)? != Outcome::Survived {
        bail!("Tier 2 fails on HEAD itself: fix that first");
    }
    let mut rows = Vec::new();
    for m in DATAPATH {
        let path = tree.join(m.file);
        let text = std::fs::read_to_string(&path)?;
        if text.matches(m.old).count() != 1 {
            bail!(
                "{}: the text of mutant {:?} is not there exactly once",
                m.file,
                m.what
            );
        }
        std::fs::write(&path, text.replacen(m.old, m.new, 1))?;
        let outcome = tier2(m.what);
        std::fs::write(&path, &text)?;
        rows.push((m, outcome?));
    }
    let mut per_file: BTreeMap<&str, [u32; 2]> = BTreeMap::new();
    println!("\nData-path mutants (hand-written; Tier 2 at XDP and tc)\n");
    for (m, o) in &rows {
        println!("  {:<9} {:<26} {}", o.word(), m.file, m.what);
        per_file.entry(m.file).or_default()[usize::from(*o != Outcome::Caught)] += 1;
    }
    println!("\n{:<26} {:>7} {:>9}", "file", "caught", "survived");
    for (file, [c, s]) in &per_file {
        println!("{file:<26} {c:>7} {s:>9}");
    }
    let json: Vec<String> = rows
        .iter()
        .map(|(m, o)| {
            format!(
                "  {{\"file\": \"{}\", \"mutant\": \"{}\", \"outcome\": \"{}\"}}",
                m.file,
                m.what.replace('"', "'"),
                o.word()
            )
        })
        .collect();
    let path = out.join("datapath.json");
    std::fs::write(&path, format!("[\n{}\n]\n", json.join(",\n")))?;
    println!("JSON: {}", path.display());
    Ok(())
}

/// The label of the unmutated run.
const BASELINE: &str = "baseline (HEAD unmutated)";

/// What Tier 2 made of a mutant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Caught,
    Survived,
    Timeout,
    Unviable,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Caught => "caught",
            Outcome::Survived => "SURVIVED",
            Outcome::Timeout => "timeout",
            Outcome::Unviable => "unviable",
        }
    }
}

/// Removes the scratch worktree however the run ends.
struct Worktree(std::path::PathBuf);

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = Command::new("git")
            .current_dir(cmd::root())
            .args(["worktree", "remove", "--force"])
            .arg(&self.0)
            .status();
    }
}
